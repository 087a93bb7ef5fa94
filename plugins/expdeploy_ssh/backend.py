"""The SSH backend: a target's hosts as one pool of slots (GPUs, or CPU slots), each run started
detached on its host by the shipped worker (`nohup python3 worker.py run`, a session of its
own), followed with one `worker.py look` round trip per host per poll. A host that stays
unreachable for `host_timeout` seconds loses its runs, which start again on the other hosts;
finished runs' files come back with rsync before they are reported."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expdeploy import worker
from expdeploy.backend import Backend, BackendOptions, Task, Waker
from expdeploy.errors import EXIT_BAD_INPUT, BadInput, ExpdeployError, last_line
from expdeploy_ssh.gather import rsync_literal

if TYPE_CHECKING:
    from expdeploy.remote import Shell
    from expdeploy_ssh.link import HostLink, Job
    from expdeploy_ssh.probe import HostFacts

SETUP_TIMEOUT = 60.0  # seconds for every host's first round trip and the experiment's upload
COMMAND_TIMEOUT = 30.0  # seconds a command may take before it fails
STUCK_AFTER = 5.0  # a look or launch unanswered this long: the host is failing (they take ~0.1 s)
LOOK_FIRST, LOOK_MAX = 0.25, 2.0  # seconds between looks at a host: back off while nothing changes
# anchored at the experiment directory: a snapshot of the code may hold a runs/ or slurm/ of its own
PUSH_EXCLUDES = ("/ledger.sqlite*", "/runs/", "/controller.log", "/slurm/")


class HostsUnreachable(ExpdeployError):
    """No host of the target could be used."""

    exit_code = EXIT_BAD_INPUT


@dataclass(slots=True)
class _Slot:
    label: str
    gpu: int | None = None
    busy: bool = False


@dataclass(slots=True)
class _Placed:
    task: Task
    host: str
    slots: list[_Slot]
    pid: int | None = None  # the worker's, once started
    last: tuple[Any, ...] = ()
    final: dict[str, Any] | None = None  # reported once its files are back
    cancelled: int = 0  # 1: SIGTERM sent, 2: SIGKILL sent (the controller asks again and again)

    @property
    def run_dir(self) -> str:
        assert self.task.plan is not None
        return f"runs/{self.task.plan['name']}"


@dataclass(slots=True)
class _Agent:
    host: str
    slot: _Slot
    pid: int | None = None
    alive: bool = True
    cancelled: int = 0


@dataclass(slots=True)
class _Host:
    alias: str
    link: HostLink
    facts: HostFacts | None = None
    slots: list[_Slot] = field(default_factory=list)
    dead: bool = False
    failing_since: float | None = None
    next_look: float = 0.0
    interval: float = LOOK_FIRST

    @property
    def usable(self) -> bool:
        return self.facts is not None and not self.dead

    def free(self, gpus: int) -> list[_Slot]:
        return [s for s in self.slots if not s.busy and (gpus == 0 or s.gpu is not None)]


class SshBackend(Backend):
    name = "ssh"
    description = "the GPUs or CPU slots of a target's SSH hosts (--target), runs started detached"
    runs_agents = True

    def __init__(self, options: BackendOptions, shells: Mapping[str, Shell] | None = None) -> None:
        super().__init__(options)
        from expdeploy.remote import shell_for
        from expdeploy_ssh.link import HostLink

        target = options.target
        if target is None or not target.hosts:
            raise BadInput("the ssh backend runs on a target's hosts", key="--target",
                           hint='define one in expdeploy.toml: [targets.lab] backend = "ssh", '
                                'hosts = ["gpu1", "gpu2"]; then --target lab')
        self.target = target
        self.local_exp = options.exp_dir
        self.exp = options.remote_exp_dir or str(options.exp_dir)
        self.cwd = options.remote_cwd or str(Path.cwd())
        self.worker = f"{self.exp}/.expdeploy/worker.py"
        self.python = target.python or "python3"
        self.notes: list[str] = []
        self.changed: list[dict[str, Any]] = []
        self.placed: dict[str, _Placed] = {}
        self.agents: list[_Agent] = []  # --agents: they claim runs themselves
        self.agent_runs: dict[str, tuple[str, tuple[Any, ...]]] = {}  # run id -> (name, last seen)
        self._waker: Waker | None = None
        self._event = threading.Event()
        given = shells or {}
        links = [HostLink(a, given.get(a) or shell_for(target, a), self._wake) for a in target.hosts]
        self.hosts = {link.alias: _Host(link.alias, link) for link in links}
        self._gpu_note = False
        self._setup()

    @classmethod
    def gather(cls, options: BackendOptions) -> list[str]:
        from expdeploy_ssh.gather import gather

        if options.target is None or not options.target.hosts:
            return []
        return gather(options.target, options.remote_exp_dir or str(options.exp_dir), options.exp_dir)

    # the hosts ------------------------------------------------------------------------------
    def _wake(self) -> None:
        self._event.set()
        if self._waker is not None:
            with contextlib.suppress(OSError):  # closed, or full: the controller is awake anyway
                os.write(self._waker.write_fd, b"\0")

    def _setup(self) -> None:
        """One round trip per host (name, cores, GPUs, the runs' directory), then the experiment's
        plans and the worker copied there; all hosts at once."""
        from expdeploy_ssh.probe import parse_probe, probe_command

        def work(shell: Shell) -> HostFacts:
            done = shell.run(probe_command(self.cwd), timeout=COMMAND_TIMEOUT)
            if done.code:
                raise ExpdeployError(f"{shell.label}: {last_line(done.stderr)}")
            facts = parse_probe(done.stdout)
            if facts.has_cwd:
                shell.push(self.local_exp, self.exp, excludes=PUSH_EXCLUDES)
            return facts

        for host in self.hosts.values():
            host.link.give("setup", work)
        problems = []
        deadline = time.monotonic() + SETUP_TIMEOUT
        waiting = set(self.hosts)
        while waiting and time.monotonic() < deadline:
            self._event.wait(max(deadline - time.monotonic(), 0))
            self._event.clear()
            for alias in list(waiting):
                for job in self.hosts[alias].link.finished():
                    waiting.discard(alias)
                    problems += self._setup_done(self.hosts[alias], job)
        problems += [f"{alias}: no answer in {SETUP_TIMEOUT:.0f} s" for alias in waiting]
        for alias in waiting:
            self.hosts[alias].dead = True
        if not any(h.usable for h in self.hosts.values()):
            why = "; ".join(problems)
            raise HostsUnreachable(f"target {self.target.name}: no host can take runs ({why})",
                                   hint=f"`expdeploy targets check {self.target.name}` tests each host; "
                                        f"`expdeploy env sync {self.target.name}` puts the code there")
        self.notes += [f"warning: {p}; the other hosts take its runs" for p in problems]

    def _setup_done(self, host: _Host, job: Job) -> list[str]:
        if job.error is not None:
            host.dead = True
            return [f"{host.alias} unreachable: {job.error}"]
        facts: HostFacts = job.result
        if not facts.has_cwd:
            host.dead = True
            return [f"{host.alias}: the work directory {self.cwd} does not exist (`expdeploy env sync "
                    f"{self.target.name}` puts the code there)"]
        host.facts = facts
        host.slots = self._slots(facts)
        return []

    def _slots(self, facts: HostFacts) -> list[_Slot]:
        gpus: Sequence[int] = facts.gpus
        if self.target.gpus is not None:
            gpus = range(self.target.gpus)
        if self.options.gpus is not None:
            gpus = [g for g in gpus if g in self.options.gpus]
        if gpus and not self.target.slots:
            return [_Slot(f"gpu{g}.{k}", gpu=g) for g in gpus for k in range(self.options.runs_per_gpu)]
        count = self.options.jobs or self.target.slots or facts.cpus
        return [_Slot(f"cpu{i}") for i in range(count)]

    def describe(self) -> str:
        parts = []
        for host in self.hosts.values():
            if not host.usable:
                parts.append(f"{host.alias} (not used)")
                continue
            gpus = sorted({s.gpu for s in host.slots if s.gpu is not None})
            kind = f"GPUs {','.join(map(str, gpus))}" if gpus else f"{len(host.slots)} CPU slots"
            parts.append(f"{host.alias} ({kind})")
        return f"ssh: {self.target.name}: " + ", ".join(parts)

    def capacity(self) -> int | None:
        return sum(len(h.slots) for h in self.hosts.values() if h.usable)

    # placing --------------------------------------------------------------------------------
    def submit(self, tasks: Sequence[Task]) -> int:
        taken = 0
        for task in tasks:
            if task.plan is None:
                raise BadInput("the ssh backend places runs, not agent commands", key="--backend")
            placed = self._place(task)
            if placed is None:
                break
            self.placed[task.key] = placed
            self.hosts[placed.host].link.give("launch", self._launcher(placed), task.key)
            taken += 1
        return taken

    def _place(self, task: Task) -> _Placed | None:
        usable = [h for h in self.hosts.values() if h.usable]
        if not usable:  # mid-run: the runs so far are recorded; a failure, not bad input
            raise ExpdeployError(f"target {self.target.name}: every host is unreachable",
                                   hint="the runs not finished are recorded lost; `expdeploy run` again "
                                        "starts them once a host answers")
        need = task.gpus
        if need and not any(s.gpu is not None for h in usable for s in h.slots):
            need = 0  # CPU-only hosts: a run asking for GPUs takes a CPU slot
            if not self._gpu_note:
                self._gpu_note = True
                self.notes.append("no GPUs on the target's hosts: runs asking for GPUs use CPU slots")
        free = {h.alias: h.free(need) for h in usable}
        best = max(usable, key=lambda h: len(free[h.alias]))
        slots = self._pick(free[best.alias], need)
        if slots is None:
            return None
        for slot in slots:
            slot.busy = True
        return _Placed(task, best.alias, slots)

    @staticmethod
    def _pick(free: list[_Slot], gpus: int) -> list[_Slot] | None:
        """One slot, or one slot on each of `gpus` distinct GPUs."""
        if gpus <= 1:
            return free[:1] or None
        chosen: dict[int, _Slot] = {}
        for slot in free:
            if slot.gpu is not None and slot.gpu not in chosen:
                chosen[slot.gpu] = slot
        return list(chosen.values())[:gpus] if len(chosen) >= gpus else None

    def _launcher(self, placed: _Placed) -> Any:
        plan = placed.task.plan
        assert plan is not None
        run_dir = f"{self.exp}/{placed.run_dir}"
        params = (self.local_exp / placed.run_dir / "params.json")
        text = params.read_text() if params.exists() else "{}"
        gpus = ",".join(str(s.gpu) for s in placed.slots if s.gpu is not None)
        q = shlex.quote
        reads, secrets = _secrets()
        # braces: `a && b && c &` would put the whole list in the background, so the shell would
        # exit before `cat` has read params.json from stdin (and $! would not be the worker's pid)
        command = (f"{reads}mkdir -p {q(run_dir)} && cat > {q(run_dir)}/params.json && "
                   f"{{ nohup {q(self.python)} -I {q(self.worker)} run {q(self.exp)} {q(plan['run_id'])} "
                   f"{placed.task.attempt}" + (f" --gpus {gpus}" if gpus else "") + f" --job {q(placed.host)}"
                   f" > {q(run_dir)}/worker.{placed.task.attempt}.out 2>&1 < /dev/null & p=$!; "
                   f"echo $p > {q(run_dir)}/worker.pid; echo $p; }}")

        def work(shell: Shell) -> int:
            done = shell.run(command, stdin=secrets + text, timeout=COMMAND_TIMEOUT)
            if done.code:
                raise ExpdeployError(f"{shell.label}: cannot start {plan['name']}: {last_line(done.stderr)}")
            return int(done.stdout.split()[-1])

        return work

    # following ------------------------------------------------------------------------------
    def active(self) -> int:
        if self.agent_runs and not any(a.alive for a in self.agents):
            self.agent_runs.clear()  # no agent left to run what is still pending
        return len(self.placed) + len(self.agent_runs)

    def wait(self, timeout: float, waker: Waker) -> None:
        self._waker = waker
        due = min((h.next_look for h in self.hosts.values() if h.usable), default=time.monotonic() + timeout)
        waker.wait(min(timeout, max(due - time.monotonic(), 0.0), LOOK_MAX))

    def drain_notes(self) -> list[str]:
        notes, self.notes = self.notes, []
        return notes

    def poll(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        for host in self.hosts.values():
            if host.dead:
                continue
            for job in host.link.finished():
                self._finished(host, job)
            stuck = host.link.stuck_for()
            if stuck > STUCK_AFTER:
                self._failing(host, f"no answer for {stuck:.0f} s", now - stuck)
            if host.failing_since is not None and \
                    now - host.failing_since > max(self.options.host_timeout, STUCK_AFTER):
                self._lose_host(host)
                continue
            mine = [p for p in self.placed.values() if p.host == host.alias and p.pid and p.final is None]
            agents = [a for a in self.agents if a.host == host.alias and a.pid and a.alive]
            if (mine or agents) and not host.link.has("look") and now >= host.next_look:
                host.link.give("look", self._looker(mine, agents))
                host.next_look = now + host.interval
        if self.agent_runs:
            self._read_agent_runs()
        changed, self.changed = self.changed, []
        return changed

    def _looker(self, runs: list[_Placed], agents: Sequence[_Agent] = ()) -> Any:
        lines = "".join(f"{self.exp}/{p.run_dir} {p.pid}\n" for p in runs)
        lines += "".join(f"{self.exp}/agents/{a.host}-{a.slot.label} {a.pid}\n" for a in agents)
        command = f"{shlex.quote(self.python)} -I {shlex.quote(self.worker)} look"

        def work(shell: Shell) -> dict[str, dict[str, Any]]:
            done = shell.run(command, stdin=lines, timeout=COMMAND_TIMEOUT)
            if done.code:
                raise ExpdeployError(f"{shell.label}: {last_line(done.stderr)}")
            found = {}
            for line in done.stdout.splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                found[entry["dir"]] = entry
            return found

        return work

    def _finished(self, host: _Host, job: Job) -> None:
        if job.error is not None:
            self._failing(host, str(job.error), time.monotonic())
            if job.kind == "launch" and job.context in self.placed:
                self._lost(self.placed[job.context], f"could not be started on {host.alias}")
            if job.kind == "pull":
                self._report_pulled(job.context)
            if job.kind == "agent":
                job.context.alive = False
            return
        if host.failing_since is not None:
            self.notes.append(f"{host.alias} answers again")
        host.failing_since = None
        if job.kind == "launch" and job.context in self.placed:
            self.placed[job.context].pid = int(job.result)
            host.next_look = 0.0
        elif job.kind == "look":
            self._judge(host, job.result)
            self._judge_agents(host, job.result)
        elif job.kind == "agent":
            job.context.pid = int(job.result)
            host.next_look = 0.0
        elif job.kind == "pull":
            self._report_pulled(job.context)

    def _judge(self, host: _Host, found: Mapping[str, dict[str, Any]]) -> None:
        ended = []
        moved = False
        for placed in [p for p in self.placed.values() if p.host == host.alias and p.pid and p.final is None]:
            entry = found.get(f"{self.exp}/{placed.run_dir}")
            if entry is None:
                continue
            state = entry.get("state") or {}
            ours = state.get("run_id") == placed.task.key and state.get("attempt") == placed.task.attempt
            if ours:
                record = {**state, "job": f"{host.alias}:{placed.pid}"}
                if record["state"] in worker.FINAL_STATES:
                    placed.final = record
                    ended.append(placed)
                    continue
                signature = (record["state"], record.get("step"))
                if signature != placed.last:
                    placed.last = signature
                    self.changed.append(record)
                    moved = True
            if not entry.get("alive") and placed.final is None:
                self._lost(placed, f"its worker on {host.alias} ended without recording an end")
                moved = True
        if ended:
            self._pull(host, ended)
        host.interval = LOOK_FIRST if moved or ended else min(host.interval * 1.5, LOOK_MAX)

    def _pull(self, host: _Host, ended: list[_Placed]) -> None:
        """The finished runs' directories (logs, state, metrics) back into the local experiment."""
        includes = [f"/{rsync_literal(p.run_dir)}/**" for p in ended]
        exp, local = self.exp, self.local_exp
        host.link.give("pull", lambda shell: shell.pull(exp, local, includes=includes),
                       [p.task.key for p in ended])

    def _report_pulled(self, keys: list[str]) -> None:
        for key in keys:
            placed = self.placed.pop(key, None)
            if placed is not None and placed.final is not None:
                self._free(placed)
                self.changed.append(placed.final)

    def _failing(self, host: _Host, why: str, now: float) -> None:
        if host.failing_since is None:
            host.failing_since = now
            self.notes.append(f"warning: {host.alias}: {why}; its runs are lost if it stays unreachable "
                              f"for {self.options.host_timeout:g} s")

    def _lose_host(self, host: _Host) -> None:
        host.dead = True
        host.link.close()
        for agent in self.agents:
            if agent.host == host.alias:
                agent.alive = False
        mine = [p for p in self.placed.values() if p.host == host.alias]
        for placed in mine:
            self._lost(placed, f"{host.alias} unreachable")
        self.notes.append(f"{host.alias} unreachable for {self.options.host_timeout:g} s: "
                          f"{len(mine)} run(s) lost there start again on the other hosts")

    def _lost(self, placed: _Placed, why: str) -> None:
        plan = placed.task.plan
        assert plan is not None
        self.placed.pop(placed.task.key, None)
        self._free(placed)
        record = {"version": worker.STATE_VERSION, "run_id": placed.task.key, "name": plan["name"],
                  "attempt": placed.task.attempt, "state": "lost", "ended": time.time(), "why": why,
                  "job": f"{placed.host}:{placed.pid}" if placed.pid else placed.host}
        worker.write_json_atomic(str(self.local_exp / placed.run_dir / "state.json"), record)
        self.changed.append(record)

    def _free(self, placed: _Placed) -> None:
        for slot in placed.slots:
            slot.busy = False

    # agents ---------------------------------------------------------------------------------
    def submit_agents(self, count: int, plans: Sequence[Mapping[str, Any]],
                      command: str | None = None) -> list[str]:
        """`--agents K`: K agent loops (`worker.py agent`) spread over the hosts' slots, each with its
        slot's GPU; they claim runs in the experiment directory, which the hosts must share. With
        `command` (a W&B agent, whose server hands out the runs) each agent runs that instead."""
        if command is None:
            self._check_shared()
        usable = [h for h in self.hosts.values() if h.usable]
        free = {h.alias: h.free(0) for h in usable}
        new: list[_Agent] = []
        while len(new) < count and any(free.values()):
            for host in usable:
                if free[host.alias] and len(new) < count:
                    slot = free[host.alias].pop(0)
                    slot.busy = True
                    new.append(_Agent(host.alias, slot))
        self.agents += new
        (self.local_exp / "agents").mkdir(exist_ok=True)
        for agent in new:
            self.hosts[agent.host].link.give("agent", self._agent_starter(agent, command), agent)
        for plan in plans:
            self.agent_runs[plan["run_id"]] = (plan["name"], ())
        if len(new) < count:
            self.notes.append(f"{count} agents asked for, {len(new)} started: one per free slot")
        self.notes.append(f"started {len(new)} agent(s) on "
                          + ", ".join(sorted({a.host for a in new})) + f" for {len(plans)} run(s)")
        return [f"{a.host}:{a.slot.label}" for a in new]

    def _check_shared(self) -> None:
        """Agents share one experiment directory: every host must see this one's files."""
        token = f"{os.getpid()}-{time.time()}"
        mark = self.local_exp / ".expdeploy" / "shared-check"
        mark.write_text(token)
        for host in (h for h in self.hosts.values() if h.usable):
            done = host.link.shell.run(f"cat {shlex.quote(f'{self.exp}/.expdeploy/shared-check')}",
                                       timeout=COMMAND_TIMEOUT)
            if done.stdout.strip() != token:
                raise BadInput(f"--agents needs the experiment directory on a file system the hosts share: "
                               f"{host.alias} does not see {self.exp} as it is here", key="--agents",
                               hint="without --agents the runs are placed on the hosts' slots and their "
                                    "files copied there")

    def _agent_starter(self, agent: _Agent, program: str | None) -> Any:
        q = shlex.quote
        log = f"{self.exp}/agents/{agent.host}-{agent.slot.label}.log"
        gpus = f"CUDA_VISIBLE_DEVICES={agent.slot.gpu} " if agent.slot.gpu is not None else ""
        program = program or f"{q(self.python)} -I {q(self.worker)} agent {q(self.exp)}"
        reads, secrets = _secrets()
        command = (f"{reads}mkdir -p {q(self.exp)}/agents && cd {q(self.cwd)} && {{ {gpus}nohup {program}"
                   f" > {q(log)} 2>&1 < /dev/null & echo $!; }}")

        def work(shell: Shell) -> int:
            done = shell.run(command, stdin=secrets, timeout=COMMAND_TIMEOUT)
            if done.code:
                raise ExpdeployError(f"{shell.label}: cannot start an agent: {last_line(done.stderr)}")
            return int(done.stdout.split()[-1])

        return work

    def _judge_agents(self, host: _Host, found: Mapping[str, dict[str, Any]]) -> None:
        for agent in self.agents:
            entry = found.get(f"{self.exp}/agents/{agent.host}-{agent.slot.label}")
            if agent.host == host.alias and entry is not None and not entry.get("alive"):
                agent.alive = False
                agent.slot.busy = False

    def _read_agent_runs(self) -> None:
        """The runs agents took: their state files are here too (a shared file system)."""
        for run_id, (name, last) in list(self.agent_runs.items()):
            state = worker.read_json(str(self.local_exp / "runs" / name / "state.json"))
            if not state or state.get("run_id") != run_id:
                continue
            signature = (state.get("state"), state.get("attempt"), state.get("step"))
            if signature != last:
                self.agent_runs[run_id] = (name, signature)
                self.changed.append(state)
            if state.get("state") in worker.FINAL_STATES:
                del self.agent_runs[run_id]

    # cancelling -----------------------------------------------------------------------------
    def cancel(self, keys: Sequence[str] | None = None, hard: bool = False) -> None:
        level = 2 if hard else 1
        chosen = [p for k, p in self.placed.items() if (keys is None or k in keys) and p.cancelled < level]
        by_host: dict[str, list[str]] = {}
        for placed in chosen:
            placed.cancelled = level
            by_host.setdefault(placed.host, []).append(f"{self.exp}/{placed.run_dir}")
        commands: dict[str, list[str]] = {}
        for alias, dirs in by_host.items():
            commands.setdefault(alias, []).append(
                f"{shlex.quote(self.python)} -I {shlex.quote(self.worker)} signal"
                + (" --hard " if hard else " ") + " ".join(map(shlex.quote, dirs)))
        agents = [a for a in self.agents if a.alive and a.pid and keys is None and a.cancelled < level]
        for agent in agents:  # an agent passes SIGTERM on to its run, and takes no other
            agent.cancelled = level
            commands.setdefault(agent.host, []).append(f"kill -{'KILL' if hard else 'TERM'} {agent.pid}")
        for alias, lines in commands.items():
            host = self.hosts[alias]
            if host.dead:
                continue
            host.link.give("cancel", _runner("; ".join(lines)))
            host.next_look = 0.0

    def close(self) -> None:
        for host in self.hosts.values():
            host.link.close()


def _secrets() -> tuple[str, str]:
    """Shell lines that read the secrets set here (WANDB_API_KEY...) from stdin and export them,
    and that stdin: their values cross the connection, never a command line or a file."""
    from expdeploy.wrapping import SECRETS

    names = [n for n in SECRETS if os.environ.get(n)]
    reads = "".join(f"IFS= read -r {n}; export {n}; " for n in names)
    return reads, "".join(f"{os.environ[n]}\n" for n in names)


def _runner(command: str) -> Callable[[Shell], Any]:
    return lambda shell: shell.run(command, timeout=COMMAND_TIMEOUT)

