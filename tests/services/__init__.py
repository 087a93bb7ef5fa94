"""Real services the integration tests start and stop themselves: Slurm, sshd, SSH hosts in
network namespaces, Docker and podman (pytest plugins)."""

from __future__ import annotations

import os

import pytest


def require(reason: str | None, what: str) -> None:
    """Skip when a service cannot run here (`reason`), except in CI, where it must run: fail."""
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{what} cannot run in CI: {reason}")
        pytest.skip(reason)
