"""`expdeploy env sync` and `env check` against real hosts (network namespaces with their own sshd,
each seeing its own empty copy of the shared path): same-path venvs, incremental re-sync, dry run,
deletes inside managed paths only, unreachable hosts and changed host keys, environment checks."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from services.containers import Containers
from services.hosts import Hosts
from services.ssh import INFRA

pytestmark = pytest.mark.integration

SYSTEM_PYTHON = "/usr/bin/python3"  # what a venv links to: the same file on every host


@dataclass
class Lab:
    """A project under the shared path (so it has the same absolute path on every host)."""

    root: Path
    hosts: Hosts
    home: Path  # empty config home: no user targets file

    def write(self, name: str, text: str | bytes) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path

    def target(self, extra: str = "", hosts: str = '["h1"]', ssh_config: Path | None = None) -> None:
        self.write("expdeploy.toml", f'[targets.lab]\nbackend = "ssh"\nhosts = {hosts}\n'
                   f'ssh_config = "{ssh_config or self.hosts.ssh_config}"\n{extra}')

    def expdeploy(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        environ = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX")}
        environ.update(XDG_CONFIG_HOME=str(self.home), **(env or {}))
        return subprocess.run([sys.executable, "-m", "expdeploy", *args], cwd=self.root, env=environ,
                              capture_output=True, text=True, timeout=120, check=False)

    def report(self, *args: str) -> Any:
        """`env sync lab --format json`, parsed."""
        done = self.expdeploy("env", "sync", "lab", "--format", "json", *args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def on(self, host: str, command: str) -> subprocess.CompletedProcess[str]:
        return self.hosts.ssh(host, command)

    def exists_on(self, host: str, path: Path | str) -> bool:
        return self.on(host, f"test -e '{path}'").returncode == 0

    def present_on(self, host: str, names: Iterable[str]) -> set[str]:
        """Which of `names` (relative to the project) exist on `host`, in one round trip."""
        loop = 'cd "$1" && shift && for f in "$@"; do [ -e "$f" ] && printf "%s\\n" "$f"; done; true'
        done = self.on(host, f"sh -c {shlex.quote(loop)} sh {shlex.join([str(self.root), *names])}")
        assert done.returncode == 0, done.stderr
        return set(done.stdout.splitlines())

    def git(self, *args: str) -> None:
        subprocess.run(["git", *args], cwd=self.root, check=True, capture_output=True)


@pytest.fixture
def lab(hosts: Hosts, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lab]:
    root = hosts.shared / f"sync-{re.sub(r'[^A-Za-z0-9_-]', '_', request.node.name)}"
    root.mkdir()
    project = Lab(root, hosts, tmp_path / "xdg")
    project.git("init", "-q")
    project.git("config", "user.email", "t@example.org")
    project.git("config", "user.name", "t")
    try:
        yield project
    finally:  # each host's tmpfs is small: leave nothing behind
        removing = [subprocess.Popen(["ssh", "-F", str(hosts.ssh_config), host, f"rm -rf '{root}'"])
                    for host in hosts.names]
        shutil.rmtree(root, ignore_errors=True)
        for proc in removing:
            proc.wait(timeout=30)


def make_venv(lab: Lab, name: str = ".venv") -> Path:
    venv = lab.root / name
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
    return venv


def make_conda_env(lab: Lab, name: str, blobs: int, blob_size: int) -> Path:
    """A directory with conda's layout and `blobs` files of random content under lib/."""
    env = lab.root / name
    (env / "conda-meta").mkdir(parents=True)
    (env / "conda-meta" / "history").write_text("==> 2024-01-01 00:00:00 <==\n")
    (env / "bin").mkdir()
    (env / "bin" / "python").symlink_to(SYSTEM_PYTHON)
    lab.write(f"{name}/etc/conda/activate.d/x.sh", "export FAKE_ENV=1\n")
    for i in range(blobs):
        lab.write(f"{name}/lib/blob{i:02}.bin", os.urandom(blob_size))
    return env


def code_project(lab: Lab) -> None:
    lab.write(".gitignore", ".venv/\nenvs/\nexperiments/\ndata/\n*.log\n")
    lab.write("train.py", "print('train')\n")
    lab.write("src/model.py", "MODEL = 1\n")
    lab.write("debug.log", "ignored\n")
    lab.write("experiments/old/out.txt", "ignored output\n")


def test_venv_runs_on_every_host_from_the_same_path(lab: Lab) -> None:
    code_project(lab)
    venv = make_venv(lab)
    lab.target('sync = ["code", "env"]\n', hosts='["h1", "h2"]')  # env: the active one ($VIRTUAL_ENV)
    python = f"{venv}/bin/python"
    assert os.path.exists(python) and not lab.exists_on("h1", python)

    done = lab.expdeploy("env", "sync", "lab", env={"VIRTUAL_ENV": str(venv)})
    assert done.returncode == 0, done.stderr
    summary = r"^synced \d+ files, [\d,]+ bytes .* to 2 hosts \(h1, h2\)$"
    assert re.search(summary, done.stdout, re.M), done.stdout

    for host in ("h1", "h2"):
        ran = lab.on(host, f"{python} -c 'import sys, socket; print(sys.prefix, socket.gethostname())' && "
                     f"cd '{lab.root}' && find . -path ./.venv -prune -o -type f -print | sort")
        assert ran.stdout.split() == [str(venv), host, "./.expdeploy/synced-code", "./.gitignore",
                                      "./expdeploy.toml", "./src/model.py", "./train.py"], ran.stderr


def test_resync_of_a_200_mb_env_moves_under_one_percent(lab: Lab) -> None:
    env = make_conda_env(lab, "envs/big", blobs=50, blob_size=4 << 20)
    lab.target('environment = "envs/big"\nsync = ["env"]\n')
    first = lab.report()
    (first_env,) = first["hosts"][0]["transfers"]
    assert first_env["files"] >= 52 and first_env["total"] >= 200 << 20

    changed = env / "lib" / "blob07.bin"
    with changed.open("r+b") as blob:  # one file changes in place: 100 bytes in its middle
        blob.seek(2 << 20)
        blob.write(os.urandom(100))
    os.utime(changed, (time.time() + 10, time.time() + 10))  # a new mtime, whatever the clock's grain
    second = lab.report()
    (again,) = second["hosts"][0]["transfers"]
    share = again["sent"] / again["total"]
    print(f"\nre-sync after changing one file of {again['total']:,} bytes: {again['sent']:,} bytes sent "
          f"({share:.4%}), {again['files']} file(s)")
    assert again["files"] == 1
    assert share < 0.01
    digest = lab.on("h1", f"sha256sum '{changed}'").stdout.split()[:1]
    assert digest == [subprocess.run(["sha256sum", str(changed)], capture_output=True, text=True,
                                     check=True).stdout.split()[0]]
    assert lab.on("h1", f"readlink '{env}/bin/python'").stdout.strip() == SYSTEM_PYTHON


def test_dry_run_lists_files_and_bytes_and_moves_nothing(lab: Lab) -> None:
    code_project(lab)
    lab.target('sync = ["code"]\n')
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=lab.root, text=True,
                            capture_output=True, check=True).stdout.split()
    size = sum((lab.root / name).stat().st_size for name in listed)

    done = lab.expdeploy("env", "sync", "lab", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert f"dry run: {len(listed)} files, {size:,} bytes" in done.stdout, done.stdout
    assert "nothing was sent" in done.stdout
    assert re.search(r"^ +<f\+{9} src/model\.py$", done.stdout, re.M), done.stdout
    assert "debug.log" not in done.stdout and "experiments" not in done.stdout
    assert not lab.exists_on("h1", lab.root)


def test_deletes_stay_inside_managed_paths(lab: Lab) -> None:
    code_project(lab)
    lab.write("gone_tracked.py", "x = 1\n")
    lab.git("add", "-A")
    lab.git("commit", "-qm", "init")
    lab.write("gone_untracked.py", "y = 2\n")
    env = make_conda_env(lab, "envs/small", blobs=3, blob_size=1000)
    lab.target('environment = "envs/small"\nsync = ["code", "env"]\n')
    assert lab.expdeploy("env", "sync", "lab").returncode == 0
    theirs = {"experiments/run1/out.txt", "data/big.bin", "train.log", "notes_made_there.txt"}
    made = lab.on("h1", f"cd '{lab.root}' && mkdir -p experiments/run1 data && touch {' '.join(theirs)}")
    assert made.returncode == 0, made.stderr  # outputs and data written there, and a file sync never sent

    (lab.root / "gone_tracked.py").unlink()
    (lab.root / "gone_untracked.py").unlink()
    (env / "lib" / "blob01.bin").unlink()
    shutil.rmtree(lab.root / "experiments")  # gone here too: still not ours to delete there
    report = lab.report()
    code, env_transfer = report["hosts"][0]["transfers"]
    assert (code["deleted"], env_transfer["deleted"]) == (2, 1)

    gone = {"gone_tracked.py", "gone_untracked.py", "envs/small/lib/blob01.bin"}
    kept = {*theirs, "train.py", "envs/small/lib/blob02.bin"}
    assert lab.present_on("h1", gone | kept) == kept


def test_unreachable_host_is_one_line_and_exit_2(lab: Lab, tmp_path: Path) -> None:
    code_project(lab)
    quick = tmp_path / "ssh_config"
    quick.write_text(f"ConnectTimeout 2\nInclude {lab.hosts.ssh_config}\n")  # the first value wins
    lab.target('sync = ["code"]\n', ssh_config=quick)
    lab.hosts.link("h1", False)
    try:
        started = time.monotonic()
        done = lab.expdeploy("env", "sync", "lab")
        took = time.monotonic() - started
    finally:
        lab.hosts.link("h1", True)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("error: cannot connect to root@") and "(h1)" in lines[0], done.stderr
    assert len(lines) <= 2 and lines[-1].startswith(("hint:", "error:")) and "Traceback" not in done.stderr
    assert took < 20


def test_changed_host_key_is_refused_and_nothing_synced(lab: Lab, tmp_path: Path) -> None:
    code_project(lab)
    key = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    known = tmp_path / "known_hosts"
    wrong = " ".join(key.with_suffix(".pub").read_text().split()[:2])
    known.write_text(f"{lab.hosts.addresses['h1']} {wrong}\n")
    config = tmp_path / "ssh_config"
    config.write_text(f"UserKnownHostsFile {known}\nInclude {lab.hosts.ssh_config}\n")
    lab.target('sync = ["code"]\n', ssh_config=config)

    for args in (("env", "sync", "lab"), ("env", "check", "lab")):
        done = lab.expdeploy(*args, env={"VIRTUAL_ENV": str(make_venv(lab))} if "check" in args else None)
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.startswith("error: host key of root@") and "does not match" in done.stderr
        assert "Traceback" not in done.stderr
    assert not lab.exists_on("h1", lab.root)


def test_env_check_matches_then_reports_a_package_only_there(lab: Lab) -> None:
    venv = make_venv(lab)
    lab.target('environment = ".venv"\nsync = ["env"]\n')
    assert lab.expdeploy("env", "sync", "lab").returncode == 0

    same = lab.expdeploy("env", "check", "lab")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "the environment matches on h1" in same.stdout
    assert re.search(r"^  h1 +python 3\.\d+\.\d+  packages 0 ", same.stdout, re.M), same.stdout

    (site,) = venv.glob("lib/python3.*/site-packages")
    metadata = f"{site}/fake_pkg-1.0.dist-info/METADATA"
    made = lab.on("h1", f"mkdir -p $(dirname '{metadata}') && "
                  f"printf 'Metadata-Version: 2.1\\nName: fake_pkg\\nVersion: 1.0\\n' > '{metadata}'")
    assert made.returncode == 0, made.stderr
    differs = lab.expdeploy("env", "check", "lab", "--format", "json")
    assert differs.returncode == 1, differs.stdout + differs.stderr
    result = json.loads(differs.stdout)
    assert result["differences"] == {"h1": ["packages differ: fake-pkg==1.0 only there"]}
    assert result["here"]["python"] == result["there"][0]["python"]
    assert result["there"][0]["packages"] == ["fake-pkg==1.0"]


def test_docker_image_travels_by_save_and_load_then_is_skipped(lab: Lab, containers: Containers) -> None:
    # h1 gets a docker daemon of its own, empty; this machine's holds bb:latest
    there = Path(tempfile.mkdtemp(prefix="ed-ctr2-", dir="/tmp"))
    infra = {**os.environ, "BASE": str(there), "PODMAN": "0", "IMPORT": "0"}
    up = subprocess.run(["bash", str(INFRA / "containers_up.sh")], env=infra, capture_output=True, text=True,
                        timeout=120, check=False)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        socket = f"unix://{there}/docker/docker.sock"
        lab.target(f'docker_images = ["bb:latest"]\nsync = ["docker"]\n'
                   f'[targets.lab.env]\nDOCKER_HOST = "{socket}"\n')
        env = {"DOCKER_HOST": containers.docker_host}
        sent = lab.expdeploy("env", "sync", "lab", env=env)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        mine = containers.docker("image", "inspect", "--format", "{{.Id}}", "bb:latest").stdout.strip()
        theirs = subprocess.run(["/usr/bin/docker", "-H", socket, "image", "inspect", "--format", "{{.Id}}",
                                 "bb:latest"], capture_output=True, text=True, check=False).stdout.strip()
        assert mine and theirs == mine, "docker load gave h1 the very image"
        again = lab.expdeploy("env", "sync", "lab", env=env)
        assert again.returncode == 0, again.stderr
        assert "skipped: h1 has it already" in again.stdout
    finally:
        subprocess.run(["bash", str(INFRA / "containers_down.sh")], env=infra, capture_output=True,
                       check=False)
        shutil.rmtree(there, ignore_errors=True)


# --- no hosts needed --------------------------------------------------------------------------

def run_here(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "CONDA_PREFIX")}
    environ["XDG_CONFIG_HOME"] = str(root / "xdg")
    return subprocess.run([sys.executable, "-m", "expdeploy", *args], cwd=root, env=environ,
                          capture_output=True, text=True, timeout=60, check=False)


def test_target_without_host_is_this_machine(tmp_path: Path) -> None:
    (tmp_path / "expdeploy.toml").write_text('[targets.here]\nbackend = "ssh"\nslots = 2\n')
    done = run_here(tmp_path, "env", "sync", "here")
    assert done.returncode == 0, done.stderr
    assert "target 'here' is this machine: nothing to sync" in done.stdout


def test_a_directory_that_is_no_environment_is_exit_2_with_a_hint(tmp_path: Path) -> None:
    (tmp_path / "notenv" / "bin").mkdir(parents=True)
    (tmp_path / "expdeploy.toml").write_text(
        '[targets.t]\nbackend = "ssh"\nhost = "nowhere.invalid"\nenvironment = "notenv"\n')
    for args in (("env", "sync", "t"), ("env", "check", "t")):
        done = run_here(tmp_path, *args)
        assert done.returncode == 2, done.stderr
        first, hint = done.stderr.strip().splitlines()
        assert first.startswith(f"error: {tmp_path / 'expdeploy.toml'}:1: targets.t.environment: ")
        assert "is neither a venv (no pyvenv.cfg) nor a conda environment" in first
        assert hint.startswith("hint: point `environment` at a venv")
    nothing = run_here(tmp_path, "env", "sync", "t", "--only", "env,bogus")
    assert nothing.returncode == 2 and "unknown kind 'bogus'" in nothing.stderr
