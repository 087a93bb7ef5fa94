"""`--backend wandb`: the agents of existing sweeps placed for real on the local pool, SSH hosts
and Slurm, with a stand-in agent (EXPDEPLOY_WANDB_AGENT) that records what it was given: one
agent per slot, caps honoured, its own CUDA_VISIBLE_DEVICES; the API key in no file. Creating
a sweep on the W&B server runs only with WANDB_API_KEY."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Project, wait_until
from services.hosts import Hosts

from helpers import REPO

pytestmark = pytest.mark.integration

SECRET = "wandb-secret-77aa01c4e5d2f9b3"
COMPOSITE = """
    program: train.py
    method: grid
    entity: team
    project: demo
    parameters:
      lr:
        values: [0.1, 0.01]
      subtests:
        "adam,fast":
          opt:
            value: adam
        "sgd":
          opt:
            value: sgd
"""


def stand_in(project: Project, record: Path) -> None:
    """An agent that appends `sweep tags gpus host key?` to `record` and ends."""
    project.write("agent.sh", f"""
        echo "$1 ${{WANDB_TAGS:-none}} ${{CUDA_VISIBLE_DEVICES:-none}} $(hostname)"\\
             "${{WANDB_API_KEY:+key}}" >> {record}
    """)
    project.env["EXPDEPLOY_WANDB_AGENT"] = f"sh {project.root / 'agent.sh'}"
    project.env["WANDB_API_KEY"] = SECRET


def lines(record: Path) -> list[list[str]]:
    return sorted(line.split() for line in record.read_text().splitlines()) if record.exists() else []


def no_secret_in(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]


def test_local_agents_one_per_slot_with_their_sweeps_tags(project: Project) -> None:
    record = project.root / "agents.txt"
    stand_in(project, record)
    project.write("sweep.yaml", COMPOSITE)
    done = project.run("run", "sweep.yaml", "--backend", "wandb", "--sweep", "s1,s2", "-j", "2", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert lines(record) == [["team/demo/s1", "adam,fast", "none", os.uname().nodename, "key"],
                             ["team/demo/s2", "sgd", "none", os.uname().nodename, "key"]]
    assert "sweep team/demo/s1 [adam,fast]: 2 run(s) in the grid" in done.stdout
    assert "https://wandb.ai/team/demo/sweeps/s2" in done.stdout
    script = (project.exp("sweep") / "wandb-agents.sh").read_text()
    assert "env WANDB_TAGS=adam,fast sh " in script and " team/demo/s2" in script
    assert no_secret_in(project.root) == [], "the key reached the agents, and no file"


def test_agents_cap_and_runs_per_agent(project: Project) -> None:
    record = project.root / "agents.txt"
    stand_in(project, record)
    project.write("sweep.yaml", "program: train.py\nmethod: grid\nparameters:\n  lr:\n    values: [1, 2]\n")
    done = project.run("run", "sweep.yaml", "--backend", "wandb", "--sweep", "e/p/only", "-j", "3",
                       "--agents", "2", "--runs-per-agent", "5", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line[0] for line in lines(record)] == ["e/p/only", "e/p/only"], "capped at --agents 2"
    assert "--count 5" in (project.exp("sweep") / "wandb-agents.sh").read_text()


def test_ssh_agents_on_every_gpu_of_both_hosts(project: Project, hosts: Hosts) -> None:
    # tmp_path is outside hosts.shared: the hosts see this directory, so the record is shared
    record = project.root / "agents.txt"
    stand_in(project, record)
    project.write("expdeploy.toml", f"""
        [targets.lab]
        backend = "ssh"
        hosts = ["h1", "h2"]
        gpus = 2
        ssh_config = "{hosts.ssh_config}"
    """)
    project.write("sweep.yaml", COMPOSITE)
    done = project.run("run", "sweep.yaml", "--backend", "wandb", "--target", "lab", "--sweep", "s1,s2",
                       timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    found = lines(record)
    assert sorted((host, gpu) for _, _, gpu, host, _ in found) == [
        ("h1", "0"), ("h1", "1"), ("h2", "0"), ("h2", "1")], "one agent per GPU, each its own GPU"
    assert sorted(line[0] for line in found) == ["team/demo/s1"] * 2 + ["team/demo/s2"] * 2
    assert {line[4] for line in found} == {"key"}


def test_slurm_agents_are_one_array(project: Project, slurm: Any) -> None:
    project.env.update(slurm.env)
    record = project.root / "agents.txt"
    stand_in(project, record)
    project.write("sweep.yaml", "program: train.py\nmethod: grid\nparameters:\n  lr:\n    values: [1, 2]\n")
    done = project.run("run", "sweep.yaml", "--backend", "wandb", "--on", "slurm", "--agents", "3",
                       "--sweep", "e/p/sw", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "submitted 3 agent(s) as array job" in done.stdout
    wait_until(lambda: len(lines(record)) == 3, 60, "three agents ran")
    (script,) = (project.exp("sweep") / "slurm").glob("*-agents.sbatch")
    assert "#SBATCH --array=0-2\n" in script.read_text()
    assert script.read_text().rstrip().endswith("exec env sh " + str(project.root / "agent.sh") + " e/p/sw")
    assert no_secret_in(project.root) == []


@pytest.mark.skipif(not os.environ.get("WANDB_API_KEY"), reason="creating a sweep needs WANDB_API_KEY "
                    "(and a network); none is set here")
def test_live_sweep_creation(project: Project) -> None:
    record = project.root / "agents.txt"
    key = os.environ["WANDB_API_KEY"]
    stand_in(project, record)
    project.env["WANDB_API_KEY"] = key
    project.write("sweep.yaml", "program: train.py\nmethod: grid\nproject: expdeploy-test\n"
                                "parameters:\n  lr:\n    values: [1, 2]\n")
    done = project.run("run", "sweep.yaml", "--backend", "wandb", "-j", "1", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "/sweeps/" in done.stdout and len(lines(record)) == 1


def test_creating_a_sweep_without_a_key_is_one_line(project: Project) -> None:
    project.env.pop("WANDB_API_KEY", None)
    project.write("sweep.yaml", "program: train.py\nmethod: grid\nparameters:\n  lr:\n    values: [1]\n")
    done = project.run("run", "sweep.yaml", "--backend", "wandb")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "creating a W&B sweep needs WANDB_API_KEY" in done.stderr and "Traceback" not in done.stderr


BAYES = """
    program: train.py
    method: bayes
    entity: team
    project: demo
    metric: {name: val_loss, goal: minimize}
    early_terminate: {type: hyperband, min_iter: 3, eta: 2}
    parameters:
      lr: {distribution: log_uniform_values, min: 0.0001, max: 0.1}
      opt: {values: [adam, sgd]}
"""


def test_a_bayes_sweep_with_early_terminate_goes_to_wandb_unchanged(project: Project) -> None:
    record = project.root / "agents.txt"
    stand_in(project, record)
    sweep = project.write("sweep.yaml", BAYES)
    shown = project.run("run", "sweep.yaml", "--backend", "wandb", "--dry-run", "-j", "2")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "a bayes search, no run_cap: the W&B server chooses its runs" in shown.stdout
    printed = shown.stdout.split("2 agent(s):\n", 1)[1].split("\nagent: ", 1)[0]
    as_read = yaml.safe_load(sweep.read_text())  # what `wandb sweep sweep.yaml` would upload
    assert yaml.safe_load(printed) == {k: v for k, v in as_read.items() if k not in ("entity", "project")}
    assert not (project.root / "experiments").exists() and not record.exists(), "a dry run starts nothing"
    done = project.run("run", "sweep.yaml", "--backend", "wandb", "--sweep", "s9", "-j", "2", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [line[0] for line in lines(record)] == ["team/demo/s9"] * 2, "one agent per slot"
    assert "sweep team/demo/s9: a bayes search, early_terminate hyperband" in done.stdout
    offline = project.run("run", "sweep.yaml", "--dry-run")
    assert offline.returncode == 2 and "--backend wandb" in offline.stderr, "offline it stays refused"


@pytest.mark.parametrize("name", ["sweep-bayes.yaml", "uiprotomf_ml1m_sweep_conf.yml", "sweep_mnist.yaml"])
def test_real_bayes_sweeps_would_be_created_as_written(project: Project, name: str) -> None:
    text = (REPO / "tests/fixtures/wandb" / name).read_text()
    project.write("sweep.yaml", text)
    shown = project.run("run", "sweep.yaml", "--backend", "wandb", "--dry-run", "-j", "1")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    printed = shown.stdout.split("1 agent(s):\n", 1)[1].split("\nagent: ", 1)[0]
    as_read = yaml.safe_load(text)
    assert yaml.safe_load(printed) == {k: v for k, v in as_read.items() if k not in ("entity", "project")}


def test_server_driven_agents_on_slurm_get_the_launchs_directory_and_resources(
        project: Project, slurm: Any) -> None:
    project.env.update(slurm.env)
    record = project.root / "agents.txt"
    stand_in(project, record)
    project.write("sweep.yaml", BAYES)
    done = project.run("run", "sweep.yaml", "--backend", "wandb", "--on", "slurm", "--agents", "1",
                       "--sweep", "s7", "--resources", "cpus=1,time=5m", timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    wait_until(lambda: len(lines(record)) == 1, 60, "the agent ran")
    (script,) = (project.exp("sweep") / "slurm").glob("*-agents.sbatch")
    text = script.read_text()
    assert f"#SBATCH --chdir={project.root}\n" in text, "agents start where `run` was run"
    assert "#SBATCH --time=00:05:00\n" in text and "#SBATCH --cpus-per-task=1\n" in text


def test_what_would_not_reach_a_server_driven_sweep_is_refused(project: Project) -> None:
    project.write("sweep.yaml", BAYES)
    for extra in (["lr=0.1"], ["--command", "python3 other.py {args}"]):
        done = project.run("run", "sweep.yaml", *extra, "--backend", "wandb", "--dry-run")
        assert done.returncode == 2 and "would not reach the runs" in done.stderr, done.stderr
    capped = project.run("run", "sweep.yaml", "--backend", "wandb", "--dry-run", "-j", "1",
                         "--run-cap", "7")
    assert capped.returncode == 0, capped.stderr
    printed = capped.stdout.split("1 agent(s):\n", 1)[1].split("\nagent: ", 1)[0]
    assert yaml.safe_load(printed)["run_cap"] == 7, "--run-cap reaches the sweep W&B creates"
