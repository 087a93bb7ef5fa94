"""`expdeploy status`: the state of an experiment's runs, folded from the files the runs write."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from expdeploy.cli.common import FormatOpt, OutputFormat, OutputOpt

ExpArg = Annotated[Path | None, typer.Argument(help="Experiment directory (default: the most recent "
                                                    "under --output).", show_default=False,
                                               metavar="EXP_DIR")]
AllOpt = Annotated[bool, typer.Option("--all", help="List every run, not only those not succeeded.")]


def status_command(
    exp: ExpArg = None,
    output: OutputOpt = Path("experiments"),
    fmt: FormatOpt = OutputFormat.table,
    all_runs: AllOpt = False,
) -> None:
    """Counts by state and the runs that need attention (running, failed, lost, cancelled)."""
    from expdeploy.expdir import find_experiment
    from expdeploy.ledger import Ledger
    from expdeploy.placement import gather, queued_backend, restore

    exp_dir = find_experiment(output, exp)
    ledger = Ledger(exp_dir)
    for note in gather(restore(exp_dir, ledger.meta()), exp_dir):
        typer.echo(note, err=True)
    ledger.reconcile()
    backend = queued_backend(exp_dir, ledger)
    if backend is not None:  # runs in a scheduler's queue: ask it (one batched call)
        ledger.record(backend.poll())
        for note in backend.drain_notes():
            typer.echo(note, err=True)
        backend.close()
    counts = ledger.counts()
    rows = list(ledger.rows())
    if fmt is OutputFormat.json:
        typer.echo(json.dumps({
            "exp_dir": str(exp_dir), "counts": counts,
            "runs": [{"run_id": r.run_id, "name": r.name, "state": r.state, "attempt": r.attempt,
                      "exit_code": r.exit_code, "step": r.step, "started": r.started,
                      "ended": r.ended, "host": r.host, "gpus": r.gpus, "job": r.job,
                      "tags": list(r.tags)}
                     for r in rows]}))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False)
    totals = "  ".join(f"{s}: {n}" for s, n in counts.items() if n)
    console.print(f"[bold]{escape(str(exp_dir))}[/]  {totals}")
    shown = rows if all_runs else [r for r in rows if r.state != "succeeded"]
    if not shown:
        return
    table = Table(box=None, pad_edge=False)
    jobs = any(r.job for r in shown)
    columns = ("run", "state", "attempt", "exit", "step", "time", "gpus", "host")
    for column in (*columns, "job") if jobs else columns:
        table.add_column(column)
    now = time.time()
    colours = {"failed": "red", "lost": "magenta", "running": "cyan", "cancelled": "yellow",
               "succeeded": "green"}
    for r in shown[:500]:
        elapsed = (r.ended or now) - r.started if r.started else None
        # names, steps and hosts are the user's text: a run named `x=[1]` is no markup
        table.add_row(escape(r.name), f"[{colours.get(r.state, 'white')}]{r.state}[/]", str(r.attempt),
                      "" if r.exit_code is None else str(r.exit_code), escape(r.step or ""),
                      "" if elapsed is None else f"{elapsed:.0f}s", escape(r.gpus or ""),
                      escape(r.host or ""), *([escape(r.job or "")] if jobs else []))
    console.print(table)
    if len(shown) > 500:
        console.print(f"... and {len(shown) - 500} more (--format json for all)")


def register(app: typer.Typer) -> None:
    app.command("status")(status_command)
