"""`expdeploy plan`: the summary, JSON with every run, dialect sniffing, warnings and options."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers import REPO

CliFn = Callable[..., Any]
EXAMPLES = REPO / "examples"


def test_summary_of_the_quickstart(cli: CliFn) -> None:
    result = cli("plan", str(EXAMPLES / "quickstart.yml"))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Experiment  quickstart" in out
    assert "Runs        10  (1 step; 10 commands)" in out
    assert "Varying     lr (3), norm (2), seed (2)" in out
    assert "GPU-hours   3.33" in out  # 10 runs x 1 GPU x 20 min
    assert "First 3 of 10 runs:" in out and "... and 7 more" in out
    assert "python3 examples/train.py --lr 0.1 --norm batch --seed 0 --out " in out
    assert not (Path.cwd() / "experiments").exists()  # plan writes nothing


def test_json_lists_every_run_with_commands(cli: CliFn) -> None:
    result = cli("plan", str(EXAMPLES / "pipeline.yml"), "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"experiment", "count", "gpu_hours", "runs"} <= set(data)
    assert data["experiment"] == "translation" and data["count"] == len(data["runs"]) == 12
    assert data["gpu_hours"] == 8 * 1 * 4 + 4 * 4 * 12
    run = data["runs"][0]
    assert set(run) == {"run_id", "name", "params", "tags", "commands"}
    assert list(run["commands"]) == ["train", "avg", "test"]
    assert run["commands"]["avg"].endswith(f"/runs/{run['name']}/avg.pt")
    assert len({r["run_id"] for r in data["runs"]}) == 12


@pytest.mark.parametrize(("path", "fmt", "count", "extra"), [
    ("quickstart.yml", "native", 10, []),
    ("pipeline.yml", "native", 12, []),
    ("wandb/sweep.yaml", "wandb", 12, []),
    ("mlrunner/params.yaml", "mlrunner", 8, []),
    ("experiments.json", "experiments-json", 3, ["--command", "python run.py {params_json}"]),
])
def test_every_example_plans(cli: CliFn, path: str, fmt: str, count: int, extra: list[str]) -> None:
    result = cli("plan", str(EXAMPLES / path), "--format", "json", *extra)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["format"], data["count"]) == (fmt, count)
    assert data["orphans"] == []


def test_overrides_on_the_command_line(cli: CliFn) -> None:
    result = cli("plan", str(EXAMPLES / "quickstart.yml"), "seed=range(0,4)", "lr=0.5",
                 "--format", "json")
    data = json.loads(result.stdout)
    assert data["count"] == 8
    assert {r["params"]["seed"] for r in data["runs"]} == {0, 1, 2, 3}


def test_spec_format_overrides_sniffing(cli: CliFn, tmp_path: Path) -> None:
    odd = tmp_path / "odd.txt"
    odd.write_text("program: t.py\nmethod: grid\nparameters:\n  a: {values: [1, 2]}\n")
    result = cli("plan", str(odd), "--spec-format", "wandb", "--format", "json")
    assert json.loads(result.stdout)["count"] == 2


def test_orphan_parameters_warn(cli: CliFn, tmp_path: Path) -> None:
    spec = tmp_path / "o.yml"
    spec.write_text("command: run {a}\ndefaults:\n  unused: 1\ngrid: {a: [1, 2]}\n")
    result = cli("plan", str(spec))
    assert result.exit_code == 0
    assert f"warning: {spec}:2: parameter 'unused' is set but used by no command template" in (
        result.stderr.replace("\n", " "))


def test_gpu_hours_from_time_per_run_or_unknown(cli: CliFn, tmp_path: Path) -> None:
    spec = tmp_path / "g.yml"
    spec.write_text("command: run {a}\nresources: {gpus: 2}\ngrid: {a: [1, 2, 3]}\n")
    assert "unknown (set resources.time" in cli("plan", str(spec)).stdout
    data = json.loads(cli("plan", str(spec), "--time-per-run", "90m", "--format", "json").stdout)
    assert data["gpu_hours"] == 3 * 2 * 1.5
    bad = cli("plan", str(spec), "--time-per-run", "soon")
    assert bad.exit_code == 2 and "--time-per-run" in bad.stderr


def test_name_and_output_set_the_experiment_directory(cli: CliFn, tmp_path: Path) -> None:
    result = cli("plan", str(EXAMPLES / "quickstart.yml"), "--name", "mine", "-o", "out",
                 "--format", "json")
    data = json.loads(result.stdout)
    assert data["exp_dir"] == str(tmp_path / "out" / "mine")
    assert all(f"/out/mine/runs/{r['name']}" in r["commands"]["main"] for r in data["runs"])
    bad = cli("plan", str(EXAMPLES / "quickstart.yml"), "--name", "../x")
    assert bad.exit_code == 2 and "experiment name" in bad.stderr


def test_help_teaches(cli: CliFn) -> None:
    top = cli("--help")
    assert top.exit_code == 0 and "plan" in top.stdout and "plugins" in top.stdout
    sub = cli("plan", "--help")
    for option in ("--format", "--spec-format", "--command", "--title", "--time-per-run"):
        assert option in sub.stdout
    assert "lr=0.1,0.01" in sub.stdout


def test_resources_option_replaces_every_runs_request(cli: CliFn, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("program: t.py\nmethod: grid\nparameters:\n  lr: {values: [1, 2, 3]}\n")
    result = cli("plan", str(sweep), "--resources", "gpus=2,cpus=4,mem=16G,time=30m")
    assert result.exit_code == 0, result.output
    assert "Resources   gpus=2 cpus=4 mem=16G time=30m" in result.stdout
    assert "GPU-hours   3.00" in result.stdout  # 3 runs x 2 GPUs x 0.5 h
    native = cli("plan", str(EXAMPLES / "quickstart.yml"), "--resources", "gpus=0", "--format", "json")
    assert json.loads(native.stdout)["gpu_hours"] == 0, "replaces the spec's gpus=1"


@pytest.mark.parametrize("text", ["gpus=-1", "gpus=two", "disk=1G", "time=soon", "cpus=0", "gpus", "gpus=²"])
def test_bad_resources_are_one_line_exit_2(cli: CliFn, text: str) -> None:
    result = cli("plan", str(EXAMPLES / "quickstart.yml"), "--resources", text)
    assert result.exit_code == 2 and "--resources" in result.stderr and "Traceback" not in result.stderr
