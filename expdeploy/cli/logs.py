"""`expdeploy logs RUN`: a run's step log, optionally followed while the run goes on."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from expdeploy.cli.common import OutputOpt
from expdeploy.errors import BadInput

RunArg = Annotated[str, typer.Argument(help="Run name or run-id prefix.", show_default=False)]
StepOpt = Annotated[str | None, typer.Option("--step", help="Step whose log to show (default: the "
                                                           "current or last step).")]
FollowOpt = Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the run ends.")]
ExpOpt = Annotated[Path | None, typer.Option("--exp", help="Experiment directory (default: most recent).")]


def logs_command(run: RunArg, step: StepOpt = None, follow: FollowOpt = False,
                 exp: ExpOpt = None, output: OutputOpt = Path("experiments")) -> None:
    """Print a run's log (stdout and stderr of one step)."""
    from expdeploy import worker
    from expdeploy.expdir import find_experiment, resolve_runs
    from expdeploy.ledger import Ledger

    exp_dir = find_experiment(output, exp)
    (row,) = resolve_runs(Ledger(exp_dir), [run])
    run_dir = exp_dir / "runs" / row.name
    state = worker.read_json(str(run_dir / "state.json")) or {}
    plan = worker.read_manifest(str(exp_dir)).get(row.run_id, {})
    steps = [s[0] for s in plan.get("steps", [])]
    chosen = step or state.get("step") or (steps[0] if steps else None)
    if chosen is None or (step is not None and step not in steps):
        raise BadInput(f"run {row.name} has no step {step!r}", key="--step",
                       hint=f"steps: {', '.join(steps)}")
    path = run_dir / f"{chosen}.log"
    if not path.exists() and not follow:
        raise BadInput(f"no log yet for step {chosen} of {row.name} ({row.state})", key="RUN")
    _print(path, follow, run_dir)


def _print(path: Path, follow: bool, run_dir: Path) -> None:
    from expdeploy import worker

    offset = 0
    while True:
        if path.exists():
            with open(path, "rb") as handle:
                handle.seek(offset)
                chunk = handle.read()
                offset += len(chunk)
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
        state = worker.read_json(str(run_dir / "state.json")) or {}
        if not follow or state.get("state") in worker.FINAL_STATES:
            return
        time.sleep(0.25)  # following a file: no child-exit event to wait on here


def register(app: typer.Typer) -> None:
    app.command("logs", no_args_is_help=True)(logs_command)
