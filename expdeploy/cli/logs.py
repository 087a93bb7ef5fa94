"""`expdeploy logs RUN`: a run's step log, optionally followed while the run goes on."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from expdeploy.cli.common import OutputOpt
from expdeploy.errors import BadInput

if TYPE_CHECKING:
    from expdeploy.remote import Shell

RunArg = Annotated[str, typer.Argument(help="Run name or run-id prefix.", show_default=False, metavar="RUN")]
StepOpt = Annotated[str | None, typer.Option("--step", help="Step whose log to show (default: the "
                                                           "current or last step).")]
FollowOpt = Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the run ends.")]
ExpOpt = Annotated[Path | None, typer.Option("--exp", help="Experiment directory (default: most recent).")]


def logs_command(run: RunArg, step: StepOpt = None, follow: FollowOpt = False,
                 exp: ExpOpt = None, output: OutputOpt = Path("experiments")) -> None:
    """Print a run's log (stdout and stderr of one step); for an experiment on a remote target
    (`run --target`), the log is read there over SSH."""
    from expdeploy import worker
    from expdeploy.expdir import find_experiment, resolve_runs
    from expdeploy.ledger import Ledger

    exp_dir = find_experiment(output, exp)
    ledger = Ledger(exp_dir)
    (row,) = resolve_runs(ledger, [run])
    files = _files_for(exp_dir, ledger.meta(), row.job)
    run_dir = f"{files.exp_dir}/runs/{row.name}"
    state = files.read_json(f"{run_dir}/state.json")
    plan = worker.read_manifest(str(exp_dir)).get(row.run_id, {})
    steps = [s[0] for s in plan.get("steps", [])]
    chosen = step or state.get("step") or (steps[0] if steps else None)
    if chosen is None or (step is not None and step not in steps):
        raise BadInput(f"run {row.name} has no step {step!r}", key="--step",
                       hint=f"steps: {', '.join(steps)}")
    path = f"{run_dir}/{chosen}.log"
    if files.read(path, 0) is None and not follow:
        raise BadInput(f"no log yet for step {chosen} of {row.name} ({row.state})", key="RUN")
    _print(files, path, follow, run_dir)


class _LocalFiles:
    """The run's files on this machine."""

    def __init__(self, exp_dir: str) -> None:
        self.exp_dir = exp_dir

    def read(self, path: str, offset: int) -> bytes | None:
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                return handle.read()
        except FileNotFoundError:
            return None

    def read_json(self, path: str) -> dict[str, Any]:
        from expdeploy import worker

        return worker.read_json(path) or {}


class _RemoteFiles(_LocalFiles):
    """The run's files where it executes, one SSH round trip per read."""

    def __init__(self, exp_dir: str, shell: Shell) -> None:
        super().__init__(exp_dir)
        self.shell = shell

    def read(self, path: str, offset: int) -> bytes | None:
        quoted = shlex.quote(path)
        done = self.shell.run(f"test -f {quoted} && tail -c +{offset + 1} {quoted}")
        return done.stdout.encode() if done.code == 0 else None

    def read_json(self, path: str) -> dict[str, Any]:
        text = self.read(path, 0)
        try:
            return dict(json.loads(text)) if text else {}
        except ValueError:
            return {}


def _files_for(exp_dir: Path, meta: dict[str, Any], job: str | None) -> _LocalFiles:
    from expdeploy.placement import restore

    placement = restore(exp_dir, meta)
    if placement.target is None or not placement.target.remote:
        return _LocalFiles(placement.exp_dir)
    from expdeploy.remote import shell_for

    # a run on one of several SSH hosts records it in its job: "HOST:PID"
    host = (job or "").rpartition(":")[0] or (job or "")
    return _RemoteFiles(placement.exp_dir,
                        shell_for(placement.target, host if host in placement.target.hosts else None))


def _print(files: _LocalFiles, path: str, follow: bool, run_dir: str) -> None:
    from expdeploy import worker

    offset = 0
    while True:
        chunk = files.read(path, offset)
        if chunk:
            offset += len(chunk)
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
        state = files.read_json(f"{run_dir}/state.json")
        if not follow or state.get("state") in worker.FINAL_STATES:
            return
        time.sleep(0.25)  # following a file: no child-exit event to wait on here


def register(app: typer.Typer) -> None:
    app.command("logs")(logs_command)
