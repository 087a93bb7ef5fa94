"""One `expdeploy run`: decide which runs start, claim them, drive a backend until they are
done, keep the ledger current, and stop cleanly on Ctrl-C (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import random
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expdeploy import worker
from expdeploy.backend import Backend, Task, Waker
from expdeploy.ledger import Ledger
from expdeploy.progress import Progress

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130
FLUSH_EVERY = 0.5
HEARTBEAT_EVERY = 30.0
REPROBE_EVERY = 2.0  # when runs wait for a GPU someone else holds


@dataclass(slots=True)
class Selection:
    """Which runs this invocation starts, and why the others do not."""

    start: list[Mapping[str, Any]] = field(default_factory=list)
    # the attempt each run will claim: decided now, so a run someone else claims meanwhile
    # (a concurrent controller or agent) is skipped rather than run twice
    attempts: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1


@dataclass(frozen=True, slots=True)
class RunSettings:
    force: bool = False
    retry_failed: bool = False
    max_retries: int = 0
    grace_seconds: float = 10.0
    heartbeat_timeout: float = 120.0
    tags: tuple[str, ...] = ()
    sample: int | None = None
    seed: int = 0
    first: bool = False
    detach: bool = False  # a queueing backend: return once every run is submitted
    only: tuple[str, ...] = ()  # run names (`--run`, `rerun`)


def select_runs(exp_dir: Path, states: Mapping[str, str], plans: Sequence[Mapping[str, Any]],
                settings: RunSettings) -> Selection:
    """Succeeded runs are skipped, failed ones rerun only when asked, lost and new ones start.

    `states` (the ledger) settles runs already known as succeeded; every other run is judged
    from its files just now, so a run another controller or agent claimed is not run twice.
    """
    chosen = [p for p in plans if (not settings.tags or set(settings.tags) & set(p.get("tags") or ()))
              and (not settings.only or p["name"] in settings.only)]
    if settings.sample is not None and settings.sample < len(chosen):
        picked = set(random.Random(settings.seed).sample(range(len(chosen)), settings.sample))
        chosen = [p for i, p in enumerate(chosen) if i in picked]
    selection = Selection()
    for plan in chosen:
        if states.get(plan["run_id"]) == "succeeded" and not settings.force:
            selection.skip("already succeeded")
            continue
        run_dir = worker.run_dir_of(str(exp_dir), dict(plan))
        status, last, record = worker.attempt_status(run_dir, settings.heartbeat_timeout)
        if status in ("succeeded", "failed") and record.get("run_id", plan["run_id"]) != plan["run_id"]:
            status = "new"  # the directory's name is now another run's (its parameters changed)
        if status == "live":
            selection.skip("running elsewhere")
        elif status == "succeeded" and not settings.force:
            selection.skip("already succeeded")
        elif status == "failed" and not (settings.force or settings.retry_failed):
            selection.skip("failed before (--retry-failed reruns them)")
        else:
            if status == "lost":
                worker.kill_leftovers(record)
            selection.start.append(plan)
            selection.attempts[plan["run_id"]] = last + 1
        if settings.first and selection.start:
            break
    return selection


@dataclass(slots=True)
class _Queued:
    plan: Mapping[str, Any]
    attempt: int
    retries_left: int
    restarts_left: int = 3  # after being lost
    task: Task | None = None


class Controller:
    def __init__(self, exp_dir: Path, ledger: Ledger, backend: Backend, progress: Progress,
                 settings: RunSettings, steps: tuple[str, ...] | None = None,
                 claim: Callable[[Mapping[str, Any], int], bool] | None = None) -> None:
        self.exp_dir = exp_dir
        self.ledger = ledger
        self.backend = backend
        self.progress = progress
        self.settings = settings
        self.steps = steps
        self.claim = claim or self._claim  # prepares and claims one attempt of a run
        self.interrupts = 0
        self.failed = 0
        self.buffer: dict[str, dict[str, Any]] = {}
        self.submitted: dict[str, _Queued] = {}
        self.started: set[str] = set()

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.interrupts += 1

    def run(self, selection: Selection) -> int:
        """Run the selected runs to the end; exit status 0, 1 (a run failed) or 130 (interrupted)."""
        waker = Waker()  # before the first child starts, so no exit is missed
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        # a queueing backend retries on the compute side, inside the job
        retries = 0 if self.backend.queues else self.settings.max_retries
        try:
            queue = deque(_Queued(p, selection.attempts[p["run_id"]], retries) for p in selection.start)
            self._loop(queue, waker)
        finally:
            self._flush()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            waker.close()
            self.backend.close()
            self.progress.close()
        if self.interrupts:
            return EXIT_INTERRUPTED
        return EXIT_FAILED if self.failed else EXIT_OK

    def _loop(self, queue: deque[_Queued], waker: Waker) -> None:
        stopping_since: float | None = None
        flushed = heartbeat = time.monotonic()
        while queue or self.backend.active():
            now = time.monotonic()
            if self.interrupts and self.backend.queues:
                self.progress.note(f"stopped following; {self.backend.active()} run(s) stay in the "
                                   "queue: `expdeploy status` follows them, `expdeploy cancel` stops them")
                return
            if self.interrupts and stopping_since is None:
                stopping_since = now
                queue.clear()
                self.progress.note(f"cancelling {self.backend.active()} running run(s): SIGTERM, "
                                   f"SIGKILL after {self.settings.grace_seconds:g}s "
                                   "(Ctrl-C again to kill now)")
                self.backend.cancel(hard=False)
            if stopping_since is not None and (
                    self.interrupts > 1 or now - stopping_since > self.settings.grace_seconds):
                self.backend.cancel(hard=True)
            blocked = self._start(queue) if stopping_since is None else False
            if self.settings.detach and self.backend.queues and not queue:
                self._poll(queue)  # the job ids, into the ledger
                return
            changed = self._poll(queue)
            if now - flushed > FLUSH_EVERY:
                self._flush()
                flushed = now
            if now - heartbeat > HEARTBEAT_EVERY:
                self.backend.heartbeat()
                heartbeat = now
            self.progress.refresh()
            if not changed:
                timeout = REPROBE_EVERY if blocked else FLUSH_EVERY
                if stopping_since is not None:
                    timeout = min(timeout, 0.2)
                self.backend.wait(timeout, waker)

    def _poll(self, queue: deque[_Queued]) -> int:
        """Fold what changed into progress and the ledger buffer; how many records changed."""
        changed = self.backend.poll()
        for note in self.backend.drain_notes():
            self.progress.note(note)
        for record in changed:
            self._handle(record, queue)
        return len(changed)

    def _task(self, item: _Queued) -> Task:
        return Task(item.plan["run_id"], item.attempt, item.plan,
                    gpus=int(item.plan.get("resources", {}).get("gpus", 0)), steps=self.steps,
                    terminal=self.settings.first)

    def _start(self, queue: deque[_Queued]) -> bool:
        """Claim and submit from the front of the queue; True when runs wait for room."""
        if self.backend.queues:
            self._submit_all(queue)
            return False
        while queue:
            item = queue[0]
            if item.task is None:
                if not self.claim(item.plan, item.attempt):
                    queue.popleft()  # another controller or agent took it
                    continue
                item.task = self._task(item)
            if not self.backend.submit([item.task]):
                return True
            queue.popleft()
            self.submitted[item.plan["run_id"]] = item
            self.started.add(item.plan["run_id"])
        return False

    def _submit_all(self, queue: deque[_Queued]) -> None:
        """A queueing backend takes every claimed run in one call (one sbatch per array)."""
        batch = []
        while queue:
            item = queue.popleft()
            if self.claim(item.plan, item.attempt):
                item.task = self._task(item)
                batch.append(item)
        if batch:
            try:
                self.backend.submit([item.task for item in batch if item.task is not None])
            except BaseException:
                self._poll(queue)  # what did reach the queue before the error
                raise
            for item in batch:
                self.submitted[item.plan["run_id"]] = item
                self.started.add(item.plan["run_id"])

    def _claim(self, plan: Mapping[str, Any], attempt: int) -> bool:
        return worker.claim(worker.run_dir_of(str(self.exp_dir), dict(plan)), attempt)

    def _handle(self, record: dict[str, Any], queue: deque[_Queued]) -> None:
        self.buffer[record["run_id"]] = record
        final = record["state"] in (*worker.FINAL_STATES, "lost")
        item = self.submitted.pop(record["run_id"], None) if final else None
        if record["state"] == "failed" and item and item.retries_left > 0 and not self.interrupts:
            self.progress.retry(record, item.retries_left)
            queue.append(_Queued(item.plan, item.attempt + 1, item.retries_left - 1))
            return
        # a run lost with its host is not its own failure: it starts again at once elsewhere (a
        # queueing backend's lost runs are resubmitted by the next `run`)
        if record["state"] == "lost" and item and not self.backend.queues and not self.interrupts \
                and item.restarts_left > 0:
            self.progress.retry(record, item.restarts_left)
            queue.append(_Queued(item.plan, item.attempt + 1, item.retries_left, item.restarts_left - 1))
            return
        self.progress.update(record)
        if record["state"] in ("failed", "lost"):
            self.failed += 1

    def _flush(self) -> None:
        if self.buffer:
            self.ledger.record(self.buffer.values())
            self.buffer = {}
