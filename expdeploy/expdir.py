"""The experiment directory: the manifest of rendered run plans, one directory per run
(`params.json`, `commands.sh`, logs, `state.json`), the shipped worker, and finding experiments.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from expdeploy import worker
from expdeploy.errors import BadInput
from expdeploy.grid import Run
from expdeploy.launch import commands_for
from expdeploy.ledger import LEDGER, Ledger, RunRow
from expdeploy.params import unflatten

SHIPPED = ".expdeploy"


def plan_record(run: Run, exp_dir: Path, launch_time: str, cwd: Path) -> dict[str, Any]:
    """One manifest line: everything the compute side needs to run `run`, nothing secret."""
    commands = commands_for(run, exp_dir, launch_time)
    return {
        "run_id": run.run_id,
        "name": run.name,
        "params": dict(run.params),
        "tags": list(run.tags),
        "steps": [[step, command] for step, command in commands.items()],
        "resources": run.recipe.resources.as_dict(),
        "cwd": str(cwd),
    }


def write_manifest(exp_dir: Path, records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Append new or changed plans to the manifest (the last line of a run wins).
    Returns the plans as the manifest now holds them; run directories come from RunDirWriter."""
    exp_dir.mkdir(parents=True, exist_ok=True)
    (exp_dir / "runs").mkdir(exist_ok=True)
    known = worker.read_manifest(str(exp_dir))
    fresh = [r for r in records if known.get(r["run_id"]) != r]
    if fresh:
        with open(exp_dir / worker.MANIFEST, "a") as manifest:
            manifest.writelines(json.dumps(r) + "\n" for r in fresh)
    ship_worker(exp_dir)
    return list(records)


def write_run_dir(exp_dir: Path, record: Mapping[str, Any]) -> None:
    """A run's directory with its parameters (nested JSON) and its rendered commands."""
    run_dir = exp_dir / "runs" / record["name"]
    run_dir.mkdir(exist_ok=True)
    (run_dir / "params.json").write_text(json.dumps(unflatten(record["params"]), indent=1))
    (run_dir / "commands.sh").write_text(_commands_script(record, exp_dir))


class RunDirWriter:
    """Writes run directories on a thread, in queue order, ahead of the runs that need them:
    file creation is slow on some disks and need not delay the first run."""

    def __init__(self, exp_dir: Path, records: list[Mapping[str, Any]]) -> None:
        self.exp_dir = exp_dir
        self.records = records
        self.ids = {r["run_id"] for r in records}
        self.done: set[str] = set()
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._work, name="run-dirs", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        try:
            for record in self.records:
                write_run_dir(self.exp_dir, record)
                with self._cond:
                    self.done.add(record["run_id"])
                    self._cond.notify_all()
        except BaseException as exc:  # surfaced to the waiting controller
            with self._cond:
                self.error = exc
                self._cond.notify_all()

    def wait_for(self, record: Mapping[str, Any]) -> None:
        if record["run_id"] not in self.ids:
            write_run_dir(self.exp_dir, dict(record))
            return
        with self._cond:
            while record["run_id"] not in self.done:
                if self.error is not None:
                    raise self.error
                self._cond.wait()


def _commands_script(record: Mapping[str, Any], exp_dir: Path) -> str:
    lines = ["#!/bin/sh", f"# run {record['name']} ({record['run_id']}): its steps, in order.",
             "set -e", f"cd {shlex.quote(record['cwd'])}",
             f"export EXPDEPLOY_RUN_ID={record['run_id']}",
             f"export EXPDEPLOY_RUN_DIR={shlex.quote(str(exp_dir / 'runs' / record['name']))}"]
    for step, command in record["steps"]:
        lines += [f"# step: {step}", command]
    return "\n".join(lines) + "\n"


def ship_worker(exp_dir: Path) -> Path:
    """Copy the stdlib-only worker next to the manifest, for compute nodes with nothing installed."""
    target = exp_dir / SHIPPED / "worker.py"
    target.parent.mkdir(exist_ok=True)
    source = Path(worker.__file__)
    if not target.exists() or target.read_bytes() != source.read_bytes():
        shutil.copyfile(source, target)
    return target


def find_experiment(output: Path, exp: Path | None) -> Path:
    """`--exp DIR` if given, else the most recently used experiment under `output`."""
    if exp is not None:
        if not (exp / LEDGER).exists():
            raise BadInput(f"{exp} is not an experiment directory (no {LEDGER})",
                           hint="pass the directory `expdeploy run` created, e.g. experiments/NAME")
        return exp
    candidates = [p.parent for p in output.glob(f"*/{LEDGER}")]
    if not candidates:
        raise BadInput(f"no experiments under {output}",
                       hint="run one with `expdeploy run SPEC`, or pass --exp DIR / --output DIR")
    return max(candidates, key=lambda p: os.stat(p / LEDGER).st_mtime)


def resolve_runs(ledger: Ledger, tokens: Iterable[str]) -> list[RunRow]:
    """Runs named by a run-id prefix or a run name; ambiguous or unknown tokens are bad input."""
    rows = list(ledger.rows())
    chosen: list[RunRow] = []
    for token in tokens:
        matches = [r for r in rows if r.name == token] or [
            r for r in rows if r.run_id.startswith(token)]
        if not matches:
            raise BadInput(f"no run {token!r} in {ledger.exp_dir}",
                           hint="give a run name or a run-id prefix (see `expdeploy status`)")
        if len(matches) > 1:
            raise BadInput(f"{token!r} matches {len(matches)} runs",
                           hint="give more characters of the run id")
        chosen.append(matches[0])
    return chosen
