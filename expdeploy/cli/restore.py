"""`expdeploy restore RUN`: the code a run used, back in a git worktree, and how to run it again."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from expdeploy.cli.common import OutputOpt
from expdeploy.cli.logs import ExpOpt, RunArg

IntoOpt = Annotated[Path | None, typer.Option(
    "--into", help="Directory to create (default: <exp>/restore/<run>).", show_default=False)]


def restore_command(run: RunArg, into: IntoOpt = None, exp: ExpOpt = None,
                    output: OutputOpt = Path("experiments")) -> None:
    """Put back the code RUN ran: a git worktree at its commit with the uncommitted diff applied
    and the untracked files restored, byte for byte (outside git: its --snapshot copy). Prints
    the commands that run it again from there.

    \b
    Examples:
      expdeploy restore lr=0.1,seed=0 --into /tmp/repro
      expdeploy restore 5041bf --exp experiments/grid
    """
    from expdeploy import worker
    from expdeploy.expdir import find_experiment, resolve_runs
    from expdeploy.ledger import Ledger
    from expdeploy.restore import launch_of, restore

    exp_dir = find_experiment(output, exp).absolute()
    ledger = Ledger(exp_dir)
    try:
        (row,) = resolve_runs(ledger, [run])
    finally:
        ledger.close()
    plan = worker.read_manifest(str(exp_dir))[row.run_id]
    launch = launch_of(exp_dir, plan)
    done = restore(exp_dir, launch, (into or exp_dir / "restore" / row.name).absolute())
    what = f"commit {done.commit[:12]}" if done.commit else "its snapshot"
    extras = [f"{done.patched} changed file(s)"] if done.patched else []
    extras += [f"{done.untracked} untracked file(s)"] if done.untracked else []
    out = sys.stdout
    out.write(f"restored the code of run {row.name} into {done.into}: {what}"
              + (f" + {', '.join(extras)}" if extras else "") + "\n")
    if done.submodules:
        out.write(f"note: its {len(done.submodules)} submodule(s) are recorded at their commits, not "
                  "restored: `git submodule update --init --recursive` in there checks them out\n")
    out.write("run it again by hand (expdeploy.log writes to a fresh EXPDEPLOY_RUN_DIR):\n")
    out.write(f"  cd {shlex.quote(str(done.cwd))}\n")
    out.write(f"  export EXPDEPLOY_RUN_ID={shlex.quote(row.run_id)} EXPDEPLOY_RUN_DIR=\"$(mktemp -d)\"\n")
    for _, command in plan["steps"]:
        out.write(f"  sh -c {shlex.quote(command)}\n")
    out.write(f"or as a new attempt in its experiment:\n  cd {shlex.quote(str(done.cwd))} && "
              f"expdeploy rerun {shlex.quote(row.name)} --exp {shlex.quote(str(exp_dir))} --here\n")
    if done.commit:
        out.write(f"(a git worktree: `git worktree remove {shlex.quote(str(done.into))}` when done)\n")


def register(app: typer.Typer) -> None:
    app.command("restore")(restore_command)
