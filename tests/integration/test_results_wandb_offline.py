"""`expdeploy results` over runs that logged only to W&B, offline, with the real wandb package: a sweep
file's runs (expdeploy points W&B into the run directory) and a native run whose program does so itself,
logging records longer than a block; final values from the W&B summary, best values from its history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import Project

from expdeploy.wandb_records import BLOCK, HEADER, records

pytestmark = pytest.mark.integration

SWEEP_TRAIN = """
import argparse, wandb
parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float)
args = parser.parse_args()
run = wandb.init(config=vars(args))
for loss in (3 * args.lr, args.lr, 2 * args.lr):
    wandb.log({"loss": loss})
wandb.summary["acc"] = 1 - args.lr
run.finish()
"""

NATIVE_TRAIN = """
import os, wandb
run = wandb.init(mode="offline", dir=os.environ["EXPDEPLOY_RUN_DIR"])
for step, loss in enumerate([0.5, 0.1, 0.4, 0.3, 0.6, 0.2]):
    wandb.log({"loss": loss, "sample": str(step) * 100_000})
run.finish()
"""


def offline(project: Project) -> Project:
    """The runs see no W&B settings but the ones expdeploy or their program gives."""
    project.use_this_python()
    project.env.pop("WANDB_MODE", None)
    project.env.pop("WANDB_DIR", None)
    project.env["WANDB_SILENT"] = "true"
    return project


def results(project: Project, name: str, *args: str) -> dict[str, dict[str, Any]]:
    done = project.run("results", str(project.exp(name)), "--format", "json", *args)
    assert done.returncode == 0, done.stderr
    return {row["run"]: row for row in json.loads(done.stdout)}


def test_a_sweep_files_offline_runs_reach_the_table(project: Project) -> None:
    offline(project).write("train.py", SWEEP_TRAIN)
    project.write(
        "sweep.yaml",
        """
        program: train.py
        method: grid
        parameters:
          lr:
            values: [0.1, 0.2]
    """,
    )
    done = project.run("run", "sweep.yaml", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not list(project.exp("sweep").glob("runs/*/wandb/*/files/wandb-summary.json")), (
        "offline, W&B writes only its .wandb log"
    )
    rows = results(project, "sweep")
    assert set(rows) == {"lr=0.1", "lr=0.2"}
    for lr in (0.1, 0.2):
        row = rows[f"lr={lr}"]
        assert row["metrics"] == {"loss": pytest.approx(2 * lr), "acc": pytest.approx(1 - lr)}
        assert row["best"] == {"loss": pytest.approx(lr)}
    assert results(project, "sweep", "--goal", "max")["lr=0.2"]["best"] == {"loss": pytest.approx(0.6)}
    drawn = project.run("results", str(project.exp("sweep")), "--curves", "loss", "--out", "c.png")
    assert drawn.returncode == 0, drawn.stderr
    assert drawn.stdout.strip() == "wrote c.png: loss of 2 runs, 2 curves", "curves from W&B history"


def test_records_spanning_blocks_are_read(project: Project) -> None:
    offline(project).write("train.py", NATIVE_TRAIN)
    project.write(
        "grid.yml",
        """
        name: big
        command: python train.py
        grid:
          seed: [0]
    """,
    )
    done = project.run("run", "grid.yml", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    (log,) = project.exp("big").glob("runs/*/wandb/offline-run-*/run-*.wandb")
    assert longest_record(log) > BLOCK, "the log holds records split over blocks"
    (row,) = results(project, "big").values()
    assert row["metrics"] == {"loss": pytest.approx(0.2), "sample": "5" * 100_000}
    assert row["best"] == {"loss": pytest.approx(0.1)}


def longest_record(path: Path) -> int:
    with path.open("rb") as stream:
        assert stream.read(len(HEADER)) == HEADER
        return max(map(len, records(stream)))
