"""The backend contract every placement plugin implements, and the controller's wake-up.

A backend places tasks (a run attempt, or an agent process), reports their state records (the
same dicts the worker writes to state.json), and cancels them. The controller never knows a
backend by name: plugins register classes through `expdeploy_register_backends`.
"""

from __future__ import annotations

import os
import select
import signal
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from expdeploy.targets import Target


@dataclass(frozen=True, slots=True)
class Task:
    """A run attempt (`plan` from the manifest), or an agent process (`command`)."""

    key: str
    attempt: int = 1
    plan: Mapping[str, Any] | None = None
    command: str | None = None
    gpus: int = 0
    steps: tuple[str, ...] | None = None  # run only these steps
    terminal: bool = False  # output to the terminal (--first)


@dataclass(slots=True)
class BackendOptions:
    """Settings from the command line that a backend may use (each ignores what it does not)."""

    exp_dir: Path
    jobs: int | None = None
    gpus: tuple[int, ...] | None = None
    runs_per_gpu: int = 1
    gpu_free_memory_mib: int = 1024
    gpu_free_util_percent: int = 10
    workers: tuple[str, ...] = ()
    target: Target | None = None
    remote_exp_dir: str | None = None  # the experiment directory where the runs execute
    max_concurrent: int | None = None  # runs at once (a scheduler's array throttle)
    max_retries: int = 0  # for backends that retry on the compute side
    requeue_signal: str | None = None  # e.g. USR1@60: warning before the time limit
    remote_cwd: str | None = None  # the runs' working directory where they execute
    host_timeout: float = 60.0  # seconds a host may stay unreachable before its runs are lost
    on: str | None = None  # the placement backend an agents-only backend starts agents through
    spec_path: Path | None = None  # the spec file `run` was given
    sweep: str | None = None  # W&B: ids of sweeps that exist, comma-separated
    agent_runs: int | None = None  # W&B: runs each agent does before it stops (`wandb agent --count`)
    agents: int | None = None  # --agents K (for previews; submit_agents is given it too)
    run_cap: int | None = None  # --run-cap N: for a service that chooses the runs (W&B)
    # What a run needs (the spec's resources, or --resources): for agents with no runs planned
    # here, whose runs a service chooses
    resources: dict[str, Any] = field(default_factory=dict)


class Backend(ABC):
    """Places tasks and reports what happened to them."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    # A queueing backend's tasks live on in the scheduler: `run` may exit once they are
    # submitted (--detach), Ctrl-C stops following them rather than cancelling them, and a
    # failed run is retried on the compute side (`options.max_retries`), not by the controller.
    queues: ClassVar[bool] = False
    # An agents-only backend (W&B) places nothing itself: it starts agents through another
    # backend (`options.on`), and `run` gives it `--agents` (0: one per slot) instead of runs.
    agents_only: ClassVar[bool] = False
    # Can start the experiment's own agent loops (`--agents K`) where the runs execute.
    runs_agents: ClassVar[bool] = False
    # The backend's own service chooses the runs (W&B sweeps): a spec's search that cannot be
    # expanded here (bayes, random without run_cap) is passed on to it as it is.
    drives_search: ClassVar[bool] = False

    def __init__(self, options: BackendOptions) -> None:
        self.options = options

    @abstractmethod
    def submit(self, tasks: Sequence[Task]) -> int:
        """Start or queue tasks from the front of `tasks`; returns how many it took (the rest
        wait until a task ends: a slot pool takes what fits, a queueing backend takes all)."""

    @abstractmethod
    def poll(self) -> list[dict[str, Any]]:
        """State records of tasks that changed since the last poll (one batched look)."""

    @abstractmethod
    def cancel(self, keys: Sequence[str] | None = None, hard: bool = False) -> None:
        """Stop these tasks (all when None): SIGTERM-like first, SIGKILL-like when `hard`."""

    @abstractmethod
    def active(self) -> int:
        """Tasks submitted and not yet final."""

    def wait(self, timeout: float, waker: Waker) -> None:
        """Block until something may have changed; polling backends just sleep (with backoff)."""
        waker.wait(timeout)

    def capacity(self) -> int | None:
        """How many tasks can run at once (None: the backend queues them, e.g. Slurm)."""
        return None

    def notes_for(self, plans: Sequence[Mapping[str, Any]]) -> list[str]:
        """Things worth telling the user about placing these runs (printed before they start)."""
        return []

    def follow(self, runs: Sequence[Mapping[str, Any]], agents: Sequence[str] = ()) -> None:  # noqa: B027
        """Track runs an earlier controller submitted (ledger rows as dicts: run_id, name,
        attempt, job), so that `poll` reports them too (`status`, a resumed `run`, `cancel`);
        `agents` are the jobs of agents that run whichever runs are pending."""

    def submit_agents(self, count: int, plans: Sequence[Mapping[str, Any]],
                      command: str | None = None) -> list[str]:
        """`--agents K`: start K agent processes that claim and run pending runs themselves (the
        shipped worker's agent loop), or that run `command` (e.g. `wandb agent ID`) on a slot of
        their own each; returns the ids to find them by later (kept in the ledger)."""
        from expdeploy.errors import BadInput

        raise BadInput(f"--agents is not available with --backend {self.name}", key="--agents",
                       hint="on this machine, start `expdeploy agent EXP_DIR` processes instead")

    @classmethod
    def gather(cls, options: BackendOptions) -> list[str]:
        """Bring the files of runs that execute elsewhere (and may have gone on without a
        controller) into `options.exp_dir`, before the ledger folds them: a resumed `run`,
        `status`. Returns warnings. Backends whose runs write here have nothing to do."""
        return []

    def preview(self, tasks: Sequence[Task]) -> str:
        """What `--dry-run` shows: the scripts or commands submit would use (written, not run)."""
        return ""

    def drain_notes(self) -> list[str]:
        """Warnings gathered while polling (a failed status call is a warning, not a crash)."""
        return []

    def heartbeat(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Refresh liveness records of running tasks (called every few seconds)."""

    def describe(self) -> str:
        """One line saying where tasks run (slots, GPUs, partition...)."""
        return self.name

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Release locks and connections."""


class Waker:
    """Wakes the controller when a child exits or a signal arrives: no polling tick.

    Installs a wake-up fd for signals; SIGCHLD gets a no-op handler so child exits write to it.
    """

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        self.previous_fd = signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)
        self.previous_chld = signal.signal(signal.SIGCHLD, lambda *_: None)

    def wait(self, timeout: float) -> None:
        try:
            ready, _, _ = select.select([self.read_fd], [], [], max(timeout, 0))
        except InterruptedError:
            return
        if ready:
            try:
                while os.read(self.read_fd, 4096):
                    pass
            except BlockingIOError:
                pass

    def close(self) -> None:
        signal.set_wakeup_fd(self.previous_fd)
        signal.signal(signal.SIGCHLD, self.previous_chld)
        os.close(self.read_fd)
        os.close(self.write_fd)


def available_backends() -> dict[str, type[Backend]]:
    from expdeploy.plugins import get_plugin_manager

    found: dict[str, type[Backend]] = {}

    def register(cls: type[Backend]) -> None:
        found.setdefault(cls.name, cls)

    get_plugin_manager().hook.expdeploy_register_backends(register=register)
    return found
