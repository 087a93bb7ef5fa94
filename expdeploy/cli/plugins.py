"""`expdeploy plugins`: every loaded plugin (built-in or installed) with its version and hooks."""

from __future__ import annotations

import json

import typer

from expdeploy.cli.common import FormatOpt, OutputFormat


def plugins_command(fmt: FormatOpt = OutputFormat.table) -> None:
    """List loaded plugins: name, distribution, version and the hooks each implements.

    EXPDEPLOY_LOAD_PLUGINS=a,b loads only those third-party plugins;
    EXPDEPLOY_BLOCK_PLUGINS=a,b skips those (built-ins included).
    """
    from expdeploy.cli.output import warn
    from expdeploy.plugins import list_plugins, plugin_failures
    from expdeploy.spec.formats import available_formats

    infos = list_plugins()
    formats = available_formats()
    if fmt is OutputFormat.json:
        payload = [
            {"name": p.name, "module": p.module, "distribution": p.distribution,
             "version": p.version, "builtin": p.builtin, "hooks": list(p.hooks)}
            for p in infos
        ]
        typer.echo(json.dumps({"plugins": payload, "spec_formats": sorted(formats),
                               "failed": plugin_failures()}, indent=2))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("name", "distribution", "version", "hooks"):
        table.add_column(column)
    for p in infos:
        table.add_row(*map(escape, (p.name, p.distribution, p.version, ", ".join(p.hooks))))
    console = Console(highlight=False)
    console.print(table)
    console.print(escape(f"\nspec formats: {', '.join(sorted(formats))}"))
    for name, why in plugin_failures().items():
        warn(f"plugin {name!r} failed to load: {why}")


def register(app: typer.Typer) -> None:
    app.command("plugins")(plugins_command)
