"""Reading Slurm's view of jobs: `squeue`, `sacct` and `scontrol show job` output parsed into
one state per array task ("123_4" -> "RUNNING"), and what those states mean for a run."""

from __future__ import annotations

import re

# Job states in which the task's worker may still write the run's state
LIVE = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED",
                  "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED",
                  "RESV_DEL_HOLD", "SPECIAL_EXIT"})

_RANGE = re.compile(r"^(\d+)_\[([^\]]+)\]$")


def expand_job_ids(text: str) -> list[str]:
    """`123_[0-3,7%2]` (a pending array as sacct prints it) -> 123_0 ... 123_3, 123_7."""
    match = _RANGE.match(text)
    if not match:
        return [text]
    job, ranges = match.group(1), match.group(2).split("%")[0]
    ids = []
    for part in ranges.split(","):
        low, _, high = part.partition("-")
        ids += [f"{job}_{i}" for i in range(int(low), int(high or low) + 1)]
    return ids


def parse_table(text: str) -> dict[str, str]:
    """Lines `JOBID|STATE[|...]` (squeue -o '%i|%T', sacct -P -o JobID,State) -> id -> state.

    sacct writes `CANCELLED by 0`; only the first word is the state."""
    states: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.strip().split("|")
        if len(fields) < 2 or not fields[0]:
            continue
        state = fields[1].split()[0] if fields[1].strip() else "UNKNOWN"
        for job in expand_job_ids(fields[0]):
            states[job] = state
    return states


def parse_scontrol(text: str) -> dict[str, str]:
    """`scontrol -o show job` (one line per job, KEY=VALUE words) -> array task id -> state."""
    states: dict[str, str] = {}
    for line in text.splitlines():
        words = dict(w.split("=", 1) for w in line.split() if "=" in w)
        state = words.get("JobState")
        if not state:
            continue
        array, index = words.get("ArrayJobId"), words.get("ArrayTaskId")
        ids = expand_job_ids(f"{array}_[{index}]") if array and index else [words.get("JobId", "")]
        for job in ids:
            states[job] = state
    return states


def parse_config(text: str) -> dict[str, str]:
    """`scontrol show config` -> {key: value}."""
    config = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            config[key.strip()] = value.strip()
    return config


def array_job(task_id: str) -> str:
    return task_id.split("_", 1)[0]
