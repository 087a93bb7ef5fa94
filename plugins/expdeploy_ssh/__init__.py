"""The SSH backend: runs spread over the free slots of a target's hosts, each started detached
there by the shipped worker, followed with one round trip per host per poll."""

from __future__ import annotations

from typing import Any

from expdeploy.plugins import hookimpl


@hookimpl(trylast=True)
def expdeploy_register_backends(register: Any) -> None:
    from expdeploy_ssh.backend import SshBackend

    register(SshBackend)
