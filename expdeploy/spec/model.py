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
class AgentArgs:
    """All-parameter forms (`{args}`, `{args_json}`, ...) built as a W&B agent builds them: the
    parameters in the order of W&B's sweeps engine, those of nested `parameters:` blocks
    nested again under the keys of `paths` (name -> keys), every other name flat as written."""

    paths: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Recipe:
    """How a run is made: its ordered steps (a pipeline) and its resources."""

    steps: tuple[Step, ...]
    resources: Resources
    agent_args: AgentArgs | None = None  # W&B sweep files: what a W&B agent passes (see AgentArgs)
    env: EnvSpec | None = None  # the environment every step runs in (`env:`), None: as it is
    layout: RunLayout | None = None  # a dialect's own files in each run directory (see RunLayout)
    # The commands are written out with the parameters already in them (a Hydra job's overrides):
    # no parameter is an orphan for want of a placeholder.
    holds_params: bool = False


@dataclass(frozen=True, slots=True)
class RunLayout:
    """What a dialect's own tools read in a run directory (mlrunner's `param` and
    `log.<step>.<time>`), so they keep working on expdeploy's runs. The controller renders the
    files into the run's plan; the worker writes them where the run executes."""

    # (params, rendered command of each step, builtins such as run_dir) -> file name -> text
    files: Callable[[Mapping[str, Any], Mapping[str, str], Mapping[str, str]], dict[str, str]]
    # A second name for each step's log, e.g. "log.{step}.{launch_time}" (builtins filled in):
    # each launch's attempts then write a log of their own, `<step>.log` naming the latest.
    step_log: str | None = None
    # A retry skips the steps an earlier attempt finished by their name, as mlrunner's `stat`
    # does (its commands may hold `{_time}`, new at every launch), not only when unchanged.
    resume_by_name: bool = False


@dataclass(frozen=True, slots=True)
class Factor:
    """One dimension of a product: a list of parameter fragments, one of which each run takes.

    A grid axis has one-key fragments (`{lr: 0.1}`, `{lr: 0.01}`); a zip, an alias or a list of
    mappings has several keys per fragment, so those parameters advance together.
    """

    names: tuple[str, ...]
    fragments: tuple[Mapping[str, Any], ...]
    where: Location
    # What each fragment shows in a dialect's run names (see RunNaming); None: the fragment itself
    labels: tuple[Mapping[str, Any], ...] | None = None

    def without(self, drop: set[str]) -> Factor | None:
        """This factor with some parameters removed (they are set elsewhere), None if none remain."""
        names = tuple(n for n in self.names if n not in drop)
        if not names:
            return None
        if len(names) == len(self.names):
            return self
        frags = tuple({k: v for k, v in f.items() if k not in drop} for f in self.fragments)
        return Factor(names, frags, self.where, self.labels)


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
    naming: RunNaming | None = None  # the dialect names its runs itself (products and explicit runs)

    @property
    def has_product(self) -> bool:
        return bool(self.factors or self.distributions or self.sampling) or not self.explicit


@dataclass(frozen=True, slots=True)
class RunNaming:
    """A dialect's own run directory names (mlrunner's `Lr_0.1-Seed_0`): `name` makes one from a
    run's labels, the `Factor.labels` of its fragments merged in factor order (an explicit run's
    labels are its parameters), with the overrides applied. Two runs never share a directory:
    a name that is taken or cannot be one gets the run id, as other names do."""

    name: Callable[[Mapping[str, Any]], str]
    # The same parameters reached again under the same name are one run with the steps of both
    # recipes (mlrunner runs both tasks in its one directory): one recipe per union of steps
    # that can arise, steps in pipeline order. Empty: the first recipe wins, as for other runs.
    recipes: tuple[Recipe, ...] = ()


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
    notes: tuple[tuple[Location, str], ...] = ()  # warnings for plan and run (file:line, text)
    # Set when a service chooses the runs (a bayes W&B sweep under --backend wandb): what it
    # will do, in words; such a spec may have no runs to expand here.
    chosen_elsewhere: str | None = None

    @property
    def recipes(self) -> tuple[Recipe, ...]:
        seen: dict[int, Recipe] = {}
        for block in self.blocks:
            seen.setdefault(id(block.recipe), block.recipe)
            for merged in block.naming.recipes if block.naming else ():
                seen.setdefault(id(merged), merged)
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
