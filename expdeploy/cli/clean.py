"""`expdeploy clean`: remove runs' directories and ledger rows, so they start afresh."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from expdeploy.cli.common import OutputOpt
from expdeploy.errors import BadInput

ExpArg = Annotated[Path | None, typer.Argument(help="Experiment directory (default: most recent).",
                                               show_default=False, metavar="EXP_DIR")]
TagOpt = Annotated[list[str] | None, typer.Option("--tag", help="Only runs with this tag.")]
StateOpt = Annotated[list[str] | None, typer.Option("--state", help="Only runs in this state "
                                                                   "(failed, cancelled, lost...).")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def clean_command(exp: ExpArg = None, output: OutputOpt = Path("experiments"), tag: TagOpt = None,
                  state: StateOpt = None, yes: YesOpt = False) -> None:
    """Remove runs (their directories, logs and ledger rows); a later `run` starts them anew.
    Running runs are never removed."""
    from expdeploy.expdir import find_experiment
    from expdeploy.ledger import STATES, Ledger

    for s in state or ():
        if s not in STATES:
            raise BadInput(f"unknown state {s!r}", key="--state", hint=f"one of: {', '.join(STATES)}")
    exp_dir = find_experiment(output, exp)
    ledger = Ledger(exp_dir)
    ledger.reconcile()
    rows = [r for r in ledger.rows() if r.state != "running"
            and (not state or r.state in state) and (not tag or set(tag) & set(r.tags))]
    if not rows:
        typer.echo("nothing to clean")
        return
    if not yes:
        if not sys.stdin.isatty():
            raise BadInput(f"would remove {len(rows)} run(s); not asking without a terminal",
                           hint="pass --yes to confirm")
        typer.confirm(f"Remove {len(rows)} run(s) of {exp_dir} (directories and ledger rows)?",
                      abort=True)
    for row in rows:
        shutil.rmtree(exp_dir / "runs" / row.name, ignore_errors=True)
    ledger.remove([r.run_id for r in rows])
    typer.echo(f"removed {len(rows)} run(s)")


def register(app: typer.Typer) -> None:
    app.command("clean")(clean_command)
