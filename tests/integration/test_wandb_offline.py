"""A W&B sweep file run by expdeploy with no W&B server: the real wandb package, offline, sees in
each run the config and tags an agent would give it, and writes its run inside the run directory,
where `expdeploy wandb sync` finds it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Project

pytestmark = pytest.mark.integration

TRAIN = """
import argparse, json, wandb
parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float)
parser.add_argument("--opt")
parser.add_argument("--_tags")  # deploy_sweeps.py's programs take their subtest's tags
args = parser.parse_args()
run = wandb.init(config=vars(args))
wandb.log({"loss": args.lr * 2})
with open("seen-%s.json" % args.opt, "w") as out:
    json.dump({"tags": sorted(run.tags), "group": run.group, "name": run.name, "mode": run.settings.mode,
               "config": dict(run.config)}, out)
run.finish()
"""


def test_sweep_runs_offline_with_the_agents_view(project: Project) -> None:
    project.write("train.py", TRAIN)
    project.write("sweep.yaml", """
        program: train.py
        method: grid
        project: demo
        parameters:
          lr:
            value: 0.1
          subtests:
            "adam,fast":
              opt:
                value: adam
            "sgd":
              opt:
                value: sgd
    """)
    project.use_this_python()
    project.env.pop("WANDB_MODE", None)
    project.env["WANDB_SILENT"] = "true"
    done = project.run("run", "sweep.yaml", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    exp = project.exp("sweep")
    adam = json.loads((project.root / "seen-adam.json").read_text())
    assert adam["mode"] == "offline" and adam["group"] == "sweep"
    assert adam["tags"] == ["adam", "fast"]
    assert adam["config"] == {"lr": 0.1, "opt": "adam"}  # wandb keeps `_` keys out of its config
    assert json.loads((project.root / "seen-sgd.json").read_text())["tags"] == ["sgd"]
    runs = sorted(exp.glob("runs/*/wandb/offline-run-*/run-*.wandb"))
    assert len(runs) == 2, "each run's offline W&B run is inside its run directory"
    assert all(b"adam" in p.read_bytes() or b"sgd" in p.read_bytes() for p in runs)
    shown = project.run("wandb", "sync", str(exp), "--dry-run")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("2 offline run(s): ") and " sync " in shown.stdout
    assert all(str(p.parent) in shown.stdout for p in runs)


def test_wandb_sync_without_offline_runs_is_exit_2(project: Project) -> None:
    project.write("grid.yml", "name: plain\ncommand: echo {x}\ngrid:\n  x: [1]\n")
    assert project.run("run", "grid.yml").returncode == 0
    done = project.run("wandb", "sync", str(project.exp("plain")))
    assert done.returncode == 2 and "no offline W&B runs" in done.stderr


SECRET = "wandb-secret-3f9c2a7d41e0b8c6"


def files_holding(root: Path, text: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]


def test_the_api_key_reaches_runs_and_lands_in_no_file(project: Project) -> None:
    project.write("train.py", "import os\n"
                  "print('key seen' if os.environ.get('WANDB_API_KEY') else 'no key')\n")
    project.write("sweep.yaml", """
        program: train.py
        method: grid
        parameters:
          lr:
            values: [0.1, 0.01]
    """)
    project.env["WANDB_API_KEY"] = SECRET
    project.use_this_python()
    done = project.run("run", "sweep.yaml", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    logs = [p.read_text() for p in project.exp("sweep").glob("runs/*/main.log")]
    assert logs == ["key seen\n", "key seen\n"], "the key reaches the runs through the environment"
    assert files_holding(project.root, SECRET) == [], "no file the tool wrote holds the key"
    assert SECRET not in done.stdout + done.stderr
