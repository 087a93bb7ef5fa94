"""One SSH host's commands, run in order on a thread of their own: a host whose link died makes
its command hang (an open SSH channel waits for minutes), and that must not stall the other
hosts or the controller, which only sees results arrive and how long a command has taken."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from expdeploy.remote import Shell


@dataclass(slots=True)
class Job:
    kind: str  # "setup", "launch", "look", "pull", "cancel"
    work: Callable[[Shell], Any]
    context: Any = None
    result: Any = None
    error: Exception | None = None


class HostLink:
    def __init__(self, alias: str, shell: Shell, wake: Callable[[], None]) -> None:
        self.alias = alias
        self.shell = shell
        self._wake = wake
        self._todo: queue.Queue[Job | None] = queue.Queue()
        self._done: queue.Queue[Job] = queue.Queue()
        self.busy_since: float | None = None  # when the command now running started
        self._given: list[str] = []  # kinds of the jobs given and not yet taken back
        self._thread = threading.Thread(target=self._serve, name=f"ssh-{alias}", daemon=True)
        self._thread.start()

    def give(self, kind: str, work: Callable[[Shell], Any], context: Any = None) -> None:
        self._given.append(kind)
        self._todo.put(Job(kind, work, context))

    def has(self, kind: str) -> bool:
        """A job of this kind given and not yet taken back (one look in flight at a time)."""
        return kind in self._given

    def finished(self) -> list[Job]:
        jobs: list[Job] = []
        while True:
            try:
                job = self._done.get_nowait()
            except queue.Empty:
                return jobs
            self._given.remove(job.kind)
            jobs.append(job)

    def stuck_for(self) -> float:
        return time.monotonic() - self.busy_since if self.busy_since is not None else 0.0

    def close(self) -> None:
        self._todo.put(None)
        self.shell.close()  # a command hanging on a dead link fails now, and the thread ends

    def _serve(self) -> None:
        while True:
            job = self._todo.get()
            if job is None:
                return
            self.busy_since = time.monotonic()
            try:
                job.result = job.work(self.shell)
            except Exception as exc:  # every failure goes back to the controller
                job.error = exc
            self.busy_since = None
            self._done.put(job)
            self._wake()

