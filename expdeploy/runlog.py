"""What a run's own program calls to report metrics: `expdeploy.log(step=..., **metrics)` appends
a line to `metrics.jsonl` in the run directory, `expdeploy.summary(**metrics)` merges its final
values into `summary.json`. Standard library only; outside a run (no EXPDEPLOY_RUN_DIR) both
do nothing."""

from __future__ import annotations

import json
import os
import time
from typing import Any


def _run_dir() -> str | None:
    return os.environ.get("EXPDEPLOY_RUN_DIR") or None


def log(step: int | None = None, **metrics: Any) -> None:
    run_dir = _run_dir()
    if run_dir is None:
        return
    line = {**({"step": step} if step is not None else {}), "time": time.time(), **metrics}
    with open(os.path.join(run_dir, "metrics.jsonl"), "a") as out:
        out.write(json.dumps(line) + "\n")


def summary(**metrics: Any) -> None:
    run_dir = _run_dir()
    if run_dir is None:
        return
    path = os.path.join(run_dir, "summary.json")
    try:
        with open(path) as handle:
            known = json.load(handle)
    except (OSError, ValueError):
        known = {}
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as out:
        json.dump({**known, **metrics}, out)
    os.replace(temporary, path)
