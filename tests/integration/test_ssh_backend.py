"""`expdeploy run --target lab` on the SSH backend against real sshd hosts (tests/services/hosts.py):
h1 and h2 are distinct network namespaces that each see their own empty copy of the project's
path, so a run there uses only what was synced there."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Project, processes_with, wait_until
from services.hosts import Hosts

pytestmark = pytest.mark.integration


def lab_target(hosts: Hosts) -> str:
    """Target `lab`: h1 and h2, two CPU slots each."""
    return ('[targets.lab]\nbackend = "ssh"\nhosts = ["h1", "h2"]\nslots = 2\n'
            f'ssh_config = "{hosts.ssh_config}"\n')


@pytest.fixture
def lab(hosts: Hosts, request: pytest.FixtureRequest) -> Iterator[Project]:
    """A project at the same absolute path here and (once synced) on h1 and h2, with target `lab`."""
    root = hosts.shared / f"ssh-{request.node.name}"
    root.mkdir()
    project = Project(root)
    project.write("expdeploy.toml", lab_target(hosts))
    yield project
    project.stop_all()


def where(project: Project, name: str) -> dict[str, str]:
    """Run name -> host, from the `where.txt` each run wrote and the controller brought back."""
    return {p.parent.name: p.read_text().split()[0]
            for p in (project.exp(name) / "runs").glob("*/where.txt")}


def test_runs_spread_over_both_hosts_and_their_files_come_back(lab: Project, hosts: Hosts) -> None:
    lab.write("grid.yml", """
        name: spread
        command: echo $(hostname) {x} $(cat WHOAMI 2>/dev/null) > {run_dir}/where.txt && sleep 0.5
        grid:
          x: [1, 2, 3, 4, 5, 6]
    """)
    done = lab.run("run", "grid.yml", "--target", "lab", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ssh: lab: h1 (2 CPU slots), h2 (2 CPU slots)" in done.stdout
    assert set(lab.states("spread").values()) == {"succeeded"}
    placed = where(lab, "spread")
    assert len(placed) == 6, "every run's files came back"
    assert set(placed.values()) == {"h1", "h2"}, "runs went to both hosts"
    log = next((lab.exp("spread") / "runs").glob("*/main.log"))
    assert log.exists()
    assert not (lab.root / "WHOAMI").exists(), "each host has its own copy of the path"


def test_unreachable_host_loses_its_runs_and_they_finish_on_the_other(lab: Project, hosts: Hosts) -> None:
    lab.write("grid.yml", """
        name: failover
        command: test $(hostname) = h2 || sleep 60; echo $(hostname) > {run_dir}/where.txt
        grid:
          x: [1, 2, 3, 4]
    """)
    controller = lab.start("run", "grid.yml", "--target", "lab", "--host-timeout", "2")
    marker = f"{lab.exp('failover')}/.expdeploy/worker.py run"
    try:
        wait_until(lambda: any(_host_of(pid) == "h1" for pid in processes_with(marker)), 60,
                   "a run going on h1")
        hosts.link("h1", up=False)
        out, _ = controller.communicate(timeout=90)
    finally:
        hosts.link("h1", up=True)
        controller.kill()
    assert controller.returncode == 0, out
    assert "h1 unreachable" in out and "LOST" in out
    assert set(lab.states("failover").values()) == {"succeeded"}
    assert set(where(lab, "failover").values()) == {"h2"}
    attempts = {name: state["attempt"] for name, state in lab.state_files("failover").items()}
    assert max(attempts.values()) == 2, "the runs lost with h1 ran again as attempt 2"


def test_ctrl_c_cancels_the_runs_on_the_hosts(lab: Project, hosts: Hosts) -> None:
    lab.write("grid.yml", """
        name: stop
        command: sleep 300
        grid:
          x: [1, 2, 3]
    """)
    controller = lab.start("run", "grid.yml", "--target", "lab", "--grace", "5")
    marker = f"{lab.exp('stop')}/.expdeploy/worker.py run"
    wait_until(lambda: len(processes_with(marker)) == 3, 60, "three runs started")
    wait_until(lambda: set(lab.states("stop").values()) == {"running"}, 30, "runs recorded running")
    controller.send_signal(signal.SIGINT)
    out, _ = controller.communicate(timeout=60)
    assert controller.returncode == 130, out
    assert set(lab.states("stop").values()) == {"cancelled"}
    wait_until(lambda: not processes_with("sleep 300") or not any(
        _in_experiment(pid, lab) for pid in processes_with("sleep 300")), 10, "no run process left")
    assert not processes_with(marker)


@pytest.mark.parametrize("sync", [True, False], ids=["sync-first", "no-sync"])
def test_unreachable_target_is_one_line_and_exit_2(lab: Project, hosts: Hosts, sync: bool) -> None:
    lab.write("expdeploy.toml", f"""
        [targets.gone]
        backend = "ssh"
        hosts = ["h1"]
        ssh_config = "{hosts.ssh_config}"
    """)
    lab.write("grid.yml", "name: nowhere\ncommand: echo {x}\ngrid:\n  x: [1]\n")
    hosts.link("h1", up=False)
    try:
        done = lab.run("run", "grid.yml", "--target", "gone", *([] if sync else ["--no-sync"]), timeout=90)
    finally:
        hosts.link("h1", up=True)
    assert done.returncode == 2, done.stdout + done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert "(h1)" in errors[0] or "h1 unreachable" in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not lab.exp("nowhere").exists() or not list(lab.exp("nowhere").glob("runs/*/claim.*"))


def _host_of(pid: int) -> str | None:
    """The hostname of the UTS namespace process `pid` lives in (h1, h2, or this machine's)."""
    try:
        return subprocess.run(["nsenter", "-t", str(pid), "-u", "hostname"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except subprocess.CalledProcessError:
        return None


def _in_experiment(pid: int, project: Project) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(e.startswith(b"EXPDEPLOY_EXP_DIR=") and str(project.root).encode() in e for e in environ)



def test_runs_outlive_their_controller_and_status_brings_them_home(lab: Project, hosts: Hosts) -> None:
    lab.write("grid.yml", """
        name: laptop
        command: while ! test -e {exp_dir}/go; do sleep 0.1; done; echo done on $(hostname)
        grid:
          x: [1, 2]
    """)
    controller = lab.start("run", "grid.yml", "--target", "lab")
    marker = f"{lab.exp('laptop')}/.expdeploy/worker.py run"
    wait_until(lambda: len(processes_with(marker)) == 2, 60, "both runs started")
    wait_until(lambda: set(lab.states("laptop").values()) == {"running"}, 30, "runs recorded running")
    controller.kill()  # the laptop closes: nothing is cancelled
    controller.communicate()
    done = lab.run("status", str(lab.exp("laptop")), "--format", "json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert {r["state"] for r in status["runs"]} == {"running"}, "still running on their hosts"
    assert {r["host"] for r in status["runs"]} == {"h1", "h2"}
    for host in hosts.names:
        assert hosts.ssh(host, f"touch {lab.exp('laptop')}/go").returncode == 0

    def states() -> set[str]:
        done = lab.run("status", str(lab.exp("laptop")), "--format", "json")
        return {r["state"] for r in json.loads(done.stdout)["runs"]}

    wait_until(lambda: states() == {"succeeded"}, 60, "status sees both runs succeeded")
    logs = sorted(p.read_text() for p in (lab.exp("laptop") / "runs").glob("*/main.log"))
    assert logs == ["done on h1\n", "done on h2\n"], "their logs came back"
    again = lab.run("run", "grid.yml", "--target", "lab")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 of 2 runs to start (2 already succeeded)" in again.stdout


def test_agents_on_both_hosts_share_the_experiment_directory(project: Project, hosts: Hosts) -> None:
    # tmp_path is outside hosts.shared: the hosts see this very directory (a shared file system)
    project.write("expdeploy.toml", lab_target(hosts))
    project.write("grid.yml", """
        name: pull
        command: echo {i} $(hostname) >> {exp_dir}/ran.txt; sleep 0.2
        grid:
          i: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    """)
    done = project.run("run", "grid.yml", "--target", "lab", "--agents", "4", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "started 4 agent(s) on h1, h2 for 10 run(s)" in done.stdout
    lines = (project.exp("pull") / "ran.txt").read_text().split("\n")
    ran = [line.split() for line in lines if line]
    assert sorted(int(i) for i, _ in ran) == list(range(10)), "each run exactly once"
    assert set(project.states("pull").values()) == {"succeeded"}
    logs = sorted(p.name for p in (project.exp("pull") / "agents").glob("*.log"))
    assert logs == ["h1-cpu0.log", "h1-cpu1.log", "h2-cpu0.log", "h2-cpu1.log"]


def test_agents_refused_where_the_hosts_do_not_share_the_directory(lab: Project, hosts: Hosts) -> None:
    lab.write("grid.yml", "name: private\ncommand: echo {i}\ngrid:\n  i: [1, 2]\n")
    done = lab.run("run", "grid.yml", "--target", "lab", "--agents", "2")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--agents needs the experiment directory on a file system the hosts share" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_venv_synced_by_reference_runs_on_the_hosts_from_the_same_path(lab: Project, hosts: Hosts) -> None:
    venv = lab.root / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    assert hosts.ssh("h1", f"test -e {venv}/bin/python").returncode != 0, "h1 has no such venv yet"
    lab.write("expdeploy.toml", lab_target(hosts) + 'environment = ".venv"\n')
    lab.write("grid.yml", f"""
        name: byref
        command: >-
          python -c "import sys; print(sys.prefix)" > {{run_dir}}/prefix.txt;
          hostname >> {{run_dir}}/prefix.txt
        grid:
          x: [1, 2, 3, 4]
        env:
          venv: {venv}
    """)
    done = lab.run("run", "grid.yml", "--target", "lab", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "synced " in done.stdout and "to 2 hosts (h1, h2)" in done.stdout
    found = [p.read_text().split() for p in (lab.exp("byref") / "runs").glob("*/prefix.txt")]
    assert len(found) == 4
    assert {prefix for prefix, _ in found} == {str(venv)}, "the venv's python, at the identical path"
    assert {host for _, host in found} == {"h1", "h2"}
