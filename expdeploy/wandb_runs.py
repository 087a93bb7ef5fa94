"""What each run of a W&B sweep file gets when expdeploy expands the sweep itself (no W&B server):
the variables `wandb.init` reads, so the program sees what an agent would give it and its runs
are written offline inside the run directory, ready for `wandb sync`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

MODES = ("offline", "online", "disabled")
# What a W&B agent writes for a run under WANDB_DIR/wandb/sweep-<id>/, here in the run directory:
# config-<run>.yaml (WANDB_SWEEP_PARAM_PATH, read by wandb.init) and config-<run>.json
# (`${args_json_file}`). The worker writes both from the plan's `sweep_args` (worker.write_sweep_files).
SWEEP_FILES = "wandb/sweep-expdeploy"
ARGS_JSON_FILE = "{run_dir}/" + SWEEP_FILES + "/config-{run_id}.json"  # template text


def run_variables(spec_format: str, extra: Mapping[str, Any], experiment: str, run_name: str,
                  tags: tuple[str, ...], run_dir: str, mode: str, run_id: str = "") -> dict[str, str]:
    """WANDB_* for one run of a sweep file ({} for other dialects). `mode` is WANDB_MODE; with
    "online" the variable is left to the user's environment. WANDB_SWEEP_PARAM_PATH hands the
    run its values as an agent does, so programs reading `wandb.config` see them."""
    if spec_format != "wandb":
        return {}
    found = {"WANDB_RUN_GROUP": experiment, "WANDB_NAME": run_name, "WANDB_DIR": run_dir,
             "WANDB_SWEEP_PARAM_PATH": f"{run_dir}/{SWEEP_FILES}/config-{run_id}.yaml"}
    if tags:
        found["WANDB_TAGS"] = ",".join(tags)
    if mode != "online":
        found["WANDB_MODE"] = mode
    for key in ("project", "entity"):
        if isinstance(extra.get(key), str):
            found[f"WANDB_{key.upper()}"] = extra[key]
    return found


def offline_runs(exp_dir: Path) -> list[Path]:
    """The offline W&B run directories the experiment's runs wrote, in run order."""
    return sorted(exp_dir.glob("runs/*/wandb/offline-run-*"))
