"""Human units in specs and flags: durations (`2h`, `90m`, `1:30:00`, `1-12:00:00`)."""

from __future__ import annotations

import re

_SUFFIXED = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr|d|day|days)?\s*$", re.IGNORECASE)
_CLOCK = re.compile(r"^\s*(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?\s*$")
_SCALE = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400, "day": 86400}


def parse_duration(text: str | int | float) -> int:
    """Seconds in a duration; a bare number means minutes, as in Slurm's `--time`.

    Raises ValueError with the accepted forms when the text is not a duration.
    """
    if isinstance(text, bool):
        raise ValueError("expected a duration such as 2h, 90m, 1:30:00 or 1-12:00:00")
    if isinstance(text, (int, float)):
        return int(text * 60)
    match = _SUFFIXED.match(text)
    if match and (match.group(2) or "." in match.group(1)):
        unit = (match.group(2) or "m").lower().rstrip("s") or "s"
        unit = {"day": "d", "min": "m", "hr": "h", "sec": "s"}.get(unit, unit)
        return int(float(match.group(1)) * _SCALE[unit])
    clock = _CLOCK.match(text)
    if clock:
        days, first, second, third = clock.groups()
        if third is not None:
            hours, minutes, seconds = int(first), int(second), int(third)
        elif second is not None:
            # Slurm reads "M:S" without days, "D-H:M" with days
            hours, minutes, seconds = (int(first), int(second), 0) if days else (0, int(first), int(second))
        else:
            hours, minutes, seconds = (int(first), 0, 0) if days else (0, int(first), 0)
        return int(days or 0) * 86400 + hours * 3600 + minutes * 60 + seconds
    raise ValueError("expected a duration such as 2h, 90m, 1:30:00 or 1-12:00:00")


def format_hours(hours: float) -> str:
    return f"{hours:,.1f}" if hours >= 10 else f"{hours:,.2f}"
