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
    # `1e-5` is text to PyYAML, so W&B passes it as written
    assert shlex.split(command(result)) == [
        "/usr/bin/env", "python", "my train.py", "--flag=True", "--lr=1e-5", "--name=a b"]


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
    run_id = result.expansion.runs[0].run_id
    assert first.endswith(f"/runs/amp=True/wandb/sweep-expdeploy/config-{run_id}.json '{{literal}}' '[x]'")


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


def test_dotted_names_stay_one_flat_argument_as_in_wandbs_hydra_pattern(plan: PlanFn) -> None:
    result = plan("""
        program: main.py
        method: grid
        parameters:
          optimizer.config.learning_rate: {values: [0.01, 0.1]}
          optimizer: {value: adam}
        command: ["${env}", "${interpreter}", "${program}", "${args_no_hyphens}"]
    """, name="sweep.yaml")
    assert shlex.split(command(result)) == [
        "/usr/bin/env", "python", "main.py", "optimizer=adam", "optimizer.config.learning_rate=0.01"]


def test_numbers_keep_the_text_wandb_reads(plan: PlanFn) -> None:
    result = plan("""
        program: t.py
        method: grid
        parameters:
          lr: {values: [1e-5, 1.0e-5, 0.0001]}
    """, name="sweep.yaml")
    assert [r.params["lr"] for r in result.expansion.runs] == ["1e-5", 1e-05, 0.0001]
    rendered = [shlex.split(command(result, i))[-1] for i in range(3)]
    assert rendered == ["--lr=1e-5", "--lr=1e-05", "--lr=0.0001"]


def test_ambiguous_bounds_are_refused_as_wandb_refuses_them(plan: PlanFn) -> None:
    with pytest.raises(SpecError) as info:
        plan("program: t.py\nmethod: random\nrun_cap: 2\nparameters:\n  lr: {min: 1e-5, max: 0.1}\n",
             name="sweep.yaml")
    assert "ambiguous" in info.value.message and "1.0e-5" in str(info.value.hint)
    assert info.value.where is not None and info.value.where.line == 5


def test_random_without_run_cap_takes_run_cap_or_sample_from_the_command_line(plan: PlanFn) -> None:
    text = "program: t.py\nmethod: random\nparameters:\n  lr: {min: 0.0, max: 1.0}\n"
    with pytest.raises(SpecError) as info:
        plan(text, name="sweep.yaml")
    assert "--run-cap" in str(info.value.hint)
    assert len(plan(text, name="sweep.yaml", run_cap=7).expansion.runs) == 7
    assert len(plan(text, name="sweep.yaml", sample=4).expansion.runs) == 4
    capped = "program: t.py\nmethod: grid\nrun_cap: 5\nparameters:\n  a: {values: [1, 2, 3, 4, 5, 6]}\n"
    assert len(plan(capped, name="sweep.yaml", run_cap=2).expansion.runs) == 2, "--run-cap replaces run_cap"


def test_server_driven_searches_are_accepted_only_where_the_server_drives_them(plan: PlanFn) -> None:
    text = """
        program: t.py
        method: bayes
        early_terminate: {type: hyperband, min_iter: 3}
        parameters:
          lr: {distribution: log_uniform_values, min: 0.0001, max: 0.1}
    """
    with pytest.raises(SpecError, match="driven by the W&B server") as info:
        plan(text, name="sweep.yaml")
    assert "--backend wandb" in str(info.value.hint)
    result = plan(text, name="sweep.yaml", server_search=True)
    assert result.expansion.runs == [] and "bayes" in str(result.spec.chosen_elsewhere)
    assert result.spec.notes == (), "early_terminate is the server's job there: no warning"


def test_early_terminate_warns_when_expanded_here(plan: PlanFn) -> None:
    result = plan("""
        program: t.py
        method: grid
        early_terminate: {type: hyperband, min_iter: 3}
        parameters:
          a: {values: [1, 2]}
    """, name="sweep.yaml")
    ((where, note),) = result.spec.notes
    assert where.line == 3 and "early_terminate is not applied" in note


def test_command_option_replaces_the_sweeps_command(plan: PlanFn) -> None:
    text = "program: t.py\nmethod: grid\nparameters:\n  opt:\n    parameters:\n      lr: {values: [1]}\n"
    result = plan(text, name="sweep.yaml", command="python3 other.py --lr {opt.lr} {args}")
    assert shlex.split(command(result)) == ["python3", "other.py", "--lr", "1", "--opt={'lr': 1}"]


def test_a_composite_file_is_deploy_sweeps_dialect(plan: PlanFn) -> None:
    result = plan("""
        program: main.py
        method: grid
        parameters:
          seed: 42
          lr: [0.1, 0.01]
          subtests:
            "a,b":
              hp: [1, 2]
            "c":
              lr: 0.5
              hp: {value: 1}
              _num_nodes: 3
    """, name="sweep.yaml")
    runs = result.expansion.runs
    assert sorted((r.tags, r.params["_tags"], r.params["lr"], r.params["hp"]) for r in runs) == [
        (("a", "b"), "a,b", 0.01, 1), (("a", "b"), "a,b", 0.01, 2), (("a", "b"), "a,b", 0.1, 1),
        (("a", "b"), "a,b", 0.1, 2), (("c",), "c", 0.5, 1)]
    assert all("_num_nodes" not in r.params for r in runs)
    assert "--_tags=a,b" in shlex.split(command(result, 0))


def test_identical_trials_are_refused_offline(plan: PlanFn) -> None:
    with pytest.raises(SpecError, match="_num_trials: 3"):
        plan("program: m.py\nmethod: grid\nparameters:\n  subtests:\n    a:\n      x: 1\n"
             "      _num_trials: 3\n", name="sweep.yaml")


@pytest.mark.parametrize("value", ["[1, 2]", "5", "text"])
def test_a_subtest_that_is_no_mapping_is_one_error(plan: PlanFn, value: str) -> None:
    with pytest.raises(SpecError) as info:
        plan(f"program: m.py\nmethod: grid\nparameters:\n  subtests:\n    a: {value}\n", name="sweep.yaml")
    assert "expected a mapping" in info.value.message
    assert info.value.where is not None and info.value.where.line == 5
