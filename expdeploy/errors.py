"""Typed, expected failures and their exit codes.

The CLI prints each as one line (location, key, message) plus a hint; no traceback.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_FAILED_RUNS = 1
EXIT_BAD_INPUT = 2


@dataclass(frozen=True, slots=True)
class Location:
    """Where a value came from: a file and line, or a command-line argument."""

    path: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


class ExpdeployError(Exception):
    """An expected failure: reported as one line, never with a traceback."""

    exit_code = EXIT_FAILED_RUNS

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        where: Location | None = None,
        key: str | None = None,
        fix: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.where = where
        self.key = key
        self.fix = fix  # (a command-line word as given, as it should be): the CLI shows the line fixed

    def __str__(self) -> str:
        parts = [str(self.where)] if self.where else []
        if self.key:
            parts.append(self.key)
        parts.append(self.message)
        return ": ".join(parts)

    def to_dict(self) -> dict[str, object]:
        return {
            "error": self.message,
            "hint": self.hint,
            "file": self.where.path if self.where else None,
            "line": self.where.line if self.where else None,
            "key": self.key,
            "exit_code": self.exit_code,
        }


class BadInput(ExpdeployError):
    """The user's file, flags or overrides are wrong; nothing was started."""

    exit_code = EXIT_BAD_INPUT


class SpecError(BadInput):
    """An experiment file (any dialect) is malformed or inconsistent."""


def last_line(text: str) -> str:
    """The last non-blank line of a command's output: what its error message usually is."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"
