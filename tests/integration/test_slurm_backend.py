"""`expdeploy run --backend slurm` against a real single-node Slurm (tests/services/slurm.py):
arrays, throttling, splitting at MaxArraySize, pipelines, retries in the job, requeue on the
warning signal, cancel, and status with and without accounting."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import Project, processes_with, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def slurm_project(project: Project, slurm: Any) -> Project:
    project.env.update(slurm.env)
    return project


def ledger_rows(project: Project, name: str) -> dict[str, dict[str, Any]]:
    db = sqlite3.connect(project.exp(name) / "ledger.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return {row["name"]: dict(row) for row in db.execute("SELECT * FROM runs")}
    finally:
        db.close()


def status_json(project: Project, name: str) -> dict[str, Any]:
    done = project.run("status", str(project.exp(name)), "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def only_run(project: Project, name: str) -> Path:
    """The run directory of a one-run experiment (named run-<id>: no parameter varies)."""
    (run_dir,) = (project.exp(name) / "runs").iterdir()
    return run_dir


def states_of(project: Project, name: str) -> dict[str, str]:
    return {r["name"]: r["state"] for r in status_json(project, name)["runs"]}


def test_runs_succeed_and_fail_with_logs_and_job_ids(slurm_project: Project, slurm: Any) -> None:
    slurm_project.write("grid.yml", """
        name: basic
        command: echo value={x} on $SLURM_JOB_ID && test {x} != bad
        grid:
          x: [a, b, bad]
    """)
    done = slurm_project.run("run", "grid.yml", "--backend", "slurm")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "submitted 3 run(s) as array job" in done.stdout
    rows = ledger_rows(slurm_project, "basic")
    assert {r["state"] for n, r in rows.items() if n != "x=bad"} == {"succeeded"}
    assert rows["x=bad"]["state"] == "failed" and rows["x=bad"]["exit_code"] == 1
    arrays = {r["job"].split("_")[0] for r in rows.values()}
    assert len(arrays) == 1, "one sbatch call: one array job"
    (array,) = arrays
    assert sorted(r["job"] for r in rows.values()) == [f"{array}_{i}" for i in range(3)]
    log = (slurm_project.exp("basic") / "runs" / "x=bad" / "main.log").read_text()
    assert log.startswith("value=bad on ")
    scripts = list((slurm_project.exp("basic") / "slurm").glob("*.sbatch"))
    assert len(scripts) == 1 and "#SBATCH --array=0-2\n" in scripts[0].read_text()


def test_three_step_pipeline_stops_at_the_failed_step(slurm_project: Project) -> None:
    slurm_project.write("pipe.yml", """
        name: pipe
        steps:
          prepare: echo prepared {x} > {run_dir}/data.txt
          train: cat {run_dir}/data.txt && test {x} != 2
          test: echo tested {x}
        grid:
          x: [1, 2]
    """)
    done = slurm_project.run("run", "pipe.yml", "--backend", "slurm")
    assert done.returncode == 1, done.stdout + done.stderr
    runs = slurm_project.exp("pipe") / "runs"
    assert (runs / "x=1" / "test.log").read_text() == "tested 1\n"
    assert (runs / "x=2" / "train.log").read_text() == "prepared 2\n"
    assert not (runs / "x=2" / "test.log").exists(), "the step after a failed one never starts"
    state = json.loads((runs / "x=2" / "state.json").read_text())
    assert state["state"] == "failed" and state["step"] == "train"


def test_failing_run_is_retried_inside_the_job_then_reported_failed(slurm_project: Project) -> None:
    slurm_project.write("flaky.yml", """
        name: flaky
        command: echo attempt $EXPDEPLOY_ATTEMPT of {x}; exit 3
        grid:
          x: [1]
    """)
    done = slurm_project.run("run", "flaky.yml", "--backend", "slurm", "--max-retries", "2")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "log=" in done.stdout
    run_dir = only_run(slurm_project, "flaky")
    assert sorted(p.name for p in run_dir.glob("claim.*")) == ["claim.1", "claim.2", "claim.3"]
    assert (run_dir / "main.log").read_text() == "".join(f"attempt {i} of 1\n" for i in (1, 2, 3))
    row = ledger_rows(slurm_project, "flaky")[run_dir.name]
    assert (row["state"], row["attempt"], row["exit_code"]) == ("failed", 3, 3)
    jobs = {r["job"] for r in status_json(slurm_project, "flaky")["runs"]}
    assert len(jobs) == 1, "the retries ran in the same array task, not as new jobs"


def test_throttle_limits_concurrency(slurm_project: Project) -> None:
    slurm_project.write("many.yml", """
        name: many
        command: sleep 1
        grid:
          x: [1, 2, 3, 4, 5, 6]
    """)
    done = slurm_project.run("run", "many.yml", "--backend", "slurm", "--max-concurrent", "2", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    spans = []
    for path in (slurm_project.exp("many") / "runs").glob("*/state.json"):
        step = json.loads(path.read_text())["steps"]["main"]
        spans.append((step["start"], step["end"]))
    assert len(spans) == 6
    overlap = max(sum(1 for s, e in spans if s <= moment < e) for moment, _ in spans)
    assert overlap <= 2, f"{overlap} runs at once with --max-concurrent 2"


def test_arrays_are_split_at_max_array_size(slurm_project: Project, slurm: Any) -> None:
    assert slurm.max_array_size == 10
    slurm_project.write("wide.yml", "name: wide\ncommand: echo {i}\ngrid:\n"
                        f"  i: [{', '.join(map(str, range(25)))}]\n")
    done = slurm_project.run("run", "wide.yml", "--backend", "slurm", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("submitted ") == 3
    scripts = sorted((slurm_project.exp("wide") / "slurm").glob("*.sbatch"))
    arrays = sorted(s.read_text().split("--array=")[1].split("\n")[0] for s in scripts)
    assert arrays == ["0-4", "0-9", "0-9"]
    rows = ledger_rows(slurm_project, "wide")
    assert len(rows) == 25 and {r["state"] for r in rows.values()} == {"succeeded"}
    assert len({r["job"].split("_")[0] for r in rows.values()}) == 3


def test_dry_run_writes_and_prints_scripts_without_submitting(slurm_project: Project, slurm: Any) -> None:
    slurm_project.write("grid.yml", """
        name: dry
        command: echo {x}
        grid:
          x: [1, 2]
        resources: {cpus: 2, time: 10m}
    """)
    done = slurm_project.run("run", "grid.yml", "--backend", "slurm", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "#SBATCH --array=0-1" in done.stdout and "#SBATCH --cpus-per-task=2" in done.stdout
    assert "#SBATCH --time=00:10:00" in done.stdout and "nothing submitted" in done.stdout
    assert list((slurm_project.exp("dry") / "slurm").glob("*.sbatch"))
    assert "ed-dry-" not in slurm.run("squeue", "-h", "-o", "%j")


def test_cancel_stops_the_experiments_jobs(slurm_project: Project, slurm: Any) -> None:
    slurm_project.write("long.yml", """
        name: long
        command: sleep 300; true expdeploy-cancel-marker-{x}
        grid:
          x: [1, 2, 3]
    """)
    done = slurm_project.run("run", "long.yml", "--backend", "slurm", "--detach")
    assert done.returncode == 0, done.stdout + done.stderr
    wait_until(lambda: len(processes_with("expdeploy-cancel-marker-")) >= 3, 60, "three running runs")
    done = slurm_project.run("cancel", str(slurm_project.exp("long")))
    assert done.returncode == 0, done.stderr
    wait_until(lambda: not processes_with("expdeploy-cancel-marker-"), 30, "runs stopped")
    wait_until(lambda: set(states_of(slurm_project, "long").values()) == {"cancelled"}, 30,
               "every run cancelled")
    wait_until(lambda: "ed-long-" not in slurm.run("squeue", "-h", "-o", "%j"), 30,
               "the jobs out of the queue")


def test_warning_signal_requeues_and_the_run_finishes(slurm_project: Project, slurm: Any) -> None:
    slurm_project.write("pre.yml", """
        name: pre
        command: echo start $SLURM_RESTART_COUNT; test -n "$SLURM_RESTART_COUNT" || sleep 300 && true mark-rq
        grid:
          x: [1]
    """)
    done = slurm_project.run("run", "pre.yml", "--backend", "slurm", "--detach", "--signal", "USR1@60")
    assert done.returncode == 0, done.stdout + done.stderr
    script = next((slurm_project.exp("pre") / "slurm").glob("*.sbatch")).read_text()
    assert "#SBATCH --signal=B:USR1@60" in script
    (row,) = ledger_rows(slurm_project, "pre").values()
    job = row["job"]
    wait_until(lambda: processes_with("mark-rq"), 60, "the run's step")
    # what Slurm sends before a time limit or preemption (--signal=B:USR1@60)
    slurm.run("scancel", "-b", "-s", "USR1", job)
    run_dir = only_run(slurm_project, "pre")
    wait_until(lambda: (json.loads((run_dir / "state.json").read_text()).get("requeues") == 1), 30,
               "the run recorded as requeued")
    wait_until(lambda: "PENDING" in slurm.run("squeue", "-h", "-j", job, "-o", "%T", check=False), 30,
               "the job back in the queue")
    # Slurm starts it again once AuthInfo's cred_expire (5 s in the test cluster) has passed;
    # forcing it earlier (StartTime=now) can fail its launch with a credential error
    try:
        wait_until(lambda: states_of(slurm_project, "pre").get(run_dir.name) == "succeeded", 90,
                   "the run to finish")
    except AssertionError as error:
        seen = slurm.run("scontrol", "-o", "show", "job", job, check=False)
        state_text = (run_dir / "state.json").read_text()
        raise AssertionError(f"{error}; state.json {state_text}; slurm: {seen}") from None
    state = json.loads((run_dir / "state.json").read_text())
    assert (state["attempt"], state["requeues"], state["exit_code"]) == (1, 1, 0)
    assert sorted(p.name for p in run_dir.glob("claim.*")) == ["claim.1"], "a requeue is not a new attempt"
    assert (run_dir / "main.log").read_text().splitlines()[-1] == "start 1"


@pytest.mark.parametrize("accounting", [False, True], ids=["squeue+scontrol", "sacct"])
def test_status_follows_jobs_with_and_without_accounting(project: Project, slurm: Any,
                                                         accounting: bool) -> None:
    slurm.set_accounting(accounting)
    project.env.update(slurm.env)
    project.write("two.yml", """
        name: two
        command: sleep 300; true marker-status-{x}
        grid:
          x: [1, 2]
    """)
    done = project.run("run", "two.yml", "--backend", "slurm", "--detach", "--max-concurrent", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    wait_until(lambda: states_of(project, "two") == {"x=1": "running", "x=2": "pending"}, 60,
               "one run running, one queued behind the throttle")
    # the queued run's job never starts: only Slurm can tell how it ended
    assert project.run("cancel", str(project.exp("two")), "x=2").returncode == 0
    wait_until(lambda: states_of(project, "two").get("x=2") == "cancelled", 30, "the queued run cancelled")
    assert project.run("cancel", str(project.exp("two"))).returncode == 0
    wait_until(lambda: states_of(project, "two") == {"x=1": "cancelled", "x=2": "cancelled"}, 30,
               "both cancelled")
    assert not processes_with("marker-status-")
    ledger = ledger_rows(project, "two")
    assert all(r["job"] for r in ledger.values())
    if accounting:
        array = ledger["x=2"]["job"].split("_")[0]
        assert "CANCELLED" in slurm.run("sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", array)



def _remote_target(project: Project, sshd: Any, slurm: Any, workdir: str) -> None:
    # the ssh config includes the fixture's config, which defines the alias `local`: resolved by `ssh -G`
    project.write("ssh_config", f"Include {sshd.ssh_config}\nHost login\n  HostName 127.0.0.1\n"
                                f"  Port {sshd.port}\n  User root\n")
    project.write("expdeploy.toml", f"""
        [targets.cluster]
        backend = "slurm"
        host = "login"
        ssh_config = "ssh_config"
        workdir = "{workdir}"
        [targets.cluster.env]
        SLURM_CONF = "{slurm.conf}"
    """)


def test_remote_target_submits_through_ssh(project: Project, sshd: Any, slurm: Any) -> None:
    remote = project.root / "remote-copy"  # the login node's copy of the project, at another path
    remote.mkdir()
    (remote / "data.txt").write_text("remote data\n")
    _remote_target(project, sshd, slurm, str(remote))
    project.write("grid.yml", """
        name: far
        command: >-
          echo {x} $(cat data.txt) in $(pwd) | tee {run_dir}/out.txt &&
          echo '{"acc": {x}}' > {run_dir}/summary.json
        grid:
          x: [1, 2]
    """)
    # SLURM_CONF reaches the login node from the target only, never from this environment
    project.env.pop("SLURM_CONF", None)
    done = project.run("run", "grid.yml", "--target", "cluster", "--detach", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "via root@127.0.0.1" in done.stdout
    far = remote / "experiments" / "far"
    wait_until(lambda: states_of(project, "far") == {"x=1": "succeeded", "x=2": "succeeded"}, 60,
               "both runs done, followed over SSH")
    assert (far / "runs" / "x=2" / "out.txt").read_text() == f"2 remote data in {remote}\n"
    assert not (project.exp("far") / "runs" / "x=2" / "state.json").exists(), "states stay on the login node"
    assert (far / "ledger.sqlite").exists() is False, "the ledger stays on this machine"
    assert len(list((far / "slurm").glob("*.sbatch"))) == 1
    logs = project.run("logs", "x=2", "--exp", str(project.exp("far")))  # read over SSH
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == f"2 remote data in {remote}\n"
    shown = project.run("results", str(project.exp("far")), "--format", "json")  # metric files over SSH
    assert shown.returncode == 0, shown.stderr
    metrics = {r["run"]: r["metrics"] for r in json.loads(shown.stdout)}
    assert metrics == {"x=1": {"acc": 1}, "x=2": {"acc": 2}}
    assert not (project.exp("far") / "runs" / "x=2" / "out.txt").exists(), "only metric files come over"
    assert not (project.exp("far") / "runs" / "x=2" / "state.json").exists(), "states stay there"


def test_remote_target_with_missing_workdir_starts_nothing(project: Project, sshd: Any, slurm: Any) -> None:
    _remote_target(project, sshd, slurm, str(project.root / "not-synced"))
    project.write("grid.yml", "name: nowhere\ncommand: echo {x}\ngrid:\n  x: [1]\n")
    project.env.pop("SLURM_CONF", None)
    done = project.run("run", "grid.yml", "--target", "cluster", "--no-sync")
    assert done.returncode == 1
    assert f"the work directory {project.root / 'not-synced'} does not exist" in done.stderr
    assert "Traceback" not in done.stderr
    assert "ed-nowhere-" not in slurm.run("squeue", "-h", "-o", "%j")
    assert not list(project.exp("nowhere").glob("runs/*/claim.*")), "claims given back"


def test_agents_run_every_run_exactly_once(slurm_project: Project, slurm: Any) -> None:
    slurm_project.write("short.yml", """
        name: short
        command: echo {i} >> {exp_dir}/ran.txt
        grid:
          i: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    """)
    done = slurm_project.run("run", "short.yml", "--backend", "slurm", "--agents", "3", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "submitted 3 agent(s) as array job" in done.stdout
    ran = (slurm_project.exp("short") / "ran.txt").read_text().split()
    assert sorted(map(int, ran)) == list(range(12)), "each run exactly once"
    rows = ledger_rows(slurm_project, "short")
    assert {r["state"] for r in rows.values()} == {"succeeded"}
    agents = {r["job"] for r in rows.values()}
    (array,) = {job.split("_")[0] for job in agents}
    assert agents <= {f"{array}_{i}" for i in range(3)}, "runs recorded with the agent that ran them"
    script = next((slurm_project.exp("short") / "slurm").glob("*-agents.sbatch")).read_text()
    assert "#SBATCH --array=0-2\n" in script and " agent " in script


def test_run_whose_job_died_is_lost_and_resubmitted(slurm_project: Project, slurm: Any) -> None:
    slurm_project.write("node.yml", """
        name: node
        command: test {x} = 2 || test -e {run_dir}/again || (touch {run_dir}/again; sleep 300)
        grid:
          x: [1, 2]
    """)
    done = slurm_project.run("run", "node.yml", "--backend", "slurm", "--detach")
    assert done.returncode == 0, done.stdout + done.stderr
    marker = f"{slurm_project.exp('node')}/runs/x=1/again"  # this test's processes only
    wait_until(lambda: processes_with(marker), 60, "run x=1 in its long first attempt")
    # only x=1's worker may die: x=2's array task can still be starting when x=1 sleeps
    x2_state = slurm_project.exp("node") / "runs" / "x=2" / "state.json"
    wait_until(lambda: x2_state.exists() and json.loads(x2_state.read_text())["state"] == "succeeded", 60,
               "run x=2 succeeded")
    # its worker dies with no chance to record anything, as when a node fails
    for pid in processes_with(f"{slurm_project.exp('node')}/.expdeploy/worker.py task"):
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: states_of(slurm_project, "node") == {"x=1": "lost", "x=2": "succeeded"}, 60,
               "x=1 recorded lost")
    again = slurm_project.run("run", "node.yml", "--backend", "slurm", timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 of 2 runs to start (1 already succeeded)" in again.stdout
    assert states_of(slurm_project, "node") == {"x=1": "succeeded", "x=2": "succeeded"}
    assert ledger_rows(slurm_project, "node")["x=1"]["attempt"] == 2
    assert not processes_with(marker), "the lost attempt's processes were killed"


def test_sbatch_refusal_is_one_line_and_gives_the_claims_back(slurm_project: Project, slurm: Any) -> None:
    slurm_project.write("expdeploy.toml", """
        [targets.here]
        backend = "slurm"
        [targets.here.slurm]
        partition = "nosuch"
    """)
    slurm_project.write("grid.yml", "name: refused\ncommand: echo {x}\ngrid:\n  x: [1, 2]\n")
    done = slurm_project.run("run", "grid.yml", "--target", "here")
    assert done.returncode == 1
    assert "sbatch refused" in done.stderr and "invalid partition" in done.stderr.lower()
    assert "Traceback" not in done.stderr
    assert not list(slurm_project.exp("refused").glob("runs/*/claim.*")), "claims given back"
    assert set(states_of(slurm_project, "refused").values()) == {"pending"}
    again = slurm_project.run("run", "grid.yml", "--backend", "slurm")  # the runs are not stuck
    assert again.returncode == 0, again.stdout + again.stderr
    assert set(states_of(slurm_project, "refused").values()) == {"succeeded"}
