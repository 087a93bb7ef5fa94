"""The Slurm backend: an experiment becomes job arrays; each array task runs the shipped worker
for one run, which reads its plan from the manifest on the shared file system."""

from __future__ import annotations

from typing import Any

from expdeploy.plugins import hookimpl


@hookimpl(trylast=True)
def expdeploy_register_backends(register: Any) -> None:
    from expdeploy_slurm.backend import SlurmBackend

    register(SlurmBackend)
