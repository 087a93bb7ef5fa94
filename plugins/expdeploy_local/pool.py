"""The local pool: slots on this machine (GPU slots, CPU slots, or mlrunner-style workers),
each running one run attempt in-process through the worker's `Execution` (no Python start per
run); the controller is woken by SIGCHLD, so the next run starts as soon as a slot frees.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from expdeploy import worker
from expdeploy.backend import Backend, BackendOptions, Task, Waker
from expdeploy_local.gpus import GpuProbe, GpuReading, NvmlProbe, free_gpus
from expdeploy_local.locks import SlotLock

READINGS_MAX_AGE = 2.0
ANNOUNCE_AFTER = 0.25  # seconds before a run's first state.json write (see Execution.announced)


@dataclass(slots=True)
class Slot:
    label: str
    gpu: int | None = None  # GPU index of a GPU slot
    visible: str | None = None  # CUDA_VISIBLE_DEVICES of a worker slot
    lock: SlotLock | None = None
    busy: bool = False


class LocalBackend(Backend):
    name = "local"
    description = "this machine: free GPUs found with pynvml, else CPU slots (--jobs)"

    def __init__(self, options: BackendOptions, probe: GpuProbe | None = None) -> None:
        super().__init__(options)
        self.probe = probe if probe is not None else NvmlProbe()
        self.notes: list[str] = []
        self._readings: list[GpuReading] = []
        self._read_at = 0.0
        self.running: dict[str, tuple[worker.Execution, list[Slot]]] = {}
        self.changed: list[dict[str, Any]] = []
        jobs = options.jobs or os.cpu_count() or 1
        self.cpu_slots = [Slot(f"cpu{i}") for i in range(jobs)]
        self.gpu_slots: list[Slot] = []
        self.worker_slots = [Slot(f"worker{i}", visible=v) for i, v in enumerate(options.workers)]
        if not self.worker_slots:
            self._gpu_setup()

    def _gpu_setup(self) -> None:
        readings = self.readings()
        allowed = self.options.gpus
        indices = [r.index for r in readings if allowed is None or r.index in allowed]
        if allowed is not None:
            missing = sorted(set(allowed) - {r.index for r in readings})
            if missing:
                self.notes.append(f"--gpus names GPUs this machine does not have: {missing}")
        uuids = {r.index: r.uuid for r in readings}
        for index in indices:
            for k in range(self.options.runs_per_gpu):
                tag = uuids[index].replace("GPU-", "")[:12]
                self.gpu_slots.append(Slot(f"gpu{index}.{k}", gpu=index,
                                           lock=SlotLock(f"gpu-{tag}-{k}")))

    def readings(self) -> list[GpuReading]:
        if time.monotonic() - self._read_at > READINGS_MAX_AGE:
            self._readings = self.probe.readings()
            self._read_at = time.monotonic()
        return self._readings

    def describe(self) -> str:
        if self.worker_slots:
            shown = " | ".join(s.visible or "" for s in self.worker_slots)
            return f"local: {len(self.worker_slots)} workers ({shown})"
        if self.gpu_slots:
            gpus = sorted({s.gpu for s in self.gpu_slots if s.gpu is not None})
            return (f"local: GPUs {','.join(map(str, gpus))} x {self.options.runs_per_gpu} run(s) each"
                    f", {len(self.cpu_slots)} CPU slots")
        reason = getattr(self.probe, "error", None)
        return f"local: {len(self.cpu_slots)} CPU slots (no GPU found{': ' + reason if reason else ''})"

    def capacity(self) -> int:
        return len(self.worker_slots) or len(self.gpu_slots) + len(self.cpu_slots)

    def notes_for(self, plans: Sequence[Mapping[str, Any]]) -> list[str]:
        notes = list(self.notes)
        wanting = sum(1 for p in plans if int(p.get("resources", {}).get("gpus", 0)))
        if wanting and not self.gpu_slots and not self.worker_slots:
            notes.append(f"{wanting} run(s) ask for GPUs but none were found: "
                         "they run on CPU slots")
        return notes

    # placement -----------------------------------------------------------------------------
    def _pick(self, task: Task) -> list[Slot] | None:
        if self.worker_slots:
            return next(([s] for s in self.worker_slots if not s.busy), None)
        if task.gpus and self.gpu_slots:
            return self._pick_gpus(task.gpus)
        return next(([s] for s in self.cpu_slots if not s.busy), None)

    def _pick_gpus(self, need: int) -> list[Slot] | None:
        ours: dict[int, int] = {}
        for slot in self.gpu_slots:
            if slot.busy and slot.gpu is not None:
                ours[slot.gpu] = ours.get(slot.gpu, 0) + 1
        idle = set(free_gpus(self.readings(), self.options.gpu_free_memory_mib,
                             self.options.gpu_free_util_percent))
        # a GPU we already use looks busy to NVML: pack onto it; others must read as free
        usable = sorted({s.gpu for s in self.gpu_slots if not s.busy and s.gpu is not None
                         and (s.gpu in ours or s.gpu in idle)}, key=lambda g: (ours.get(g, 0), g))
        chosen: list[Slot] = []
        for gpu in usable:
            for slot in self.gpu_slots:
                if slot.gpu == gpu and not slot.busy and slot.lock is not None and slot.lock.acquire():
                    chosen.append(slot)
                    break
            if len(chosen) == need:
                return chosen
        for slot in chosen:
            assert slot.lock is not None
            slot.lock.release()
        return None

    def submit(self, tasks: Sequence[Task]) -> int:
        taken = 0
        for task in tasks:
            slots = self._pick(task)
            if slots is None:
                break
            taken += 1
            for slot in slots:
                slot.busy = True
            if slots[0].visible is not None:
                gpus: str | None = slots[0].visible
            elif self.gpu_slots:
                gpus = ",".join(str(s.gpu) for s in slots if s.gpu is not None)
            else:
                gpus = None  # CPU mode: leave CUDA_VISIBLE_DEVICES alone
            execution = self._execution(task, gpus)
            execution.start()
            self.changed.append(dict(execution.state, slot=",".join(s.label for s in slots)))
            if execution.done:
                self._release(slots)
            else:
                self.running[task.key] = (execution, slots)
        return taken

    def _execution(self, task: Task, gpus: str | None) -> worker.Execution:
        exp_dir = str(self.options.exp_dir)
        if task.plan is not None:
            return worker.Execution(exp_dir, dict(task.plan), task.attempt, gpus=gpus,
                                    steps=list(task.steps) if task.steps else None,
                                    terminal=task.terminal, announce=False)
        # an agent process (e.g. `wandb agent`): one step, its files under <exp>/agents/<key>/
        assert task.command is not None, "a task is a run plan or an agent command"
        plan = {"run_id": task.key, "name": task.key, "steps": [["agent", task.command]],
                "cwd": os.getcwd()}
        return worker.Execution(exp_dir, plan, task.attempt, gpus=gpus,
                                run_dir=os.path.join(exp_dir, "agents", task.key))

    def submit_agents(self, count: int, plans: Sequence[Mapping[str, Any]],
                      command: str | None = None) -> list[str]:
        """Agent processes running `command` (a W&B agent), one per slot, each with its slot's GPU;
        the runs of an experiment's own agents are `expdeploy agent` processes instead."""
        if command is None:
            return super().submit_agents(count, plans)
        slots = len(self.gpu_slots or self.worker_slots or self.cpu_slots)
        if count > slots:
            self.notes.append(f"{count} agents asked for, {slots} started: one per slot")
        tasks = [Task(f"agent-{i}", command=command, gpus=1 if self.gpu_slots else 0)
                 for i in range(min(count, slots))]
        taken = self.submit(tasks)
        return [t.key for t in tasks[:taken]]

    def poll(self) -> list[dict[str, Any]]:
        changed, self.changed = self.changed, []
        now = time.time()
        for key, (execution, slots) in list(self.running.items()):
            if execution.lingering:
                if not execution.lingering_over():
                    continue
            elif execution.proc is None or execution.proc.poll() is None:
                if not execution.announced and now - execution.state["started"] > ANNOUNCE_AFTER:
                    execution.announce_running()
                continue
            else:
                execution.on_exit()
            changed.append(dict(execution.state, slot=",".join(s.label for s in slots)))
            if execution.done:
                self._release(slots)
                del self.running[key]
        return changed

    def _release(self, slots: list[Slot]) -> None:
        for slot in slots:
            slot.busy = False
            if slot.lock is not None:
                slot.lock.release()

    def cancel(self, keys: Sequence[str] | None = None, hard: bool = False) -> None:
        for key, (execution, _slots) in self.running.items():
            if keys is None or key in keys:
                execution.signal(signal.SIGKILL if hard else signal.SIGTERM)

    def active(self) -> int:
        return len(self.running)

    def wait(self, timeout: float, waker: Waker) -> None:
        # a lingering group's members are not our children: no SIGCHLD comes, so look often
        lingering = any(e.lingering for e, _ in self.running.values())
        waker.wait(min(timeout, 0.1) if lingering else timeout)

    def heartbeat(self) -> None:
        for execution, _slots in self.running.values():
            execution.heartbeat()

    def close(self) -> None:
        for _execution, slots in self.running.values():
            self._release(slots)
