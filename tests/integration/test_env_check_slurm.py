"""`expdeploy env check` for a Slurm target: the environment's interpreter on the login node (over
SSH) and on a compute node through srun, on the real single-node test cluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def test_env_check_asks_the_login_node_and_a_compute_node(tmp_path: Path, sshd: Any, slurm: Any) -> None:
    venv = tmp_path / "venv"  # jobs run as root on this machine: the same path is the same env
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(venv)], check=True)
    (tmp_path / "ssh_config").write_text(f"Include {sshd.ssh_config}\nHost login\n  HostName 127.0.0.1\n"
                                         f"  Port {sshd.port}\n  User root\n")
    (tmp_path / "expdeploy.toml").write_text(f"""
[targets.cluster]
backend = "slurm"
host = "login"
ssh_config = "ssh_config"
environment = "venv"
[targets.cluster.env]
SLURM_CONF = "{slurm.conf}"
""")
    env = {k: v for k, v in slurm.env.items() if k not in ("SLURM_CONF", "VIRTUAL_ENV", "CONDA_PREFIX")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    done = subprocess.run([sys.executable, "-m", "expdeploy", "env", "check", "cluster"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split()[0:2] for line in done.stdout.splitlines()[1:4]]
    assert rows == [["this", "machine"], ["login", "python"], ["login", "(srun)"]], done.stdout
    assert "the environment matches on login, login (srun)" in done.stdout
