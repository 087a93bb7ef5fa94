"""`expdeploy plan`: validate and expand an experiment and show what would run. Starts nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from expdeploy.cli.common import (
    CommandOpt,
    FormatOpt,
    NameOpt,
    OutputFormat,
    OutputOpt,
    OverridesArg,
    ResourcesOpt,
    RunCapOpt,
    SeedOpt,
    SpecArg,
    SpecFormatOpt,
    TitleOpt,
    load_from_cli,
    load_options,
)
from expdeploy.cli.output import CliState, warn
from expdeploy.errors import BadInput

if TYPE_CHECKING:
    from expdeploy.plan import Plan

TimeOpt = Annotated[
    str | None,
    typer.Option("--time-per-run", help="Estimated run time for GPU-hours, e.g. 2h or 90m "
                 "(default: resources.time)."),
]
ShowOpt = Annotated[int, typer.Option("--show", help="How many runs to print with their commands.")]


def plan_command(
    ctx: typer.Context,
    spec: SpecArg,
    overrides: OverridesArg = None,
    output: OutputOpt = Path("experiments"),
    fmt: FormatOpt = OutputFormat.table,
    spec_format: SpecFormatOpt = None,
    command: CommandOpt = None,
    title: TitleOpt = None,
    name: NameOpt = None,
    seed: SeedOpt = 0,
    run_cap: RunCapOpt = None,
    resources: ResourcesOpt = None,
    time_per_run: TimeOpt = None,
    show: ShowOpt = 3,
) -> None:
    """Validate SPEC, expand it into runs and show them with their commands. Starts nothing.

    Examples:

      expdeploy plan examples/quickstart.yml

      expdeploy plan sweep.yaml lr=0.1,0.01 'seed=range(0,3)' --format json

      expdeploy plan -- python3 train.py -m lr=0.1,0.01 'seed=range(3)'   # a Hydra multirun line
    """
    from expdeploy.plan import make_plan
    from expdeploy.units import parse_duration

    state = ctx.obj if isinstance(ctx.obj, CliState) else CliState()
    state.json_errors = fmt is OutputFormat.json
    seconds = None
    if time_per_run is not None:
        try:
            seconds = parse_duration(time_per_run)
        except ValueError as exc:
            raise BadInput(f"{time_per_run!r}: {exc}", key="--time-per-run") from None
    loaded, parsed = load_from_cli(spec, overrides, load_options(command, title, name, seed, run_cap),
                                   spec_format, resources)
    result = make_plan(loaded, parsed, output, seconds)
    for where, note in result.spec.notes:
        warn(f"{where}: {note}")
    if fmt is OutputFormat.json:
        write_json(result, sys.stdout)
    else:
        for orphan in result.orphans:
            where = result.spec.param_locations.get(orphan, result.spec.source)
            warn(f"{where}: parameter {orphan!r} is set but used by no command template")
        print_summary(result, show)


def print_summary(plan: Plan, show: int) -> None:
    from rich.console import Console
    from rich.markup import escape

    from expdeploy.launch import commands_for
    from expdeploy.units import format_hours

    out = Console(highlight=False, soft_wrap=True)
    spec, runs = plan.spec, plan.expansion.runs
    steps = plan.step_names
    out.print(f"[bold]Experiment[/]  {escape(spec.name)}  [dim]({escape(str(spec.source))}, "
              f"{spec.format})[/]")
    out.print(f"[bold]Directory[/]   {escape(str(plan.exp_dir))}")
    step_note = f"{len(steps)} steps: {', '.join(steps)}" if len(steps) > 1 else "1 step"
    out.print(f"[bold]Runs[/]        {len(runs):,}  ({step_note}; {plan.command_count:,} commands)")
    varying = ", ".join(f"{escape(k)} ({n})" for k, n in plan.expansion.varying.items())
    out.print(f"[bold]Varying[/]     {varying or 'nothing (a single run)'}")
    if plan.tag_counts:
        tags = ", ".join(f"{escape(t)}: {n:,}" for t, n in plan.tag_counts.items())
        out.print(f"[bold]Tags[/]        {tags}")
    out.print(f"[bold]Resources[/]   {escape(_resources_text(plan))}")
    if plan.gpu_hours is None:
        gpu = "unknown (set resources.time or pass --time-per-run)"
    else:
        gpu = format_hours(plan.gpu_hours)
    out.print(f"[bold]GPU-hours[/]   {gpu}")
    shown = runs[: max(show, 0)]
    if shown:
        out.print(f"\n[bold]First {len(shown)} of {len(runs):,} runs:[/]")
    for run in shown:
        tags = f" [dim]tags: {escape(','.join(run.tags))}[/]" if run.tags else ""
        out.print(f"  [cyan]{escape(run.name)}[/] [dim]{run.run_id}[/]{tags}")
        for step, cmd in commands_for(run, plan.exp_dir, plan.launch_time).items():
            out.print(f"    [green]{escape(step)}:[/] {escape(cmd)}")
    if len(runs) > len(shown):
        out.print(f"  [dim]... and {len(runs) - len(shown):,} more "
                  "(--show N, or --format json for all)[/]")


def _resources_text(plan: Plan) -> str:
    texts = dict.fromkeys(
        " ".join(f"{k}={' '.join(v) if isinstance(v, list) else v}"
                 for k, v in r.resources.as_dict().items())
        for r in plan.spec.recipes
    )
    return "; ".join(texts) or "none"


def write_json(plan: Plan, stream: TextIO) -> None:
    """One JSON object with every run, written run by run so large grids stream."""
    from expdeploy.launch import commands_for

    head = {
        "experiment": plan.spec.name,
        "format": plan.spec.format,
        "exp_dir": str(plan.exp_dir),
        "count": len(plan.expansion.runs),
        "gpu_hours": plan.gpu_hours,
        "varying": plan.expansion.varying,
        "orphans": list(plan.orphans),
    }
    stream.write(json.dumps(head)[:-1] + ', "runs": [')
    for i, run in enumerate(plan.expansion.runs):
        item = {
            "run_id": run.run_id,
            "name": run.name,
            "params": dict(run.params),
            "tags": list(run.tags),
            "commands": commands_for(run, plan.exp_dir, plan.launch_time),
        }
        stream.write(("," if i else "") + "\n  " + json.dumps(item, ensure_ascii=False))
    stream.write("\n]}\n")


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_command)
