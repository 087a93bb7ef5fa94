"""The W&B backend: sweeps created on the W&B server, their agents placed on the slots of another
backend (local, slurm, ssh: `--on`), each agent with its own GPU."""

from __future__ import annotations

from typing import Any

from expdeploy.plugins import hookimpl


@hookimpl(trylast=True)
def expdeploy_register_backends(register: Any) -> None:
    from expdeploy_wandb.backend import WandbBackend

    register(WandbBackend)
