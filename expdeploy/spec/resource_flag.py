"""`--resources gpus=1,cpus=4,mem=16G,time=2h`: one resource request for every run, in place of
the spec's: W&B sweep files and Hydra command lines have no place to say what a run needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from expdeploy.errors import BadInput
from expdeploy.spec.model import ExperimentSpec, Recipe
from expdeploy.units import parse_duration

KEYS = ("gpus", "cpus", "mem", "time")
_HINT = "e.g. --resources gpus=1,cpus=4,mem=16G,time=2h"


def parse_resources(text: str) -> dict[str, Any]:
    """The request as `Resources` fields, checked; BadInput names the part that is wrong."""
    found: dict[str, Any] = {}
    for part in (p.strip() for p in text.split(",")):
        key, _, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if key not in KEYS or not value:
            raise BadInput(
                f"{part!r} is not one of {', '.join(k + '=...' for k in KEYS)}", key="--resources", hint=_HINT
            )
        found.update(_field(key, value))
    return found


def _field(key: str, value: str) -> dict[str, Any]:
    if key == "mem":
        return {"mem": value}
    if key == "time":
        try:
            return {"time": value, "time_seconds": parse_duration(value)}
        except ValueError as exc:
            raise BadInput(f"time={value}: {exc}", key="--resources", hint=_HINT) from None
    minimum = 0 if key == "gpus" else 1
    if not (value.isascii() and value.isdigit()) or int(value) < minimum:
        raise BadInput(f"{key}={value}: expected a whole number >= {minimum}", key="--resources", hint=_HINT)
    return {key: int(value)}


def with_resources(spec: ExperimentSpec, wanted: Mapping[str, Any]) -> ExperimentSpec:
    """`spec` with every recipe's resources replaced field by field (recipes shared between
    blocks stay shared: runs are grouped by recipe)."""
    swapped: dict[int, Recipe] = {}

    def swap(recipe: Recipe) -> Recipe:
        if id(recipe) not in swapped:
            swapped[id(recipe)] = replace(recipe, resources=replace(recipe.resources, **wanted))
        return swapped[id(recipe)]

    blocks = tuple(
        replace(
            block,
            recipe=swap(block.recipe),
            naming=replace(block.naming, recipes=tuple(map(swap, block.naming.recipes)))
            if block.naming
            else None,
        )
        for block in spec.blocks
    )
    return replace(spec, blocks=blocks)
