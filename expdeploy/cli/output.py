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
    """A yellow `warning:` and `message` as it is: brackets in it (`[targets.NAME]`) are text."""
    from rich.markup import escape

    stderr().print(f"[yellow]warning:[/] {escape(message)}", markup=True)


def report_error(error: ExpdeployError, state: CliState, argv: list[str] | None = None) -> None:
    """One red line (where: key: message) and a hint; JSON on stderr for `--format json`. An error
    that says how to fix a word of the command line (`fix`) shows the whole line fixed."""
    if error.fix and argv and error.fix[0] in argv:
        import shlex

        fixed = [error.fix[1] if word == error.fix[0] else word for word in argv]
        reason = (error.hint or "").rsplit(": ", 1)[0] or "instead"  # the example is the line itself
        error.hint = f"{reason}:  expdeploy {shlex.join(fixed)}"
    if state.json_errors:
        sys.stderr.write(json.dumps(error.to_dict()) + "\n")
        return
    from rich.markup import escape

    console = stderr()
    console.print(f"[bold red]error:[/] [red]{escape(str(error))}[/]")
    if error.hint:
        console.print(f"[dim]hint:[/] {escape(error.hint)}")
