"""The Slurm backend: submits runs as job arrays (split at the cluster's MaxArraySize), follows
them with one batched `squeue` per poll plus `sacct`/`scontrol` for jobs that left the queue,
and cancels with `scancel`; on this machine or on a target's login node over SSH."""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expdeploy import worker
from expdeploy.backend import Backend, BackendOptions, Task, Waker
from expdeploy.errors import ExpdeployError, last_line
from expdeploy.params import run_id_of
from expdeploy_slurm import queue

# Registering the backend imports this module at every `expdeploy run`, whatever the backend:
# what only Slurm runs need (SSH, targets, scripts) is imported when a SlurmBackend is made.
if TYPE_CHECKING:
    from expdeploy.remote import Shell
    from expdeploy_slurm.script import Chunk

POLL_FIRST, POLL_MAX = 0.5, 10.0  # seconds between polls: back off while nothing changes
GONE_POLLS = 2  # a job out of the queue with no final run state twice in a row is over
DEFAULT_MAX_ARRAY = 1001  # Slurm's default MaxArraySize, when the cluster cannot be asked


class SlurmError(ExpdeployError):
    """Slurm refused a command (sbatch, scancel)."""


@dataclass(slots=True)
class _Tracked:
    run_id: str
    name: str
    attempt: int
    job: str  # array task id, "123_4"
    last: tuple[Any, ...] = ()
    gone: int = 0
    done: bool = False


class SlurmBackend(Backend):
    name = "slurm"
    description = "a Slurm cluster: job arrays, here or on a target's login node (--target)"
    queues = True
    runs_agents = True

    def __init__(self, options: BackendOptions, shell: Shell | None = None) -> None:
        super().__init__(options)
        from expdeploy.remote import LocalShell, shell_for
        from expdeploy.targets import SlurmSettings

        target = options.target
        self.settings = target.slurm if target else SlurmSettings()
        if shell is None and target is not None:
            shell = shell_for(target)
        self.shell = shell or LocalShell()
        self.local_exp = options.exp_dir
        self.exp = options.remote_exp_dir or str(options.exp_dir)
        # the runs' files are elsewhere (another host or path): copied there, read from there
        self.remote = self.exp != str(self.local_exp) or not isinstance(self.shell, LocalShell)
        self.tracked: dict[str, _Tracked] = {}
        self.agent_arrays: list[str] = []  # --agents: runs have no job of their own until claimed
        self.changed: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.interval = POLL_FIRST
        self.next_poll = 0.0
        self._config: dict[str, str] | None = None
        self._submissions = 0

    # the cluster ---------------------------------------------------------------------------
    def config(self) -> dict[str, str]:
        """`scontrol show config`, asked once ({} when the cluster cannot be reached)."""
        if self._config is None:
            done = self.shell.run("scontrol show config")
            self._config = queue.parse_config(done.stdout) if done.code == 0 else {}
            if done.code:
                self.notes.append(f"scontrol show config failed on {self.shell.label}: "
                                  f"{last_line(done.stderr)}")
        return self._config

    def max_array_size(self) -> int:
        try:
            return int(self.config().get("MaxArraySize", DEFAULT_MAX_ARRAY))
        except ValueError:
            return DEFAULT_MAX_ARRAY

    def accounting(self) -> bool:
        storage = self.config().get("AccountingStorageType", "accounting_storage/none")
        return storage not in ("", "accounting_storage/none", "(null)")

    def describe(self) -> str:
        config = self.config()
        where = config.get("ClusterName", "cluster")
        parts = [f"slurm: {where} via {self.shell.label}", f"MaxArraySize {self.max_array_size()}"]
        if self.settings.partition:
            parts.append(f"partition {self.settings.partition}")
        parts.append("sacct" if self.accounting() else "no accounting (squeue, scontrol)")
        return ", ".join(parts)

    def job_name(self) -> str:
        """Unique per experiment directory, so `squeue --name` finds exactly this experiment."""
        digest = run_id_of(self.exp)[:8]
        return f"ed-{Path(self.exp).name[:40]}-{digest}"

    # submitting ----------------------------------------------------------------------------
    def _chunks(self, tasks: Sequence[Task]) -> list[tuple[Chunk, list[Task]]]:
        """Tasks grouped by resources (one array has one resource request), split at MaxArraySize;
        their tasks files and scripts written into <exp>/slurm/."""
        from expdeploy_slurm.script import Chunk
        groups: dict[str, list[Task]] = {}
        for task in tasks:
            assert task.plan is not None, "the Slurm backend places runs (agents come with --agents)"
            key = json.dumps(task.plan.get("resources") or {}, sort_keys=True)
            groups.setdefault(key, []).append(task)
        size = self.max_array_size()
        stamp = self._script_base()
        slurm_dir = self.local_exp / "slurm"
        chunks: list[tuple[Chunk, list[Task]]] = []
        for group in groups.values():
            for start in range(0, len(group), size):
                part = group[start:start + size]
                base = f"{stamp}-{len(chunks)}"
                chunk = Chunk(script=f"{self.exp}/slurm/{base}.sbatch",
                              tasks_file=f"{self.exp}/slurm/{base}.tasks", count=len(part),
                              resources=part[0].plan["resources"] if part[0].plan else {})
                (slurm_dir / f"{base}.tasks").write_text("".join(f"{t.key} {t.attempt}\n" for t in part))
                (slurm_dir / f"{base}.sbatch").write_text(self._script(chunk, part))
                chunks.append((chunk, part))
        return chunks

    def _script(self, chunk: Chunk, part: Sequence[Task]) -> str:
        from expdeploy_slurm.script import run_script

        cwd = str(part[0].plan.get("cwd") if part[0].plan else self.exp)
        return run_script(job_name=self.job_name(), exp_dir=self.exp, cwd=cwd, chunk=chunk,
                          throttle=self.options.max_concurrent, settings=self.settings,
                          signal=self.options.requeue_signal, max_retries=self.options.max_retries,
                          python=self._python(), runs=[t.plan["name"] for t in part if t.plan])

    def _python(self) -> str:
        return (self.options.target.python if self.options.target else None) or "python3"

    def preview(self, tasks: Sequence[Task]) -> str:
        chunks = self._chunks(tasks)
        texts = [f"# {self.local_exp / 'slurm' / Path(c.script).name}\n"
                 + (self.local_exp / "slurm" / Path(c.script).name).read_text() for c, _ in chunks]
        return "\n".join(texts) + (f"\n{len(chunks)} sbatch call(s) for {len(tasks)} run(s); "
                                   "nothing submitted\n")

    def submit(self, tasks: Sequence[Task]) -> int:
        if not tasks:
            return 0
        sent = 0
        try:
            if self.remote:
                self._check_remote(str((tasks[0].plan or {}).get("cwd") or self.exp))
            chunks = self._chunks(tasks)
            if self.remote:
                self._push()
            previous: str | None = None
            for chunk, part in chunks:
                # a throttle holds across chunks only if they run one after the other
                previous = self._sbatch(chunk.script, previous if self.options.max_concurrent else None)
                for index, task in enumerate(part):
                    assert task.plan is not None
                    job = f"{previous}_{index}"
                    self.tracked[task.key] = _Tracked(task.key, task.plan["name"], task.attempt, job)
                    self.changed.append({"run_id": task.key, "name": task.plan["name"],
                                         "attempt": task.attempt, "state": "pending", "job": job})
                sent += len(part)
                self.notes.append(f"submitted {chunk.count} run(s) as array job {previous} "
                                  f"({Path(chunk.script).name})")
        except SlurmError as error:
            self._release(tasks[sent:])
            if sent:
                error.hint = f"{sent} of {len(tasks)} runs were submitted; {error.hint}"
            raise
        self.next_poll = 0.0
        return len(tasks)

    def _sbatch(self, script: str, after: str | None = None) -> str:
        """Submit one script; its job id."""
        dependency = f" --dependency=afterany:{after}" if after else ""
        done = self.shell.run(f"sbatch --parsable{dependency} {shlex.quote(script)}")
        if done.code:
            raise SlurmError(f"sbatch refused {script}: {last_line(done.stderr)}",
                             hint="check the target's partition/account/qos and the script")
        return done.stdout.strip().split(";")[0]

    def _check_remote(self, cwd: str) -> None:
        """The code must already be where the runs execute; say so before anything is queued."""
        done = self.shell.run(f"if ! test -d {shlex.quote(cwd)}; then echo nodir; "
                              "elif ! command -v sbatch >/dev/null; then echo nosbatch; fi")
        problem = {"nodir": f"the work directory {cwd} does not exist",
                   "nosbatch": "sbatch is not on PATH"}.get(done.stdout.strip())
        if problem or done.code:
            raise SlurmError(f"{self.shell.label}: {problem or last_line(done.stderr)}",
                             hint=f"`expdeploy env sync {self._target_name()}` puts the code there (`run` "
                                  "does it first unless --no-sync), or set the target's workdir and env")

    def _target_name(self) -> str:
        return self.options.target.name if self.options.target else "TARGET"

    def _script_base(self, suffix: str = "") -> str:
        """A new name for a submission's files in <exp>/slurm/ (its directory made)."""
        self._submissions += 1
        (self.local_exp / "slurm" / "logs").mkdir(parents=True, exist_ok=True)
        return f"{time.strftime('%Y%m%d-%H%M%S')}-{self._submissions}{suffix}"

    def submit_agents(self, count: int, plans: Sequence[Mapping[str, Any]],
                      command: str | None = None) -> list[str]:
        """`--agents K`: one array of K agents, each running pending runs until none remain (the
        runs in `plans` are followed through their state files while any agent is alive), or
        running `command` (a W&B agent) on its own allocation."""
        from expdeploy_slurm.script import Chunk, agent_script

        # agents of a search a service drives (W&B) have no runs planned here: the launch's own
        # working directory and resource request
        cwd = str(plans[0].get("cwd") if plans else self.options.remote_cwd or self.exp)
        if self.remote:
            self._check_remote(cwd)
        base = self._script_base("-agents")
        resources = plans[0].get("resources") or {} if plans else self.options.resources
        chunk = Chunk(script=f"{self.exp}/slurm/{base}.sbatch", tasks_file="", count=count,
                      resources=dict(resources))
        (self.local_exp / "slurm" / f"{base}.sbatch").write_text(agent_script(
            job_name=self.job_name(), exp_dir=self.exp, cwd=cwd, chunk=chunk, settings=self.settings,
            python=self._python(), command=command))
        if self.remote:
            self._push()
        job = self._sbatch(chunk.script)
        self.agent_arrays.append(job)
        if command is not None:
            self.notes.append(f"submitted {count} agent(s) as array job {job} ({Path(chunk.script).name})")
            return [job]
        for plan in plans:  # a run's job is the agent that claims it: known from its state
            self.tracked[plan["run_id"]] = _Tracked(plan["run_id"], plan["name"], 1, "")
        self.notes.append(f"submitted {count} agent(s) as array job {job} for {len(plans)} run(s)")
        self.next_poll = 0.0
        return [job]

    def _push(self) -> None:
        """Put the experiment's plans, scripts and run dirs where the jobs run (remote targets)."""
        # anchored at the experiment directory: a snapshot of the code is sent whole
        self.shell.push(self.local_exp, self.exp, excludes=(
            "/ledger.sqlite*", "/runs/*/state.json", "/runs/*/*.log", "/controller.log", "/slurm/logs/*"))

    def _release(self, tasks: Sequence[Task]) -> None:
        """Give back the queued claims of runs that were not submitted."""
        paths = []
        for task in tasks:
            assert task.plan is not None
            local = worker.claim_path(worker.run_dir_of(str(self.local_exp), dict(task.plan)), task.attempt)
            Path(local).unlink(missing_ok=True)
            paths.append(worker.claim_path(worker.run_dir_of(self.exp, dict(task.plan)), task.attempt))
        if self.remote:
            self.shell.run("xargs rm -f", stdin="\n".join(paths) + "\n")

    # following -----------------------------------------------------------------------------
    def follow(self, runs: Sequence[Mapping[str, Any]], agents: Sequence[str] = ()) -> None:
        self.agent_arrays += [a for a in agents if a not in self.agent_arrays]
        for run in runs:
            if run.get("job") or agents:
                self.tracked[run["run_id"]] = _Tracked(run["run_id"], run["name"], int(run["attempt"] or 0),
                                                       str(run.get("job") or ""))

    def active(self) -> int:
        return sum(1 for t in self.tracked.values() if not t.done)

    def wait(self, timeout: float, waker: Waker) -> None:
        waker.wait(min(timeout, max(self.next_poll - time.monotonic(), 0.0)))

    def drain_notes(self) -> list[str]:
        notes, self.notes = self.notes, []
        return notes

    def poll(self) -> list[dict[str, Any]]:
        changed, self.changed = self.changed, []
        open_runs = [t for t in self.tracked.values() if not t.done]
        if not open_runs or time.monotonic() < self.next_poll:
            return changed
        try:
            changed += self._look(open_runs)
        except (ExpdeployError, OSError) as exc:  # RemoteError, SlurmError
            self.notes.append(f"warning: could not ask Slurm for job states ({exc}); "
                              f"trying again in {self.interval:.0f}s")
        self.interval = POLL_FIRST if changed else min(self.interval * 1.5, POLL_MAX)
        self.next_poll = time.monotonic() + self.interval
        return changed

    def _look(self, open_runs: list[_Tracked]) -> list[dict[str, Any]]:
        in_queue = self._squeue()
        if self.agent_arrays:  # a run waiting for an agent counts as queued while one lives
            alive = any(queue.array_job(job) in self.agent_arrays and state in queue.LIVE
                        for job, state in in_queue.items())
            in_queue[""] = "RUNNING" if alive else "GONE"
        # a pending job has not touched its run's files, unless it ran before a requeue
        looked = [t for t in open_runs if in_queue.get(t.job) != "PENDING" or t.last[:1] == ("running",)]
        states = self._read_states(looked)
        vanished = [t for t in looked if in_queue.get(t.job) not in queue.LIVE
                    and (states.get(t.run_id) or {}).get("state") not in worker.FINAL_STATES]
        ended = self._end_states(vanished) if vanished else {}
        changed = []
        for tracked in open_runs:
            record = self._judge(tracked, in_queue.get(tracked.job), states.get(tracked.run_id), ended)
            if record is not None:
                changed.append(record)
        return changed

    def _judge(self, tracked: _Tracked, job_state: str | None, state: dict[str, Any] | None,
               ended: Mapping[str, str]) -> dict[str, Any] | None:
        """The run's new record, if it changed: its state.json, or the job's end when the job
        left the queue without the run recording a final state (killed, node lost)."""
        record: dict[str, Any] | None = None
        current = state and state.get("run_id") == tracked.run_id
        if state and current and int(state.get("attempt") or 0) >= tracked.attempt:
            record = {**state, "job": state.get("job") or tracked.job}
            tracked.attempt = int(state["attempt"])
        if record and record["state"] in worker.FINAL_STATES:
            tracked.done = True
        elif not tracked.job and record is None:  # --agents: never claimed (yet)
            tracked.done = job_state not in queue.LIVE
            return None
        elif job_state in queue.LIVE:
            tracked.gone = 0
        else:  # out of the queue with no final state: over when Slurm says how it ended, or
            tracked.gone += 1  # when seen twice (the final state may lag on a network file system)
            if tracked.job in ended or tracked.gone >= GONE_POLLS:
                tracked.done = True
                end = ended.get(tracked.job) or "vanished"
                outcome = "cancelled" if end.startswith("CANCELLED") else "lost"
                record = {**(record or {}), "run_id": tracked.run_id, "name": tracked.name,
                          "attempt": tracked.attempt, "state": outcome, "job": tracked.job,
                          "slurm_state": end, "ended": time.time(), "pid": None}
                self._write_state(record)
        if record is None and job_state == "PENDING":
            record = {"run_id": tracked.run_id, "name": tracked.name, "attempt": tracked.attempt,
                      "state": "pending", "job": tracked.job}
        if record is None:
            return None
        signature = (record["state"], record.get("attempt"), record.get("step"), record.get("requeues"))
        if signature == tracked.last:
            return None
        tracked.last = signature
        return record

    def _squeue(self) -> dict[str, str]:
        done = self.shell.run(f"squeue -h -r --name={shlex.quote(self.job_name())} -o '%i|%T'")
        if done.code:
            raise SlurmError(f"squeue failed: {last_line(done.stderr)}")
        return queue.parse_table(done.stdout)

    def _end_states(self, runs: Sequence[_Tracked]) -> dict[str, str]:
        """How jobs that left the queue ended: sacct where accounting is on, else scontrol
        (which knows a job until MinJobAge passes); {} when neither knows."""
        arrays = sorted({queue.array_job(t.job) for t in runs if t.job})
        if not arrays:
            return {}
        if self.accounting():
            done = self.shell.run(f"sacct -n -X -P -o JobID,State -j {','.join(arrays)}")
            return queue.parse_table(done.stdout) if done.code == 0 else {}
        states: dict[str, str] = {}
        for array in arrays:
            done = self.shell.run(f"scontrol -o show job {array}")
            if done.code == 0:
                states.update(queue.parse_scontrol(done.stdout))
        return states

    def _run_dir(self, tracked: _Tracked) -> str:
        return f"{self.exp}/runs/{tracked.name}"

    def _read_states(self, runs: Sequence[_Tracked]) -> dict[str, dict[str, Any]]:
        """state.json of each run: read here, or in one round trip to the login node."""
        if not runs:
            return {}
        if not self.remote:
            found = {t.run_id: worker.read_json(f"{self._run_dir(t)}/state.json") for t in runs}
            return {k: v for k, v in found.items() if v}
        script = ('while read -r d; do printf "%s\\t" "$d"; '
                  'tr -d "\\n" < "$d/state.json" 2>/dev/null; echo; done')
        done = self.shell.run(script, stdin="".join(f"{self._run_dir(t)}\n" for t in runs))
        by_dir = {self._run_dir(t): t.run_id for t in runs}
        states = {}
        for line in done.stdout.splitlines():
            run_dir, _, text = line.partition("\t")
            try:
                states[by_dir[run_dir]] = json.loads(text)
            except (KeyError, ValueError):
                continue
        return states

    def _write_state(self, record: dict[str, Any]) -> None:
        """Record a vanished job's end in the run's state.json, so files and ledger agree."""
        path = f"{self.exp}/runs/{record['name']}/state.json"
        if not self.remote:
            worker.write_json_atomic(path, record)
            return
        quoted = shlex.quote(path)
        self.shell.run(f"cat > {quoted}.tmp && mv {quoted}.tmp {quoted}", stdin=json.dumps(record))

    # cancelling ----------------------------------------------------------------------------
    def cancel(self, keys: Sequence[str] | None = None, hard: bool = False) -> None:
        """scancel the array jobs of this experiment, or the array tasks of the runs named."""
        if keys is None:
            jobs = sorted({queue.array_job(t.job) for t in self.tracked.values() if t.job and not t.done}
                          | set(self.agent_arrays))
        else:
            jobs = [self.tracked[k].job for k in keys
                    if k in self.tracked and self.tracked[k].job and not self.tracked[k].done]
        if not jobs:
            return
        done = self.shell.run(f"scancel {'--signal=KILL ' if hard else ''}{' '.join(jobs)}")
        if done.code:
            raise SlurmError(f"scancel failed: {last_line(done.stderr)}")
        self.next_poll = 0.0

    def close(self) -> None:
        self.shell.close()

