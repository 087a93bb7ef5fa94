"""File-system-safe names for experiment and run directories.

A name never escapes its parent directory: path separators, `.`/`..` and control characters are refused.
"""

from __future__ import annotations

import re

_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._=,+@%-]")
MAX_NAME = 120


def dir_name_problem(name: str) -> str | None:
    """Why `name` cannot be one directory inside its parent, or None when it can."""
    if not name:
        return "is empty"
    if name in (".", ".."):
        return f"{name!r} would point outside its parent directory"
    if "/" in name or "\\" in name:
        return f"{name!r} contains a path separator and would leave its parent directory"
    if any(ord(ch) < 32 or ch == "\x7f" for ch in name):
        return f"{name!r} contains a control character"
    if len(name.encode()) > 255:
        return "is longer than a file name may be (255 bytes)"
    return None


def sanitize(text: str) -> str:
    """Replace characters that are awkward in file names and shells with `_`."""
    cleaned = _UNSAFE_CHARS.sub("_", text)
    return "_" + cleaned if cleaned.startswith(("-", ".")) else cleaned


def shorten(name: str, run_id: str) -> str:
    """Keep names readable but bounded: cut long ones and append the run id."""
    if len(name) <= MAX_NAME:
        return name
    return f"{name[: MAX_NAME - 13]}-{run_id[:12]}"
