"""The experiment directory: the manifest of rendered run plans, one directory per run
(`params.json`, `commands.sh`, logs, `state.json`), the shipped worker, and finding experiments.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expdeploy import worker
from expdeploy.errors import BadInput
from expdeploy.grid import Run
from expdeploy.launch import commands_for
from expdeploy.ledger import LEDGER, Ledger, RunRow
from expdeploy.params import unflatten

if TYPE_CHECKING:
    from expdeploy.wrapping import EnvSpec

SHIPPED = worker.SHIPPED


def plan_record(run: Run, exp_dir: Path, launch_time: str, cwd: Path, env: EnvSpec | None = None,
                variables: Mapping[str, str] | None = None, launch: str | None = None) -> dict[str, Any]:
    """One manifest line: everything the compute side needs to run `run`, nothing secret. `env`
    replaces the recipe's environment (a target's own layers); `variables` are the run's own
    (the worker sets them for its steps); `launch` names the recorded code (see provenance)."""
    commands = commands_for(run, exp_dir, launch_time)
    record: dict[str, Any] = {
        "run_id": run.run_id,
        "name": run.name,
        "params": dict(run.params),
        "tags": list(run.tags),
        "steps": [[step, command] for step, command in commands.items()],
        "resources": run.recipe.resources.as_dict(),
        "cwd": str(cwd),
    }
    if variables:
        record["env"] = dict(variables)
    if run.recipe.agent_args is not None:  # the worker writes them as a W&B agent would
        from expdeploy.launch import agent_args

        record["sweep_args"] = agent_args(run.params, run.recipe.agent_args)
    layout = run.recipe.layout
    if layout is not None:  # a dialect's own files (mlrunner's `param`), written by the worker
        from expdeploy.launch import builtins_for

        builtins = builtins_for(run, exp_dir, launch_time)
        record["files"] = layout.files(run.params, commands, builtins)
        if layout.step_log:
            record["step_log"] = layout.step_log.format(**builtins, step="{step}")
        if layout.resume_by_name:
            record["resume_by_name"] = True
    if launch:
        record["launch"] = launch
    env = env or run.recipe.env
    if env is not None:  # every step runs inside the run's environment; the worker needs nothing
        from expdeploy.wrapping import RunContext, stop_command, wrap_command

        context = RunContext(run.run_id, str(exp_dir), str(cwd), run.recipe.resources.gpus,
                             tuple(variables or ()))
        record["steps"] = [[step, wrap_command(env, command, context)] for step, command in commands.items()]
        stop = stop_command(env, context)
        if stop:
            record["stop"] = stop
    return record


def write_manifest(exp_dir: Path, records: Iterable[dict[str, Any]],
                   replace: bool = True) -> list[dict[str, Any]]:
    """Append new or changed plans to the manifest (the last line of a run wins); with
    `replace=False` only runs it does not know yet, so runs queued earlier keep their plans.
    Returns the plans as the manifest now holds them; run directories come from RunDirWriter."""
    exp_dir.mkdir(parents=True, exist_ok=True)
    (exp_dir / "runs").mkdir(exist_ok=True)
    known = worker.read_manifest(str(exp_dir))
    fresh = [r for r in records if known.get(r["run_id"]) != r and (replace or r["run_id"] not in known)]
    if fresh:
        with open(exp_dir / worker.MANIFEST, "a") as manifest:
            manifest.writelines(json.dumps(r) + "\n" for r in fresh)
    ship_worker(exp_dir)
    return list(records)


def write_run_dir(exp_dir: Path, record: Mapping[str, Any]) -> None:
    """A run's directory with its parameters (nested JSON), which the run may read."""
    run_dir = exp_dir / "runs" / record["name"]
    run_dir.mkdir(exist_ok=True)
    (run_dir / "params.json").write_text(json.dumps(unflatten(record["params"]), indent=1))


def write_commands(exp_dir: Path, record: Mapping[str, Any]) -> None:
    """The run's rendered steps as a script a person can read and run by hand."""
    (exp_dir / "runs" / record["name"] / "commands.sh").write_text(_commands_script(record, exp_dir))


class RunPreparer:
    """Prepares selected runs on a thread, in queue order, ahead of their start: the run
    directory, the first step's log file, and the claim of the attempt to run. Creating files
    is slow on some disks; done here, it overlaps with the runs already going."""

    def __init__(self, exp_dir: Path, records: Sequence[Mapping[str, Any]],
                 attempts: Mapping[str, int], steps: Sequence[str] | None = None,
                 queued: str | None = None) -> None:
        self.exp_dir = exp_dir
        self.steps = steps
        self.queued = queued  # claims for a scheduler's queue (see worker.claim)
        self.records = list(records)
        self.attempts = dict(attempts)
        self.claimed: dict[str, bool] = {}
        self.error: BaseException | None = None
        self._stop = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._work, name="prepare-runs", daemon=True)
        self._thread.start()

    def _prepare(self, record: Mapping[str, Any], attempt: int, commands: bool = False) -> bool:
        write_run_dir(self.exp_dir, record)
        if commands:
            write_commands(self.exp_dir, record)
        run_dir = worker.run_dir_of(str(self.exp_dir), dict(record))
        first = next((name for name, _ in record["steps"] if not self.steps or name in self.steps),
                     None)
        if first is not None:
            open(os.path.join(run_dir, f"{first}.log"), "ab").close()
        return worker.claim(run_dir, attempt, queued=self.queued)

    def _work(self) -> None:
        try:
            for record in self.records:
                if self._stop:
                    return
                claimed = self._prepare(record, self.attempts[record["run_id"]])
                with self._cond:
                    self.claimed[record["run_id"]] = claimed
                    self._cond.notify_all()
            # commands.sh only informs people: written once every run can start
            for record in self.records:
                if self._stop and record["run_id"] not in self.claimed:
                    return
                write_commands(self.exp_dir, record)
        except BaseException as exc:  # surfaced to the waiting controller
            with self._cond:
                self.error = exc
                self._cond.notify_all()

    def release_unstarted(self, started: set[str]) -> None:
        """Stop preparing and give back the claims of runs that never started (after Ctrl-C),
        so they read as pending, not as lost."""
        self._stop = True
        self._thread.join()
        for record in self.records:
            run_id = record["run_id"]
            if self.claimed.get(run_id) and run_id not in started:
                run_dir = worker.run_dir_of(str(self.exp_dir), dict(record))
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(worker.claim_path(run_dir, self.attempts[run_id]))

    def claim(self, record: Mapping[str, Any], attempt: int) -> bool:
        """True when this process now holds `attempt` of the run (its directory ready)."""
        if self.attempts.get(record["run_id"]) != attempt:  # a retry: prepare it here
            return self._prepare(record, attempt, commands=True)
        with self._cond:
            while record["run_id"] not in self.claimed:
                if self.error is not None:
                    raise self.error
                self._cond.wait()
            return self.claimed[record["run_id"]]


def _commands_script(record: Mapping[str, Any], exp_dir: Path) -> str:
    lines = ["#!/bin/sh", f"# run {record['name']} ({record['run_id']}): its steps, in order.",
             "set -e", f"cd {shlex.quote(record['cwd'])}",
             f"export EXPDEPLOY_RUN_ID={record['run_id']}",
             f"export EXPDEPLOY_RUN_DIR={shlex.quote(str(exp_dir / 'runs' / record['name']))}"]
    # the run's own variables (WANDB_* of a sweep file's runs: never a secret, see wandb_runs)
    lines += [f"export {name}={shlex.quote(value)}" for name, value in (record.get("env") or {}).items()]
    for step, command in record["steps"]:
        lines += [f"# step: {step}", command]
    return "\n".join(lines) + "\n"


def ship_worker(exp_dir: Path) -> Path:
    """Copy the stdlib-only worker next to the manifest, for compute nodes with nothing installed,
    and the run-side `expdeploy` package (see RUN_SIDE_INIT) it puts on the runs' PYTHONPATH."""
    from expdeploy import runlog

    shipped = exp_dir / SHIPPED
    package = shipped / worker.RUN_SIDE_PATH / "expdeploy"
    package.mkdir(parents=True, exist_ok=True)
    for content, target in ((Path(worker.__file__).read_bytes(), shipped / "worker.py"),
                            (Path(runlog.__file__).read_bytes(), package / "runlog.py"),
                            (RUN_SIDE_INIT.encode(), package / "__init__.py")):
        if not target.exists() or target.read_bytes() != content:
            # runs may be importing these right now: never a half-written file
            temporary = target.with_name(f".{target.name}.{os.getpid()}")
            temporary.write_bytes(content)
            os.replace(temporary, target)
    return shipped / "worker.py"


# `import expdeploy` in a run finds this first (the worker puts it on PYTHONPATH). Where the run's
# Python has expdeploy installed, that package is imported instead and takes this one's place;
# elsewhere this one serves, with log() and summary() (expdeploy.runlog, standard library only).
RUN_SIDE_INIT = """\
import os as _os
import sys as _sys

_here = _os.path.normpath(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))
_shim = _sys.modules.pop(__name__)
_saved_path = _sys.path[:]
_sys.path[:] = [p for p in _sys.path if _os.path.normpath(_os.path.abspath(p or ".")) != _here]
try:
    import importlib as _importlib
    _installed = _importlib.import_module(__name__)
except ImportError:
    _installed = None
finally:
    _sys.path[:] = _saved_path
if _installed is not None:
    _sys.modules[__name__] = _installed
else:
    _sys.modules[__name__] = _shim
    from expdeploy.runlog import log, summary
"""


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
