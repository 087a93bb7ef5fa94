"""Several distinct SSH hosts on this machine for the integration tests (tests/infra/hosts_up.sh):
network namespaces with their own address, hostname and sshd, each seeing its own empty
`shared` path, so that what runs there from that path is only what was synced there."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services import require
from services.ssh import INFRA, Sshd

HOST_COUNT = 2


@dataclass(frozen=True)
class Hosts:
    names: tuple[str, ...]  # ssh aliases h1, h2, ... in ssh_config
    addresses: dict[str, str]
    shared: Path  # same absolute path: the real directory here, an empty tmpfs on each host
    ssh_config: Path
    known_hosts: Path
    prefix: str  # of the namespaces and links: <prefix>h1 is host h1's veth in this namespace

    def ssh(self, host: str, command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run `command` on `host` with OpenSSH (for checking what the tests did)."""
        return subprocess.run(["ssh", "-F", str(self.ssh_config), host, command], capture_output=True,
                              text=True, timeout=timeout, check=False)

    def link(self, host: str, up: bool) -> None:
        """Take the host's network link down (unreachable, its processes keep running) or up."""
        subprocess.run(["ip", "link", "set", f"{self.prefix}{host}", "up" if up else "down"], check=True)


def unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network and mount namespaces)"
    for program in ("ip", "unshare"):
        if not shutil.which(program):
            return f"`{program}` is not installed (tests/infra/setup.sh installs it)"
    return None


def free_subnet() -> str:
    """A 10.200.K.0/24 that no interface here uses (several test sessions may run at once)."""
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    free = [k for k in range(1, 255) if f" 10.200.{k}." not in used]
    return f"10.200.{random.choice(free)}"


@pytest.fixture(scope="session")
def hosts(sshd: Sshd) -> Iterator[Hosts]:
    require(unavailable(), "multi-host tests")
    shared = Path(tempfile.mkdtemp(prefix="expdeploy-shared-"))
    shared.chmod(0o755)
    net = free_subnet()
    prefix = f"ed{random.randrange(16**4):04x}"
    env = {**os.environ, "BASE": str(sshd.base), "N": str(HOST_COUNT), "PREFIX": prefix, "NET": net,
           "SHARED_PATH": str(shared)}
    names = tuple(f"h{i}" for i in range(1, HOST_COUNT + 1))
    try:
        up = subprocess.run(["bash", str(INFRA / "hosts_up.sh")], env=env, capture_output=True, text=True,
                            timeout=120, check=False)
        if up.returncode:
            pytest.fail(f"hosts_up.sh failed ({up.returncode}):\n{up.stdout}{up.stderr}")
        yield Hosts(names=names, addresses={h: f"{net}.{10 + i}" for i, h in enumerate(names, 1)},
                    shared=shared, ssh_config=sshd.ssh_config, known_hosts=sshd.known_hosts, prefix=prefix)
    finally:
        subprocess.run(["bash", str(INFRA / "hosts_down.sh")], env=env, capture_output=True, timeout=60,
                       check=False)
        shutil.rmtree(shared, ignore_errors=True)
