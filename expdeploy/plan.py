"""What an experiment means before anything runs: runs, commands, varying and orphan
parameters, tags and the GPU-hours estimate. `expdeploy plan` prints it; `run` starts from it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from expdeploy.grid import Expansion, expand
from expdeploy.launch import check_placeholders, unused_params
from expdeploy.spec.model import ExperimentSpec
from expdeploy.spec.overrides import Override


@dataclass(frozen=True, slots=True)
class Plan:
    expansion: Expansion
    exp_dir: Path
    launch_time: str
    orphans: tuple[str, ...]
    gpu_hours: float | None  # None: some run needs GPUs but has no time limit to multiply by
    tag_counts: dict[str, int]

    @property
    def spec(self) -> ExperimentSpec:
        return self.expansion.spec

    @property
    def command_count(self) -> int:
        return sum(len(run.recipe.steps) for run in self.expansion.runs)

    @property
    def step_names(self) -> tuple[str, ...]:
        names: dict[str, None] = {}
        for recipe in self.spec.recipes:
            names.update(dict.fromkeys(step.name for step in recipe.steps))
        return tuple(names)


def make_plan(
    spec: ExperimentSpec,
    overrides: Sequence[Override],
    output: Path,
    time_per_run: int | None = None,
) -> Plan:
    """Expand and validate; raises SpecError (nothing is written) when the spec cannot run."""
    expansion = expand(spec, overrides)
    keys_by_recipe = check_placeholders(expansion.runs)
    orphans = unused_params(spec.recipes, keys_by_recipe)
    tags = Counter(tag for run in expansion.runs for tag in run.tags)
    return Plan(
        expansion=expansion,
        exp_dir=(output / spec.name).absolute(),
        launch_time=time.strftime("%Y%m%d.%H%M%S"),
        orphans=tuple(orphans),
        gpu_hours=_gpu_hours(expansion, time_per_run),
        tag_counts=dict(tags),
    )


def _gpu_hours(expansion: Expansion, time_per_run: int | None) -> float | None:
    by_recipe = Counter(id(run.recipe) for run in expansion.runs)
    total = 0.0
    for recipe in expansion.spec.recipes:
        res = recipe.resources
        count = by_recipe.get(id(recipe), 0)
        if not res.gpus or not count:
            continue
        seconds = time_per_run or res.time_seconds
        if seconds is None:
            return None
        total += count * res.gpus * seconds / 3600
    return total
