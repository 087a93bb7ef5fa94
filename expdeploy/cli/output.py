"""How the CLI talks to people: one console on stderr for messages, one fail path for errors."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from expdeploy.errors import ExpdeployError

if TYPE_CHECKING:
    from rich.console import Console


@dataclass
class CliState:
    """Per-invocation settings shared by every command (held in the Typer context)."""

    debug: bool = False
    json_errors: bool = False


_stderr: Console | None = None


def stderr() -> Console:
    global _stderr
    if _stderr is None:
        from rich.console import Console

        _stderr = Console(stderr=True, highlight=False, soft_wrap=True)
    return _stderr


def warn(message: str) -> None:
    stderr().print(f"[yellow]warning:[/] {message}", markup=True)


def report_error(error: ExpdeployError, state: CliState) -> None:
    """One red line (where: key: message) and a hint; JSON on stderr for `--format json`."""
    if state.json_errors:
        sys.stderr.write(json.dumps(error.to_dict()) + "\n")
        return
    from rich.markup import escape

    console = stderr()
    console.print(f"[bold red]error:[/] [red]{escape(str(error))}[/]")
    if error.hint:
        console.print(f"[dim]hint:[/] {escape(error.hint)}")
