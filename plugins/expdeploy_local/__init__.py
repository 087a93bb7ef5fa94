"""The local backend: runs on this machine's GPUs (pynvml) or CPU slots, event-driven."""

from __future__ import annotations

from typing import Any

from expdeploy.plugins import hookimpl


@hookimpl(trylast=True)
def expdeploy_register_backends(register: Any) -> None:
    from expdeploy_local.pool import LocalBackend

    register(LocalBackend)
