"""The compute side's files: atomic state, O_EXCL claims, liveness of owners on this and other hosts."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from expdeploy import worker


def test_claims_are_exclusive_and_numbered(tmp_path: Path) -> None:
    run_dir = str(tmp_path / "r")
    assert worker.latest_attempt(run_dir) == 0
    assert worker.claim(run_dir, 1) is True
    assert worker.claim(run_dir, 1) is False
    assert worker.claim(run_dir, 2) is True
    assert worker.latest_attempt(run_dir) == 2
    record = json.loads(Path(worker.claim_path(run_dir, 1)).read_text())
    assert record["pid"] == os.getpid() and record["host"] == worker.HOST


def test_owner_alive_on_this_host_checks_pid_and_start_time() -> None:
    me = worker.owner()
    assert worker.owner_alive(me, 0)
    assert not worker.owner_alive({**me, "pid_start": "0"}, 0)  # pid reused by another process
    assert not worker.owner_alive({"host": worker.HOST, "pid": 2**22 + 3, "pid_start": "1"}, 0)


def test_owner_alive_on_another_host_trusts_recent_signs() -> None:
    now = time.time()
    other = {"host": "elsewhere", "pid": 1}
    assert worker.owner_alive({**other, "heartbeat": now - 10}, 60)
    assert not worker.owner_alive({**other, "heartbeat": now - 100}, 60)
    assert worker.owner_alive({**other, "time": now - 5}, 60)  # a fresh claim, no state yet
    assert not worker.owner_alive(other, 60)


def test_attempt_status(tmp_path: Path) -> None:
    run_dir = str(tmp_path / "r")
    assert worker.attempt_status(run_dir, 60) == ("new", 0, {})
    worker.claim(run_dir, 1)
    assert worker.attempt_status(run_dir, 60)[:2] == ("live", 1)
    worker.write_json_atomic(os.path.join(run_dir, "state.json"),
                             {"attempt": 1, "state": "failed", **worker.owner()})
    assert worker.attempt_status(run_dir, 60)[:2] == ("failed", 1)
    Path(worker.claim_path(run_dir, 2)).write_text(json.dumps(
        {"host": worker.HOST, "pid": 2**22 + 3, "pid_start": "1"}))
    assert worker.attempt_status(run_dir, 60)[:2] == ("lost", 2)


def test_state_writes_are_atomic_renames(tmp_path: Path) -> None:
    path = str(tmp_path / "state.json")
    worker.write_json_atomic(path, {"a": 1})
    inode = os.stat(path).st_ino
    worker.write_json_atomic(path, {"a": 2})
    assert worker.read_json(path) == {"a": 2}
    assert os.stat(path).st_ino != inode  # replaced, never rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_simple_commands_are_execed_and_compound_ones_kept() -> None:
    assert worker.exec_form("sleep 0.5") == "exec sleep 0.5"
    assert worker.exec_form("python train.py --lr 0.1 'a b'") == "exec python train.py --lr 0.1 'a b'"
    for kept in ("echo a; echo b", "a && b", "a | b", "cd /tmp", "FOO=1 env", "x > out",
                 "trap '' TERM", "echo $(date)", "if true; then :; fi", "no-such-program-xyz",
                 "sleep 1 &", "(sleep 1)", "echo a\necho b", "{ echo; }", "true", "echo hi"):
        assert worker.exec_form(kept) == kept, kept


def test_a_claim_not_yet_filled_counts_as_held(tmp_path: Path) -> None:
    # between O_EXCL creation and the owner record being written, another agent may look
    (tmp_path / "claim.1").write_text("")
    status, last, _ = worker.attempt_status(str(tmp_path), heartbeat_timeout=120)
    assert (status, last) == ("live", 1), "an empty claim is someone's claim being written"
    old = time.time() - 600
    os.utime(tmp_path / "claim.1", (old, old))
    assert worker.attempt_status(str(tmp_path), heartbeat_timeout=120)[0] == "lost", \
        "one left empty by a process that died is lost after the heartbeat timeout"


def _pipeline(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    count = tmp_path / "count"
    return {"run_id": "r1", "name": "r1", "params": {}, "cwd": str(tmp_path), **extra,
            "steps": [["prep", f"echo prep >> {count}"], ["train", f"test -f {tmp_path / 'ok'}"]]}


def _attempt(tmp_path: Path, plan: dict[str, Any], attempt: int, **extra: Any) -> dict[str, Any]:
    execution = worker.Execution(str(tmp_path / "exp"), plan, attempt, extra=extra or None)
    execution.wait()
    return execution.state


def test_a_retry_runs_every_step_again_unless_the_plan_resumes_by_name(tmp_path: Path) -> None:
    plan = _pipeline(tmp_path)
    assert _attempt(tmp_path, plan, 1)["state"] == "failed"
    (tmp_path / "ok").touch()
    assert _attempt(tmp_path, plan, 2)["state"] == "succeeded"
    assert (tmp_path / "count").read_text() == "prep\nprep\n", "a native retry starts at the first step"
    mlrunner = _pipeline(tmp_path / "m", resume_by_name=True)
    (tmp_path / "m").mkdir()
    assert _attempt(tmp_path / "m", mlrunner, 1)["state"] == "failed"
    (tmp_path / "m" / "ok").touch()
    state = _attempt(tmp_path / "m", mlrunner, 2)
    assert state["state"] == "succeeded" and state["steps"]["prep"]["skipped"] is True
    assert (tmp_path / "m" / "count").read_text() == "prep\n", "mlrunner's resume skips what finished"
    forced = _attempt(tmp_path / "m", {**mlrunner, "restart": True}, 3)
    assert forced["state"] == "succeeded" and "skipped" not in forced["steps"]["prep"]


def test_a_requeued_attempt_resumes_at_the_interrupted_step(tmp_path: Path) -> None:
    plan = _pipeline(tmp_path)
    first = _attempt(tmp_path, plan, 1)
    assert first["state"] == "failed"
    (tmp_path / "ok").touch()
    again = _attempt(tmp_path, plan, 1, requeues=1)  # the same attempt, back from the queue
    assert again["state"] == "succeeded" and again["steps"]["prep"]["skipped"] is True
    assert (tmp_path / "count").read_text() == "prep\n"
