"""What one round trip learns about an SSH host before runs go there: its name, cores, GPUs
(`nvidia-smi --query-gpu`, parsed robustly) and whether the runs' directory exists."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

GPU_QUERY = "nvidia-smi --query-gpu=index,memory.used,utilization.gpu --format=csv,noheader,nounits"


@dataclass(frozen=True, slots=True)
class HostFacts:
    hostname: str
    cpus: int
    gpus: tuple[int, ...]  # indices nvidia-smi lists; () without a driver
    has_cwd: bool


def probe_command(cwd: str) -> str:
    return (f"echo hostname=$(hostname); echo cpus=$(nproc 2>/dev/null || echo 1); "
            f"if test -d {shlex.quote(cwd)}; then echo cwd=yes; else echo cwd=no; fi; "
            f"if command -v nvidia-smi >/dev/null 2>&1; then {GPU_QUERY} 2>/dev/null | sed 's/^/gpu=/'; fi")


def parse_probe(text: str) -> HostFacts:
    """The probe's `key=value` lines; GPU lines are `gpu=INDEX, MEM, UTIL` (nvidia-smi's CSV),
    and anything else nvidia-smi may print (errors, "No devices were found") is ignored."""
    values: dict[str, str] = {}
    gpus: list[int] = []
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key == "gpu":
            first = value.split(",")[0].strip()
            if first.isdigit():
                gpus.append(int(first))
        elif key in ("hostname", "cpus", "cwd"):
            values[key] = value.strip()
    cpus = values.get("cpus", "1")
    return HostFacts(hostname=values.get("hostname", "?"), cpus=int(cpus) if cpus.isdigit() else 1,
                     gpus=tuple(sorted(set(gpus))), has_cwd=values.get("cwd") == "yes")
