"""The experiment spec every dialect loads into: blocks of axes, recipes of steps, resources.

Frozen dataclasses only; no loading or expansion logic lives here.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from expdeploy.errors import Location

if TYPE_CHECKING:
    from expdeploy.wrapping import EnvSpec


@dataclass(frozen=True, slots=True)
class Template:
    """A command template and where it was written."""

    text: str
    where: Location


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    template: Template


@dataclass(frozen=True, slots=True)
class Resources:
    """Generic per-run resources; backends translate them to their own options."""

    gpus: int = 0
    cpus: int | None = None
    mem: str | None = None
    time: str | None = None
    time_seconds: int | None = None
    workers: tuple[str, ...] = ()  # explicit CUDA_VISIBLE_DEVICES per local worker (mlrunner)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"gpus": self.gpus}
        for key in ("cpus", "mem", "time"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.workers:
            out["workers"] = list(self.workers)
        return out


@dataclass(frozen=True, slots=True)
class Recipe:
    """How a run is made: its ordered steps (a pipeline) and its resources."""

    steps: tuple[Step, ...]
    resources: Resources
    nested_args: bool = False  # all-parameter forms re-nest dotted names (wandb agents do)
    env: EnvSpec | None = None  # the environment every step runs in (`env:`), None: as it is


@dataclass(frozen=True, slots=True)
class Factor:
    """One dimension of a product: a list of parameter fragments, one of which each run takes.

    A grid axis has one-key fragments (`{lr: 0.1}`, `{lr: 0.01}`); a zip, an alias or a list of
    mappings has several keys per fragment, so those parameters advance together.
    """

    names: tuple[str, ...]
    fragments: tuple[Mapping[str, Any], ...]
    where: Location

    def without(self, drop: set[str]) -> Factor | None:
        """This factor with some parameters removed (they are set elsewhere), None if none remain."""
        names = tuple(n for n in self.names if n not in drop)
        if not names:
            return None
        if len(names) == len(self.names):
            return self
        frags = tuple({k: v for k, v in f.items() if k not in drop} for f in self.fragments)
        return Factor(names, frags, self.where)


@dataclass(frozen=True, slots=True)
class Distribution:
    """A parameter drawn at random (wandb `random` method)."""

    name: str
    draw: Callable[[random.Random], Any]
    where: Location


@dataclass(frozen=True, slots=True)
class Sampling:
    """Draw `count` runs at random instead of taking the product."""

    count: int
    seed: int


@dataclass(frozen=True, slots=True)
class Exclusion:
    """Drop every run whose parameters match all of these values."""

    match: Mapping[str, Any]
    where: Location


@dataclass(frozen=True, slots=True)
class Block:
    """One source of runs: a document, a subgrid, a subtest. Its runs are united with the others'.

    Runs are the product of `factors` over `defaults` (or `sampling.count` random draws),
    plus the `explicit` parameter sets, minus the `exclude` matches.
    """

    recipe: Recipe
    where: Location
    defaults: Mapping[str, Any] = field(default_factory=dict)
    factors: tuple[Factor, ...] = ()
    explicit: tuple[Mapping[str, Any], ...] = ()
    exclude: tuple[Exclusion, ...] = ()
    tags: tuple[str, ...] = ()
    distributions: tuple[Distribution, ...] = ()
    sampling: Sampling | None = None
    limit: int | None = None  # keep only the first N runs (wandb `run_cap` on a grid)

    @property
    def has_product(self) -> bool:
        return bool(self.factors or self.distributions or self.sampling) or not self.explicit


@dataclass(frozen=True, slots=True)
class ExperimentSpec:
    """A whole experiment as read from one file, in any dialect."""

    name: str
    source: Location
    format: str
    blocks: tuple[Block, ...]
    exclude: tuple[Exclusion, ...] = ()
    param_locations: Mapping[str, Location] = field(default_factory=dict)
    run_name: Template | None = None
    metric: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def recipes(self) -> tuple[Recipe, ...]:
        seen: dict[int, Recipe] = {}
        for block in self.blocks:
            seen.setdefault(id(block.recipe), block.recipe)
        return tuple(seen.values())

    def known_params(self) -> set[str]:
        names: set[str] = set()
        for block in self.blocks:
            names.update(block.defaults)
            for run in block.explicit:
                names.update(run)
            for factor in block.factors:
                names.update(factor.names)
            names.update(d.name for d in block.distributions)
        return names
