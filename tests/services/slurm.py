"""Fixtures for a real single-node Slurm 22.05 cluster, started once per test session.

`slurm` gives the cluster with accounting off (sacct fails), `slurm_acct` the same cluster with accounting
on (slurmdbd + MariaDB); both cancel leftover jobs after each test. The daemons are started and stopped by
the scripts in tests/infra/, with all their state in a fresh directory under /tmp, on free ports and with
a private munged, so neither a system Slurm nor another test session is touched. Jobs run as root on this
machine: a test's tmp_path is visible to its jobs.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import NoReturn

import pytest

INFRA = Path(__file__).resolve().parent.parent / "infra"
CORE_PROGRAMS = ("slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol", "sinfo", "munged",
                 "mungekey")
ACCOUNTING_PROGRAMS = ("slurmdbd", "sacct", "sacctmgr", "mariadbd", "mariadb", "mariadb-install-db")
# Slurm clients read these; inherited from a surrounding job or shell they would change what the tests submit.
CLIENT_ENV_PREFIXES = ("SLURM_", "SBATCH_", "SALLOC_", "SRUN_", "SQUEUE_", "SACCT_", "SINFO_", "SCONTROL_")
SCRIPT_TIMEOUT = 180.0


class SlurmCommandError(subprocess.CalledProcessError):
    """A Slurm client failed; unlike CalledProcessError, the message shows its output."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout: {self.stdout}\nstderr: {self.stderr}"


@dataclass
class SlurmCluster:
    """A running test cluster. Pass `env` to every subprocess that uses Slurm clients."""

    base: Path
    conf: Path
    env: dict[str, str]
    accounting: bool
    max_array_size: int
    script_env: dict[str, str] = field(repr=False, default_factory=dict)

    def run(self, *args: str, check: bool = True) -> str:
        """Run a Slurm client (squeue, scontrol, ...) against this cluster; return its stdout."""
        proc = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=60)
        if check and proc.returncode:
            raise SlurmCommandError(proc.returncode, list(args), proc.stdout, proc.stderr)
        return proc.stdout

    def script(self, name: str, *args: str) -> str:
        """Run tests/infra/NAME for this cluster; return its output, fail with its output and logs."""
        return _script(self.script_env, name, *args)

    def set_accounting(self, on: bool) -> None:
        """Switch accounting (restarts slurmctld and slurmd; jobs survive), then wait until usable."""
        if on == self.accounting:
            return
        if on and (missing := _missing(ACCOUNTING_PROGRAMS)):
            _unavailable(f"Slurm accounting needs {', '.join(missing)}: run tests/infra/setup.sh as root")
        self.script("slurm_accounting.sh", "on" if on else "off")
        self.accounting = on
        self._wait_usable()

    def _wait_usable(self, timeout: float = 30) -> None:
        def usable() -> bool:
            states = self.run("sinfo", "-h", "-o", "%T", check=False).split()
            if not states or states[0] not in ("idle", "mixed", "allocated"):
                return False
            return not self.accounting or self._ok("sacct", "-n", "-X", "-S", "now-1minutes")

        _poll(usable, timeout, "the Slurm node to be usable")

    def _ok(self, *args: str) -> bool:
        return subprocess.run(list(args), env=self.env, capture_output=True, timeout=60).returncode == 0

    def job_ids(self) -> list[str]:
        """Ids of the jobs in the queue (pending, running, completing); an array counts once."""
        return sorted(set(self.run("squeue", "-h", "-o", "%F").split()), key=int)

    def wait_idle(self, timeout: float = 60) -> None:
        """Wait until no job is pending, running or completing."""
        try:
            _poll(lambda: not self.run("squeue", "-h", "-o", "%i").strip(), timeout, "an empty Slurm queue")
        except AssertionError:
            raise AssertionError(f"Slurm queue not empty after {timeout} s:\n{self.run('squeue')}") from None

    def cancel_all(self) -> None:
        """scancel every job in the queue, whoever submitted it (does not wait: see wait_idle)."""
        if ids := self.job_ids():
            # jobs may end between squeue and scancel
            self.run("scancel", *ids, check=False)


def _poll(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _find(program: str) -> str | None:
    """Path of PROGRAM on PATH or in the sbin directories that root's PATH may lack."""
    return shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")


def _missing(programs: tuple[str, ...]) -> list[str]:
    return [program for program in programs if _find(program) is None]


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _unavailable(reason: str) -> NoReturn:
    """Skip, except in CI, where a missing cluster must fail the run instead of hiding its tests."""
    if _in_ci():
        pytest.fail(f"{reason} (CI is set, so this fails instead of skipping)", pytrace=False)
    pytest.skip(reason)


def _free_ports(count: int) -> list[int]:
    """Distinct free TCP ports below the ephemeral range, so outgoing connections cannot take them later."""
    ports: list[int] = []
    rng = random.Random()
    while len(ports) < count:
        port = rng.randrange(20000, 32000)
        if port in ports:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("", port))
            except OSError:
                continue
        ports.append(port)
    return ports


def _client_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith(CLIENT_ENV_PREFIXES)}


def _log_tails(base: Path, lines: int = 15) -> str:
    tails = []
    logs = [*sorted((base / "log").glob("*.log")), base / "munge/munged.log", base / "mysql/error.log"]
    for log in logs:
        if log.is_file():
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            tails.append(f"--- {log}\n" + "\n".join(tail))
    return "\n".join(tails)


def _script(script_env: dict[str, str], name: str, *args: str) -> str:
    # Output goes to a file, not a pipe: a daemon that kept the pipe open would block us until it exits.
    with tempfile.TemporaryFile("w+") as out:
        try:
            proc = subprocess.run(["bash", str(INFRA / name), *args], env=script_env, stdout=out,
                                  stderr=subprocess.STDOUT, text=True, timeout=SCRIPT_TIMEOUT)
            code: int | str = proc.returncode
        except subprocess.TimeoutExpired:
            code = f"timeout after {SCRIPT_TIMEOUT} s"
        out.seek(0)
        output = out.read()
    if code != 0:
        raise RuntimeError(f"{name} {' '.join(args)} failed ({code}):\n{output}\n"
                           f"{_log_tails(Path(script_env['BASE']))}")
    return output


def start_cluster(base: Path, cpus: int = 8, max_array_size: int = 10) -> SlurmCluster:
    """Start a cluster with accounting off, its state under BASE (whose parents must be world-traversable)."""
    ctld, slurmd, dbd, db = _free_ports(4)
    script_env = {
        **_client_env(),
        "BASE": str(base),
        "CPUS": str(cpus),
        "MAX_ARRAY_SIZE": str(max_array_size),
        "MINJOBAGE": "3600",
        "SLURMCTLD_PORT": str(ctld),
        "SLURMD_PORT": str(slurmd),
        "DBD_PORT": str(dbd),
        "DB_PORT": str(db),
    }
    conf = base / "etc" / "slurm.conf"
    cluster = SlurmCluster(base=base, conf=conf, env={**_client_env(), "SLURM_CONF": str(conf)},
                           accounting=False, max_array_size=max_array_size, script_env=script_env)
    try:
        cluster.script("slurm_up.sh")
        cluster._wait_usable()
    except BaseException:
        stop_cluster(cluster)
        raise
    return cluster


def stop_cluster(cluster: SlurmCluster) -> None:
    """Cancel all jobs and stop every daemon the cluster's scripts started (by their pid files)."""
    cluster.script("slurm_down.sh")


@pytest.fixture(scope="session")
def slurm_session(request: pytest.FixtureRequest) -> Iterator[SlurmCluster]:
    """The session's cluster, in whatever accounting mode the last test left it: use `slurm`/`slurm_acct`."""
    if os.geteuid() != 0:
        _unavailable("the Slurm test cluster needs root (its daemons and jobs run as root)")
    if missing := _missing(CORE_PROGRAMS):
        _unavailable(f"the Slurm test cluster needs {', '.join(missing)}: run tests/infra/setup.sh as root")
    # not tmp_path_factory: its directories are 0700, and mariadbd (as mysql) and other users' jobs need in
    root = Path(tempfile.mkdtemp(prefix=f"expdeploy-test-{os.getpid()}-", dir="/tmp"))
    root.chmod(0o755)
    try:
        cluster = start_cluster(root / "slurm")
    except RuntimeError as error:
        pytest.fail(f"could not start the Slurm test cluster:\n{error}", pytrace=False)
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_DFL:
        # `timeout pytest ...` or CI ending the run with SIGTERM would otherwise leave the daemons running
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield cluster
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop_cluster(cluster)
        # after a failure the logs stay (the database, about 200 MB, does not)
        shutil.rmtree(cluster.base / "mysql" / "data" if request.session.testsfailed else root,
                      ignore_errors=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _clear_queue(cluster: SlurmCluster) -> None:
    if cluster.job_ids():
        cluster.cancel_all()
        cluster.wait_idle()


def _with_accounting(cluster: SlurmCluster, on: bool) -> Iterator[SlurmCluster]:
    cluster.set_accounting(on)
    _clear_queue(cluster)
    yield cluster
    _clear_queue(cluster)


@pytest.fixture
def slurm(slurm_session: SlurmCluster) -> Iterator[SlurmCluster]:
    """The cluster with accounting off and an empty queue; the test's jobs are cancelled afterwards."""
    yield from _with_accounting(slurm_session, False)


@pytest.fixture
def slurm_acct(slurm_session: SlurmCluster) -> Iterator[SlurmCluster]:
    """The cluster with accounting on (real sacct) and an empty queue; jobs are cancelled afterwards."""
    yield from _with_accounting(slurm_session, True)
