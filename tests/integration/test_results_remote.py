"""Experiments whose runs execute on SSH hosts (real sshd in network namespaces, each host with its
own copy of the path): `expdeploy results` brings over only the metric files, while the runs still
go on; a --snapshot travels to the host and keeps a queued run on the code of submit time. Also
the default metric and goal of a W&B sweep file."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from conftest import Project, ssh_lab, wait_until
from services.hosts import Hosts

pytestmark = pytest.mark.integration


@pytest.fixture
def lab(hosts: Hosts, request: pytest.FixtureRequest) -> Iterator[Project]:
    project = ssh_lab(hosts.shared, f"results-{request.node.name}", 1, hosts.ssh_config)
    yield project
    project.stop_all()


def test_results_of_runs_still_going_on_ssh_hosts(lab: Project, hosts: Hosts) -> None:
    gate = lab.root / "go"  # each host sees its own copy of this path: made there, over ssh
    lab.write("emit.sh", f"""
        printf '{{"step": 0, "loss": %s.5}}\\n' "$1" >> "$2/metrics.jsonl"
        head -c 3000000 /dev/zero > "$2/checkpoint.bin"
        while [ ! -e {gate} ]; do sleep 0.05; done
        printf '{{"acc": %s0}}\\n' "$1" > "$2/summary.json"
    """)
    lab.write("grid.yml", """
        name: far
        command: sh emit.sh {x} {run_dir}
        grid:
          x: [1, 2]
    """)
    controller = lab.start("run", "grid.yml", "--target", "lab")
    for host in hosts.names:
        wait_until(lambda h=host: hosts.ssh(h, f"ls {lab.root}/experiments/far/runs/*/checkpoint.bin")
                   .returncode == 0, 90, what=f"a run going on {host}")
    assert not list(lab.exp("far").glob("runs/*/metrics.jsonl")), "nothing has come back yet"

    going = lab.run("results", str(lab.exp("far")), "--format", "json")
    assert going.returncode == 0, going.stderr
    rows = {r["run"]: r for r in json.loads(going.stdout)}
    assert {n: (r["state"], r["metrics"]) for n, r in rows.items()} == {
        "x=1": ("running", {"loss": 1.5}), "x=2": ("running", {"loss": 2.5})}
    assert not list(lab.exp("far").glob("runs/*/checkpoint.bin")), "only the small metric files came"

    for host in hosts.names:
        assert hosts.ssh(host, f"touch {gate}").returncode == 0
    out, _ = controller.communicate(timeout=90)
    assert controller.returncode == 0, out
    done = json.loads(lab.run("results", str(lab.exp("far")), "--format", "json").stdout)
    assert {r["run"]: r["metrics"] for r in done} == {"x=1": {"loss": 1.5, "acc": 10},
                                                      "x=2": {"loss": 2.5, "acc": 20}}


def test_a_sweep_files_metric_is_the_default_sort(project: Project) -> None:
    project.write("train.py", """
        import json, os, sys
        lr = float(sys.argv[1].split("=")[1])
        with open(os.path.join(os.environ["EXPDEPLOY_RUN_DIR"], "summary.json"), "w") as out:
            json.dump({"val_acc": {0.1: 0.7, 0.01: 0.9, 0.001: 0.8}[lr]}, out)
    """)
    project.write("sweep.yaml", """
        program: train.py
        method: grid
        metric:
          name: val_acc
          goal: maximize
        parameters:
          lr:
            values: [0.1, 0.01, 0.001]
    """)
    project.use_this_python()
    assert project.run("run", "sweep.yaml", "--wandb-mode", "disabled", timeout=120).returncode == 0
    shown = project.run("results", str(project.exp("sweep")), "--format", "json")
    assert shown.returncode == 0, shown.stderr
    assert [r["metrics"]["val_acc"] for r in json.loads(shown.stdout)] == [0.9, 0.8, 0.7]
    asked = project.run("results", str(project.exp("sweep")), "--format", "json", "--goal", "min")
    assert [r["metrics"]["val_acc"] for r in json.loads(asked.stdout)] == [0.7, 0.8, 0.9]


@pytest.mark.parametrize("snapshot", [True, False])
def test_snapshot_on_a_host_keeps_a_queued_run_on_the_code_of_submit_time(
        hosts: Hosts, request: pytest.FixtureRequest, snapshot: bool) -> None:
    root = hosts.shared / f"snap-{request.node.name.replace('[', '-').rstrip(']')}"
    root.mkdir()
    lab = Project(root)
    lab.write("expdeploy.toml", '[targets.one]\nbackend = "ssh"\nhosts = ["h1"]\nslots = 1\n'
              f'ssh_config = "{hosts.ssh_config}"\n')
    gate = root / "go"
    lab.write("show.sh", f"""
        if [ "$1" = 1 ]; then touch {root}/started; while [ ! -e {gate} ]; do sleep 0.05; done; fi
        echo "data: $(cat data.txt)"
    """)
    lab.write("data.txt", "at submit\n")
    lab.write("grid.yml", """
        name: snap
        command: sh show.sh {x}
        grid:
          x: [1, 2]
    """)
    try:
        controller = lab.start("run", "grid.yml", "--target", "one", *(["--snapshot"] if snapshot else []))
        wait_until(lambda: hosts.ssh("h1", f"test -e {root}/started").returncode == 0, 90,
                   what="the first run on h1")
        lab.write("data.txt", "edited while queued\n")
        synced = lab.run("env", "sync", "one")  # the new code reaches the host while x=2 waits
        assert synced.returncode == 0, synced.stderr
        assert hosts.ssh("h1", f"touch {gate}").returncode == 0
        out, _ = controller.communicate(timeout=90)
        assert controller.returncode == 0, out
        seen = (lab.exp("snap") / "runs" / "x=2" / "main.log").read_text().strip()
        assert seen == ("data: at submit" if snapshot else "data: edited while queued")
    finally:
        lab.stop_all()
