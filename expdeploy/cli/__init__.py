"""The `expdeploy` command: a thin Typer app wiring one module per verb, plus plugin commands."""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from expdeploy import __version__
from expdeploy.cli import (
    agent,
    cancel,
    clean,
    env,
    logs,
    plan,
    plugins,
    rerun,
    restore,
    results,
    run,
    status,
    targets,
    wandb_sync,
)
from expdeploy.cli.output import CliState, report_error
from expdeploy.errors import ExpdeployError


class _Group(TyperGroup):
    """Turns expected errors into one line and an exit code, for every command and plugin command."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.meta["expdeploy.argv"] = list(args)  # for a hint that shows the command line corrected
        return super().parse_args(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ExpdeployError as error:
            state = ctx.obj if isinstance(ctx.obj, CliState) else CliState()
            if state.debug:
                raise
            report_error(error, state, ctx.meta.get("expdeploy.argv"))
            ctx.exit(error.exit_code)


class _Command(TyperCommand):
    """A verb whose usage line reads as click writes it (`SPEC [OVERRIDES]...`): this Typer wraps
    a required argument in braces (`{SPEC}`), which reads as shell syntax."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [piece.replace("{", "").replace("}", "") for piece in super().collect_usage_pieces(ctx)]


def _plain_usage(typer_app: typer.Typer) -> None:
    """Every command of `typer_app` and of its sub-apps (plugins' too) is a _Command."""
    for info in typer_app.registered_commands:
        if info.cls in (None, TyperCommand):  # a plugin's own command class stays
            info.cls = _Command
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _plain_usage(group.typer_instance)


app = typer.Typer(
    name="expdeploy",
    cls=_Group,
    help="Expand an experiment grid and run it on local GPUs, Slurm, SSH hosts or W&B agents.",
    epilog="Start with: expdeploy plan examples/quickstart.yml",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rich help formatting costs ~0.15 s at every start
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"expdeploy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    ctx.obj = CliState(debug=debug)


for verb in (plan, run, status, logs, cancel, clean, agent, plugins, targets, env, wandb_sync, results,
             restore, rerun):
    verb.register(app)


def _add_plugin_commands() -> None:
    from expdeploy.plugins import get_plugin_manager

    get_plugin_manager().hook.expdeploy_register_commands(app=app)


_add_plugin_commands()
_plain_usage(app)


def main() -> None:
    """Console-script entry point."""
    try:
        app(prog_name="expdeploy")
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
