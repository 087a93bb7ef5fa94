"""`expdeploy targets`: list the named targets, show one with its resolved SSH endpoints, and check
that one works (reachable, workdir present, Slurm answering)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from expdeploy.cli.common import FormatOpt, OutputFormat
from expdeploy.cli.output import CliState
from expdeploy.errors import EXIT_FAILED_RUNS

if TYPE_CHECKING:
    from expdeploy.remote import Shell
    from expdeploy.targets import Target

targets_app = typer.Typer(
    name="targets",
    help="Named places to run: the [targets.NAME] tables of ./expdeploy.toml and "
    "~/.config/expdeploy/targets.toml (the project's win).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

NameArg = Annotated[str, typer.Argument(help="Target name (see `expdeploy targets list`).",
                                        show_default=False, metavar="TARGET")]


@dataclass(frozen=True, slots=True)
class CheckResult:
    host: str
    check: str
    ok: bool
    detail: str


def _json_errors(ctx: typer.Context, fmt: OutputFormat) -> None:
    if isinstance(ctx.obj, CliState):
        ctx.obj.json_errors = fmt is OutputFormat.json


def _all_targets() -> dict[str, Target]:
    from expdeploy.targets import load_targets

    return load_targets(Path.cwd())


def _target(name: str) -> Target:
    from expdeploy.targets import get_target

    return get_target(name, Path.cwd())


@targets_app.command("list")
def list_command(ctx: typer.Context, fmt: FormatOpt = OutputFormat.table) -> None:
    """Every target: name, backend, hosts, remote workdir and the file that defines it."""
    _json_errors(ctx, fmt)
    targets = _all_targets()
    if fmt is OutputFormat.json:
        typer.echo(json.dumps({"targets": [
            {"name": t.name, "backend": t.backend, "hosts": list(t.hosts), "workdir": t.workdir,
             "where": str(t.where) if t.where else None} for t in targets.values()]}, indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from expdeploy.cli.output import warn
    from expdeploy.targets import PROJECT_FILE, user_targets_file

    if not targets:
        warn(f"no targets: add [targets.NAME] tables to ./{PROJECT_FILE} or {user_targets_file()}")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("name", "backend", "hosts", "workdir", "defined in"):
        table.add_column(column)
    for t in targets.values():
        cells = (t.name, t.backend, ", ".join(t.hosts) or "this machine", t.workdir or "(same path as here)",
                 str(t.where or ""))
        table.add_row(*map(escape, cells))
    Console(highlight=False).print(table)


@targets_app.command("show")
def show_command(ctx: typer.Context, name: NameArg, fmt: FormatOpt = OutputFormat.table) -> None:
    """Every setting of target NAME and, for SSH hosts, what OpenSSH resolves each one to."""
    from expdeploy.remote import resolve_host

    _json_errors(ctx, fmt)
    target = _target(name)
    settings = _settings(target)
    endpoints = {host: asdict(resolve_host(host, target)) for host in target.hosts}
    if fmt is OutputFormat.json:
        typer.echo(json.dumps({**settings, "endpoints": endpoints}, indent=2))
        return
    width = max(len(k) for k in settings)
    for key, value in settings.items():
        typer.echo(f"{key:<{width}}  {_text(value)}")
    for host, endpoint in endpoints.items():
        typer.echo(f"\nssh {host} resolves to {endpoint['user']}@{endpoint['hostname']}:{endpoint['port']}")
        for key in ("identity_files", "known_hosts", "proxy_jump", "proxy_command", "host_key_alias"):
            if endpoint[key]:
                typer.echo(f"  {key:<15} {_text(endpoint[key])}")
        checking = "unknown keys accepted" if target.accept_unknown_host_keys else "strict"
        typer.echo(f"  {'host keys':<15} {checking} (the ssh config's StrictHostKeyChecking: "
                   f"{endpoint['strict']})")


def _settings(target: Target) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in asdict(target).items():
        if key == "slurm" and target.backend == "slurm":
            flat.update({f"slurm.{k}": v for k, v in value.items()})
        elif key == "slurm":
            continue
        elif key in ("env", "path_map"):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        elif key == "where":
            flat["defined in"] = str(target.where) if target.where else None
        else:
            flat[key] = value
    return flat


def _text(value: Any) -> str:
    if value is None or value == ():
        return "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


@targets_app.command("check")
def check_command(ctx: typer.Context, name: NameArg, fmt: FormatOpt = OutputFormat.table) -> None:
    """Connect to target NAME, run `echo ok`, look for its workdir and, for Slurm, ask sinfo and
    scontrol. One line per check; exit status 1 when one fails."""
    _json_errors(ctx, fmt)
    target = _target(name)
    results: list[CheckResult] = []
    for result in _checks(target, target.workdir or str(Path.cwd().resolve())):
        results.append(result)
        if fmt is OutputFormat.table:
            _print_check(result)
    failed = any(not r.ok for r in results)
    if fmt is OutputFormat.json:
        typer.echo(json.dumps({"target": target.name, "ok": not failed,
                               "checks": [asdict(r) for r in results]}, indent=2))
    if failed:
        raise typer.Exit(EXIT_FAILED_RUNS)


def _print_check(result: CheckResult) -> None:
    from rich.console import Console
    from rich.markup import escape

    mark = "[green]ok  [/]" if result.ok else "[bold red]FAIL[/]"
    Console(highlight=False, soft_wrap=True).print(
        f"{mark}  {escape(result.host)}  {result.check}: {escape(result.detail)}")


def _checks(target: Target, workdir: str) -> Iterator[CheckResult]:
    from expdeploy.remote import RemoteError, shell_for

    for host in target.hosts or (None,):
        label = host or "this machine"
        try:
            shell = shell_for(target, host)
        except RemoteError as exc:
            yield CheckResult(label, "resolve", False, _with_hint(exc))
            continue
        try:
            yield from _host_checks(target, shell, label, workdir)
        finally:
            shell.close()


def _host_checks(target: Target, shell: Shell, label: str, workdir: str) -> Iterator[CheckResult]:
    from expdeploy.remote import RemoteError

    try:
        done = shell.run("echo ok", timeout=60)
    except RemoteError as exc:
        yield CheckResult(label, "connect", False, _with_hint(exc))
        return
    answered = done.code == 0 and done.stdout.strip() == "ok"
    yield CheckResult(label, "connect", answered,
                      f"{shell.label} runs commands" if answered else _failure(done.code, done.stderr))
    if not answered:
        return
    try:
        yield from _command_checks(target, shell, label, workdir)
    except RemoteError as exc:
        yield CheckResult(label, "connection", False, _with_hint(exc))


def _command_checks(target: Target, shell: Shell, label: str, workdir: str) -> Iterator[CheckResult]:
    present = shell.run(f"test -d {shlex.quote(workdir)}").code == 0
    yield CheckResult(label, "workdir", present, f"{workdir} exists" if present else
                      f"{workdir} does not exist there (create it, or sync the project to it)")
    if target.backend == "slurm":
        yield from _slurm_checks(target, shell, label)


def _slurm_checks(target: Target, shell: Shell, label: str) -> Iterator[CheckResult]:
    hint = f"; set what Slurm needs (SLURM_CONF, PATH) in [targets.{target.name}.env]"
    done = shell.run("sinfo -h", timeout=60)
    lines = done.stdout.strip().splitlines()
    if done.code:
        yield CheckResult(label, "sinfo", False, _failure(done.code, done.stderr) + hint)
    else:
        yield CheckResult(label, "sinfo", True, f"{len(lines)} line(s); first: {lines[0] if lines else '-'}")
    done = shell.run("scontrol show config | grep MaxArraySize", timeout=60)
    if done.code == 0 and "MaxArraySize" in done.stdout:
        yield CheckResult(label, "scontrol", True, " ".join(done.stdout.split()))
    else:
        why = done.stderr or "no MaxArraySize in `scontrol show config`"
        yield CheckResult(label, "scontrol", False, _failure(done.code, why) + hint)
    partition = target.slurm.partition
    if partition and lines:
        done = shell.run(f"sinfo -h -o %P -p {shlex.quote(partition)}", timeout=60)
        known = done.code == 0 and bool(done.stdout.strip())
        yield CheckResult(label, "partition", known, f"{partition} exists" if known
                          else f"sinfo lists no partition {partition!r}")


def _failure(code: int, stderr: str) -> str:
    last = stderr.strip().splitlines()[-1:] or [""]
    hint = " (not found: set PATH or the setup in the target's env)" if code == 127 else ""
    return f"exit status {code}: {last[0]}{hint}".rstrip(": ")


def _with_hint(exc: Exception) -> str:
    hint = getattr(exc, "hint", None)
    return f"{exc} (hint: {hint})" if hint else str(exc)


def register(app: typer.Typer) -> None:
    app.add_typer(targets_app, name="targets")
