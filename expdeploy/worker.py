"""Compute-side wrapper: runs one run's steps in order, one log per step, and records the run's
state in `state.json` (temp + rename); claims runs with files created O_EXCL (safe on NFS).

Standard library only and no expdeploy imports: this file is copied into `<exp_dir>/.expdeploy/`
and run there as `python3 worker.py agent EXP_DIR` where nothing is installed. The local pool
imports it and drives `Execution` in-process, so it pays no Python start per run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from typing import Any

STATE_VERSION = 1
SHIPPED = ".expdeploy"  # next to the manifest: this file, and the run-side package
RUN_SIDE_PATH = "python"  # below SHIPPED: a directory holding `expdeploy/` (log, summary)
FINAL_STATES = ("succeeded", "failed", "cancelled")
MANIFEST = "manifest.jsonl"
CANCEL_MARK = "cancel"  # a file in a run dir (or the experiment dir) asking for cancellation
HOST = os.uname().nodename  # what socket.gethostname() returns, without importing socket


# --- files ------------------------------------------------------------------------------------


def write_text_atomic(path: str, text: str) -> None:
    """Readers see the old or the new file, never a partial one."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def write_json_atomic(path: str, data: Any, indent: int | None = None) -> None:
    write_text_atomic(path, json.dumps(data, indent=indent))


def read_json(path: str) -> Any:
    try:
        with open(path) as handle:
            return json.load(handle)
    except (FileNotFoundError, ValueError):
        return None


def command_key(command: str) -> str:
    """A short fingerprint of a step's command line (is it the one an earlier attempt ran?)."""
    return f"{zlib.crc32(command.encode()):08x}"


def write_sweep_files(plan: dict[str, Any]) -> None:
    """What a W&B agent writes before it starts a run (see wandb_runs): the sweep-param file that
    WANDB_SWEEP_PARAM_PATH names, from which `wandb.init` fills `wandb.config`, and beside it the
    parameters as JSON (`${args_json_file}`)."""
    path = (plan.get("env") or {}).get("WANDB_SWEEP_PARAM_PATH")
    if not path:
        return
    args = plan["sweep_args"]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    entries = (f"{_yaml_flow(str(k))}: {{value: {_yaml_flow(v)}}}" for k, v in args.items())
    lines = ["wandb_version: 1", *entries]
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    with open(os.path.splitext(path)[0] + ".json", "w") as handle:
        handle.write(json.dumps(args))


def write_run_files(run_dir: str, files: dict[str, str]) -> None:
    """A dialect's own files in the run directory (mlrunner's `param`), rendered by the controller."""
    for name, text in files.items():  # a reader (mlrunner's Examiner) sees the old file or the new one
        write_text_atomic(os.path.join(run_dir, name), text)


def open_named_log(run_dir: str, step: str, pattern: str) -> Any:
    """A step's log under a dialect's name (`pattern`, e.g. mlrunner's `log.{step}.<time>`), with
    `<step>.log` as a second name for it: each launch's attempts write a log file of their own,
    as the dialect's tools expect, and earlier launches' logs stay under their names."""
    named = os.path.join(run_dir, pattern.replace("{step}", step))
    plain = os.path.join(run_dir, f"{step}.log")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(plain)  # it names an earlier launch's log, or is the empty file made ahead
    handle = open(named, "ab")  # noqa: SIM115 - the caller closes it
    try:
        os.link(named, plain)
    except OSError:  # a file system without hard links
        with contextlib.suppress(OSError):
            os.symlink(os.path.basename(named), plain)
    return handle


_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")  # breaks or unprintable in YAML


def _yaml_flow(value: Any) -> str:
    """`value` as YAML that `yaml.safe_load` reads back as the same value and type (the worker has
    no PyYAML): floats keep a dot (YAML 1.1 reads `1e-05` as text), strings are quoted."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return ".nan"
        if value in (float("inf"), float("-inf")):
            return ".inf" if value > 0 else "-.inf"
        mantissa, e, exponent = repr(value).partition("e")
        return (mantissa if "." in mantissa else mantissa + ".0") + (e + exponent if e else "")
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_yaml_flow(str(k))}: {_yaml_flow(v)}" for k, v in value.items()) + "}"
    text = json.dumps(str(value), ensure_ascii=False)  # a JSON string is a YAML double-quoted one
    return _YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def read_manifest(exp_dir: str) -> dict[str, dict[str, Any]]:
    """Run plans by run id, in order of first appearance; a later line for the same run wins."""
    plans: dict[str, dict[str, Any]] = {}
    try:
        with open(os.path.join(exp_dir, MANIFEST)) as handle:
            for line in handle:
                if line.strip():
                    plan = json.loads(line)
                    plans[plan["run_id"]] = plan
    except FileNotFoundError:
        pass
    return plans


def run_dir_of(exp_dir: str, plan: dict[str, Any]) -> str:
    return os.path.join(exp_dir, "runs", plan["name"])


def process_start_time(pid: int) -> str | None:
    """Kernel start time of a process (guards against pid reuse), None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


_OWNER: dict[str, Any] = {}


def attempt_rank(state: dict[str, Any] | None) -> tuple[int, int]:
    """Which of two copies of a run's state.json is newer: the later attempt; within one attempt
    an end beats `lost`, which beats `running`."""
    if not state:
        return (0, -1)
    level = {"lost": 1, **{s: 2 for s in FINAL_STATES}}.get(str(state.get("state")), 0)
    return (int(state.get("attempt") or 0), level)


_GPU_MODELS: dict[str, list[str]] = {}


def gpu_models(gpus: str) -> list[str]:
    """The model of each GPU given to a run (CUDA_VISIBLE_DEVICES), as nvidia-smi names it;
    asked once per set of GPUs, as runs start in-process on the local pool."""
    if gpus not in _GPU_MODELS:
        _GPU_MODELS[gpus] = _ask_gpu_models(gpus)
    return _GPU_MODELS[gpus]


def _ask_gpu_models(gpus: str) -> list[str]:
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader", "-i", gpus],
                              capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []


def owner() -> dict[str, Any]:
    """This process, as claims and states record it (kept per pid: a daemon forks)."""
    pid = os.getpid()
    if _OWNER.get("pid") != pid:
        _OWNER.update(host=HOST, pid=pid, pid_start=process_start_time(pid))
    return dict(_OWNER)


def owner_alive(record: dict[str, Any], heartbeat_timeout: float) -> bool:
    """Is the process that claimed or runs something still there? Same host: check the pid;
    another host: trust a heartbeat younger than the timeout. A run queued in a batch scheduler
    is alive until the controller, which asks the scheduler, records it as lost."""
    if record.get("queued"):
        return True
    if record.get("host") == HOST:
        pid = record.get("pid")
        return pid is not None and process_start_time(int(pid)) == record.get("pid_start")
    # a claim not yet followed by a state.json counts from when it was made
    last_sign = record.get("heartbeat") or record.get("time") or 0
    return time.time() - float(last_sign) < heartbeat_timeout


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_leftovers(state: dict[str, Any]) -> bool:
    """Kill the step process group of a lost attempt on this host, if it is still there."""
    pgid = state.get("pgid")
    if not pgid or state.get("host") != HOST or process_start_time(int(pgid)) != state.get("pgid_start"):
        return False
    try:
        os.killpg(int(pgid), signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


# --- claims -----------------------------------------------------------------------------------


def claim_path(run_dir: str, attempt: int) -> str:
    return os.path.join(run_dir, f"claim.{attempt}")


def latest_attempt(run_dir: str) -> int:
    try:
        names = os.listdir(run_dir)
    except FileNotFoundError:
        return 0
    return max((int(n[6:]) for n in names if n.startswith("claim.") and n[6:].isdigit()), default=0)


def claim(run_dir: str, attempt: int, queued: str | None = None) -> bool:
    """Take attempt number `attempt` of a run; exactly one process anywhere succeeds.

    `queued` names a batch scheduler that holds the attempt until its job starts: such a claim
    stays live (no pid to check) until the controller learns that the job is gone."""
    os.makedirs(run_dir, exist_ok=True)
    path = claim_path(run_dir, attempt)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    record = {"host": HOST, "queued": queued} if queued else owner()
    with os.fdopen(fd, "w") as handle:
        json.dump({**record, "time": time.time()}, handle)
    return True


# A simple command may be run by sh with `exec`, which saves a fork per step; anything that
# looks like more than one command, a keyword or a builtin of sh (which runs without any
# fork or exec at all: true, echo, test...) keeps its plain form.
_SHELL_SYNTAX = re.compile(r"[;&|<>()`{}!\n\\]|\$\(|^\s*\S*=")
_NOT_PROGRAMS = frozenset({
    "cd", "export", "set", "unset", "exit", "return", "source", ".", ":", "eval", "exec", "trap",
    "wait", "alias", "read", "shift", "ulimit", "umask", "if", "for", "while", "until", "case",
    "time", "[[", "function", "local", "readonly",
    "true", "false", "echo", "printf", "test", "[", "pwd", "kill", "command", "type"})
_found: dict[str, bool] = {}


def exec_form(command: str) -> str:
    """`exec cmd args` for a single simple command, so sh replaces itself with the program."""
    words = command.split(None, 1)
    if not words or _SHELL_SYNTAX.search(command) or words[0] in _NOT_PROGRAMS:
        return command
    program = words[0]
    if program not in _found:
        _found[program] = "/" in program or shutil.which(program) is not None
    return f"exec {command}" if _found[program] else command


_BASE_ENV: dict[str, str] = {}


_RUN_SIDE: dict[str, str | None] = {}


def _run_side_path(exp_dir: str) -> str | None:
    """The shipped run-side package's directory, if the experiment has one (looked up once)."""
    if exp_dir not in _RUN_SIDE:
        path = os.path.join(exp_dir, SHIPPED, RUN_SIDE_PATH)
        _RUN_SIDE[exp_dir] = path if os.path.isdir(path) else None
    return _RUN_SIDE[exp_dir]


def _base_environment() -> dict[str, str]:
    """This process's environment, copied once (os.environ is slow to copy once per run)."""
    if not _BASE_ENV:
        _BASE_ENV.update(os.environ)
    return _BASE_ENV


# --- execution --------------------------------------------------------------------------------


class Execution:
    """One attempt of one run: its steps in order (a later step only after the earlier
    succeeded), each in its own process group with its own log, state.json kept current."""

    def __init__(
        self,
        exp_dir: str,
        plan: dict[str, Any],
        attempt: int,
        gpus: str | None = None,
        steps: list[str] | None = None,
        terminal: bool = False,
        announce: bool = True,
        run_dir: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.exp_dir = exp_dir
        self.plan = plan
        self.attempt = attempt
        self.gpus = gpus
        self.terminal = terminal  # --first: step output goes to the terminal, not a log
        # announce=False: the first "running" state.json is written by announce_running(),
        # so runs that end at once cost one state write, not two (the claim says who runs it)
        self.announced = announce
        self.lingering = False
        self.run_dir = run_dir or run_dir_of(exp_dir, plan)
        chosen = [s for s in plan["steps"] if steps is None or s[0] in steps]
        self.steps: list[tuple[str, str]] = [(str(n), str(c)) for n, c in chosen]
        self.explicit_steps = steps is not None
        self.done_before: dict[str, dict[str, Any]] = {}
        self.index = -1
        self.proc: subprocess.Popen[bytes] | None = None
        self.cancelled = False
        self.preempted = False  # the scheduler warned of the end (time limit, preemption)
        self.extra = extra or {}  # recorded in state.json too, e.g. the scheduler's job id
        self.environment_stopped = False
        self.state: dict[str, Any] = {}

    # state.json --------------------------------------------------------------------------
    def _save(self, **changes: Any) -> None:
        self.state.update(changes, heartbeat=time.time())
        write_json_atomic(os.path.join(self.run_dir, "state.json"), self.state)

    def heartbeat(self) -> None:
        if self.state.get("state") == "running":
            self.announce_running()

    @property
    def done(self) -> bool:
        return self.state.get("state") in FINAL_STATES

    @property
    def stopped(self) -> bool:
        """Final, or handed back to the scheduler to run again (requeued)."""
        return self.done or self.state.get("state") == "pending"

    def env(self) -> dict[str, str]:
        env = _base_environment().copy()
        env.update(self.plan.get("env") or {})
        run_side = _run_side_path(self.exp_dir)
        if run_side:  # `import expdeploy` works in runs whose env lacks it
            env["PYTHONPATH"] = run_side + (f":{env['PYTHONPATH']}" if env.get("PYTHONPATH") else "")
        env["EXPDEPLOY_RUN_ID"] = self.plan["run_id"]
        env["EXPDEPLOY_RUN_NAME"] = self.plan["name"]
        env["EXPDEPLOY_RUN_DIR"] = self.run_dir
        env["EXPDEPLOY_EXP_DIR"] = self.exp_dir
        env["EXPDEPLOY_ATTEMPT"] = str(self.attempt)
        if self.gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.gpus
        return env

    def start(self) -> None:
        os.makedirs(self.run_dir, exist_ok=True)
        # a cancel request for an earlier attempt does not apply to this one
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.run_dir, CANCEL_MARK))
        now = time.time()
        self.state = {
            "version": STATE_VERSION, "run_id": self.plan["run_id"], "name": self.plan["name"],
            "attempt": self.attempt, "state": "running", "step": None, "exit_code": None,
            "started": now, "ended": None, "gpus": self.gpus, "steps": {}, **owner(), **self.extra,
        }
        if self.plan.get("launch"):  # which recorded code this attempt runs
            self.state["launch"] = self.plan["launch"]
        if self.gpus:
            self.state["gpu_models"] = gpu_models(self.gpus)
        if self.plan.get("sweep_args") is not None:
            write_sweep_files(self.plan)
        if self.plan.get("files"):
            write_run_files(self.run_dir, self.plan["files"])
        self.done_before = self._steps_done_before()
        self._next_step()

    def _steps_done_before(self) -> dict[str, dict[str, Any]]:
        """The steps this attempt need not run again: those a requeued attempt (Slurm's warning
        signal, preemption) finished before it went back to the queue, with the same command;
        and, for plans that resume by name (mlrunner's), those an unfinished earlier attempt
        finished, unless the launch asked to start over (`--force`, `rerun`: the plan's
        `restart`). Explicit `--steps` run every chosen step."""
        if (self.attempt < 2 and not self.extra.get("requeues")) or self.explicit_steps:
            return {}
        before = read_json(os.path.join(self.run_dir, "state.json")) or {}
        if before.get("state") == "succeeded" or not isinstance(before.get("steps"), dict):
            return {}
        by_name = bool(self.plan.get("resume_by_name"))
        requeued = before.get("attempt") == self.attempt
        if not requeued and (not by_name or self.plan.get("restart")):
            return {}
        done = {}
        for name, command in self.steps:
            step = before["steps"].get(name) or {}
            if step.get("exit_code") != 0 or (not by_name and step.get("command") != command_key(command)):
                break  # a pipeline: what follows a step that must run again runs again too
            done[name] = step
        return done

    def _next_step(self) -> None:
        self.index += 1
        if self.cancelled:  # asked to stop between two steps
            self._finish("cancelled", 128 + signal.SIGTERM)
            return
        while self.index < len(self.steps) and self.steps[self.index][0] in self.done_before:
            name = self.steps[self.index][0]
            self.state["steps"][name] = {**self.done_before[name], "skipped": True}
            self.index += 1
        if self.index >= len(self.steps):
            self._finish("succeeded", 0)
            return
        name, command = self.steps[self.index]
        if self.terminal:
            out: Any = None
        elif self.plan.get("step_log"):
            out = open_named_log(self.run_dir, name, self.plan["step_log"])
        else:
            out = open(os.path.join(self.run_dir, f"{name}.log"), "ab")  # noqa: SIM115 - closed below
        try:
            self.proc = subprocess.Popen(
                ["/bin/sh", "-c", exec_form(command)], cwd=self.plan.get("cwd") or None, env=self.env(),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: cancel reaches every child
            )
        except OSError as exc:  # e.g. the working directory is gone
            if out is not None:
                out.write(f"expdeploy: cannot start step {name}: {exc}\n".encode())
            self.state["steps"][name] = {"start": time.time(), "end": time.time(), "exit_code": 127}
            self._finish("failed", 127)
            return
        finally:
            if out is not None:
                out.close()
        self.state["steps"][name] = {"start": time.time(), "end": None, "exit_code": None,
                                     "command": command_key(command)}
        self.state.update(step=name, pgid=self.proc.pid, pgid_start=None)
        if self.announced:
            self.announce_running()

    def announce_running(self) -> None:
        """Write the running state (with the step's process group) to state.json."""
        self.announced = True
        if self.proc is not None:
            self._save(pgid_start=process_start_time(self.proc.pid))

    def on_exit(self) -> bool:
        """Call when the current step's process ended; returns True once the run is final.

        A cancelled step whose process group outlives its leader (a child ignoring SIGTERM)
        stays `lingering` until the group is empty: `signal` still reaches it."""
        assert self.proc is not None
        code = self.proc.wait()
        if code < 0:  # killed by a signal: report it as sh would (128 + signal)
            code = 128 - code
        name = self.steps[self.index][0]
        self.state["steps"][name].update(end=time.time(), exit_code=code)
        cancelled = self.cancelled or self._cancel_requested()
        if cancelled and group_alive(self.proc.pid):
            self.lingering = True
            return False
        self.proc = None
        if self.preempted and not cancelled:
            # not a failure: the run goes back to the queue and starts again at this step
            self._save(state="pending", queued=self.extra.get("scheduler", "scheduler"), exit_code=code,
                       ended=time.time(), pgid=None, pgid_start=None,
                       requeues=int(self.state.get("requeues") or 0) + 1)
        elif cancelled:
            self.stop_environment()
            self._finish("cancelled", code)
        elif code != 0:
            self._finish("failed", code)
        else:
            self._next_step()
        return self.done

    def lingering_over(self) -> bool:
        """For a lingering run: True (and the run final) once its process group is gone."""
        assert self.proc is not None
        if group_alive(self.proc.pid):
            return False
        code = self.proc.returncode
        self.proc, self.lingering = None, False
        self.stop_environment()
        self._finish("cancelled", code if code is not None else -signal.SIGKILL)
        return True

    def stop_environment(self) -> None:
        """Run the plan's `stop` line (e.g. remove the run's container): a killed container
        client leaves its container running. Once per attempt."""
        stop = self.plan.get("stop")
        if not stop or self.environment_stopped:
            return
        self.environment_stopped = True
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["/bin/sh", "-c", stop], env=self.env(), stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60, check=False)

    def _cancel_requested(self) -> bool:
        return os.path.exists(os.path.join(self.run_dir, CANCEL_MARK))

    def _finish(self, state: str, code: int) -> None:
        self._save(state=state, exit_code=code, ended=time.time(), pgid=None, pgid_start=None)

    def preempt(self, sig: int) -> None:
        """The scheduler will end the allocation: pass `sig` on to the step (which may save a
        checkpoint) and record the run as requeued once the step has ended."""
        if self.proc is not None:
            self.preempted = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def signal(self, sig: int) -> None:
        """Send `sig` to the current step's whole process group."""
        if self.proc is not None:
            self.cancelled = self.cancelled or sig in (signal.SIGTERM, signal.SIGKILL, signal.SIGINT)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            if sig == signal.SIGKILL:
                self.stop_environment()

    def wait(self, heartbeat: float = 30.0) -> None:
        """Run to the end in this process (agents, Slurm tasks); heartbeats while waiting."""
        self.start()
        while not self.stopped:
            assert self.proc is not None
            if self.lingering:
                if not self.lingering_over():
                    time.sleep(0.1)  # orphaned group members send no SIGCHLD to wait for
                continue
            try:
                self.proc.wait(timeout=heartbeat)
            except subprocess.TimeoutExpired:
                self.heartbeat()
                continue
            self.on_exit()


# --- agent ------------------------------------------------------------------------------------


def attempt_status(run_dir: str, heartbeat_timeout: float) -> tuple[str, int, dict[str, Any]]:
    """Where a run stands, from its files: (status, latest attempt, record judged).

    status is "new" (never claimed), "live" (its latest claimant is alive), "lost" (the
    claimant is gone and left no final state), or the final state of the latest attempt.
    The record is the latest attempt's state.json, or its claim while it has no state yet.
    """
    last = latest_attempt(run_dir)
    if not last:
        return "new", 0, {}
    state = read_json(os.path.join(run_dir, "state.json")) or {}
    if state.get("attempt") == last and state.get("state") in (*FINAL_STATES, "lost"):
        return state["state"], last, state
    record = state if state.get("attempt") == last else read_json(claim_path(run_dir, last)) or {}
    if not record:
        # a claim is created empty, then filled: judged by its age until it says who holds it
        with contextlib.suppress(OSError):
            record = {"time": os.stat(claim_path(run_dir, last)).st_mtime}
    return ("live" if owner_alive(record, heartbeat_timeout) else "lost"), last, record


def claimable(exp_dir: str, plans: dict[str, dict[str, Any]], heartbeat_timeout: float,
              ) -> Iterator[tuple[dict[str, Any], int]]:
    """Runs never claimed, or lost by a claimant that is gone, with the attempt to claim next."""
    for plan in plans.values():
        status, last, record = attempt_status(run_dir_of(exp_dir, plan), heartbeat_timeout)
        if status == "lost":
            kill_leftovers(record)
        if status in ("new", "lost"):
            yield plan, last + 1


def _scheduler_job() -> str | None:
    """The Slurm array task (or job) this process runs in, if any."""
    array, index = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{index}" if array and index else os.environ.get("SLURM_JOB_ID")


def agent(exp_dir: str, heartbeat_timeout: float = 120.0, stop: list[bool] | None = None) -> int:
    """Claim and run runs one at a time until none remain; returns how many this agent ran."""
    exp_dir = os.path.abspath(exp_dir)
    ran = 0
    current: list[Execution] = []

    def on_signal(signum: int, _frame: Any) -> None:
        for execution in current:
            execution.signal(signal.SIGTERM)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not (stop and stop[0]) and not os.path.exists(os.path.join(exp_dir, CANCEL_MARK)):
        plans = read_manifest(exp_dir)
        for plan, attempt in claimable(exp_dir, plans, heartbeat_timeout):
            if claim(run_dir_of(exp_dir, plan), attempt):
                execution = Execution(exp_dir, plan, attempt, gpus=os.environ.get("CUDA_VISIBLE_DEVICES"),
                                      extra={"job": _scheduler_job()} if _scheduler_job() else None)
                current[:] = [execution]
                execution.wait()
                current.clear()
                ran += 1
                break
        else:
            return ran
    return ran


# --- batch scheduler task -----------------------------------------------------------------


def _attempt_to_run(run_dir: str, submitted: int) -> tuple[int, int] | None:
    """(attempt, requeues so far) for a scheduler task that was submitted for `submitted`.

    Its first start uses the controller's queued claim; after a requeue it runs the same attempt
    again; a task started anew for an attempt that already ran (resubmitted by hand, restarted
    after a node failure) claims the next one. None: another process holds the run now.
    """
    last = latest_attempt(run_dir)
    state = read_json(os.path.join(run_dir, "state.json")) or {}
    if last == submitted and state.get("attempt") != submitted:
        return submitted, 0
    if state.get("attempt") == last and state.get("state") == "pending":
        return last, int(state.get("requeues") or 0)
    return (last + 1, 0) if claim(run_dir, last + 1) else None


def task(exp_dir: str, tasks_file: str, index: int, max_retries: int = 0, job: str | None = None,
         requeue: str | None = None, scheduler: str = "slurm") -> int:
    """One array task of a batch job: run line `index` of `tasks_file` ("run_id attempt").

    A failed attempt is retried here, inside the allocation, up to `max_retries` times. SIGUSR1
    (the scheduler's warning before a time limit or preemption) is passed to the step; once the
    step ends the run is recorded as requeued and `requeue` (e.g. `scontrol requeue ID`) puts
    the job back in the queue. SIGTERM (scancel) cancels the run.
    """
    exp_dir = os.path.abspath(exp_dir)
    with open(tasks_file) as handle:
        run_id, submitted = handle.read().splitlines()[index].split()
    plan = read_manifest(exp_dir)[run_id]
    run_dir = run_dir_of(exp_dir, plan)
    found = _attempt_to_run(run_dir, int(submitted))
    if found is None:
        print(f"expdeploy: run {plan['name']} is held by another process; nothing to do", file=sys.stderr)
        return 0
    attempt, requeues = found
    current: list[Execution] = []

    def on_term(signum: int, _frame: Any) -> None:
        for execution in current:
            execution.cancelled = True
            execution.signal(signal.SIGTERM)

    def on_warning(signum: int, _frame: Any) -> None:
        for execution in current:
            execution.preempt(signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGUSR1, on_warning)
    signal.signal(signal.SIGUSR2, on_warning)
    retries_left = max_retries
    while True:
        extra = {"job": job, "scheduler": scheduler, "requeues": requeues}
        execution = Execution(exp_dir, plan, attempt, gpus=os.environ.get("CUDA_VISIBLE_DEVICES"),
                              extra=extra)
        current[:] = [execution]
        execution.wait()
        outcome = execution.state["state"]
        if outcome == "pending":
            print(f"expdeploy: run {plan['name']} requeued ({requeue or 'no requeue command'})",
                  file=sys.stderr)
            if requeue:
                subprocess.run(["/bin/sh", "-c", requeue], check=False)
            return 0
        if outcome == "failed" and retries_left > 0 and claim(run_dir, attempt + 1):
            print(f"expdeploy: run {plan['name']} failed (exit {execution.state['exit_code']}); "
                  f"retrying ({retries_left} left)", file=sys.stderr)
            retries_left -= 1
            attempt, requeues = attempt + 1, 0
            continue
        return 0 if outcome == "succeeded" else 1


# --- one run, started detached on a host ------------------------------------------------------


def run(exp_dir: str, run_id: str, attempt: int, gpus: str | None = None, job: str | None = None) -> int:
    """Run one attempt of one run to its end (the SSH backend starts it with nohup; it takes a session
    of its own, so it outlives the connection). It claims the attempt here, where the run executes."""
    with contextlib.suppress(OSError):  # a session of its own: the starting shell's end is not ours
        os.setsid()
    exp_dir = os.path.abspath(exp_dir)
    plan = read_manifest(exp_dir)[run_id]
    run_dir = run_dir_of(exp_dir, plan)
    if not claim(run_dir, attempt):
        print(f"expdeploy: attempt {attempt} of {plan['name']} is held by another process", file=sys.stderr)
        return 0
    execution = Execution(exp_dir, plan, attempt, gpus=gpus, extra={"job": job} if job else None)

    def on_term(signum: int, _frame: Any) -> None:
        execution.cancelled = True
        execution.signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the connection that started it may drop
    execution.wait()
    return 0 if execution.state["state"] == "succeeded" else 1


def look(lines: list[str]) -> Iterator[dict[str, Any]]:
    """For lines "RUN_DIR PID": is the worker alive, then its state.json (in that order, so a
    dead worker with a state that is not final really died before recording its end)."""
    for line in lines:
        run_dir, _, pid = line.rstrip("\n").rpartition(" ")
        if not run_dir:
            continue
        try:
            os.kill(int(pid), 0)
            alive = True
        except (ProcessLookupError, ValueError):
            alive = False
        except PermissionError:
            alive = True
        yield {"dir": run_dir, "alive": alive, "state": read_json(os.path.join(run_dir, "state.json"))}


def signal_runs(run_dirs: list[str], hard: bool) -> None:
    """Cancel runs started by `run`: SIGTERM to each worker (which stops its step), or SIGKILL
    to the worker and the step's whole process group at once."""
    for run_dir in run_dirs:
        with contextlib.suppress(OSError):
            open(os.path.join(run_dir, CANCEL_MARK), "w").close()
        state = read_json(os.path.join(run_dir, "state.json")) or {}
        pid = state.get("pid") if state.get("host") == HOST and state.get("state") == "running" else None
        if pid is None:  # started a moment ago: no state written yet
            with contextlib.suppress(OSError, ValueError), \
                    open(os.path.join(run_dir, "worker.pid")) as handle:
                pid = int(handle.read())
        targets = [("pid", int(pid))] if pid else []
        if hard and state.get("pgid"):
            targets.append(("pgid", int(state["pgid"])))
        for kind, pid in targets:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if kind == "pgid":
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL if hard else signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="worker.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    agent_cmd = sub.add_parser("agent", help="claim and run runs until none remain")
    agent_cmd.add_argument("exp_dir")
    agent_cmd.add_argument("--heartbeat-timeout", type=float, default=120.0)
    task_cmd = sub.add_parser("task", help="run one line of a tasks file (a batch array task)")
    task_cmd.add_argument("exp_dir")
    task_cmd.add_argument("tasks_file")
    task_cmd.add_argument("index", type=int)
    task_cmd.add_argument("--max-retries", type=int, default=0)
    task_cmd.add_argument("--job", help="the scheduler's id of this task, recorded in state.json")
    task_cmd.add_argument("--requeue", help="shell command that requeues this job")
    run_cmd = sub.add_parser("run", help="run one attempt of one run (started detached by the SSH backend)")
    run_cmd.add_argument("exp_dir")
    run_cmd.add_argument("run_id")
    run_cmd.add_argument("attempt", type=int)
    run_cmd.add_argument("--gpus", help="CUDA_VISIBLE_DEVICES for the run")
    run_cmd.add_argument("--job", help="how the controller finds this process, recorded in state.json")
    signal_cmd = sub.add_parser("signal", help="cancel runs started with `run`")
    signal_cmd.add_argument("run_dirs", nargs="*")
    signal_cmd.add_argument("--hard", action="store_true", help="SIGKILL at once")
    sub.add_parser("look", help="lines 'RUN_DIR PID' on stdin: worker alive, and state.json, as JSON lines")
    args = parser.parse_args(argv)
    if args.command == "look":
        for found in look(sys.stdin.readlines()):
            print(json.dumps(found))
        return 0
    if args.command == "run":
        return run(args.exp_dir, args.run_id, args.attempt, args.gpus, args.job)
    if args.command == "signal":
        signal_runs(args.run_dirs, args.hard)
        return 0
    if args.command == "task":
        return task(args.exp_dir, args.tasks_file, args.index, args.max_retries, args.job, args.requeue)
    ran = agent(args.exp_dir, args.heartbeat_timeout)
    print(f"expdeploy agent: ran {ran} run(s) on {HOST}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
