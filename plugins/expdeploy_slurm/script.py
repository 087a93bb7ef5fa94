"""The sbatch script of one array chunk: generic resources mapped to sbatch options, merged with
the target's settings and header file, then the worker running one run per array task."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expdeploy.errors import BadInput
from expdeploy.targets import SlurmSettings
from expdeploy.units import parse_duration


@dataclass(frozen=True, slots=True)
class Chunk:
    """One sbatch call: array indices 0..count-1 over the lines of `tasks_file`."""

    script: str  # path of the script (on the machine that runs sbatch)
    tasks_file: str
    count: int
    resources: Mapping[str, Any]


def slurm_time(seconds: int) -> str:
    """Seconds as sbatch's D-HH:MM:SS (minutes are rounded up: Slurm counts whole minutes)."""
    minutes = -(-seconds // 60)
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    return f"{days}-{hours:02d}:{minutes:02d}:00" if days else f"{hours:02d}:{minutes:02d}:00"


def resource_options(resources: Mapping[str, Any], settings: SlurmSettings) -> list[str]:
    """Generic per-run resources as sbatch options (one task per array element)."""
    options = []
    gpus = int(resources.get("gpus") or 0)
    if gpus:
        options.append(f"--gres=gpu:{gpus}" if settings.gpu_option == "gres" else f"--gpus-per-task={gpus}")
    if resources.get("cpus"):
        options.append(f"--cpus-per-task={int(resources['cpus'])}")
    if resources.get("mem"):
        options.append(f"--mem={resources['mem']}")
    if resources.get("time"):
        options.append(f"--time={slurm_time(parse_duration(resources['time']))}")
    return options


def target_options(settings: SlurmSettings) -> list[str]:
    options = [f"--{name}={value}" for name, value in (
        ("partition", settings.partition), ("account", settings.account), ("qos", settings.qos),
        ("constraint", settings.constraint)) if value]
    return options + list(settings.sbatch)


def header_lines(settings: SlurmSettings) -> list[str]:
    """The user's own sbatch header file, without its shebang."""
    if not settings.header:
        return []
    path = Path(settings.header).expanduser()
    try:
        text = path.read_text()
    except OSError as exc:
        raise BadInput(f"cannot read the sbatch header file {path}: {exc.strerror}", key="slurm.header",
                       hint="give a readable file of #SBATCH lines in the target") from None
    return [line for line in text.splitlines() if not line.startswith("#!")]


def render(*, job_name: str, exp_dir: str, cwd: str, chunk: Chunk, throttle: int | None,
           settings: SlurmSettings, signal: str | None, about: Sequence[str], command: str) -> str:
    """The script text; it stays in the experiment directory and can be resubmitted by hand."""
    array = f"0-{chunk.count - 1}" + (f"%{throttle}" if throttle else "")
    options = [f"--job-name={job_name}", f"--array={array}",
               f"--output={exp_dir}/slurm/logs/%A_%a.out", f"--chdir={cwd}", "--requeue",
               "--ntasks=1", *resource_options(chunk.resources, settings), *target_options(settings)]
    if signal:
        options.append(f"--signal=B:{signal}")
    lines = ["#!/bin/sh", *(f"#SBATCH {shlex.quote(o)}" if " " in o else f"#SBATCH {o}" for o in options)]
    lines += header_lines(settings)
    lines += [*(f"# {line}" for line in about), *settings.setup, f"exec {command}"]
    return "\n".join(lines) + "\n"


def run_script(*, job_name: str, exp_dir: str, cwd: str, chunk: Chunk, throttle: int | None,
               settings: SlurmSettings, signal: str | None, max_retries: int, python: str,
               runs: Sequence[str]) -> str:
    """An array with one run per task: the worker runs line $SLURM_ARRAY_TASK_ID of the tasks file."""
    about = [f"expdeploy: {chunk.count} run(s) of {exp_dir}, one per array task; the runs, in array order,",
             f"are the lines of {chunk.tasks_file} (run id, attempt). Resubmit with: sbatch {chunk.script}",
             *(f"  {i}: {name}" for i, name in enumerate(runs[:20])),
             *([f"  ... and {len(runs) - 20} more"] if len(runs) > 20 else [])]
    worker = f"{exp_dir}/.expdeploy/worker.py"
    command = (f"{python} -I {shlex.quote(worker)} task {shlex.quote(exp_dir)} "
               f"{shlex.quote(chunk.tasks_file)} \"$SLURM_ARRAY_TASK_ID\" --max-retries {max_retries} "
               "--job \"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\" "
               "--requeue \"scontrol requeue ${SLURM_JOB_ID}\"")
    return render(job_name=job_name, exp_dir=exp_dir, cwd=cwd, chunk=chunk, throttle=throttle,
                  settings=settings, signal=signal, about=about, command=command)


def agent_script(*, job_name: str, exp_dir: str, cwd: str, chunk: Chunk, settings: SlurmSettings,
                 python: str, command: str | None = None) -> str:
    """An array of agents: each task claims and runs pending runs until none remain, or runs
    `command` (a W&B agent, which asks its server for runs)."""
    if command is not None:
        about = [f"expdeploy: {chunk.count} agent(s) of {exp_dir}, one per array task.",
                 f"Resubmit with: sbatch {chunk.script}"]
        return render(job_name=job_name, exp_dir=exp_dir, cwd=cwd, chunk=chunk, throttle=None,
                      settings=settings, signal=None, about=about, command=command)
    about = [f"expdeploy: {chunk.count} agent(s) for {exp_dir}; each claims pending runs (files created",
             "O_EXCL in the run directories) and runs them one at a time until none remain.",
             f"Resubmit with: sbatch {chunk.script}"]
    worker = f"{exp_dir}/.expdeploy/worker.py"
    return render(job_name=job_name, exp_dir=exp_dir, cwd=cwd, chunk=chunk, throttle=None,
                  settings=settings, signal=None, about=about,
                  command=f"{python} -I {shlex.quote(worker)} agent {shlex.quote(exp_dir)}")
