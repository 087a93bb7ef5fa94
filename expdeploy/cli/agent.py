"""`expdeploy agent EXP_DIR`: a pull worker that claims pending runs until none remain."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from expdeploy.errors import BadInput

ExpArg = Annotated[Path, typer.Argument(help="Experiment directory (shared by every agent).",
                                        show_default=False, metavar="EXP_DIR")]
TimeoutOpt = Annotated[float, typer.Option("--heartbeat-timeout",
                                           help="Seconds before a silent remote claimant counts as lost.")]


def agent_command(exp: ExpArg, heartbeat_timeout: TimeoutOpt = 120.0) -> None:
    """Run the experiment's pending runs one at a time, like a wandb agent with no server.

    Start several on one or many machines sharing EXP_DIR: each run executes exactly once
    (claims are files created with O_EXCL, safe on NFS); a run whose agent died is retried.
    """
    from expdeploy import worker

    if not (exp / worker.MANIFEST).exists():
        raise BadInput(f"{exp} has no {worker.MANIFEST}", hint="create it with `expdeploy run`")
    ran = worker.agent(str(exp), heartbeat_timeout)
    typer.echo(f"agent on {worker.HOST}: ran {ran} run(s)")


def register(app: typer.Typer) -> None:
    app.command("agent")(agent_command)
