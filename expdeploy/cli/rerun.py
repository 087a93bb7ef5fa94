"""`expdeploy rerun RUN`: one run of an experiment again, as its next attempt, with the spec and
overrides it was launched with."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from expdeploy.cli.common import OutputOpt
from expdeploy.cli.logs import ExpOpt, RunArg
from expdeploy.cli.run import DetachOpt, DryRunOpt
from expdeploy.errors import BadInput

HereOpt = Annotated[bool, typer.Option(
    "--here", help="Run from the current directory (e.g. what `expdeploy restore` made), not from "
    "where the run first ran.")]


def rerun_command(run: RunArg, exp: ExpOpt = None, output: OutputOpt = Path("experiments"),
                  here: HereOpt = False, dry_run: DryRunOpt = False, detach: DetachOpt = False) -> None:
    """Run RUN again (a new attempt, also when it succeeded) from the spec and overrides recorded
    at its launch, where the experiment runs (its backend and target). A run made from
    a --snapshot reruns from that snapshot; otherwise from its working directory as it is now
    (a note says when that code differs from the recorded one: `expdeploy restore` brings it back).

    \b
    Examples:
      expdeploy rerun lr=0.1,seed=0
      expdeploy restore lr=0.1,seed=0 --into /tmp/repro
      cd /tmp/repro && expdeploy rerun lr=0.1,seed=0 --exp EXP --here   # the recorded code
    """
    from expdeploy import worker
    from expdeploy.cli.run import run_command
    from expdeploy.expdir import find_experiment, resolve_runs
    from expdeploy.ledger import Ledger
    from expdeploy.provenance import PROVENANCE, code_state, launch_cwd, same_code, snapshot_launch
    from expdeploy.restore import launch_of, read_launch

    exp_dir = find_experiment(output, exp).absolute()
    ledger = Ledger(exp_dir)
    try:
        (row,) = resolve_runs(ledger, [run])
        meta = ledger.meta()
    finally:
        ledger.close()
    plan = worker.read_manifest(str(exp_dir))[row.run_id]
    launch = launch_of(exp_dir, plan)
    record = read_launch(exp_dir, launch)
    launch_dir = exp_dir / PROVENANCE / launch
    line = record.get("command_line")  # a Hydra multirun line: Hydra expands it again, in `cwd`
    if line:
        spec, overrides = Path(line[0]), list(line[1:])
    else:
        copy = next(launch_dir.glob("spec.*"))
        original = Path(record["spec"])
        spec = original if original.exists() and original.read_bytes() == copy.read_bytes() else copy
        if meta.get("format") == "hydra":  # a Hydra config composes with the groups beside it
            spec = original
        overrides = list(record.get("overrides") or [])
    cwd = Path.cwd() if here else launch_cwd(exp_dir, launch, record)
    if not cwd.is_dir():
        raise BadInput(f"{cwd}, where run {row.name} ran, is gone", key="RUN",
                       hint="`expdeploy restore` it, then `expdeploy rerun --here` from there")
    if snapshot_launch(exp_dir, cwd) is None and not same_code(launch_dir, code_state(cwd, [exp_dir.parent])):
        sys.stderr.write(f"note: the code in {cwd} is not what run {row.name} ran (launch {launch}); it "
                         f"reruns with the code as it is now (`expdeploy restore {row.name}` brings the "
                         "recorded code back)\n")
    load = record.get("load") or {}
    target, backend = _placement(meta)
    os.chdir(cwd)
    run_command(spec=spec, overrides=overrides, output=exp_dir.parent,
                backend=backend, target=target, force=True, only=[row.name],
                dry_run=dry_run, detach=detach, spec_format=load.get("spec_format"),
                command=load.get("command"), title=load.get("title"), name=load.get("name") or exp_dir.name,
                seed=int(load.get("seed") or 0), wandb_mode=str(load.get("wandb_mode") or "offline"),
                run_cap=load.get("run_cap"), resources=load.get("resources"),
                sample=_draws(load, meta))


def _draws(load: Mapping[str, Any], meta: Mapping[str, Any]) -> int | None:
    """`--sample N` again where it stood for a random W&B sweep's run_cap (the same N draws);
    elsewhere it picked runs, and rerun names its run itself."""
    return load.get("sample") if meta.get("format") == "wandb" else None


def _placement(meta: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The experiment's own target, else its backend: the ledger follows all its runs in one place."""
    from expdeploy.backend import available_backends

    target, backend = meta.get("target"), str(meta.get("backend") or "local")
    cls = available_backends().get(backend)
    if cls is not None and cls.agents_only:
        raise BadInput(f"--backend {backend}: its agents choose the runs, so one cannot be run again",
                       key="RUN", hint="`expdeploy restore` it, then run the printed commands")
    return (str(target), None) if target else (None, backend)


def register(app: typer.Typer) -> None:
    app.command("rerun")(rerun_command)
