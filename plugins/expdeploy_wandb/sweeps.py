"""W&B sweeps from a sweep file, read as `wandb sweep` reads it (yaml.safe_load) and passed on
unchanged; a composite file (`subtests`) gives one sweep per subtest as deploy_sweeps.py makes
them (expdeploy.spec.wandb_sweep.composite_subtests). Created with the wandb API, or given
(`--sweep ID`) when they exist already."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expdeploy.errors import BadInput, ExpdeployError
from expdeploy.spec.wandb_sweep import SUBTESTS, composite_subtests


@dataclass(frozen=True, slots=True)
class Sweep:
    config: Mapping[str, Any]
    tags: tuple[str, ...]
    entity: str | None
    project: str | None
    sweep_id: str | None = None
    agents: int | None = None  # a composite file's `_num_nodes`: agents for this sweep

    @property
    def path(self) -> str:
        """ENTITY/PROJECT/ID, as `wandb agent` takes it."""
        return "/".join(p for p in (self.entity, self.project, self.sweep_id or "<new id>") if p)

    @property
    def url(self) -> str:
        entity, project = self.entity or "<entity>", self.project or "<project>"
        return f"https://wandb.ai/{entity}/{project}/sweeps/{self.sweep_id}"

    def describe(self) -> str:
        """What the W&B server will run: the grid's size is known here, other searches' is not."""
        method, cap = self.config.get("method"), self.config.get("run_cap")
        stop = ", early_terminate " + str(self.config["early_terminate"].get("type")) \
            if isinstance(self.config.get("early_terminate"), Mapping) else ""
        return f"a {method} search" + (f", run_cap {cap}" if cap else "") + stop


def sweeps_of(path: Path, entity: str | None, project: str | None,
              run_cap: int | None = None) -> list[Sweep]:
    """The sweeps a sweep file asks for (one, or one per subtest and `_num_trials`), not created
    yet; `run_cap` (--run-cap) replaces the file's."""
    import yaml

    config = yaml.safe_load(path.read_text())
    if run_cap is not None:
        config["run_cap"] = run_cap
    entity = entity or config.get("entity")
    project = project or config.get("project")
    plain = {k: v for k, v in config.items() if k not in ("entity", "project")}
    parameters = config.get("parameters") or {}
    if SUBTESTS not in parameters:
        return [Sweep(plain, (), entity, project)]
    found = []
    for sub in composite_subtests(parameters):
        one = copy.deepcopy(plain)
        # plain dicts for wandb and YAML (a date PyYAML made stays its text)
        one["parameters"] = json.loads(json.dumps(sub.parameters, default=str))
        one["name"] = sub.key  # deploy_sweeps.py names each sweep by its subtest
        agents = sub.nodes if isinstance(sub.nodes, int) and not isinstance(sub.nodes, bool) else None
        trials = sub.trials if isinstance(sub.trials, int) and sub.trials > 0 else 1
        found += [Sweep(one, sub.tags, entity, project, agents=agents) for _ in range(trials)]
    return found


def as_yaml(sweep: Sweep) -> str:
    """The sweep config as it would be uploaded, for --dry-run."""
    import yaml

    return str(yaml.safe_dump(dict(sweep.config), sort_keys=False, default_flow_style=False))


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
    return Sweep(sweep.config, sweep.tags, sweep.entity, sweep.project, str(sweep_id), sweep.agents)
