"""The `hydra/launcher=expdeploy_collect` launcher: it records every job Hydra's sweeper hands it
(override strings and their parsed keys, kinds and values) as JSON lines and runs nothing.

This module runs inside the user's program, with the user's hydra-core and Python (3.9 or later);
it imports nothing of expdeploy. The file it writes is named by EXPDEPLOY_HYDRA_JOBS.
"""

# No `from __future__ import annotations`: Hydra executes plugin modules without entering them in
# sys.modules, where dataclasses look string annotations up.
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.utils import JobReturn, JobStatus
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

JOBS_VARIABLE = "EXPDEPLOY_HYDRA_JOBS"
KINDS = {"CHANGE": "change", "ADD": "add", "FORCE_ADD": "force_add", "DEL": "delete"}


@dataclass
class CollectLauncherConf:
    _target_: str = "hydra_plugins.expdeploy_collect.collect_launcher.CollectLauncher"


ConfigStore.instance().store(
    group="hydra/launcher", name="expdeploy_collect", node=CollectLauncherConf, provider="expdeploy"
)


class CollectLauncher(Launcher):  # type: ignore[misc, unused-ignore]  # Any where hydra is absent
    """Writes one `{"sweep": ...}` line when Hydra sets it up, then one `{"job": ...}` line per job."""

    def __init__(self) -> None:
        super().__init__()
        self.hydra_context: HydraContext | None = None
        self.path = ""

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        path = os.environ.get(JOBS_VARIABLE)
        if not path:  # chosen by hand: there is nowhere to put the jobs, and running them is not ours
            raise RuntimeError(
                f"hydra/launcher=expdeploy_collect only records jobs for expdeploy; "
                f"{JOBS_VARIABLE} is not set"
            )
        self.path = path
        # the command line's own task overrides: expdeploy drops them from each run's command
        task = [str(word) for word in config.hydra.overrides.task]
        self._write({"sweep": {"task": task}})

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        assert self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        returns = []
        for overrides in job_overrides:
            words = [str(word) for word in overrides]
            parsed = [_described(override) for override in parser.parse_overrides(words)]
            self._write({"job": {"overrides": words, "parsed": parsed}})
            returns.append(JobReturn(overrides=words, status=JobStatus.COMPLETED, _return_value=None))
        return returns

    def _write(self, record: dict[str, Any]) -> None:
        # values are what Hydra's grammar gives (str, int, float, bool, None, lists, dicts)
        with open(self.path, "a") as out:
            out.write(json.dumps(record, default=str) + "\n")


def _described(override: Override) -> dict[str, Any]:
    """An override's key (with its `@package`), kind and value (quoted strings unquoted), as
    Hydra's own grammar reads it."""
    package = f"@{override.package}" if override.package is not None else ""
    return {
        "key": override.key_or_group + package,
        "kind": KINDS[override.type.name],
        "value": override.value(),
    }
