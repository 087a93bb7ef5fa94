"""`expdeploy wandb sync EXP_DIR`: upload the offline W&B runs an experiment's runs wrote (a sweep
file run without a W&B server) with `wandb sync`, once a network is there."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from expdeploy.cli.common import OutputOpt
from expdeploy.errors import BadInput, ExpdeployError

wandb_app = typer.Typer(name="wandb", help="Weights & Biases: upload offline runs.", no_args_is_help=True,
                        add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)

ExpArg = Annotated[Path | None, typer.Argument(help="Experiment directory (default: the most recent "
                                                    "under --output).", show_default=False,
                                               metavar="EXP_DIR")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the wandb sync command; upload nothing.")]


@wandb_app.command("sync")
def sync_command(exp: ExpArg = None, output: OutputOpt = Path("experiments"),
                 dry_run: DryRunOpt = False) -> None:
    """Upload every offline W&B run under EXP_DIR/runs/*/wandb/ with `wandb sync` (WANDB_API_KEY
    from the environment, as wandb reads it).

    \b
    Examples:
      expdeploy wandb sync experiments/sweep
      expdeploy wandb sync --dry-run
    """
    from expdeploy.expdir import find_experiment
    from expdeploy.wandb_runs import offline_runs

    exp_dir = find_experiment(output, exp)
    runs = offline_runs(exp_dir)
    if not runs:
        raise BadInput(f"no offline W&B runs under {exp_dir}/runs/*/wandb/",
                       hint="they come from running a W&B sweep file (WANDB_MODE=offline, the default)")
    found = shutil.which("wandb")
    program = [found] if found else [sys.executable, "-m", "wandb"]
    command = [*program, "sync", *map(str, runs)]
    typer.echo(f"{len(runs)} offline run(s): {shlex.join(command)}")
    if dry_run:
        return
    done = subprocess.run(command, check=False)
    if done.returncode:
        raise ExpdeployError(f"wandb sync failed (exit {done.returncode})",
                             hint="it needs a network and WANDB_API_KEY (or `wandb login`)")


def register(app: typer.Typer) -> None:
    app.add_typer(wandb_app, name="wandb")
