"""`expdeploy env`: sync the code and environment to a target by reference (`env sync`), check that
the environment there is the one here (`env check`), build images (`env build`), and show a
run's commands wrapped in its environment (`env show`)."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from expdeploy.cli.common import (
    FormatOpt,
    OutputFormat,
    OutputOpt,
    OverridesArg,
    SpecArg,
    SpecFormatOpt,
    load_from_cli,
    load_options,
)
from expdeploy.cli.output import CliState
from expdeploy.errors import EXIT_FAILED_RUNS, BadInput

if TYPE_CHECKING:
    from expdeploy.envcheck import EnvCheck
    from expdeploy.sync import Progress, SyncReport
    from expdeploy.targets import Target

env_app = typer.Typer(
    name="env",
    help="Put the code and environment where a target runs, at the same absolute paths, and check "
    "that they match.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

NameArg = Annotated[str, typer.Argument(help="Target name (see `expdeploy targets list`).",
                                        show_default=False, metavar="TARGET")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="List what would move, with the byte count; "
                                         "send nothing.")]
OnlyOpt = Annotated[str | None, typer.Option(
    "--only", help="Sync only these kinds, comma-separated: code, env, images, docker, paths "
    "(default: the target's `sync` list).", show_default=False)]
SHOWN_CHANGES = 100  # itemized lines a dry run prints per item


def _target(ctx: typer.Context, name: str, fmt: OutputFormat) -> Target:
    from expdeploy.targets import get_target

    if isinstance(ctx.obj, CliState):
        ctx.obj.json_errors = fmt is OutputFormat.json
    return get_target(name, Path.cwd())


def _kinds(only: str | None) -> tuple[str, ...] | None:
    from expdeploy.targets import SYNC_KINDS

    if only is None:
        return None
    kinds = tuple(k.strip() for k in only.split(",") if k.strip())
    for kind in kinds:
        if kind not in SYNC_KINDS:
            raise BadInput(f"unknown kind {kind!r}", key="--only", hint=f"one of: {', '.join(SYNC_KINDS)}")
    if not kinds:
        raise BadInput("is empty", key="--only", hint=f"one or more of: {', '.join(SYNC_KINDS)}")
    return kinds


@env_app.command("sync")
def sync_command(ctx: typer.Context, name: NameArg, dry_run: DryRunOpt = False, only: OnlyOpt = None,
                 fmt: FormatOpt = OutputFormat.table) -> None:
    """Send the code (the files git lists: tracked, and untracked but not ignored), the environment
    (a venv or conda prefix), Singularity images and extra paths to every host of TARGET, at
    the same absolute paths (the target's path_map aside), with rsync over its ssh; Docker images
    with docker save | docker load, unless the host has the same image id. Incremental. Files
    removed here are removed there; files sync never sent there (outputs, data, git-ignored
    files) are left alone. A progress bar on a terminal.

    \b
    Examples:
      expdeploy env sync atlas                  # what the target's `sync` list names
      expdeploy env sync atlas --dry-run        # list what would move, and how many bytes
      expdeploy env sync atlas --only code      # just the code, e.g. after an edit
      expdeploy env sync gpus --format json     # the report, for scripts
    """
    from expdeploy.sync import sync_target

    target = _target(ctx, name, fmt)
    with SyncProgressView(fmt) as progress:
        report = sync_target(target, Path.cwd(), dry_run=dry_run, progress=progress, kinds=_kinds(only))
    if fmt is OutputFormat.json:
        typer.echo(json.dumps(_report_json(report), indent=2))
    else:
        _print_report(report)


class SyncProgressView:
    """The progress callback for a sync: a rich bar per item when stderr is a terminal, plain
    lines on stderr otherwise, nothing for --format json."""

    def __init__(self, fmt: OutputFormat) -> None:
        self.fmt = fmt
        self.bars: Any = None
        self.tasks: dict[tuple[str, str, str], Any] = {}

    def __enter__(self) -> Progress | None:
        from expdeploy.sync import plain_lines

        if self.fmt is OutputFormat.json:
            return None
        if not sys.stderr.isatty():
            return plain_lines(lambda line: typer.echo(line, err=True))
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

        # rsync knows the percentage and the rate; the total is only known at the end
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                             TextColumn("{task.fields[done]} {task.fields[rate]}"),
                             console=Console(stderr=True), transient=True)
        self.bars.start()
        return self._on_event

    def _on_event(self, event: Any) -> None:
        from expdeploy.sync import human_bytes

        key = (event.host, event.kind, event.path)
        if event.phase == "note":
            self.bars.console.print(str(event), markup=False, highlight=False)
        elif event.phase == "start":
            self.tasks[key] = self.bars.add_task(f"{event.host} {event.kind}", total=100, done="", rate="")
        elif event.phase == "tick" and key in self.tasks:
            self.bars.update(self.tasks[key], completed=event.percent or 0, done=human_bytes(event.done),
                             rate=event.rate)
        elif event.phase == "done" and key in self.tasks:  # the report says what moved
            self.bars.remove_task(self.tasks.pop(key))

    def __exit__(self, *exc: object) -> None:
        if self.bars is not None:
            self.bars.stop()


def _print_report(report: SyncReport) -> None:
    from expdeploy.sync import describe

    if not report.hosts:
        typer.echo(f"target {report.target!r} is this machine: nothing to sync")
        return
    for host in report.hosts:
        typer.echo(f"{host.host} ({host.label})")
        for t in host.transfers:
            where = t.local if t.remote == t.local else f"{t.local} -> {t.remote}"
            typer.echo(f"  {t.kind:<7} {where}: {describe(t, report.dry_run)}")
            for change in t.changes[:SHOWN_CHANGES]:
                typer.echo(f"      {change}")
            if len(t.changes) > SHOWN_CHANGES:
                typer.echo(f"      ... and {len(t.changes) - SHOWN_CHANGES} more")
    typer.echo(summary_line(report))


def summary_line(report: SyncReport) -> str:
    """`synced N files, B bytes (...) to K hosts (...)`, or what a dry run would move."""
    from expdeploy.sync import human_bytes

    names = ", ".join(h.host for h in report.hosts)
    count = f"{len(report.hosts)} host{'s' if len(report.hosts) > 1 else ''} ({names})"
    moved = f"{report.files} files, {report.bytes:,} bytes ({human_bytes(report.bytes)})"
    commit = f", commit {report.commit[:12]}" if report.commit else ""
    if report.dry_run:
        return f"dry run: {moved} would move to {count}{commit}; nothing was sent"
    return f"synced {moved} to {count}{commit}"


def _report_json(report: SyncReport) -> dict[str, Any]:
    data = asdict(report)
    data.update(files=report.files, bytes=report.bytes)
    for host, out in zip(report.hosts, data["hosts"], strict=True):
        out.update(files=host.files, bytes=host.bytes)
    return data


@env_app.command("check")
def check_command(ctx: typer.Context, name: NameArg, fmt: FormatOpt = OutputFormat.table) -> None:
    """Run the environment's interpreter here, on every host of TARGET and, for a Slurm
    target, on a compute node through srun; compare the Python version, the installed packages
    (name==version of each, hashed) and the GPUs nvidia-smi sees. Exit status 0 when all agree,
    1 when something differs (each difference said plainly), 2 when a host cannot be reached.

    \b
    Examples:
      expdeploy env check atlas
      expdeploy env check atlas --format json
    """
    from expdeploy.envcheck import check_environment

    target = _target(ctx, name, fmt)
    result = check_environment(target)
    if fmt is OutputFormat.json:
        typer.echo(json.dumps({**asdict(result), "ok": result.ok, "differences": result.differences()},
                              indent=2))
    else:
        _print_check(result)
    if not result.ok:
        raise typer.Exit(EXIT_FAILED_RUNS)


def _print_check(result: EnvCheck) -> None:
    from expdeploy.envcheck import describe

    typer.echo(f"environment {result.environment}" + (
        f" (there: {result.remote_environment})" if result.remote_environment != result.environment else ""))
    places = (result.here, *result.there)
    width = max(len(f.where) for f in places)
    for facts in places:
        typer.echo(f"  {facts.where:<{width}}  {describe(facts)}")
    if result.here.problem:
        typer.echo(f"this machine: {result.here.problem}")
    if not result.there:
        typer.echo(f"target {result.target!r} is this machine: nothing else to compare")
        return
    differences = result.differences()
    for where, found in differences.items():
        typer.echo(f"{where} differs: " + "; ".join(found))
    if not differences and not result.here.problem:
        typer.echo(f"the environment matches on {', '.join(f.where for f in result.there)}")


FromOpt = Annotated[Path | None, typer.Option(
    "--from", help="A Dockerfile, a Singularity recipe (.def) or a directory holding a Dockerfile "
    "(default: the recipes shipped in containers/).", show_default=False)]
DockerOpt = Annotated[bool, typer.Option("--docker", help="Build a Docker (or podman) image, not a .sif.")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="The .sif to build (default ./expdeploy.sif).",
                                             show_default=False)]
TagOpt = Annotated[str | None, typer.Option("--tag", help="The Docker image's tag (default "
                                            "expdeploy:latest).", show_default=False)]
RuntimeOpt = Annotated[str | None, typer.Option(
    "--runtime", help="apptainer or singularity; with --docker: docker or podman.", show_default=False)]
FakerootOpt = Annotated[bool | None, typer.Option(
    "--fakeroot/--no-fakeroot", help="Singularity: build as a fake root (default: unless you are root).",
    show_default=False)]
NetworkNoneOpt = Annotated[bool, typer.Option("--network-none", help="Build without network access.")]


@env_app.command("build")
def build_command(source: FromOpt = None, docker: DockerOpt = False, out: OutOpt = None, tag: TagOpt = None,
                  runtime: RuntimeOpt = None, fakeroot: FakerootOpt = None,
                  network_none: NetworkNoneOpt = False) -> None:
    """Build the image runs execute in. Singularity (the default): a Dockerfile is converted with
    spython (and its runscript corrected) into a recipe next to the image, then built with
    apptainer or singularity; where neither is installed, the recipe is written and the command
    to build it printed. --docker builds the same recipe directory with docker or podman.

    \b
    Examples:
      expdeploy env build                                # containers/Dockerfile -> ./expdeploy.sif
      expdeploy env build --from Dockerfile --out img.sif
      expdeploy env build --docker --tag me/train:1 --from .
      expdeploy env build --docker --runtime podman
    """
    from expdeploy.envbuild import build, default_recipes

    result = build(source or default_recipes(), docker=docker, out=out, tag=tag, runtime=runtime,
                   fakeroot=fakeroot, network_none=network_none, on_line=lambda line: typer.echo(line))
    for path in result.written:
        typer.echo(f"wrote {path}")
    if result.ran:
        typer.echo(f"built {result.image}")
    else:
        typer.echo("no apptainer or singularity here; build it where one is installed with:\n"
                   f"  {result.shell}")


RunOpt = Annotated[str | None, typer.Option("--run", help="The run to show (a name; default: the first).",
                                            show_default=False)]


@env_app.command("show")
def show_command(spec: SpecArg, overrides: OverridesArg = None, run: RunOpt = None,
                 output: OutputOpt = Path("experiments"), spec_format: SpecFormatOpt = None) -> None:
    """Print what one run of SPEC executes, each step fully wrapped in its environment (`env:`):
    the lines the worker runs. Starts and writes nothing.

    \b
    Examples:
      expdeploy env show grid.yml
      expdeploy env show grid.yml --run lr=0.1,seed=0
    """
    from expdeploy.expdir import plan_record
    from expdeploy.plan import make_plan

    loaded, parsed = load_from_cli(spec, overrides, load_options(), spec_format)
    plan = make_plan(loaded, parsed, output)
    runs = plan.expansion.runs
    chosen = [r for r in runs if run is None or r.name == run][:1]
    if not chosen:
        raise BadInput(f"no run named {run!r}", key="--run",
                       hint=f"runs: {', '.join(r.name for r in runs[:5])}{' ...' if len(runs) > 5 else ''}")
    record = plan_record(chosen[0], plan.exp_dir, plan.launch_time, Path.cwd())
    typer.echo(f"# {record['name']} ({record['run_id']})")
    for step, command in record["steps"]:
        typer.echo(f"[{step}] {command}")
    if record.get("stop"):
        typer.echo(f"[on cancel] {record['stop']}")


def register(app: typer.Typer) -> None:
    app.add_typer(env_app, name="env")
