"""mlrunner params.yaml: template steps, default, resource workers, alias, _cmd, _title."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from expdeploy.errors import SpecError
from expdeploy.launch import commands_for
from expdeploy.plan import Plan

from helpers import REPO, params_of

PlanFn = Callable[..., Plan]
EXAMPLE = (REPO / "examples/mlrunner/params.yaml").read_text()


def test_example_expands_every_grid_document(plan: PlanFn) -> None:
    result = plan(EXAMPLE, name="params.yaml")
    assert result.spec.format == "mlrunner"
    assert len(result.expansion.runs) == 6 + 2
    assert result.tag_counts == {"mnist": 6, "cifar10": 2}
    recipe = result.spec.blocks[0].recipe
    assert recipe.resources.workers == ("0", "1", "2,3")


def test_title_selects_documents_and_cmd_selects_steps(plan: PlanFn) -> None:
    result = plan(EXAMPLE, name="params.yaml", title="cifar10")
    assert result.spec.name == "params-cifar10"
    runs = result.expansion.runs
    assert {r.params["optimizer"] for r in runs} == {"sgd", "adam"}
    assert {r.params["momentum"] for r in runs} == {0.9, 0.0}
    assert all([s.name for s in r.recipe.steps] == ["train"] for r in runs)


def test_reserved_placeholders_and_folded_template(plan: PlanFn) -> None:
    result = plan(EXAMPLE, name="params.yaml", title="mnist")
    run = result.expansion.runs[0]
    cmds = commands_for(run, result.exp_dir, result.launch_time)
    run_dir = result.exp_dir / "runs" / run.name
    assert "\n" not in cmds["train"]
    assert cmds["train"].endswith(f"--save {run_dir}/ckpt")
    assert cmds["test"] == (f"python3 test.py --ckpt {run_dir}/ckpt "
                            f"--log {run_dir}/test.{result.launch_time}.log")
    assert "--seed 0" in cmds["train"]


def test_alias_choice_must_exist(plan: PlanFn) -> None:
    with pytest.raises(SpecError) as info:
        plan(EXAMPLE.replace("opt: [sgd, adam]", "opt: [sgd, rmsprop]"), name="params.yaml")
    assert "not a choice of alias" in info.value.message


@pytest.mark.parametrize(("text", "message"), [
    ("template: {train: x}\n", "resource"),
    ("template: {train: x}\nresource: [0]\n", "no grid documents"),
    ("template: {train: x}\nresource: [0]\n---\n_cmd: [nope]\na: [1]\n", "no template step"),
    ("template: {train: x}\nresource: [0]\nalias: {o: {a: {x: 1}, b: {y: 1}}}\n---\no: [a]\n",
     "same parameters"),
])
def test_invalid_files(plan: PlanFn, text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        plan(text, name="params.yaml")


def test_values_reach_grid_params(plan: PlanFn) -> None:
    result = plan("template: {t: 'x {a} [b]'}\nresource: [0]\ndefault: {b: false}\n---\na: [1, 2]\n",
                  name="params.yaml")
    assert params_of(result) == [{"b": False, "a": 1}, {"b": False, "a": 2}]
