"""`expdeploy results` over real runs that report metrics every supported way: expdeploy.log and
expdeploy.summary, a summary.json of their own, W&B's summary file; aggregation on known
numbers; CSV and JSON read back to the same values."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest
from conftest import Project

pytestmark = pytest.mark.integration

TRAIN = """
import json, os, sys
import expdeploy
lr, seed = float(sys.argv[1]), int(sys.argv[2])
for step in range(3):
    expdeploy.log(step=step, loss=lr * 10 + seed - step)
acc = {0.1: 0.5, 0.2: 0.7}[lr] + 0.1 * seed
if seed == 0:
    expdeploy.summary(acc=acc)
else:  # the other ways a run may leave its results
    with open(os.path.join(os.environ["EXPDEPLOY_RUN_DIR"], "summary.json"), "w") as out:
        json.dump({"acc": acc}, out)
    wandb = os.path.join(os.environ["EXPDEPLOY_RUN_DIR"], "wandb", "run-1", "files")
    os.makedirs(wandb)
    with open(os.path.join(wandb, "wandb-summary.json"), "w") as out:
        json.dump({"tokens": 1000 * (seed + 1), "_runtime": 3}, out)
"""


@pytest.fixture
def measured(project: Project) -> Project:
    project.write("train.py", TRAIN)
    project.write("grid.yml", """
        name: res
        command: python train.py {lr} {seed}
        grid:
          lr: [0.1, 0.2]
          seed: [0, 1]
          fixed: [same]
    """)
    project.use_this_python()
    done = project.run("run", "grid.yml", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return project


def results(project: Project, *args: str) -> str:
    done = project.run("results", str(project.exp("res")), *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_source_of_metrics_reaches_the_table(measured: Project) -> None:
    rows = json.loads(results(measured, "--format", "json"))
    by_name = {r["run"]: r for r in rows}
    assert by_name["lr=0.1,seed=0"]["metrics"] == {"loss": pytest.approx(-1.0), "acc": pytest.approx(0.5)}
    assert by_name["lr=0.2,seed=1"]["metrics"]["tokens"] == 2000, "W&B's summary, without its _ keys"
    assert by_name["lr=0.2,seed=1"]["metrics"]["acc"] == pytest.approx(0.8)
    assert by_name["lr=0.1,seed=0"]["best"]["loss"] == pytest.approx(-1.0)
    table = results(measured, "--metric", "acc", "--goal", "max")
    header, first = table.splitlines()[:2]
    assert header.split()[:5] == ["run", "lr", "seed", "state", "duration_s"] and "fixed" not in header
    assert first.startswith("lr=0.2,seed=1"), "sorted best first"


def test_where_tag_and_formats_read_back(measured: Project) -> None:
    text = results(measured, "--where", "lr<0.2", "--format", "csv")
    read = list(csv.DictReader(io.StringIO(text)))
    assert [r["run"] for r in read] == ["lr=0.1,seed=0", "lr=0.1,seed=1"]
    assert [float(r["acc"]) for r in read] == [pytest.approx(0.5), pytest.approx(0.6)]
    markdown = results(measured, "--where", "acc>=0.7", "--format", "markdown").splitlines()
    assert markdown[0].startswith("| run | lr | seed |") and len(markdown) == 4


def test_group_by_seed_is_mean_and_std_over_seeds(measured: Project) -> None:
    groups = json.loads(results(measured, "--group-by", "seed", "--format", "json"))
    assert [g["params"]["lr"] for g in groups] == [0.1, 0.2]
    assert groups[0]["count"] == 2
    assert groups[0]["mean"]["acc"] == pytest.approx(0.55)
    assert groups[0]["std"]["acc"] == pytest.approx(0.0707107, rel=1e-5)  # sample std of 0.5, 0.6
    read = list(csv.DictReader(io.StringIO(results(measured, "--group-by", "seed", "--format", "csv"))))
    assert float(read[1]["acc_mean"]) == pytest.approx(0.75) and read[1]["count"] == "2"


def test_bad_where_and_group_by_are_exit_2(measured: Project) -> None:
    for args, message in ((["--where", "lr"], "is not NAME OP VALUE"),
                          (["--group-by", "fixed"], "not a parameter that varies")):
        done = measured.run("results", str(measured.exp("res")), *args)
        assert done.returncode == 2 and message in done.stderr, done.stderr


def test_runs_whose_python_lacks_expdeploy_still_log(project: Project) -> None:
    # -S: no site-packages, so the only expdeploy this Python can import is the one the worker ships
    bare = f"{sys.executable} -S"
    assert subprocess.run([*bare.split(), "-c", "import expdeploy"], cwd=project.root,
                          capture_output=True).returncode != 0
    project.write("train.py", """
        import sys
        import expdeploy
        expdeploy.log(step=0, loss=float(sys.argv[1]))
        expdeploy.summary(acc=2 * float(sys.argv[1]))
    """)
    project.write("grid.yml", f"""
        name: bare
        command: {bare} train.py {{x}}
        grid:
          x: [1, 2]
    """)
    done = project.run("run", "grid.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(project.run("results", str(project.exp("bare")), "--format", "json").stdout)
    assert {r["run"]: r["metrics"] for r in rows} == {"x=1": {"loss": 1.0, "acc": 2.0},
                                                      "x=2": {"loss": 2.0, "acc": 4.0}}
