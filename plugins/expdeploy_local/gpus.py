"""GPU readings (pynvml, imported lazily) and the decision which GPUs are free to use."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

# where an NVIDIA driver is loaded (also inside containers given GPUs)
DRIVER_SIGNS = ("/proc/driver/nvidia", "/dev/nvidiactl")


@dataclass(frozen=True, slots=True)
class GpuReading:
    index: int
    uuid: str
    name: str
    memory_used_mib: float
    memory_total_mib: float
    util_percent: float


class GpuProbe(Protocol):
    def readings(self) -> list[GpuReading]: ...


class NvmlProbe:
    """Reads GPUs with NVML; no NVIDIA library or driver means no GPUs (CPU mode)."""

    def __init__(self) -> None:
        self.error: str | None = None
        self._nvml = None
        if not any(os.path.exists(p) for p in DRIVER_SIGNS):
            self.error = "no NVIDIA driver (" + ", ".join(DRIVER_SIGNS) + " absent)"
            return
        import ctypes

        try:  # dlopen fails fast where the library is missing; pynvml takes ~50 ms to import
            ctypes.CDLL("libnvidia-ml.so.1")
        except OSError:
            self.error = "no NVIDIA driver library (libnvidia-ml.so.1)"
            return
        try:
            import pynvml  # type: ignore[import-untyped]

            pynvml.nvmlInit()
            self._nvml = pynvml
        except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, driver missing...
            self._nvml = None
            self.error = f"{type(exc).__name__}: {exc}"

    def readings(self) -> list[GpuReading]:
        nvml = self._nvml
        if nvml is None:
            return []
        out = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            util = nvml.nvmlDeviceGetUtilizationRates(handle)
            uuid = nvml.nvmlDeviceGetUUID(handle)
            name = nvml.nvmlDeviceGetName(handle)
            out.append(GpuReading(
                index, uuid.decode() if isinstance(uuid, bytes) else str(uuid),
                name.decode() if isinstance(name, bytes) else str(name),
                memory.used / 2**20, memory.total / 2**20, float(util.gpu)))
        return out


def free_gpus(readings: Iterable[GpuReading], max_memory_mib: float, max_util_percent: float,
              allowed: Iterable[int] | None = None) -> list[int]:
    """Indices of GPUs someone else is not using: memory and utilisation under the thresholds."""
    allow = set(allowed) if allowed is not None else None
    return [r.index for r in readings
            if (allow is None or r.index in allow)
            and r.memory_used_mib < max_memory_mib and r.util_percent < max_util_percent]
