"""W&B sweeps from a sweep file: one plain sweep config per `subtests` entry of a composite file
(the shared parameters merged with the entry's), each with the tags its key names; created
with the wandb API, or given (`--sweep ID`) when they exist already."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expdeploy.errors import BadInput, ExpdeployError

SUBTESTS = "subtests"


@dataclass(frozen=True, slots=True)
class Sweep:
    config: Mapping[str, Any]
    tags: tuple[str, ...]
    entity: str | None
    project: str | None
    sweep_id: str | None = None

    @property
    def path(self) -> str:
        """ENTITY/PROJECT/ID, as `wandb agent` takes it."""
        return "/".join(p for p in (self.entity, self.project, self.sweep_id) if p)

    @property
    def url(self) -> str:
        entity, project = self.entity or "<entity>", self.project or "<project>"
        return f"https://wandb.ai/{entity}/{project}/sweeps/{self.sweep_id}"


def sweeps_of(path: Path, entity: str | None, project: str | None) -> list[Sweep]:
    """The sweeps a sweep file asks for (one, or one per subtest), not created yet."""
    import yaml

    config = yaml.safe_load(path.read_text())
    entity = entity or config.get("entity")
    project = project or config.get("project")
    parameters = dict(config.get("parameters") or {})
    subtests = parameters.pop(SUBTESTS, None)
    plain = {k: v for k, v in config.items() if k not in ("entity", "project")}
    if not subtests:
        return [Sweep(plain, (), entity, project)]
    found = []
    for key, extra in subtests.items():
        one = copy.deepcopy(plain)
        one["parameters"] = {**parameters, **(extra or {})}
        found.append(Sweep(one, tuple(t.strip() for t in str(key).split(",") if t.strip()), entity, project))
    return found


def create(sweep: Sweep) -> Sweep:
    """The sweep, created on the W&B server (WANDB_API_KEY from the environment)."""
    import os

    import wandb

    if not os.environ.get("WANDB_API_KEY"):
        raise BadInput("creating a W&B sweep needs WANDB_API_KEY in the environment",
                       hint="export WANDB_API_KEY=... (never put it in a file), or give --sweep ID to "
                            "attach agents to a sweep that exists")
    try:
        sweep_id = wandb.sweep(sweep=dict(sweep.config), entity=sweep.entity, project=sweep.project)
    except Exception as exc:  # the wandb client raises many kinds: report its message
        raise ExpdeployError(f"W&B refused the sweep: {exc}",
                             hint="check the entity, project and key") from None
    return Sweep(sweep.config, sweep.tags, sweep.entity, sweep.project, str(sweep_id))
