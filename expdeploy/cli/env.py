"""`expdeploy env`: sync the code and environment to a target by reference (`env sync`), and check
that the environment there is the one here (`env check`)."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from expdeploy.cli.common import FormatOpt, OutputFormat
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


def register(app: typer.Typer) -> None:
    app.add_typer(env_app, name="env")
