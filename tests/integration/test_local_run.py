"""`expdeploy run` on the local pool with real processes: results, logs, pipelines, resume after
SIGKILL, Ctrl-C, exactly-once with concurrent controllers and agents, continue-the-search."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter

from conftest import Project, processes_with, wait_until

pytest_plugins: list[str] = []


def executions(project: Project) -> Counter[str]:
    """How often each run really executed (every run appends its name to one file)."""
    path = project.root / "executions.txt"
    return Counter(path.read_text().split()) if path.exists() else Counter()


RECORDING = "echo {x} >> {exp_dir}/../../executions.txt"


def test_runs_succeed_and_fail_with_exit_codes_and_logs(project: Project) -> None:
    project.write("exp.yml", """
        name: codes
        command: echo out-{code}; echo err-{code} >&2; exit {code}
        grid: {code: [0, 3]}
    """)
    result = project.run("run", "exp.yml", "-j", "2")
    assert result.returncode == 1, result.stdout + result.stderr
    assert project.states("codes") == {"code=0": "succeeded", "code=3": "failed"}
    failed = project.state_files("codes")["code=3"]
    assert (failed["state"], failed["exit_code"], failed["step"]) == ("failed", 3, "main")
    log = (project.exp("codes") / "runs" / "code=3" / "main.log").read_text()
    assert "out-3" in log and "err-3" in log
    assert "FAIL  code=3 exit=3 step=main log=" in result.stdout
    assert "1 succeeded, 1 failed" in result.stdout
    params = json.loads((project.exp("codes") / "runs" / "code=3" / "params.json").read_text())
    assert params == {"code": 3}
    assert "exit 3" in (project.exp("codes") / "runs" / "code=3" / "commands.sh").read_text()


def test_runs_execute_in_the_invoking_directory_with_run_variables(project: Project) -> None:
    (project.root / "data.txt").write_text("relative data\n")
    project.write("exp.yml", """
        name: envs
        command: cat data.txt; echo "$EXPDEPLOY_RUN_ID $EXPDEPLOY_RUN_DIR"; pwd
        grid: {x: [1]}
    """)
    assert project.run("run", "exp.yml").returncode == 0
    run_dir = next((project.exp("envs") / "runs").iterdir())
    log = (run_dir / "main.log").read_text().splitlines()
    state = json.loads((run_dir / "state.json").read_text())
    assert log == ["relative data", f"{state['run_id']} {run_dir}", str(project.root)]


def test_pipeline_stops_at_the_failed_step(project: Project) -> None:
    project.write("exp.yml", """
        name: pipe
        steps:
          train: echo train {x} > {run_dir}/model
          check: test {x} != bad
          test: cat {run_dir}/model
        grid: {x: [good, bad]}
    """)
    assert project.run("run", "exp.yml").returncode == 1
    bad = project.exp("pipe") / "runs" / "x=bad"
    good = project.exp("pipe") / "runs" / "x=good"
    assert sorted(p.name for p in bad.glob("*.log")) == ["check.log", "train.log"]
    assert (good / "test.log").read_text() == "train good\n"
    state = json.loads((bad / "state.json").read_text())
    assert (state["state"], state["step"], state["exit_code"]) == ("failed", "check", 1)
    assert list(state["steps"]) == ["train", "check"]


def test_rerun_skips_succeeded_and_retries_failed_only_when_asked(project: Project) -> None:
    marker = project.root / "fixed"
    project.write("exp.yml", f"""
        name: retry
        command: {RECORDING}; test {{x}} = ok || test -e {marker}
        grid: {{x: [ok, flaky]}}
    """)
    assert project.run("run", "exp.yml").returncode == 1
    again = project.run("run", "exp.yml")
    assert again.returncode == 0
    assert "0 of 2 runs to start (1 already succeeded, 1 failed before" in again.stdout
    marker.touch()
    retried = project.run("run", "exp.yml", "--retry-failed")
    assert retried.returncode == 0, retried.stdout
    assert executions(project) == {"ok": 1, "flaky": 2}
    assert project.states("retry") == {"x=ok": "succeeded", "x=flaky": "succeeded"}
    forced = project.run("run", "exp.yml", "--force")
    assert forced.returncode == 0 and executions(project) == {"ok": 2, "flaky": 3}
    attempts = sorted(p.name for p in (project.exp("retry") / "runs" / "x=flaky").glob("claim.*"))
    assert attempts == ["claim.1", "claim.2", "claim.3"]


def test_max_retries_retries_during_the_run(project: Project) -> None:
    counter = project.root / "tries"
    project.write("exp.yml", f"""
        name: flaky
        command: echo x >> {counter}; test $(wc -l < {counter}) -ge 3
        grid: {{x: [1]}}
    """)
    result = project.run("run", "exp.yml", "--max-retries", "2")
    assert result.returncode == 0, result.stdout
    assert counter.read_text().count("x") == 3
    assert result.stdout.count("RETRY") == 2
    assert "1 succeeded in" in result.stdout and "failed" not in result.stdout.splitlines()[-1]


def test_continue_the_search_starts_only_new_runs(project: Project) -> None:
    project.write("exp.yml", f"""
        name: search
        command: {RECORDING}
        grid: {{x: [1, 2]}}
    """)
    assert project.run("run", "exp.yml").returncode == 0
    result = project.run("run", "exp.yml", "x=1,2,3,4")
    assert result.returncode == 0
    assert "2 of 4 runs to start (2 already succeeded)" in result.stdout
    assert executions(project) == {"1": 1, "2": 1, "3": 1, "4": 1}


def test_resume_after_sigkill_of_the_controller(project: Project) -> None:
    project.write("exp.yml", f"""
        name: resume
        command: sleep {{t}}; {RECORDING}
        grid: {{x: [a, b, c, d, e, f], t: [0.4]}}
    """)
    controller = project.start("run", "exp.yml", "-j", "2")
    done_before = wait_until(
        lambda: [n for n, s in project.state_files("resume").items() if s["state"] == "succeeded"]
        and all(s["state"] == "running" for n, s in project.state_files("resume").items()
                if s["state"] != "succeeded") and [
            n for n, s in project.state_files("resume").items() if s["state"] == "succeeded"],
        what="a run to succeed while others run")
    os.kill(controller.pid, signal.SIGKILL)
    controller.wait()
    succeeded_before = {n for n, s in project.state_files("resume").items()
                        if s["state"] == "succeeded"}
    assert succeeded_before >= set(done_before)
    result = project.run("run", "exp.yml", "-j", "2")
    assert result.returncode == 0, result.stdout
    assert set(project.states("resume").values()) == {"succeeded"}
    counts = executions(project)
    for name in succeeded_before:
        assert counts[name.split(",")[0].removeprefix("x=")] == 1, counts  # not repeated
    assert set(counts) == set("abcdef")


def test_ctrl_c_cancels_and_leaves_no_process(project: Project) -> None:
    project.write("exp.yml", """
        name: cancel
        command: "sh -c 'trap \\"\\" TERM; sleep 301.{x}' & sleep 302.{x}; wait"
        grid: {x: [1, 2, 3]}
    """)
    controller = project.start("run", "exp.yml", "-j", "2", "--grace", "1")
    wait_until(lambda: len(processes_with("sleep 30")) >= 4, what="runs to start")
    wait_until(lambda: sum(s["state"] == "running"
                           for s in project.state_files("cancel").values()) == 2,
               what="running state")
    controller.send_signal(signal.SIGINT)
    out, _ = controller.communicate(timeout=30)
    assert controller.returncode == 130, out
    assert "cancelling 2 running run(s)" in out
    assert processes_with("sleep 30") == []  # the TERM-ignoring child got SIGKILL
    states = project.states("cancel")
    assert sorted(states.values()) == ["cancelled", "cancelled", "pending"]
    status = json.loads(project.run("status", "--format", "json").stdout)  # after reconciling
    assert status["counts"]["cancelled"] == 2 and status["counts"]["pending"] == 1


def test_second_ctrl_c_kills_at_once(project: Project) -> None:
    project.write("exp.yml", """
        name: kill
        command: "trap '' TERM INT; sleep 303.{x}"
        grid: {x: [1]}
    """)
    controller = project.start("run", "exp.yml", "--grace", "60")
    wait_until(lambda: processes_with("sleep 303"), what="the run to start")
    controller.send_signal(signal.SIGINT)
    assert controller.stdout is not None
    for line in controller.stdout:  # signals sent back to back would be coalesced
        if line.startswith("cancelling"):
            break
    controller.send_signal(signal.SIGINT)
    controller.communicate(timeout=20)  # far less than the 60 s grace
    assert controller.returncode == 130
    assert processes_with("sleep 303") == []


def test_two_controllers_and_an_agent_run_each_run_exactly_once(project: Project) -> None:
    project.write("exp.yml", f"""
        name: once
        command: {RECORDING}; sleep 0.05
        grid: {{x: [{', '.join(str(i) for i in range(24))}]}}
    """)
    first = project.start("run", "exp.yml", "-j", "2")
    wait_until(lambda: (project.exp("once") / "manifest.jsonl").exists(), what="the manifest")
    second = project.start("run", "exp.yml", "-j", "2")
    agent = project.start("agent", str(project.exp("once")))
    outputs = [p.communicate(timeout=60)[0] for p in (first, second, agent)]
    assert [p.returncode for p in (first, second, agent)] == [0, 0, 0], outputs
    assert executions(project) == Counter({str(i): 1 for i in range(24)})
    status = json.loads(project.run("status", "--format", "json").stdout)
    assert status["counts"]["succeeded"] == 24


def test_agent_retries_a_run_whose_claimant_died(project: Project) -> None:
    project.write("exp.yml", f"""
        name: orphan
        command: {RECORDING}
        grid: {{x: [1, 2]}}
    """)
    assert project.run("run", "exp.yml", "--sample", "0").returncode == 0  # manifest, no runs
    run_dir = project.exp("orphan") / "runs" / "x=1"
    run_dir.mkdir(parents=True, exist_ok=True)
    # the claim a crashed agent leaves behind: its pid no longer exists
    (run_dir / "claim.1").write_text(json.dumps({"host": os.uname().nodename, "pid": 2**22 + 7,
                                                 "pid_start": "1"}))
    result = project.run("agent", str(project.exp("orphan")))
    assert result.returncode == 0, result.stdout + result.stderr
    assert executions(project) == {"1": 1, "2": 1}
    assert json.loads((run_dir / "state.json").read_text())["attempt"] == 2


def test_shipped_worker_runs_where_nothing_is_installed(project: Project) -> None:
    project.write("exp.yml", f"""
        name: bare
        command: {RECORDING}
        grid: {{x: [1, 2, 3]}}
    """)
    assert project.run("run", "exp.yml", "--sample", "0").returncode == 0
    shipped = project.exp("bare") / ".expdeploy" / "worker.py"
    # -I -S: no site-packages and no environment, so neither expdeploy nor anything else
    done = subprocess.run([sys.executable, "-I", "-S", str(shipped), "agent", str(project.exp("bare"))],
                          cwd=project.root, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "ran 3 run(s)" in done.stderr
    assert executions(project) == {"1": 1, "2": 1, "3": 1}
    status = json.loads(project.run("status", "--format", "json").stdout)
    assert status["counts"]["succeeded"] == 3


def test_a_run_whose_parameters_changed_under_the_same_name_runs(project: Project) -> None:
    spec = "name: same\ncommand: echo {x} {fixed}\ndefaults: {fixed: %d}\ngrid:\n  x: [1, 2]\n"
    project.write("exp.yml", spec % 1)
    assert project.run("run", "exp.yml").returncode == 0
    project.write("exp.yml", spec % 2)
    again = project.run("run", "exp.yml")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 of 2 runs to start" in again.stdout, "new parameters are new runs, whatever their names"
    status = json.loads(project.run("status", str(project.exp("same")), "--format", "json").stdout)
    assert status["counts"].get("pending", 0) == 0 and status["counts"]["succeeded"] == 4
