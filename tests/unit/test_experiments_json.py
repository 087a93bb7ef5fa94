"""Experiments JSON (prepare_experiments.py style): one explicit run per entry, --command."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable

import pytest

from expdeploy.errors import SpecError
from expdeploy.launch import commands_for
from expdeploy.plan import Plan

from helpers import REPO

PlanFn = Callable[..., Plan]
EXAMPLE = (REPO / "examples/experiments.json").read_text()
COMMAND = "python run_experiment.py {params_json}"


def test_each_entry_is_a_run_and_params_json_keeps_nesting(plan: PlanFn) -> None:
    result = plan(EXAMPLE, name="experiments.json", command=COMMAND)
    assert result.spec.name == "lr_study"
    assert len(result.expansion.runs) == 3
    run = result.expansion.runs[0]
    assert run.params == {"model.name": "resnet18", "model.depth": 18, "optim.lr": 0.1, "seed": 0,
                          "experiment_group": "lr_study"}


FSDL = """{
    "experiment_group": "Sample Experiments",
    "experiments": [
        {"dataset": "EmnistDataset", "network": "mlp", "network_args": {"num_layers": 2},
         "train_args": {"batch_size": 256, "lr": 1e-3}},
        {"dataset": "Emnist", "network": "lenet", "experiment_group": "mine", "note": "it's \u00e9"},
        {"network_args": {}, "layers": [1, 2], "flag": true, "none": null}
    ]
}"""


def test_each_run_gets_the_json_prepare_experiments_gives_it(plan: PlanFn) -> None:
    # FSDL's training/prepare_experiments.py, for each entry of the file (the-full-stack/
    # fsdl-text-recognizer @ a99a3d3f, lines 13-15):
    #   experiment_config["experiment_group"] = experiments_config["experiment_group"]
    #   print(f"python training/run_experiment.py --gpu=-1 '{json.dumps(experiment_config)}'")
    result = plan(FSDL, name="sample.json",
                  command="python training/run_experiment.py --gpu=-1 {params_json}")
    for run, entry in zip(result.expansion.runs, json.loads(FSDL)["experiments"], strict=True):
        entry["experiment_group"] = "Sample Experiments"
        (cmd,) = commands_for(run, result.exp_dir, result.launch_time).values()
        assert shlex.split(cmd) == ["python", "training/run_experiment.py", "--gpu=-1", json.dumps(entry)]


def test_command_is_required(plan: PlanFn) -> None:
    with pytest.raises(SpecError) as info:
        plan(EXAMPLE, name="experiments.json")
    assert info.value.hint is not None and "--command" in info.value.hint


def test_group_that_escapes_the_output_dir_is_refused(plan: PlanFn) -> None:
    bad = EXAMPLE.replace('"lr_study"', '"../../outside"')
    with pytest.raises(SpecError) as info:
        plan(bad, name="experiments.json", command=COMMAND)
    assert "separator" in info.value.message
    assert info.value.where is not None and info.value.where.line == 2


def test_duplicate_entries_are_one_run(plan: PlanFn) -> None:
    data = {"experiments": [{"a": 1}, {"a": 1}, {"a": 2}]}
    result = plan(json.dumps(data), name="e.json", command="run {a}")
    assert [r.params["a"] for r in result.expansion.runs] == [1, 2]
