"""The local pool's placement with real processes: GPU choice from recorded NVML readings,
packing, --gpus, cross-process GPU locks, CPU mode, mlrunner workers; and the backend contract
through a throwaway backend plugin."""

from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from expdeploy import worker
from expdeploy.backend import Backend, BackendOptions, Task, Waker
from expdeploy.cli import app
from expdeploy.plugins import get_plugin_manager, hookimpl
from expdeploy_local.gpus import GpuReading, NvmlProbe, free_gpus
from expdeploy_local.locks import SlotLock
from expdeploy_local.pool import LocalBackend

# Readings as NVML reports them on a shared 4-GPU box: GPU 1 holds someone's model,
# GPU 2 is busy computing, GPUs 0 and 3 are idle.
RECORDED = [
    GpuReading(0, "GPU-aaaa0000", "NVIDIA A100", 3.0, 40536.0, 0.0),
    GpuReading(1, "GPU-bbbb1111", "NVIDIA A100", 20480.0, 40536.0, 0.0),
    GpuReading(2, "GPU-cccc2222", "NVIDIA A100", 500.0, 40536.0, 97.0),
    GpuReading(3, "GPU-dddd3333", "NVIDIA A100", 250.0, 40536.0, 3.0),
]


class RecordedProbe:
    def __init__(self, readings: list[GpuReading]) -> None:
        self.value = readings

    def readings(self) -> list[GpuReading]:
        return self.value


def test_free_gpu_decision_from_readings() -> None:
    assert free_gpus(RECORDED, 1024, 10) == [0, 3]
    assert free_gpus(RECORDED, 30000, 10) == [0, 1, 3]
    assert free_gpus(RECORDED, 1024, 100) == [0, 2, 3]
    assert free_gpus(RECORDED, 1024, 10, allowed=[1, 3]) == [3]
    assert free_gpus([], 1024, 10) == []


def plan(exp: Path, name: str, command: str, gpus: int = 0) -> dict[str, Any]:
    return {"run_id": name, "name": name, "params": {}, "steps": [["main", command]],
            "resources": {"gpus": gpus}, "cwd": str(exp)}


def task(exp: Path, name: str, gpus: int = 1, command: str = "") -> Task:
    command = command or f'echo "${{CUDA_VISIBLE_DEVICES-unset}}" > {exp}/{name}.gpu'
    return Task(name, 1, plan(exp, name, command, gpus), gpus=gpus)


def drain(backend: Backend) -> list[dict[str, Any]]:
    waker = Waker()
    records: list[dict[str, Any]] = []
    try:
        records += backend.poll()
        while backend.active():
            backend.wait(5, waker)
            records += backend.poll()
    finally:
        waker.close()
    return records


@pytest.fixture
def locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EXPDEPLOY_LOCK_DIR", str(tmp_path / "locks"))
    return tmp_path / "locks"


def gpu_of(exp: Path, name: str) -> str:
    return (exp / f"{name}.gpu").read_text().strip()


def test_runs_go_to_free_gpus_only(tmp_path: Path, locks: Path) -> None:
    backend = LocalBackend(BackendOptions(tmp_path), probe=RecordedProbe(RECORDED))
    tasks = [task(tmp_path, f"r{i}", command=f"sleep 0.3; echo $CUDA_VISIBLE_DEVICES > {tmp_path}/r{i}.gpu")
             for i in range(3)]
    assert backend.submit(tasks) == 2  # GPUs 0 and 3; the third waits
    assert backend.submit(tasks[2:]) == 0
    drain(backend)
    assert {gpu_of(tmp_path, "r0"), gpu_of(tmp_path, "r1")} == {"0", "3"}
    assert backend.submit(tasks[2:]) == 1
    drain(backend)
    assert gpu_of(tmp_path, "r2") in {"0", "3"}


def test_runs_per_gpu_packs_and_multi_gpu_runs_get_distinct_gpus(tmp_path: Path, locks: Path) -> None:
    backend = LocalBackend(BackendOptions(tmp_path, runs_per_gpu=2), probe=RecordedProbe(RECORDED))
    tasks = [task(tmp_path, f"p{i}", command=f"sleep 0.3; echo $CUDA_VISIBLE_DEVICES > {tmp_path}/p{i}.gpu")
             for i in range(5)]
    assert backend.submit(tasks) == 4
    drain(backend)
    assert sorted(gpu_of(tmp_path, f"p{i}") for i in range(4)) == ["0", "0", "3", "3"]
    assert backend.submit([task(tmp_path, "two", gpus=2)]) == 1
    drain(backend)
    assert sorted(gpu_of(tmp_path, "two").split(",")) == ["0", "3"]


def test_gpus_option_restricts(tmp_path: Path, locks: Path) -> None:
    backend = LocalBackend(BackendOptions(tmp_path, gpus=(3, 7)), probe=RecordedProbe(RECORDED))
    assert any("[7]" in note for note in backend.notes)
    assert backend.submit([task(tmp_path, "a"), task(tmp_path, "b")]) == 1
    drain(backend)
    assert gpu_of(tmp_path, "a") == "3"


def test_another_process_holding_a_gpu_lock_keeps_us_off_it(tmp_path: Path, locks: Path) -> None:
    first = LocalBackend(BackendOptions(tmp_path), probe=RecordedProbe(RECORDED))
    lock_file = SlotLock("gpu-aaaa0000-0").path  # GPU 0, slot 0, as the pool names it
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'w'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()", str(lock_file)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        assert first.submit([task(tmp_path, "x"), task(tmp_path, "y")]) == 1
        drain(first)
        assert gpu_of(tmp_path, "x") == "3"
    finally:
        holder.communicate("")
    assert first.submit([task(tmp_path, "z")]) == 1  # lock released: GPU 0 usable again
    drain(first)


def test_cpu_mode_without_nvml(tmp_path: Path, locks: Path) -> None:
    backend = LocalBackend(BackendOptions(tmp_path, jobs=3), probe=RecordedProbe([]))
    assert backend.describe().startswith("local: 3 CPU slots")
    tasks = [task(tmp_path, f"c{i}", command=f"sleep 0.2; echo ${{CUDA_VISIBLE_DEVICES-unset}} > "
                  f"{tmp_path}/c{i}.gpu") for i in range(4)]
    assert backend.submit(tasks) == 3
    records = drain(backend)
    assert {gpu_of(tmp_path, f"c{i}") for i in range(3)} == {"unset"}
    assert {r["state"] for r in records if r["state"] != "running"} == {"succeeded"}


def test_real_probe_without_a_driver_is_cpu_mode() -> None:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        probe = NvmlProbe()
        assert probe.readings() == [] and probe.error is not None
    else:
        pytest.skip("an NVIDIA driver is present: see test_real_gpu")


def test_mlrunner_workers_are_slots(tmp_path: Path, locks: Path) -> None:
    backend = LocalBackend(BackendOptions(tmp_path, workers=("0", "1,2")), probe=RecordedProbe([]))
    assert backend.submit([task(tmp_path, "w0"), task(tmp_path, "w1"), task(tmp_path, "w2")]) == 2
    drain(backend)
    assert {gpu_of(tmp_path, "w0"), gpu_of(tmp_path, "w1")} == {"0", "1,2"}


@pytest.mark.gpu
def test_real_gpu(tmp_path: Path, locks: Path) -> None:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        pytest.skip("no NVIDIA driver (libnvidia-ml.so.1) on this machine")
    probe = NvmlProbe()
    readings = probe.readings()
    assert readings, probe.error
    backend = LocalBackend(BackendOptions(tmp_path, gpu_free_memory_mib=10**9,
                                          gpu_free_util_percent=101))
    assert backend.submit([task(tmp_path, "g", command=f"nvidia-smi -L > {tmp_path}/smi; "
                                f"echo $CUDA_VISIBLE_DEVICES > {tmp_path}/g.gpu")]) == 1
    drain(backend)
    assert gpu_of(tmp_path, "g") in {str(r.index) for r in readings}
    print(f"GPUs seen: {[(r.index, r.name) for r in readings]}; run got {gpu_of(tmp_path, 'g')}")


# --- the backend contract through a third-party-style plugin ----------------------------------


class InlineBackend(Backend):
    """Runs each task to the end inside submit(): the smallest backend that honours the contract."""

    name = "inline"

    def __init__(self, options: BackendOptions) -> None:
        super().__init__(options)
        self.records: list[dict[str, Any]] = []

    def submit(self, tasks: Any) -> int:
        for t in tasks:
            execution = worker.Execution(str(self.options.exp_dir), dict(t.plan), t.attempt)
            execution.wait()
            self.records.append(dict(execution.state))
        return len(tasks)

    def poll(self) -> list[dict[str, Any]]:
        out, self.records = self.records, []
        return out

    def cancel(self, keys: Any = None, hard: bool = False) -> None:
        pass

    def active(self) -> int:
        return 0


class InlinePlugin:
    @hookimpl
    def expdeploy_register_backends(self, register: Any) -> None:
        register(InlineBackend)


def test_a_plugin_backend_runs_an_experiment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exp.yml").write_text("name: inl\ncommand: echo {x} > {run_dir}/out\ngrid: {x: [1, 2]}\n")
    manager = get_plugin_manager()
    manager.register(InlinePlugin(), name="inline-test")
    try:
        result = CliRunner().invoke(app, ["run", "exp.yml", "--backend", "inline"])
    finally:
        manager.unregister(name="inline-test")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "experiments/inl/runs/x=2/out").read_text() == "2\n"
    unknown = CliRunner().invoke(app, ["run", "exp.yml", "--backend", "inline"])
    assert unknown.exit_code == 2 and "unknown backend 'inline'" in unknown.output


def test_agent_tasks_get_one_gpu_slot_each(tmp_path: Path, locks: Path) -> None:
    """Agent processes (a command with resources, as W&B agents will be) ride on the pool."""
    backend = LocalBackend(BackendOptions(tmp_path), probe=RecordedProbe(RECORDED))
    agents = [Task(f"agent-{i}", command=f"echo $CUDA_VISIBLE_DEVICES > {tmp_path}/agent{i}", gpus=1)
              for i in range(3)]
    assert backend.submit(agents) == 2  # one per free GPU
    records = drain(backend)
    assert {(tmp_path / f"agent{i}").read_text().strip() for i in range(2)} == {"0", "3"}
    assert {r["state"] for r in records} >= {"succeeded"}
    assert (tmp_path / "agents" / "agent-0" / "agent.log").exists()
