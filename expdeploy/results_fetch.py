"""`expdeploy results` for experiments whose runs execute on a target's machines (SSH hosts, a
Slurm login node): only the small files that hold metrics and state come over, each run's from the
host with its newest attempt, so the table is current while runs go on there. Run states stay
where they are (the ledger follows them through the backend)."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from expdeploy import worker
from expdeploy.errors import ExpdeployError

# rsync include patterns, relative to the experiment directory
METRIC_FILES = ("/runs/*/state.json", "/runs/*/metrics.jsonl", "/runs/*/summary.json",
                "/runs/*/wandb/*/files/wandb-summary.json", "/runs/*/wandb/*/run-*.wandb",
                "/runs/*/events.out.tfevents.*",
                "/runs/*/**/events.out.tfevents.*", "/runs/*/*.log")
FETCHED = ".fetched.json"  # in a run directory: the attempt its metric copies are from


def _cache(exp_dir: Path, alias: str) -> Path:
    """Where a host's copy is kept between calls, so each call sends only what changed (logs
    grow); outside the experiment directory, which backends send to the hosts."""
    import hashlib
    import os

    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "expdeploy" / "fetched"
    return base / hashlib.sha256(str(exp_dir.resolve()).encode()).hexdigest()[:16] / alias


def fetch_for(exp_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """The experiment's ledger meta, after fetching its metric files when its runs are remote."""
    from expdeploy.ledger import Ledger

    ledger = Ledger(exp_dir)
    try:
        meta = ledger.meta()
    finally:
        ledger.close()
    return meta, fetch_metrics(exp_dir, meta)


def fetch_metrics(exp_dir: Path, meta: Mapping[str, Any]) -> list[str]:
    """Bring the metric files of a remote experiment's runs into `exp_dir`; warnings for hosts
    that could not be reached. Nothing to do for runs that write here."""
    from expdeploy.placement import restore

    placement = restore(exp_dir, meta)
    target = placement.target
    if target is None or not placement.remote:
        return []
    from expdeploy.remote import shell_for

    notes: list[str] = []

    def pull(alias: str) -> Path | None:
        copy = _cache(exp_dir, alias)
        shell = shell_for(target, alias)
        try:
            shell.pull(placement.exp_dir, copy, includes=METRIC_FILES)
        except ExpdeployError as error:
            notes.append(f"warning: {alias}: its runs' metrics could not be read ({error})")
            return None
        finally:
            shell.close()
        return copy

    with ThreadPoolExecutor(max_workers=min(8, len(target.hosts))) as pool:
        copies = [c for c in pool.map(pull, target.hosts) if c is not None]
    newest: dict[str, tuple[tuple[int, int], Path]] = {}
    for copy in copies:
        for state in (copy / "runs").glob("*/state.json"):
            found = worker.attempt_rank(worker.read_json(str(state)))
            if found > newest.get(state.parent.name, ((0, -1), copy))[0]:
                newest[state.parent.name] = (found, state.parent)
    for name, (found, source) in newest.items():
        here = exp_dir / "runs" / name
        if found >= worker.attempt_rank(worker.read_json(str(here / "state.json"))):
            _replace_copies(source, here, attempt=found[0])
    return notes


def _replace_copies(source: Path, here: Path, attempt: int) -> None:
    """The run's metric files from `source`; copies of an earlier attempt's go first, so a new
    attempt that has not written its summary yet does not show the old one."""
    mark = here / FETCHED
    if (worker.read_json(str(mark)) or {}).get("attempt") not in (None, attempt):
        for pattern in METRIC_FILES:
            if pattern.endswith("/state.json"):
                continue
            for old in here.glob(pattern.removeprefix("/runs/*/")):
                old.unlink(missing_ok=True)
    # states are the ledger's to fold, by the backend that follows the runs: a copy here would
    # go stale and read as lost
    shutil.copytree(source, here, dirs_exist_ok=True, ignore=shutil.ignore_patterns("state.json"))
    worker.write_json_atomic(str(mark), {"attempt": attempt})
