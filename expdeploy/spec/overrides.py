"""Command-line overrides in Hydra's multirun syntax: `lr=0.1,0.01`, `seed=range(0,3)`, `+new=1`, `~old`.

They replace or add grid axes in every dialect; grid expansion applies them to each run.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from expdeploy.errors import BadInput, Location
from expdeploy.launch import RESERVED
from expdeploy.spec.source import parse_flow, parse_scalar

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_CALL = re.compile(r"^(range|choice)\((.*)\)$", re.DOTALL)
_OPENERS = {"[": "]", "(": ")", "{": "}"}
WHERE = Location("command line")

Op = Literal["set", "add", "force", "delete"]


@dataclass(frozen=True, slots=True)
class Override:
    """`name` gets `values` as a new product axis (set/add/force) or is removed (delete)."""

    name: str
    op: Op
    values: tuple[Any, ...]
    text: str


def parse_overrides(args: Sequence[str]) -> tuple[Override, ...]:
    overrides: dict[str, Override] = {}
    for text in args:
        override = _parse_one(text)
        if override.name in overrides:
            raise BadInput(
                f"parameter {override.name!r} is overridden twice",
                where=WHERE, key=text, hint=f"merge the values into one argument: {override.name}=a,b",
            )
        overrides[override.name] = override
    return tuple(overrides.values())


def _parse_one(text: str) -> Override:
    if text.startswith("~"):
        name = text[1:].split("=", 1)[0]
        return Override(_checked_name(name, text), "delete", (), text)
    if "=" not in text:
        raise BadInput(
            "an override needs the form key=value",
            where=WHERE, key=text, hint="e.g. lr=0.1,0.01  seed=range(0,3)  +new_param=1  ~removed",
        )
    name, raw = text.split("=", 1)
    op: Op = "set"
    if name.startswith("++"):
        op, name = "force", name[2:]
    elif name.startswith("+"):
        op, name = "add", name[1:]
    values = tuple(v for item in _split_top_level(raw, text) for v in _values_of(item, text))
    return Override(_checked_name(name, text), op, values, text)


def _checked_name(name: str, text: str) -> str:
    if not _NAME.match(name):
        raise BadInput(f"{name!r} is not a valid parameter name", where=WHERE, key=text,
                       hint="names start with a letter or _ and hold letters, digits, _, . and -")
    if name in RESERVED:
        raise BadInput(f"{name!r} is a reserved placeholder name", where=WHERE, key=text)
    return name


def _split_top_level(raw: str, text: str) -> list[str]:
    """Split on commas that are outside quotes and brackets."""
    items, depth, quote, start = [], [], "", 0
    for i, ch in enumerate(raw):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in _OPENERS:
            depth.append(_OPENERS[ch])
        elif depth and ch == depth[-1]:
            depth.pop()
        elif ch == "," and not depth:
            items.append(raw[start:i])
            start = i + 1
    if quote or depth:
        raise BadInput("unbalanced quote or bracket", where=WHERE, key=text,
                       hint="quote the whole argument for your shell, e.g. 'name=\"a,b\"'")
    items.append(raw[start:])
    return items


def _values_of(item: str, text: str) -> list[Any]:
    item = item.strip()
    if not item:
        return [""]  # `name=` sets the empty string, as in Hydra
    call = _CALL.match(item)
    if call:
        args = _split_top_level(call.group(2), text)
        if call.group(1) == "choice":
            return [v for arg in args for v in _values_of(arg, text)]
        return _range(args, text)
    if len(item) >= 2 and item[0] == item[-1] and item[0] in "'\"":
        return [item[1:-1]]
    if item[:1] in ("[", "{"):
        return [parse_flow(item, WHERE)]
    return [parse_scalar(item)]


def _range(args: list[str], text: str) -> list[Any]:
    numbers = [parse_scalar(a.strip()) for a in args]
    if not 1 <= len(numbers) <= 3 or not all(
        isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers
    ):
        raise BadInput("range() takes 1 to 3 numbers: range(stop), range(start, stop[, step])",
                       where=WHERE, key=text)
    start, stop, step = (0, numbers[0], 1) if len(numbers) == 1 else (*numbers[:2], 1)
    if len(numbers) == 3:
        step = numbers[2]
    if step == 0:
        raise BadInput("range() step must not be zero", where=WHERE, key=text)
    if all(isinstance(n, int) for n in (start, stop, step)):
        values: list[Any] = list(range(start, stop, step))
    else:
        count = max(0, int(-(-(stop - start) // step)))
        values = [start + i * step for i in range(count)]
    if not values:
        raise BadInput("range() gives no values", where=WHERE, key=text,
                       hint="stop is exclusive: range(0,3) gives 0, 1, 2")
    return values
