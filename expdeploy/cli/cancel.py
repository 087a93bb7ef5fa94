"""`expdeploy cancel`: stop an experiment's runs (all, or the ones named)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Annotated

import typer

from expdeploy.cli.common import OutputOpt

RunsArg = Annotated[list[str] | None, typer.Argument(
    help="[EXP_DIR] then run names or run-id prefixes (default: every run of the experiment).",
    show_default=False, metavar="[EXP_DIR] [RUN]...")]
ExpOpt = Annotated[Path | None, typer.Option("--exp", help="Experiment directory (default: most recent).")]


def cancel_command(runs: RunsArg = None, exp: ExpOpt = None,
                   output: OutputOpt = Path("experiments")) -> None:
    """Cancel running runs: their process groups get SIGTERM and they are recorded as cancelled.
    Without RUN, the whole experiment: its controller and agents stop starting new runs."""
    from expdeploy import worker
    from expdeploy.expdir import find_experiment, resolve_runs
    from expdeploy.ledger import LEDGER, Ledger
    from expdeploy.placement import queued_backend

    if runs and exp is None and (Path(runs[0]) / LEDGER).exists():
        exp, runs = Path(runs[0]), runs[1:]
    exp_dir = find_experiment(output, exp)
    ledger = Ledger(exp_dir)
    ledger.reconcile()
    rows = resolve_runs(ledger, runs) if runs else [r for r in ledger.rows() if r.state == "running"]
    backend = queued_backend(exp_dir, ledger)
    if backend is not None:  # e.g. Slurm: scancel exactly this experiment's jobs
        keys = [r.run_id for r in rows] if runs else None
        backend.cancel(keys)
        ledger.record(backend.poll())
        backend.close()
        typer.echo(f"cancel requested for {len(rows) if runs else 'every'} run(s) of {exp_dir} "
                   f"({ledger.meta().get('backend')})")
        return
    if not runs:
        (exp_dir / worker.CANCEL_MARK).touch()  # agents stop claiming
        controller = ledger.meta().get("controller") or {}
        if worker.owner_alive(controller, 0):
            os.kill(int(controller["pid"]), signal.SIGTERM)  # it cancels its runs itself
    stopped = 0
    for row in rows:
        run_dir = exp_dir / "runs" / row.name
        (run_dir / worker.CANCEL_MARK).touch()
        state = worker.read_json(str(run_dir / "state.json")) or {}
        pgid = state.get("pgid")
        if pgid and state.get("host") == worker.HOST and \
                worker.process_start_time(int(pgid)) == state.get("pgid_start"):
            try:
                os.killpg(int(pgid), signal.SIGTERM)
                stopped += 1
            except ProcessLookupError:
                pass
    typer.echo(f"cancel requested for {len(rows)} run(s) in {exp_dir}; {stopped} signalled here")


def register(app: typer.Typer) -> None:
    app.command("cancel")(cancel_command)
