"""Where an experiment's runs execute: the backend and named target `run` picked, the paths runs
see there, and the same backend rebuilt from the ledger for `status` and `cancel`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from expdeploy.errors import BadInput

if TYPE_CHECKING:
    from expdeploy.backend import Backend, BackendOptions
    from expdeploy.ledger import Ledger
    from expdeploy.targets import Target


@dataclass(frozen=True, slots=True)
class Placement:
    backend: str
    target: Target | None
    cwd: str  # the working directory of runs, where they execute
    exp_dir: str  # the experiment directory where runs execute (manifest, run dirs)

    @property
    def remote(self) -> bool:
        return self.target is not None and self.target.remote

    def meta(self) -> dict[str, Any]:
        """What the ledger keeps so `status` and `cancel` can reach the runs later."""
        return {"backend": self.backend, "target": self.target.name if self.target else None,
                "exec_cwd": self.cwd, "exec_exp_dir": self.exp_dir}


def _pick(backend: str | None, target_name: str | None, project_dir: Path) -> tuple[str, Target | None]:
    from expdeploy.backend import available_backends

    backends = available_backends()
    target = None
    if target_name:
        from expdeploy.targets import get_target

        target = get_target(target_name, project_dir)
        # an agents-only backend (wandb) rides on the target's own backend
        rides = backend in backends and backends[backend].agents_only
        if backend and backend != target.backend and not rides:
            raise BadInput(f"target {target_name} is a {target.backend} target, not {backend}",
                           key="--backend", hint=f"drop --backend, or use --backend {target.backend}")
    chosen = backend or (target.backend if target else "local")
    if chosen not in backends:
        raise BadInput(f"unknown backend {chosen!r}", key="--backend",
                       hint=f"available: {', '.join(sorted(backends))}")
    return chosen, target


def backend_named(backend: str | None, target_name: str | None, project_dir: Path) -> str:
    """The backend `--backend` and `--target` pick, checked (before the spec is read)."""
    return _pick(backend, target_name, project_dir)[0]


def choose(backend: str | None, target_name: str | None, cwd: Path, exp_dir: Path,
           project_dir: Path | None = None) -> Placement:
    """`--backend` and `--target`: a target brings its backend; runs see the target's work
    directory in place of this one (the same absolute path when it names none)."""
    chosen, target = _pick(backend, target_name, project_dir or cwd)
    run_cwd, run_exp = str(cwd), str(exp_dir)
    if target is not None and target.workdir:
        try:
            inside = exp_dir.relative_to(cwd)
        except ValueError:
            raise BadInput(f"the experiment directory {exp_dir} is not inside {cwd}", key="--output",
                           hint=f"target {target.name} maps {cwd} to {target.workdir}: keep --output "
                                "relative to the project") from None
        run_cwd = target.workdir
        run_exp = str(PurePosixPath(target.workdir) / inside)
    return Placement(chosen, target, run_cwd, run_exp)


def make_backend(placement: Placement, options: BackendOptions) -> Backend:
    from expdeploy.backend import available_backends

    options.target = placement.target
    options.remote_exp_dir = placement.exp_dir
    options.remote_cwd = placement.cwd
    return available_backends()[placement.backend](options)


def gather(placement: Placement, exp_dir: Path) -> list[str]:
    """The runs' files from where they execute, for backends that keep them there (SSH hosts)."""
    from expdeploy.backend import BackendOptions, available_backends

    cls = available_backends().get(placement.backend)
    if cls is None:
        return []
    return cls.gather(BackendOptions(exp_dir=exp_dir, target=placement.target,
                                     remote_exp_dir=placement.exp_dir, remote_cwd=placement.cwd))


def restore(exp_dir: Path, meta: Mapping[str, Any]) -> Placement:
    """The placement an earlier `run` recorded in the ledger."""
    target = None
    if meta.get("target"):
        from expdeploy.targets import get_target

        target = get_target(str(meta["target"]), Path(str(meta.get("cwd") or ".")))
    return Placement(str(meta.get("backend") or "local"), target,
                     str(meta.get("exec_cwd") or meta.get("cwd") or "."),
                     str(meta.get("exec_exp_dir") or exp_dir))


def queued_backend(exp_dir: Path, ledger: Ledger) -> Backend | None:
    """For an experiment in a scheduler's queue: its backend, following the runs not yet final
    (None for backends whose runs the files alone describe, like the local pool)."""
    from expdeploy.backend import BackendOptions, available_backends

    placement = restore(exp_dir, ledger.meta())
    cls = available_backends().get(placement.backend)
    if cls is None or not cls.queues:
        return None
    backend = make_backend(placement, BackendOptions(exp_dir=exp_dir))
    agents = ledger.meta().get("agent_arrays") or []
    backend.follow([{"run_id": r.run_id, "name": r.name, "attempt": r.attempt, "job": r.job}
                    for r in ledger.rows() if (r.job or agents) and r.state in ("pending", "running")],
                   agents)
    return backend
