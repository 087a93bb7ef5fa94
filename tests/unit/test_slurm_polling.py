"""The Slurm backend's following logic with a scripted shell (the real cluster is exercised in
tests/integration/test_slurm_backend.py): a failed poll is a warning with backoff, and a job that
left the queue without a final run state ends as Slurm says (cancelled) or as lost."""

from __future__ import annotations

import json
from pathlib import Path

from expdeploy.backend import BackendOptions
from expdeploy.remote import Completed, LocalShell
from expdeploy_slurm.backend import POLL_FIRST, SlurmBackend


class ScriptedShell(LocalShell):
    """Answers Slurm commands from a table; everything else (reading files) runs for real."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: dict[str, Completed] = {
            "scontrol show config": Completed(0, "MaxArraySize = 10\nAccountingStorageType = "
                                                 "accounting_storage/none\n", ""),
        }
        self.calls: list[str] = []

    def run(self, command: str, *, stdin: str | None = None, timeout: float | None = 120) -> Completed:
        self.calls.append(command)
        for prefix, answer in self.answers.items():
            if command.startswith(prefix):
                return answer
        return super().run(command, stdin=stdin, timeout=timeout)


def _backend(tmp_path: Path) -> tuple[SlurmBackend, ScriptedShell]:
    shell = ScriptedShell()
    backend = SlurmBackend(BackendOptions(exp_dir=tmp_path), shell=shell)
    (tmp_path / "runs" / "a").mkdir(parents=True)
    backend.follow([{"run_id": "r1", "name": "a", "attempt": 1, "job": "7_0"}])
    return backend, shell


def test_failed_poll_is_a_warning_and_backs_off(tmp_path: Path) -> None:
    backend, shell = _backend(tmp_path)
    shell.answers["squeue"] = Completed(1, "", "slurm_load_jobs error: Unable to contact slurm controller")
    assert backend.poll() == []
    notes = backend.drain_notes()
    assert len(notes) == 1 and "Unable to contact slurm controller" in notes[0]
    assert backend.interval > POLL_FIRST and backend.active() == 1
    shell.answers["squeue"] = Completed(0, "7_0|RUNNING\n", "")
    backend.next_poll = 0
    (tmp_path / "runs" / "a" / "state.json").write_text(json.dumps(
        {"run_id": "r1", "name": "a", "attempt": 1, "state": "running", "step": "main"}))
    (record,) = backend.poll()
    assert (record["state"], record["job"]) == ("running", "7_0")


def test_job_gone_without_final_state_ends_as_slurm_says(tmp_path: Path) -> None:
    backend, shell = _backend(tmp_path)
    shell.answers["squeue"] = Completed(0, "", "")
    shell.answers["scontrol -o show job 7"] = Completed(
        0, "JobId=8 ArrayJobId=7 ArrayTaskId=0 JobState=CANCELLED Reason=None\n", "")
    (record,) = backend.poll()
    assert record["state"] == "cancelled" and record["slurm_state"] == "CANCELLED"
    assert json.loads((tmp_path / "runs" / "a" / "state.json").read_text())["state"] == "cancelled"
    assert backend.active() == 0


def test_vanished_job_is_lost_after_two_looks(tmp_path: Path) -> None:
    backend, shell = _backend(tmp_path)
    shell.answers["squeue"] = Completed(0, "", "")
    shell.answers["scontrol -o show job 7"] = Completed(1, "", "Invalid job id specified")
    assert backend.poll() == [], "one look may race the run's last state write"
    backend.next_poll = 0
    (record,) = backend.poll()
    assert record["state"] == "lost" and backend.active() == 0
    assert sum(c.startswith("squeue") for c in shell.calls) == 2, "one batched squeue per poll"
