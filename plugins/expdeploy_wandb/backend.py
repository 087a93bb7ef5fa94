"""`--backend wandb`: create the sweeps of a sweep file on the W&B server (or take `--sweep` ids)
and start their agents as agent tasks of a placement backend (`--on`, default the target's or
local), one per slot unless `--agents` caps it; the agents then take their runs from W&B."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from expdeploy.backend import Backend, BackendOptions, Task, Waker, available_backends
from expdeploy.errors import BadInput
from expdeploy_wandb.sweeps import Sweep, as_yaml, create, sweeps_of

AGENT = "wandb agent"  # EXPDEPLOY_WANDB_AGENT replaces it (a wrapper, or a stand-in in tests)


class WandbBackend(Backend):
    name = "wandb"
    description = "W&B sweeps: their agents on the slots of another backend (--on local|slurm|ssh)"
    agents_only = True
    drives_search = True

    def __init__(self, options: BackendOptions) -> None:
        super().__init__(options)
        inner = options.on or (options.target.backend if options.target else "local")
        backends = available_backends()
        if inner not in backends or backends[inner].agents_only:
            placing = sorted(n for n, b in backends.items() if not b.agents_only)
            raise BadInput(f"--on {inner}: not a placement backend", key="--on",
                           hint=f"one of {', '.join(placing)}")
        self.inner = backends[inner](options)
        self.notes: list[str] = []

    def describe(self) -> str:
        return f"wandb: agents on {self.inner.describe()}"

    def capacity(self) -> int | None:
        return self.inner.capacity()

    def submit(self, tasks: Sequence[Task]) -> int:
        raise BadInput("--backend wandb starts W&B agents, which take their runs from the sweep",
                       key="--backend", hint="run a sweep file offline on any other backend, without W&B")

    def submit_agents(self, count: int, plans: Sequence[Mapping[str, Any]],
                      command: str | None = None) -> list[str]:
        sweeps = self._sweeps()
        program = os.environ.get("EXPDEPLOY_WANDB_AGENT", AGENT)
        script = [f"# agents of {self.options.spec_path}: start more by hand with these lines"]
        started: list[str] = []
        for sweep, share in zip(sweeps, self._shares(count, sweeps), strict=True):
            line = self._agent_command(program, sweep)
            script.append(line)
            mine = [p for p in plans if set(sweep.tags) <= set(p.get("tags") or ())]
            self.notes.append(f"sweep {_label(sweep)}: {_size(sweep, mine)}, {sweep.url}")
            if share:
                started += self.inner.submit_agents(share, mine, command=line)
        path = self.options.exp_dir / "wandb-agents.sh"
        path.write_text("\n".join(script) + "\n")
        self.notes.append(f"{len(started)} agent(s) started; their commands are in {path}")
        return started

    def _shares(self, count: int, sweeps: Sequence[Sweep]) -> list[int]:
        """Agents per sweep: `--agents` spread over the sweeps; without it a composite file's
        `_num_nodes` where given, and one agent per slot spread over the others."""
        if count:
            return _spread(count, len(sweeps))
        free = [s for s in sweeps if s.agents is None]
        even = iter(_spread(self.inner.capacity() or len(free), len(free)) if free else [])
        return [sweep.agents if sweep.agents is not None else next(even) for sweep in sweeps]

    def preview(self, tasks: Sequence[Task]) -> str:
        """--dry-run: each sweep as it would be created (or the ids given), and its agents; nothing
        is created or started."""
        program = os.environ.get("EXPDEPLOY_WANDB_AGENT", AGENT)
        plans = [t.plan for t in tasks if t.plan is not None]
        sweeps = self._planned()
        lines = [f"would start W&B agents on {self.inner.describe()}"]
        for sweep, share in zip(sweeps, self._shares(self.options.agents or 0, sweeps), strict=True):
            mine = [p for p in plans if set(sweep.tags) <= set(p.get("tags") or ())]
            verb = "attach to" if sweep.sweep_id else "create"
            lines.append(f"--- {verb} sweep {_label(sweep)}: {_size(sweep, mine)}; {share} agent(s):")
            if not sweep.sweep_id:
                lines.append(as_yaml(sweep).rstrip())
            lines.append(f"agent: {self._agent_command(program, sweep)}")
        return "\n".join(lines) + "\n"

    def _sweeps(self) -> list[Sweep]:
        return [sweep if sweep.sweep_id else create(sweep) for sweep in self._planned()]

    def _planned(self) -> list[Sweep]:
        if self.options.spec_path is None:
            raise BadInput("--backend wandb needs the sweep file", key="SPEC")
        planned = sweeps_of(self.options.spec_path, None, None, self.options.run_cap)
        given = [s for s in (self.options.sweep or "").split(",") if s]
        if not given:
            return planned
        if len(given) != len(planned):
            raise BadInput(f"--sweep names {len(given)} sweep(s); {self.options.spec_path} has "
                           f"{len(planned)}",
                           key="--sweep", hint="one id per subtest, comma-separated, in the file's order")
        out = []
        for sweep, text in zip(planned, given, strict=True):
            parts = text.split("/")
            entity, project = (parts[0], parts[1]) if len(parts) == 3 else (sweep.entity, sweep.project)
            out.append(Sweep(sweep.config, sweep.tags, entity, project, parts[-1], sweep.agents))
        return out

    def _agent_command(self, program: str, sweep: Sweep) -> str:
        """`env WANDB_TAGS=... wandb agent ENTITY/PROJECT/ID [--count N]`: the tags reach the runs
        the agent starts (wandb.init reads them); the API key comes from the environment."""
        tags = f"WANDB_TAGS={shlex.quote(','.join(sweep.tags))} " if sweep.tags else ""
        count = f" --count {self.options.agent_runs}" if self.options.agent_runs else ""
        return f"env {tags}{program} {shlex.quote(sweep.path)}{count}"

    # following: the placement backend's --------------------------------------------------------
    def poll(self) -> list[dict[str, Any]]:
        return self.inner.poll()

    def cancel(self, keys: Sequence[str] | None = None, hard: bool = False) -> None:
        self.inner.cancel(keys, hard)

    def active(self) -> int:
        return self.inner.active()

    def wait(self, timeout: float, waker: Waker) -> None:
        self.inner.wait(timeout, waker)

    def drain_notes(self) -> list[str]:
        notes, self.notes = self.notes, []
        return notes + self.inner.drain_notes()

    def close(self) -> None:
        self.inner.close()


def _spread(count: int, parts: int) -> list[int]:
    return [count // parts + (1 if i < count % parts else 0) for i in range(parts)]


def _label(sweep: Sweep) -> str:
    return sweep.path + (f" [{','.join(sweep.tags)}]" if sweep.tags else "")


def _size(sweep: Sweep, plans: Sequence[Mapping[str, Any]]) -> str:
    """How many runs: the grid's, counted here; a search the server drives says what it is."""
    if sweep.config.get("method") != "grid":
        return sweep.describe()
    return f"{len(plans)} run(s) in the grid, {_gpu_hours(plans)}"


def _gpu_hours(plans: Sequence[Mapping[str, Any]]) -> str:
    from expdeploy.units import parse_duration

    total = 0.0
    for plan in plans:
        resources = plan.get("resources") or {}
        if not resources.get("time"):
            return "GPU-hours unknown (no resources.time)"
        total += int(resources.get("gpus") or 0) * parse_duration(resources["time"]) / 3600
    return f"{total:.1f} GPU-hours at most"
