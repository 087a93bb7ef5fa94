"""mlrunner params.yaml: template steps, default, resource workers, alias, _cmd, _title."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    assert cmds["test"] == (
        f"python3 test.py --ckpt {run_dir}/ckpt --log {run_dir}/test.{result.launch_time}.log"
    )
    assert "--seed 0" in cmds["train"]


def test_alias_choice_must_exist(plan: PlanFn) -> None:
    with pytest.raises(SpecError) as info:
        plan(EXAMPLE.replace("opt: [sgd, adam]", "opt: [sgd, rmsprop]"), name="params.yaml")
    assert "not a choice of alias" in info.value.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("template: {train: x}\n", "resource"),
        ("template: {train: x}\nresource: [0]\n", "no grid documents"),
        ("template: {train: x}\nresource: [0]\n---\n_cmd: [nope]\na: [1]\n", "no template step"),
        (
            "template: {train: x}\nresource: [0]\nalias: {o: {a: {x: 1}, b: {y: 1}}}\n---\no: [a]\n",
            "same parameters",
        ),
    ],
)
def test_invalid_files(plan: PlanFn, text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        plan(text, name="params.yaml")


def test_values_reach_grid_params(plan: PlanFn) -> None:
    result = plan(
        "template: {t: 'x {a} [b]'}\nresource: [0]\ndefault: {b: false}\n---\na: [1, 2]\n", name="params.yaml"
    )
    assert params_of(result) == [{"b": False, "a": 1}, {"b": False, "a": 2}]


# --- mlrunner 0.5.9's own rules, checked against its code where it can run ---------------------

HEAD = "template: {t: 'echo {x}'}\nresource: [0]\n"


@pytest.mark.parametrize(
    "labels",
    [
        {"lr": 0.01, "data": "CIFAR10", "batch_size": 32, "max_epoch_num": 10},
        {"early-stop": True, "value-in-quote": False, "ab_cd": 1.0, "abc_d": 100000000, "a_b-c": 1234567},
        {"learning-rate_x": 3e-4, "x2y": 1e-5, "camelCase": "1e-5", "_private": None, "DATA": [1, 2]},
        {"long_param-name": "./rel/dir/x", "path": "/tmp", "some_key_name": "a" * 150, "d": {"a": 1}},
        {"e": "", "f": "../up/../x", "g": "with space's"},
        {},
    ],
)
def test_run_names_are_the_ones_mlrunner_gives(labels: dict[str, Any]) -> None:
    from expdeploy.mlrunner_layout import run_name

    misc = pytest.importorskip("mlrunner.utils.misc")  # mlrunner 0.5.9 itself (the test extra)
    assert run_name(labels) == misc.spec2name(dict(labels), str_maxlen=100)


def test_names_come_from_the_grid_document_as_written(plan: PlanFn) -> None:
    result = plan(
        HEAD + "default: {seed: 0}\nalias: {opt: {a: {x: 1, m: 0.9}, b: {x: 2, m: 0.0}}}\n"
        "---\nopt: [a, b]\nlr: 1e-5\nbatch_size: [32]\n",
        name="params.yaml",
    )
    names = [r.name for r in result.expansion.runs]
    assert names == ["Opt_a-Lr_1e-5-BaSize_32", "Opt_b-Lr_1e-5-BaSize_32"]
    # as mlrunner's yaml.FullLoader types it: 1e-5 is text, so it reaches the command as written
    assert params_of(result)[0] == {"seed": 0, "x": 1, "m": 0.9, "lr": "1e-5", "batch_size": 32}


def test_alias_targets_win_over_the_documents_values_and_defaults_fill_the_rest(plan: PlanFn) -> None:
    result = plan(
        HEAD + "default: {x: 0, y: 5}\nalias: {opt: {a: {x: 1}}}\n---\nx: [7, 8]\nopt: [a]\n",
        name="params.yaml",
    )
    # both runs are {x: 1, y: 5}: one run, named by the first combination (mlrunner drops the other)
    assert [(r.name, dict(r.params)) for r in result.expansion.runs] == [("X_7-Opt_a", {"x": 1, "y": 5})]


def test_the_same_run_under_the_same_name_runs_the_steps_of_both_documents(plan: PlanFn) -> None:
    result = plan(
        """
        template: {a: 'echo a {x}', b: 'echo b {x}', c: 'echo c {x}'}
        resource: [0]
        alias: {same: {one: {x: 1}}}
        ---
        _cmd: c
        x: [1, 2]
        ---
        _cmd: [b, a]
        x: 1
        ---
        same: one
    """,
        name="params.yaml",
    )
    runs = {r.name: [s.name for s in r.recipe.steps] for r in result.expansion.runs}
    # mlrunner keeps a task whose directory is taken by an equal one, and runs in template order;
    # the equal run under another name (Same_one) is dropped
    assert runs == {"X_1": ["a", "b", "c"], "X_2": ["c"]}
    assert set(result.step_names) == {"a", "b", "c"}


def test_runs_never_share_a_directory_where_mlrunner_names_collide(plan: PlanFn) -> None:
    result = plan(HEAD + "---\nx: [1234567, 1234568]\n", name="params.yaml")
    first, second = result.expansion.runs
    assert first.name == "X_1.23457e+06"
    assert second.name == f"X_1.23457e+06-{second.run_id[:12]}"


def test_names_that_cannot_be_directories_fall_back_to_safe_ones(plan: PlanFn) -> None:
    result = plan(HEAD + "default: {x: 0}\n---\nx: [[a/b]]\n---\n_cmd: t\n", name="params.yaml")
    slash, empty = result.expansion.runs  # `X_['a/b']` and mlrunner's '' (its output directory itself)
    assert (slash.name, empty.name) == ("X___a_b__", f"run-{empty.run_id[:12]}")


def test_overrides_edit_the_names_as_the_grid_documents_would(plan: PlanFn) -> None:
    result = plan(HEAD + "default: {seed: 0}\n---\nx: [1, 2]\n", "x=3", "seed=1,2", name="params.yaml")
    assert [r.name for r in result.expansion.runs] == ["X_3-Seed_1", "X_3-Seed_2"]


def test_template_text_is_literal_except_mlrunners_placeholders(plan: PlanFn) -> None:
    result = plan(
        """
        template:
          t: >
            echo {{x}} [a.b] '{"k": 1}' ${HOME} {x.y} [f] {_name}
        resource: [0]
        ---
        x: 1
        f: true
        x.y: 2
    """,
        name="params.yaml",
    )
    run = result.expansion.runs[0]
    cmd = commands_for(run, result.exp_dir, result.launch_time)["t"]
    assert cmd == "echo {1} [a.b] '{\"k\": 1}' ${HOME} {x.y} --f X_1-F_T-X.Y_2"


@pytest.mark.parametrize(
    ("text", "message", "hint"),
    [
        (
            "template: {t: x}\nresource: [0]\npack: {p: {a: {x: 1}}}\n---\np: a\n",
            "mlrunner 0.4.0-0.5.2",
            "rename `pack:` to `alias:`",
        ),
        (
            "template: {t: x}\nresource: [0]\nalias: {p: [x, y]}\n---\np: 1\n",
            "dropped in mlrunner 0.5.3",
            "name each choice",
        ),
        (
            "template: {t: 'x [p]'}\nresource: [0]\nalias: {p: {a: {x: 1}}}\n---\np: a\n",
            "cannot be a placeholder",
            "since mlrunner 0.5.3",
        ),
        ("commands: {t: x}\nresources: [0]\n---\nx: [1]\n", "mlrunner 0.1", "renamed it `template`"),
        ("template: {t: x}\nresources: [0]\n---\nx: [1]\n", "mlrunner 0.1", "renamed it `resource`"),
        ("template: {t: x}\nresource: [0]\nremaps: {}\n---\nx: [1]\n", "mlrunner 0.1", "renamed it `alias`"),
        ("template: {t: x}\nresource: [0]\ndirs: {}\n---\nx: [1]\n", "mlrunner 0.1", "{_output}"),
        ("template: {t: x}\nresource: [0]\nescapes: []\n---\nx: [1]\n", "mlrunner 0.1", "only names"),
        ("template: {t: x}\nresource: [0]\nreplaces: []\n---\nx: [1]\n", "mlrunner 0.1", "{param}"),
        ("template: {t: x}\nresource: [0]\ntemplates: {}\n---\nx: [1]\n", "unknown key", "template"),
        ("template: {t: 'x {a} [a]'}\nresource: [0]\n---\na: 1\n", "both {a} and [a]", "use one"),
        ("template: {t: 'x [0]'}\nresource: [0]\n---\na: 1\n", "can have no value", "letter"),
        ("template: {t: x}\nresource: [0]\n---\n_output: [1]\n", "mlrunner gives every run", "rename"),
        ("template: {t: x}\nresource: [0]\n---\na: []\n", "no values", "at least one"),
    ],
)
def test_what_mlrunner_ignores_or_refuses_is_refused_with_a_hint(
    plan: PlanFn, text: str, message: str, hint: str
) -> None:
    with pytest.raises(SpecError) as info:
        plan(text, name="params.yaml")
    assert message in info.value.message
    assert info.value.hint is not None and hint in info.value.hint
    assert info.value.where is not None and info.value.where.line


def test_a_pre_2022_file_is_recognised_as_mlrunner(cli: Any, tmp_path: Path) -> None:
    spec = tmp_path / "params.yaml"
    spec.write_text(
        "# mlrunner 0.1\n---\ncommands: {train: python train.py}\nresources: ['1']\n"
        "remaps: {}\n---\nlr: [0.1]\n"
    )
    result = cli("plan", str(spec))
    assert result.exit_code == 2
    assert "commands: a key of mlrunner 0.1" in result.output
    assert "cannot tell which kind" not in result.output
