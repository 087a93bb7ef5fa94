"""W&B sweep files on the local pool and SSH hosts with the real wandb package offline: the values
reach `wandb.config` as an agent hands them over (WANDB_SWEEP_PARAM_PATH), for programs that read
no arguments, here, on SSH hosts and in Slurm jobs; a random sweep without run_cap runs with
--run-cap or --sample."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Project, ssh_lab
from services.hosts import Hosts

from expdeploy import worker

pytestmark = pytest.mark.integration

# The pattern of wandb/examples: defaults in wandb.init, the sweep's values in wandb.config.
TRAIN = """
import json, os, wandb
run = wandb.init(config={"lr": -1.0, "opt": {"name": "none", "beta": 0.0}, "warmup": None})
with open(os.path.join(os.environ["EXPDEPLOY_RUN_DIR"], "seen.json"), "w") as out:
    json.dump(dict(run.config), out)
run.finish()
"""
SWEEP = """
    program: train.py
    method: grid
    parameters:
      lr: {values: [0.1, 1e-5]}
      opt:
        parameters:
          name: {values: [adam, sgd]}
          beta: {value: 0.9}
      warmup: {value: 100}
    command: ["${env}", "${interpreter}", "${program}"]
"""


def seen_and_given(project: Project, name: str) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(wandb.config as the run saw it, the parameters expdeploy gave the run) per run."""
    exp = project.exp(name)
    for plan in worker.read_manifest(str(exp)).values():
        seen = json.loads((exp / "runs" / plan["name"] / "seen.json").read_text())
        yield seen, plan["sweep_args"]


def offline(project: Project, python: str = "${interpreter}") -> None:
    project.write("train.py", TRAIN)
    project.write("sweep.yaml", SWEEP.replace("${interpreter}", python))
    project.use_this_python()
    project.env.pop("WANDB_MODE", None)
    project.env["WANDB_SILENT"] = "true"


def test_values_reach_wandb_config_on_the_local_pool(project: Project) -> None:
    offline(project)
    done = project.run("run", "sweep.yaml", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    pairs = list(seen_and_given(project, "sweep"))
    assert len(pairs) == 4
    for seen, given in pairs:
        assert seen == given, "wandb.config holds the sweep's values, not the program's defaults"
    assert sorted(str(s["lr"]) for s, _ in pairs) == ["0.1", "0.1", "1e-5", "1e-5"]
    assert {type(s["lr"]).__name__ for s, _ in pairs} == {"float", "str"}, "1e-5 is text, as in W&B"


@pytest.fixture
def lab(hosts: Hosts, request: pytest.FixtureRequest) -> Iterator[Project]:
    project = ssh_lab(hosts.shared, f"wandb-{request.node.name}", 1, hosts.ssh_config)
    yield project
    project.stop_all()


def test_values_reach_wandb_config_on_ssh_hosts(lab: Project) -> None:
    offline(lab, python=sys.executable)  # the hosts' own PATH has no wandb; this venv's path is there too
    done = lab.run("run", "sweep.yaml", "--target", "lab", timeout=240)
    logs = "".join(p.read_text()[-800:] for p in lab.exp("sweep").glob("runs/*/main.log"))
    assert done.returncode == 0, done.stdout + done.stderr + logs
    pairs = list(seen_and_given(lab, "sweep"))
    assert len(pairs) == 4 and all(seen == given for seen, given in pairs)


def test_values_reach_wandb_config_in_slurm_jobs(project: Project, slurm: Any) -> None:
    project.env.update(slurm.env)
    offline(project, python=sys.executable)  # the jobs' environment is Slurm's, not this PATH
    done = project.run("run", "sweep.yaml", "--backend", "slurm", timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    pairs = list(seen_and_given(project, "sweep"))
    assert len(pairs) == 4 and all(seen == given for seen, given in pairs)


RANDOM = """
    program: draw.py
    method: random
    parameters:
      x: {min: 0.0, max: 1.0}
"""


def test_a_random_sweep_without_run_cap_runs_with_run_cap_or_sample(project: Project) -> None:
    project.write("draw.py", "import sys; print(sys.argv[1:])\n")
    project.write("sweep.yaml", RANDOM)
    project.use_this_python()
    refused = project.run("run", "sweep.yaml")
    assert refused.returncode == 2 and "--run-cap" in refused.stderr
    assert not (project.root / "experiments").exists()
    done = project.run("run", "sweep.yaml", "--run-cap", "3")
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(project.states("sweep")) == 3
    sampled = project.run("run", "sweep.yaml", "--sample", "2", "--name", "sampled")
    assert sampled.returncode == 0, sampled.stdout + sampled.stderr
    assert len(project.states("sampled")) == 2
