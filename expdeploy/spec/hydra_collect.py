"""Hydra's own expansion of a sweep: the user's program runs its multirun with expdeploy's
`expdeploy_collect` launcher, which records the jobs; each job becomes one run of the program.

Nothing here imports Hydra: it runs in the user's program, with the user's Python.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from expdeploy.errors import BadInput, Location
from expdeploy.launch import literal_word
from expdeploy.spec.hydra_line import MULTIRUN, HydraLine
from expdeploy.spec.model import Block, ExperimentSpec, Recipe, Resources, Step, Template

# The parent of our `hydra_plugins/expdeploy_collect/`, put first on the program's PYTHONPATH.
PLUGIN_PATH = Path(__file__).resolve().parent / "hydra_pythonpath"
JOBS_VARIABLE = "EXPDEPLOY_HYDRA_JOBS"  # the collector's output file (collect_launcher.py reads it)
_SWEEP_DIR_VARIABLE = "EXPDEPLOY_HYDRA_SWEEP_DIR"
# Hydra's outputs land in the run's own directory; an interpolation, so no run directory name
# (`a=1,b=2`) ever needs quoting for Hydra's grammar. The worker sets EXPDEPLOY_RUN_DIR everywhere.
RUN_DIR_OVERRIDE = "hydra.run.dir=${oc.env:EXPDEPLOY_RUN_DIR}/hydra"
_OUTPUT_KEYS = ("hydra.run.dir", "hydra.sweep.dir")  # the user's own are replaced by ours
# Hydra's flags that take a value (hydra/_internal/utils.py get_args_parser)
_VALUED_FLAGS = frozenset(
    (
        "--cfg",
        "-c",
        "--package",
        "-p",
        "--config-path",
        "-cp",
        "--config-name",
        "-cn",
        "--config-dir",
        "-cd",
        "--experimental-rerun",
    )
)
_PREFIXES = {"add": "+", "force_add": "++", "delete": "~", "change": ""}
_HYDRA_CLASS = re.compile(r"^(?:hydra|omegaconf)\.[\w.]*(?:Error|Exception): ")


@dataclass(frozen=True, slots=True)
class HydraJob:
    """One job of the sweep: its override strings as Hydra gives them, and its typed parameters."""

    overrides: tuple[str, ...]
    params: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class HydraSweep:
    """What Hydra's sweeper made of a multirun line: the line's task overrides and every job."""

    task: tuple[str, ...]
    jobs: tuple[HydraJob, ...]


# How long the program may take to reach Hydra's sweep (its imports, Hydra's start) before it
# counts as no Hydra app: a program that ignores `-m` would otherwise run, or hang, right here.
START_TIMEOUT = float(os.environ.get("EXPDEPLOY_HYDRA_START_TIMEOUT", "300"))


def _run_collector(words: list[str], env: Mapping[str, str], jobs_file: Path, tmp: Path,
                   program: str) -> subprocess.CompletedProcess[str]:
    """Run the collecting multirun; once the launcher has written its first line the sweep may
    take as long as Hydra needs to compose its jobs."""
    out, err = tmp / "stdout", tmp / "stderr"
    try:
        with open(out, "w") as stdout, open(err, "w") as stderr:
            proc = subprocess.Popen(words, env=env, stdin=subprocess.DEVNULL, stdout=stdout,
                                    stderr=stderr, start_new_session=True)
    except OSError as exc:
        raise BadInput(f"cannot start {words[0]!r}: {exc.strerror or exc}", key=program,
                       hint="check the program's name and your PATH") from None
    started = time.monotonic()
    while not _started(jobs_file) and time.monotonic() - started < START_TIMEOUT:
        try:
            proc.wait(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            continue
    if proc.poll() is None and not _started(jobs_file):
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise BadInput(f"did not reach a Hydra multirun in {START_TIMEOUT:.0f} s", key=program,
                       hint="it must be a Hydra app (@hydra.main) run with -m; a slow start may take "
                            "longer with EXPDEPLOY_HYDRA_START_TIMEOUT=SECONDS")
    proc.wait()
    return subprocess.CompletedProcess(words, proc.returncode, out.read_text(errors="replace"),
                                       err.read_text(errors="replace"))


def _started(jobs_file: Path) -> bool:
    return jobs_file.exists() and jobs_file.stat().st_size > 0


def collect(line: HydraLine) -> HydraSweep:
    """Run the multirun `line` here with the collecting launcher and read back its jobs. Hydra
    composes every job's config first, so a bad override fails here, before anything starts."""
    program = shlex.join(line.head)
    sys.stderr.write(f"expanding the sweep with Hydra: {shlex.join(line.words)}\n")
    sys.stderr.flush()
    with tempfile.TemporaryDirectory(prefix="expdeploy-hydra-") as tmp:
        jobs_file = Path(tmp) / "jobs.jsonl"
        env = {
            **os.environ,
            JOBS_VARIABLE: str(jobs_file),
            _SWEEP_DIR_VARIABLE: str(Path(tmp) / "sweep"),
            # a traceback names the exception: its message is the one line to show
            "HYDRA_FULL_ERROR": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(PLUGIN_PATH), os.environ.get("PYTHONPATH")])),
        }
        # the basic sweeper writes multirun.yaml into the sweep dir: ours, out of the user's tree
        ours = [
            "hydra/launcher=expdeploy_collect",
            "hydra/sweeper=basic",
            f"hydra.sweep.dir=${{oc.env:{_SWEEP_DIR_VARIABLE}}}",
        ]
        words = [*line.head, *with_overrides(line.arguments, ours)]
        done = _run_collector(words, env, jobs_file, Path(tmp), program)
        records = _records(jobs_file)
    sweep = next((r["sweep"] for r in records if "sweep" in r), None)
    if done.returncode != 0:
        message, hint = hydra_error(done.stderr if done.stderr.strip() else done.stdout)
        if "No module named 'hydra'" in message:
            hint = "the program's Python needs hydra-core (pip install hydra-core)"
        raise BadInput(
            f"could not expand the sweep: {message}",
            key=program,
            hint=hint or "run the line by hand to see the whole message",
        )
    if sweep is None:
        raise BadInput(
            "the program did not start a Hydra multirun",
            key=program,
            hint="it must be a Hydra app (@hydra.main) run with -m, without --cfg, --info "
            "or --help, and its Python must have hydra-core",
        )
    jobs = tuple(_job(r["job"]) for r in records if "job" in r)
    if not jobs:
        raise BadInput(
            "Hydra's sweep has no jobs", key=program, hint="check the sweep's values, e.g. range()"
        )
    return HydraSweep(tuple(sweep["task"]), jobs)


def _records(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _job(record: Mapping[str, Any]) -> HydraJob:
    """The job's parameters: each override's key with its value; `~key` for a deletion (no value
    of its key). A key set twice in one job (`++a=1 a=2`, two axes to Hydra) is told apart by the
    `+`/`++` of its overrides."""
    parsed = record["parsed"]
    twice = {key for key, count in Counter(item["key"] for item in parsed).items() if count > 1}
    params: dict[str, Any] = {}
    for item in parsed:
        kind, key = item["kind"], item["key"]
        prefix = _PREFIXES[kind] if key in twice or kind == "delete" else ""
        params[prefix + key] = item["value"]
    return HydraJob(tuple(record["overrides"]), params)


def hydra_error(output: str) -> tuple[str, str | None]:
    """The one line that says what went wrong in a program's output, and the line after it when
    it reads as advice (Hydra's `To append to your config use +x=1`); with HYDRA_FULL_ERROR the
    message is the last traceback's exception."""
    lines = [line.rstrip() for line in output.splitlines() if "HYDRA_FULL_ERROR" not in line]
    start = max(
        (i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")),
        default=None,
    )
    if start is None:
        said = [line.strip() for line in lines if line.strip()]
        return (said[-1] if said else "(no message)"), None
    # after the frames (indented), the exception: `hydra.errors.X: message`, then more lines of it
    found = next((i for i in range(start + 1, len(lines)) if lines[i] and not lines[i][0].isspace()), None)
    if found is None:
        return "(no message)", None
    rest = [line for line in lines[found + 1 :] if line.strip()]
    advice = rest[0] if rest and not rest[0][0].isspace() else None
    if advice and advice.endswith(":"):  # `Available options in 'db':` and the options below it
        listed = [line.strip() for line in itertools.takewhile(lambda line: line[0].isspace(), rest[1:])]
        advice = f"{advice} {', '.join(listed)}" if listed else advice
    return _HYDRA_CLASS.sub("", lines[found]), advice


def with_overrides(arguments: Sequence[str], overrides: Sequence[str]) -> list[str]:
    """Hydra's arguments with `overrides` added to its own: right after the last override it has,
    since argparse takes the overrides as one run of words (`a=1 --config-name x b=2` is refused)."""
    last, index = -1, 0
    while index < len(arguments):
        word = arguments[index]
        if word in _VALUED_FLAGS:
            index += 2
            continue
        if not word.startswith("-"):
            last = index
        index += 1
    at = last + 1 if last >= 0 else len(arguments)
    return [*arguments[:at], *overrides, *arguments[at:]]


def run_line(line: HydraLine, sweep: HydraSweep) -> HydraLine:
    """What every run starts from: the line without `-m`, without the sweep overrides it typed
    (each job brings its own) and without our output directories; the rest (`--config-name`, the
    user's other `hydra.*` overrides) as typed."""
    typed = Counter(sweep.task)
    kept: list[str] = []
    for word in line.arguments:
        if word in MULTIRUN:
            continue
        if typed[word]:
            typed[word] -= 1
            continue
        if word.lstrip("+").split("=", 1)[0] in _OUTPUT_KEYS:
            continue
        kept.append(word)
    return replace(line, arguments=tuple(kept))


def experiment(
    name: str,
    source: Location,
    line: HydraLine,
    sweep: HydraSweep,
    extra: Mapping[str, Any] | None = None,
) -> ExperimentSpec:
    """One block per job, each with its own literal command: the multirun `line` as a single run
    (see run_line) with the job's overrides and Hydra's output directory inside the run directory."""
    base = run_line(line, sweep)
    blocks = []
    for job in sweep.jobs:
        words = [*base.head, *with_overrides(base.arguments, [*job.overrides, RUN_DIR_OVERRIDE])]
        text = " ".join(literal_word(word) for word in words)
        recipe = Recipe((Step("main", Template(text, source)),), Resources(), holds_params=True)
        blocks.append(Block(recipe, source, explicit=(dict(job.params),)))
    return ExperimentSpec(
        name=name, source=source, format="hydra", blocks=tuple(blocks), extra=dict(extra or {})
    )
