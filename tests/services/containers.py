"""Docker and podman for the integration tests, with no registry (tests/infra/containers_up.sh):
a private dockerd and a private podman store, each holding image bb:latest imported from a
busybox rootfs tarball."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services import require
from services.ssh import INFRA

IMAGE = "bb:latest"


@dataclass(frozen=True)
class Containers:
    base: Path
    docker_host: str  # DOCKER_HOST of the private dockerd
    podman: Path  # a podman wrapper bound to the private store
    rootfs: Path  # the tarball the image was imported from

    def docker(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["/usr/bin/docker", "-H", self.docker_host, *args], capture_output=True,
                              text=True, timeout=120, check=False)

    def podman_run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.podman), *args], capture_output=True, text=True, timeout=120,
                              check=False)


def unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (a private dockerd and a rootful podman store)"
    for program in ("dockerd", "podman", "runc"):
        if not shutil.which(program):
            return f"`{program}` is not installed (tests/infra/setup.sh installs it)"
    if not Path("/bin/busybox").exists():
        return "busybox-static is not installed (tests/infra/setup.sh installs it)"
    return None


@pytest.fixture(scope="session")
def containers() -> Iterator[Containers]:
    require(unavailable(), "container tests")
    # short: dockerd's socket path must fit in a unix socket address
    base = Path(tempfile.mkdtemp(prefix="ed-ctr-", dir="/tmp"))
    env = {**os.environ, "BASE": str(base)}
    try:
        up = subprocess.run(["bash", str(INFRA / "containers_up.sh")], env=env, capture_output=True,
                            text=True, timeout=300, check=False)
        if up.returncode:
            pytest.fail(f"containers_up.sh failed ({up.returncode}):\n{up.stdout}{up.stderr}")
        yield Containers(base=base, docker_host=f"unix://{base}/docker/docker.sock",
                         podman=base / "bin" / "podman", rootfs=base / "rootfs.tar")
    finally:
        subprocess.run(["bash", str(INFRA / "containers_down.sh")], env=env, capture_output=True,
                       timeout=120, check=False)
        shutil.rmtree(base, ignore_errors=True)
