"""The real Slurm test cluster of tests/services/slurm.py: jobs run, arrays throttle and are size-limited,
and accounting (sacct) switches on and off."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from services.slurm import SlurmCluster

pytestmark = pytest.mark.integration

T = TypeVar("T")
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL",
                "DEADLINE", "PREEMPTED"}


def _until(condition: Callable[[], T], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return value


def _submit(slurm: SlurmCluster, *args: str) -> str:
    return slurm.run("sbatch", "--parsable", *args).strip().split(";")[0]


def _states(slurm: SlurmCluster, job: str) -> list[str]:
    """JobState of the job, or of each task of an array (scontrol keeps them for MinJobAge)."""
    lines = slurm.run("scontrol", "show", "job", "-o", job).splitlines()
    return [word.split("=", 1)[1] for line in lines for word in line.split() if word.startswith("JobState=")]


def _finished(slurm: SlurmCluster, job: str) -> list[str] | None:
    """The final states of the job's tasks once all have ended, else None."""
    states = _states(slurm, job)
    return states if states and FINAL_STATES.issuperset(states) else None


def test_batch_job_runs_and_writes_a_file(slurm: SlurmCluster, tmp_path: Path) -> None:
    out = tmp_path / "hello.txt"
    job = _submit(slurm, "-o", str(tmp_path / "slurm-%j.out"), "--wrap",
                  f"echo hello from $SLURM_JOB_ID > {out}")
    assert _until(lambda: _finished(slurm, job), 30, f"job {job} to finish") == ["COMPLETED"]
    assert out.read_text() == f"hello from {job}\n"


def test_array_throttle_runs_at_most_two_tasks_at_once(slurm: SlurmCluster, tmp_path: Path) -> None:
    # each task records its own start and end; the overlap is measured from those, not from the test's clock
    task = f's=$(date +%s.%N); sleep 0.5; echo "$s $(date +%s.%N)" > {tmp_path}/task.$SLURM_ARRAY_TASK_ID'
    job = _submit(slurm, "--array=0-9%2", "-o", "/dev/null", "--wrap", task)
    assert _until(lambda: _finished(slurm, job), 60, f"array {job} to finish") == ["COMPLETED"] * 10

    spans = [tuple(map(float, (tmp_path / f"task.{index}").read_text().split())) for index in range(10)]
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    assert most == 2, spans


def test_array_larger_than_max_array_size_is_refused(slurm: SlurmCluster) -> None:
    assert slurm.max_array_size == 10
    refused = subprocess.run(["sbatch", "--array=0-10", "-o", "/dev/null", "--wrap", "true"], env=slurm.env,
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0
    assert "Invalid job array specification" in refused.stderr
    assert not slurm.job_ids()


def test_config_reports_max_array_size(slurm: SlurmCluster) -> None:
    config = dict(line.split("=", 1) for line in slurm.run("scontrol", "show", "config").splitlines()
                  if "=" in line)
    assert {key.strip(): value.strip() for key, value in config.items()}["MaxArraySize"] == "10"


def test_signalled_job_requeues_itself_and_runs_again(slurm: SlurmCluster, tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text(f"""#!/bin/bash
echo "run ${{SLURM_RESTART_COUNT:-0}}" >> {tmp_path}/runs
if [ "${{SLURM_RESTART_COUNT:-0}}" = 0 ]; then
    trap 'scontrol requeue $SLURM_JOB_ID; exit 0' USR1
    touch {tmp_path}/ready
    sleep 60 & wait
fi
""")
    job = _submit(slurm, "-o", "/dev/null", str(script))
    _until((tmp_path / "ready").exists, 30, "the job to start")
    slurm.run("scancel", "--batch", "--signal=USR1", job)
    _until(lambda: _states(slurm, job) == ["PENDING"], 30, "the job to be requeued")
    # a requeued job starts again once AuthInfo's cred_expire has passed (5 s here, 120 s by
    # default); forcing it earlier (StartTime=now) can fail its launch with a credential error
    assert _until(lambda: _finished(slurm, job), 30, "the second run to finish") == ["COMPLETED"]
    assert (tmp_path / "runs").read_text() == "run 0\nrun 1\n"


def test_sacct_records_jobs_with_accounting(slurm_acct: SlurmCluster) -> None:
    assert slurm_acct.accounting
    job = _submit(slurm_acct, "-o", "/dev/null", "--wrap", "true")

    def recorded() -> bool:
        rows = slurm_acct.run("sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", job).split()
        return f"{job}|COMPLETED" in rows

    _until(recorded, 30, f"sacct to show job {job} completed")


def test_sacct_fails_without_accounting(slurm: SlurmCluster) -> None:
    assert not slurm.accounting
    sacct = subprocess.run(["sacct", "-n", "-X"], env=slurm.env, capture_output=True, text=True, timeout=30)
    assert sacct.returncode != 0
    assert "accounting storage is disabled" in sacct.stderr
