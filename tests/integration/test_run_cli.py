"""`run`, `status`, `logs`, `cancel` from the command line, as a person uses them."""

from __future__ import annotations

import json
import signal

from conftest import Project, processes_with, wait_until


def test_bad_input_starts_nothing_and_writes_nothing(project: Project) -> None:
    project.write("bad.yml", "command: run {nope}\ngrid: {x: [1]}\n")
    result = project.run("run", "bad.yml")
    assert result.returncode == 2
    assert result.stderr.startswith("error: bad.yml:1: step main: placeholder {nope} has no value")
    assert not (project.root / "experiments").exists()
    project.write("ok.yml", "command: 'true'\ngrid: {x: [1]}\n")
    for args in (["--backend", "nope"], ["--gpus", "a,b"], ["--jobs", "0"], ["--tag", "missing"]):
        bad = project.run("run", "ok.yml", *args)
        assert bad.returncode == 2, args
        assert bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr
    assert not (project.root / "experiments").exists()


def test_dry_run_shows_what_would_start(project: Project) -> None:
    project.write("exp.yml", "name: dry\ncommand: 'true'\ngrid: {x: [1, 2, 3]}\n")
    result = project.run("run", "exp.yml", "--dry-run")
    assert result.returncode == 0
    assert "dry: 3 of 3 runs to start" in result.stdout and "x=3" in result.stdout
    assert not (project.root / "experiments").exists()


def test_first_runs_one_run_with_output_on_the_terminal(project: Project) -> None:
    project.write("exp.yml", "name: one\ncommand: echo hello {x}\ngrid: {x: [1, 2, 3]}\n")
    result = project.run("run", "exp.yml", "--first")
    assert result.returncode == 0
    assert "[main] echo hello 1" in result.stdout and "\nhello 1\n" in result.stdout
    assert project.states("one") == {"x=1": "succeeded", "x=2": "pending", "x=3": "pending"}


def test_tag_and_sample_select_runs(project: Project) -> None:
    project.write("exp.yml", """
        name: sel
        command: "true"
        subgrids:
          - {tags: [a], grid: {x: [1, 2]}}
          - {tags: [b], grid: {x: [3, 4, 5]}}
    """)
    assert "2 of 5 runs to start" in project.run("run", "exp.yml", "--tag", "a").stdout
    assert set(project.states("sel").values()) == {"succeeded", "pending"}
    sample = project.run("run", "exp.yml", "--sample", "2", "--seed", "3", "--tag", "b")
    assert "2 of 5 runs to start" in sample.stdout
    assert list(project.states("sel").values()).count("succeeded") == 4


def test_status_logs_and_json(project: Project) -> None:
    project.write("exp.yml", """
        name: st
        steps:
          one: echo first {x}
          two: echo second {x}; exit {x}
        grid: {x: [0, 2]}
    """)
    assert project.run("run", "exp.yml").returncode == 1
    status = project.run("status")
    assert status.returncode == 0
    assert "succeeded: 1" in status.stdout and "failed: 1" in status.stdout
    assert "x=2" in status.stdout and "x=0 " not in status.stdout  # only runs needing attention
    data = json.loads(project.run("status", "--format", "json").stdout)
    failed = next(r for r in data["runs"] if r["name"] == "x=2")
    assert (failed["state"], failed["exit_code"], failed["step"]) == ("failed", 2, "two")
    assert project.run("logs", "x=2").stdout == "second 2\n"
    assert project.run("logs", "x=2", "--step", "one").stdout == "first 2\n"
    run_id = failed["run_id"]
    assert project.run("logs", run_id[:6], "--step", "one").stdout == "first 2\n"
    missing = project.run("logs", "nope")
    assert missing.returncode == 2 and "no run 'nope'" in missing.stderr
    assert project.run("status", str(project.exp("st"))).returncode == 0
    assert project.run("status", "--exp-typo").returncode == 2


def test_cancel_a_run_and_follow_its_log(project: Project) -> None:
    project.write("exp.yml", """
        name: cc
        command: echo started {x}; sleep 304.{x}
        grid: {x: [1, 2]}
    """)
    controller = project.start("run", "exp.yml", "-j", "2")
    wait_until(lambda: len(processes_with("sleep 304")) >= 2, what="both runs")
    wait_until(lambda: all(s.get("pgid") for s in project.state_files("cc").values())
               and len(project.state_files("cc")) == 2, what="running states")
    result = project.run("cancel", str(project.exp("cc")), "x=1")
    assert result.returncode == 0 and "1 signalled here" in result.stdout
    wait_until(lambda: project.state_files("cc")["x=1"]["state"] == "cancelled", what="x=1 cancelled")
    assert project.state_files("cc")["x=2"]["state"] == "running"
    follow = project.start("logs", "x=2", "-f")
    assert follow.stdout is not None and follow.stdout.readline() == "started 2\n"
    assert project.run("cancel").returncode == 0  # the whole experiment: its controller stops
    out, _ = controller.communicate(timeout=30)
    assert controller.returncode == 130, out
    follow.communicate(timeout=10)
    assert follow.returncode == 0
    assert processes_with("sleep 304") == []
    assert set(project.states("cc").values()) == {"cancelled"}


def test_sigterm_to_the_controller_is_like_ctrl_c(project: Project) -> None:
    project.write("exp.yml", "name: term\ncommand: sleep 305.{x}\ngrid: {x: [1]}\n")
    controller = project.start("run", "exp.yml")
    wait_until(lambda: processes_with("sleep 305"), what="the run")
    controller.send_signal(signal.SIGTERM)
    controller.communicate(timeout=20)
    assert controller.returncode == 130 and processes_with("sleep 305") == []


def test_steps_runs_only_the_chosen_steps(project: Project) -> None:
    project.write("exp.yml", """
        name: steps
        steps:
          train: echo train {x}
          test: echo test {x}
        grid: {x: [1]}
    """)
    assert project.run("run", "exp.yml", "--steps", "test").returncode == 0
    (run_dir,) = (project.exp("steps") / "runs").iterdir()
    assert sorted(p.name for p in run_dir.glob("*.log")) == ["test.log"]
    bad = project.run("run", "exp.yml", "--steps", "tset")
    assert bad.returncode == 2 and "no step named tset" in bad.stderr


def test_detach_keeps_running_without_the_terminal(project: Project) -> None:
    project.write("exp.yml", "name: bg\ncommand: sleep 0.2; echo {x}\ngrid: {x: [1, 2, 3]}\n")
    result = project.run("run", "exp.yml", "--detach")
    assert result.returncode == 0, result.stderr
    assert "controller pid" in result.stdout
    daemon = int(result.stdout.rsplit("controller pid", 1)[1].split()[0])
    wait_until(lambda: json.loads(project.run("status", "--format", "json").stdout)["counts"]
               ["succeeded"] == 3, what="the detached runs")
    wait_until(lambda: not _alive(daemon), what="the daemon to exit")
    log = (project.exp("bg") / "controller.log").read_text()
    assert "3 succeeded" in log


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for init to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_clean_removes_failed_runs_so_they_start_anew(project: Project) -> None:
    project.write("exp.yml", "name: cl\ncommand: exit {x}\ngrid: {x: [0, 1]}\n")
    assert project.run("run", "exp.yml").returncode == 1
    refused = project.run("clean", "--state", "failed")  # no terminal to ask on
    assert refused.returncode == 2 and "--yes" in refused.stderr
    cleaned = project.run("clean", "--state", "failed", "--yes")
    assert cleaned.returncode == 0 and "removed 1 run(s)" in cleaned.stdout
    assert not (project.exp("cl") / "runs" / "x=1").exists()
    assert (project.exp("cl") / "runs" / "x=0").exists()
    again = project.run("run", "exp.yml")
    assert "1 of 2 runs to start (1 already succeeded)" in again.stdout
