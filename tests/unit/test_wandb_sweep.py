"""W&B sweep files: grid and random expansion, distributions, nested params, macros, subtests."""

from __future__ import annotations

import shlex
from collections.abc import Callable

import pytest

from expdeploy.errors import SpecError
from expdeploy.launch import commands_for
from expdeploy.plan import Plan

from helpers import REPO, params_of

PlanFn = Callable[..., Plan]


def command(result: Plan, index: int = 0) -> str:
    run = result.expansion.runs[index]
    return next(iter(commands_for(run, result.exp_dir, result.launch_time).values()))


def test_grid_with_values_constant_int_and_q_uniform(plan: PlanFn) -> None:
    result = plan("""
        method: grid
        program: train.py
        parameters:
          lr: {values: [0.1, 0.01]}
          epochs: {value: 3}
          layers: {distribution: int_uniform, min: 1, max: 3}
          drop: {distribution: q_uniform, min: 0, max: 1, q: 0.25}
    """, name="sweep.yaml")
    assert result.spec.format == "wandb"
    runs = params_of(result)
    assert len(runs) == 2 * 3 * 4
    assert {r["layers"] for r in runs} == {1, 2, 3}  # max included
    assert sorted({r["drop"] for r in runs}) == [0.0, 0.25, 0.5, 0.75]  # max excluded
    assert all(r["epochs"] == 3 for r in runs)


def test_default_command_passes_args_as_the_agent_does(plan: PlanFn) -> None:
    result = plan("""
        method: grid
        program: my train.py
        parameters:
          lr: {value: 1e-5}
          flag: {value: true}
          name: {value: "a b"}
    """, name="sweep.yaml")
    assert shlex.split(command(result)) == [
        "/usr/bin/env", "python", "my train.py", "--flag=True", "--lr=1e-05", "--name=a b"]


def test_macros_and_envvar(plan: PlanFn) -> None:
    result = plan("""
        method: grid
        program: t.py
        command: [python, "${program}", "${args_no_boolean_flags}", "--key=${envvar:MY_KEY}",
                  "${args_json_file}", "{literal}", "[x]"]
        parameters:
          amp: {values: [true, false]}
    """, name="sweep.yaml")
    first, second = command(result, 0), command(result, 1)
    assert first.startswith('python t.py --amp --key="${MY_KEY-MY_KEY}" ')
    assert "--amp" not in second
    assert first.endswith("/params.json '{literal}' '[x]'")


def test_nested_parameters_reach_the_program_as_a_dict(plan: PlanFn) -> None:
    result = plan("""
        method: grid
        program: t.py
        parameters:
          opt:
            parameters:
              lr: {values: [0.1]}
              name: {value: adam}
    """, name="sweep.yaml")
    assert params_of(result) == [{"opt.lr": 0.1, "opt.name": "adam"}]
    assert shlex.split(command(result))[-1] == "--opt={'lr': 0.1, 'name': 'adam'}"


def test_random_sampling_is_seeded_and_capped(plan: PlanFn) -> None:
    text = """
        method: random
        run_cap: 20
        program: t.py
        parameters:
          lr: {distribution: log_uniform_values, min: 0.0001, max: 0.1}
          layers: {min: 1, max: 4}
          drop: {min: 0.0, max: 0.5}
          act: {values: [relu, gelu]}
          w: {values: [a, b], probabilities: [0.9, 0.1]}
          mom: {distribution: q_normal, mu: 0.9, sigma: 0.05, q: 0.01}
    """
    first = params_of(plan(text, name="sweep.yaml"))
    assert first == params_of(plan(text, name="sweep.yaml"))
    assert len(first) == 20
    assert all(0.0001 <= r["lr"] <= 0.1 for r in first)
    assert all(isinstance(r["layers"], int) and 1 <= r["layers"] <= 4 for r in first)
    assert all(0.0 <= r["drop"] <= 0.5 for r in first)
    assert {r["act"] for r in first} <= {"relu", "gelu"}
    other_seed = params_of(plan(text, name="sweep.yaml", seed=1))
    assert other_seed != first


def test_grid_run_cap_limits_runs(plan: PlanFn) -> None:
    result = plan("""
        method: grid
        run_cap: 3
        program: t.py
        parameters:
          a: {values: [1, 2, 3, 4, 5]}
    """, name="sweep.yaml")
    assert [p["a"] for p in params_of(result)] == [1, 2, 3]


def test_subtests_become_tagged_subgrids(plan: PlanFn) -> None:
    result = plan((REPO / "examples/wandb/sweep.yaml").read_text(), name="sweep.yaml")
    runs = result.expansion.runs
    base = [r for r in runs if "baseline" in r.tags]
    ablation = [r for r in runs if "ablation" in r.tags]
    assert len(base) == 4 and len(ablation) == 8
    assert all(r.tags == ("baseline", "batchnorm") and r.params["norm"] == "batch" for r in base)
    assert all(r.params["norm"] == "layer" and "amp" in r.params for r in ablation)
    assert result.spec.metric == {"name": "val_loss", "goal": "minimize"}


@pytest.mark.parametrize(("text", "line", "message"), [
    ("parameters:\n  lr: {distribution: normal}\n", 4, "cannot be used with method: grid"),
    ("parameters:\n  lr: {values: [1]}\nmethod: random\n", 4, "needs `run_cap`"),
    ("parameters:\n  lr: {values: [1]}\nmethod: bayes\n", 4, "W&B server"),
    ("parameters:\n  lr: {valuez: [1]}\n", 4, "unknown key"),
    ("programm: x\nparameters:\n  lr: {values: [1]}\n", 3, "unknown key"),
    ("parameters:\n  1lr: {values: [1]}\n", 4, "not a valid parameter name"),
    ("parameters:\n  lr: {distribution: log_uniform, min: 0, max: 1}\n", 4, "base-e"),
    ("parameters:\n  lr: {distribution: beta}\n", 4, "cannot be used with method: grid"),
    ("command: ['${nope}']\nparameters:\n  lr: {values: [1]}\n", 3, "unknown macro"),
    ("parameters:\n  lr: 0.1\n", 4, "expected a mapping"),
    ("parameters:\n  lr: {values: []}\n", 4, "non-empty list"),
    ("parameters:\n  lr: {min: 1}\n", 4, "has no value, values, or min/max"),
    ("metric: {goal: up, name: x}\nparameters:\n  lr: {values: [1]}\n", 3, "minimize or maximize"),
])
def test_invalid_sweeps(plan: PlanFn, text: str, line: int, message: str) -> None:
    prefix = "program: t.py\n" + ("" if "method:" in text else "method: grid\n")
    with pytest.raises(SpecError) as info:
        plan(prefix + text, name="sweep.yaml")
    assert message in info.value.message + str(info.value.hint)
    assert info.value.where is not None and info.value.where.line == line


def test_program_is_needed_by_the_default_command(plan: PlanFn) -> None:
    with pytest.raises(SpecError, match="`program` is not set"):
        plan("method: grid\nparameters:\n  lr: {values: [1]}\n", name="sweep.yaml")
