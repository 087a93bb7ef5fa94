"""A real OpenSSH sshd on 127.0.0.1 for the integration tests: one per session, key-only, pinned
host key; started and stopped through tests/infra/sshd_up.sh and sshd_down.sh."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services import require

INFRA = Path(__file__).resolve().parent.parent / "infra"


@dataclass(frozen=True)
class Sshd:
    base: Path  # the sshd's state: host key, client key, configs, log
    port: int
    ssh_config: Path  # client config with aliases `local` (root) and `local-exp`
    known_hosts: Path  # holds `[127.0.0.1]:PORT` with the generated host key
    key: Path  # the client private key, authorized for root and `exp`
    alias: str = "local"
    host_public_key: Path | None = None  # the server's public host key

    def ssh(self, *command: str) -> subprocess.CompletedProcess[str]:
        """Run `ssh -F ssh_config local COMMAND` (for checking what the tests did)."""
        return subprocess.run(["ssh", "-F", str(self.ssh_config), self.alias, *command],
                              capture_output=True, text=True, timeout=30, check=False)


def unavailable() -> str | None:
    """Why no sshd can be started here, or None."""
    if os.geteuid() != 0:
        return "needs root (sshd on loopback with its own test user)"
    for program in ("sshd", "ssh", "ssh-keygen", "rsync"):
        if not shutil.which(program) and not Path("/usr/sbin", program).exists():
            return f"`{program}` is not installed (tests/infra/setup.sh installs it)"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def sshd() -> Iterator[Sshd]:
    require(unavailable(), "sshd tests")
    # Not pytest's tmp dir: sshd reads authorized_keys as the test user, who cannot enter it.
    base = Path(tempfile.mkdtemp(prefix="expdeploy-sshd-"))
    base.chmod(0o755)
    port = free_port()
    env = {**os.environ, "BASE": str(base), "PORT": str(port)}
    try:
        up = subprocess.run(["bash", str(INFRA / "sshd_up.sh")], env=env, capture_output=True,
                            text=True, timeout=120, check=False)
        if up.returncode:
            pytest.fail(f"sshd_up.sh failed ({up.returncode}):\n{up.stdout}{up.stderr}")
        yield Sshd(base=base, port=port, ssh_config=base / "ssh_config", known_hosts=base / "known_hosts",
                   key=base / "id_ed25519", host_public_key=base / "host_ed25519.pub")
    finally:
        subprocess.run(["bash", str(INFRA / "sshd_down.sh")], env=env, capture_output=True, timeout=60,
                       check=False)
        shutil.rmtree(base, ignore_errors=True)
