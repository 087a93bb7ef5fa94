"""Expansion of native specs: product, zip, subgrids with tags, exclude, runs, documents, overrides."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from expdeploy.errors import SpecError
from expdeploy.plan import Plan

from helpers import params_of

PlanFn = Callable[..., Plan]


def test_grid_is_a_cartesian_product_in_spec_order(plan: PlanFn) -> None:
    result = plan("""
        command: run {a} {b}
        grid: {a: [1, 2], b: [x, y, z]}
    """)
    assert [(p["a"], p["b"]) for p in params_of(result)] == [
        (1, "x"), (1, "y"), (1, "z"), (2, "x"), (2, "y"), (2, "z")]


def test_a_scalar_counts_as_one_value_and_defaults_apply(plan: PlanFn) -> None:
    result = plan("""
        command: run {a} {b} {c}
        defaults: {c: 7}
        grid: {a: 1, b: [x, y]}
    """)
    assert params_of(result) == [{"c": 7, "a": 1, "b": "x"}, {"c": 7, "a": 1, "b": "y"}]


def test_zip_advances_together_and_multiplies_with_grid(plan: PlanFn) -> None:
    result = plan("""
        command: run {lr} {warmup} {tokens}
        grid: {lr: [1, 2]}
        zip: {warmup: [10, 20, 30], tokens: [a, b, c]}
    """)
    pairs = {(p["lr"], p["warmup"], p["tokens"]) for p in params_of(result)}
    assert pairs == {(lr, w, t) for lr in (1, 2) for w, t in ((10, "a"), (20, "b"), (30, "c"))}


def test_several_zip_groups(plan: PlanFn) -> None:
    result = plan("""
        command: run {a} {b} {c} {d}
        zip:
          - {a: [1, 2], b: [3, 4]}
          - {c: [5, 6], d: [7, 8]}
    """)
    assert len(result.expansion.runs) == 4
    assert all(p["b"] == p["a"] + 2 and p["d"] == p["c"] + 2 for p in params_of(result))


def test_list_of_mappings_sets_dotted_params_together(plan: PlanFn) -> None:
    result = plan("""
        command: run {optim.name} {optim.lr}
        grid:
          optim: [{name: sgd, lr: 0.1}, {name: adam, lr: 0.001}]
    """)
    assert params_of(result) == [{"optim.name": "sgd", "optim.lr": 0.1},
                                 {"optim.name": "adam", "optim.lr": 0.001}]


def test_nested_mappings_flatten_to_dotted_names(plan: PlanFn) -> None:
    result = plan("""
        command: run {model.depth} {model.width} {opt.lr}
        defaults: {opt: {lr: 0.1}}
        grid: {model: {depth: [2, 4], width: 64}}
    """)
    assert params_of(result)[0] == {"opt.lr": 0.1, "model.depth": 2, "model.width": 64}


def test_subgrids_share_top_params_and_carry_tags(plan: PlanFn) -> None:
    result = plan("""
        command: run {lr} {arch} {dropout}
        grid: {lr: [1, 2], dropout: [0.1]}
        subgrids:
          - tags: [small]
            grid: {arch: [s]}
          - tags: [big, slow]
            grid: {arch: [b], lr: [9]}
    """)
    runs = [(dict(r.params), r.tags) for r in result.expansion.runs]
    assert runs == [
        ({"lr": 1, "dropout": 0.1, "arch": "s"}, ("small",)),
        ({"lr": 2, "dropout": 0.1, "arch": "s"}, ("small",)),
        ({"dropout": 0.1, "arch": "b", "lr": 9}, ("big", "slow")),
    ]
    assert result.tag_counts == {"small": 2, "big": 1, "slow": 1}


def test_same_params_from_two_subgrids_is_one_run_with_merged_tags(plan: PlanFn) -> None:
    result = plan("""
        command: run {lr}
        subgrids:
          - tags: [a]
            grid: {lr: [1, 2]}
          - tags: [b]
            grid: {lr: [2, 3]}
    """)
    assert [(r.params["lr"], r.tags) for r in result.expansion.runs] == [
        (1, ("a",)), (2, ("a", "b")), (3, ("b",))]


def test_subgrid_defaults_replace_a_shared_axis(plan: PlanFn) -> None:
    result = plan("""
        command: run {lr}
        grid: {lr: [1, 2, 3]}
        subgrids:
          - tags: [fixed]
            defaults: {lr: 5}
    """)
    assert [r.params["lr"] for r in result.expansion.runs] == [5]


def test_exclude_drops_matching_combinations(plan: PlanFn) -> None:
    result = plan("""
        command: run {a} {b}
        grid: {a: [1, 2], b: [x, y]}
        exclude:
          - {a: 2, b: y}
          - {a: 1, b: x}
    """)
    assert [(p["a"], p["b"]) for p in params_of(result)] == [(1, "y"), (2, "x")]


def test_exclude_keeps_int_float_and_bool_apart(plan: PlanFn) -> None:
    result = plan("""
        command: run {a}
        grid: {a: [1, 1.0, true]}
        exclude: [{a: 1}]
    """)
    assert [p["a"] for p in params_of(result)] == [1.0, True]
    assert [type(p["a"]) for p in params_of(result)] == [float, bool]


def test_explicit_runs_are_united_with_the_grid(plan: PlanFn) -> None:
    result = plan("""
        command: run {a} {b}
        defaults: {b: 0}
        grid: {a: [1, 2]}
        runs:
          - {a: 9}
          - {a: 1}
          - {a: 5, b: 5}
    """)
    assert params_of(result) == [{"b": 0, "a": 1}, {"b": 0, "a": 2}, {"b": 0, "a": 9},
                                 {"b": 5, "a": 5}]


def test_documents_are_united_and_inherit_the_first_command(plan: PlanFn) -> None:
    result = plan("""
        name: multi
        command: run {a} {b}
        defaults: {b: 0}
        grid: {a: [1, 2]}
        ---
        grid: {a: [2, 3]}
        ---
        steps:
          other: other {a} {b}
        grid: {a: [4]}
        defaults: {b: 1}
    """)
    assert [(p["a"], p["b"]) for p in params_of(result)] == [(1, 0), (2, 0), (3, 0), (4, 1)]
    assert [s.name for s in result.expansion.runs[-1].recipe.steps] == ["other"]
    assert result.spec.name == "multi"


def test_overrides_replace_and_add_axes_everywhere(plan: PlanFn) -> None:
    text = """
        command: run {lr} {b} {seed}
        defaults: {seed: 0}
        zip: {lr: [1, 2], b: [x, y]}
        subgrids:
          - tags: [t]
    """
    result = plan(text, "lr=7,8", "seed=range(0,2)")
    assert {(p["lr"], p["b"], p["seed"]) for p in params_of(result)} == {
        (lr, b, s) for lr in (7, 8) for b in ("x", "y") for s in (0, 1)}
    added = plan(text, "+extra=1")
    assert all(p["extra"] == 1 for p in params_of(added))
    removed = plan(text.replace(" {seed}", ""), "~seed")
    assert params_of(removed)[0] == {"lr": 1, "b": "x"}
    with pytest.raises(SpecError, match=r"placeholder \{seed\} has no value"):
        plan(text, "~seed")


def test_unknown_override_names_the_known_params(plan: PlanFn) -> None:
    with pytest.raises(SpecError) as info:
        plan("command: run {lr}\ngrid: {lr: [1]}\n", "lrr=1")
    assert "lrr" in str(info.value) and "lr" in str(info.value)
    assert info.value.hint is not None and info.value.hint.endswith("with a leading +, as in Hydra: +lrr=1")
    assert info.value.fix == ("lrr=1", "+lrr=1")


def test_adding_an_existing_param_is_refused(plan: PlanFn) -> None:
    with pytest.raises(SpecError, match="already exists"):
        plan("command: run {lr}\ngrid: {lr: [1]}\n", "+lr=2")


def test_everything_excluded_is_an_error(plan: PlanFn) -> None:
    with pytest.raises(SpecError, match="no runs"):
        plan("command: run {a}\ngrid: {a: [1]}\nexclude: [{a: 1}]\n")


def test_exclude_of_an_unknown_param_is_an_error(plan: PlanFn) -> None:
    with pytest.raises(SpecError, match="exclude names 'aa'"):
        plan("command: run {a}\ngrid: {a: [1]}\nexclude: [{aa: 1}]\n")


# --- run identity -----------------------------------------------------------------------------


def ids(result: Plan) -> dict[str, dict[str, Any]]:
    return {r.run_id: dict(r.params) for r in result.expansion.runs}


def test_run_id_is_stable_across_key_order_files_and_overrides(plan: PlanFn) -> None:
    a = plan("command: run {lr} {seed}\ngrid: {lr: [0.1, 0.01]}\ndefaults: {seed: 1}\n")
    b = plan("command: other {seed} {lr}\ndefaults: {seed: 1}\ngrid: {lr: [0.01]}\n",
             "lr=0.1,0.01", name="b.yml")
    c = plan("command: run {lr} {seed}\nruns: [{seed: 1, lr: 0.1}, {lr: 0.01, seed: 1}]\n",
             name="c.yml")
    assert set(ids(a)) == set(ids(b)) == set(ids(c))
    assert len(ids(a)) == 2


def test_run_id_is_the_same_in_every_dialect(plan: PlanFn) -> None:
    native = plan("command: run {args}\ngrid: {lr: [0.1]}\ndefaults: {seed: 0}\n")
    sweep = plan("""
        method: grid
        program: train.py
        parameters:
          lr: {values: [0.1]}
          seed: {value: 0}
    """, name="sweep.yaml")
    assert set(ids(native)) == set(ids(sweep))


def test_run_id_does_not_confuse_int_float_and_string(plan: PlanFn) -> None:
    result = plan("command: run {a}\ngrid: {a: [1, 1.0, '1', true]}\n")
    assert len(ids(result)) == 4


def test_name_shows_only_varying_params(plan: PlanFn) -> None:
    result = plan("command: run {a} {b} {c}\ndefaults: {c: 3}\ngrid: {a: [1, 2], b: [x]}\n")
    assert [r.name for r in result.expansion.runs] == ["a=1", "a=2"]


def test_single_run_is_named_by_its_id(plan: PlanFn) -> None:
    (run,) = plan("command: run {a}\ndefaults: {a: 1}\n").expansion.runs
    assert run.name == f"run-{run.run_id[:12]}"


def test_names_are_file_system_safe_and_stay_inside_runs(plan: PlanFn) -> None:
    result = plan("command: run {p}\ngrid: {p: ['../../etc/passwd', 'a b/c', '-x', '..']}\n")
    names = [r.name for r in result.expansion.runs]
    assert all("/" not in n and n not in (".", "..") for n in names)
    assert len(set(names)) == 4
    for name in names:
        run_dir = (result.exp_dir / "runs" / name).resolve()
        assert run_dir.parent == (result.exp_dir / "runs").resolve()


def test_long_names_are_shortened_with_the_id(plan: PlanFn) -> None:
    result = plan("command: run {p}\ngrid: {p: ['%s', 'short']}\n" % ("x" * 300))
    long_run = result.expansion.runs[0]
    assert len(long_run.name) <= 120 and long_run.name.endswith(long_run.run_id[:12])


def test_names_that_sanitize_alike_stay_distinct(plan: PlanFn) -> None:
    result = plan("command: run {p}\ngrid: {p: ['a b', 'a_b', 'a?b']}\n")
    assert len({r.name for r in result.expansion.runs}) == 3


def test_custom_run_name_and_escape_refused(plan: PlanFn) -> None:
    good = plan("command: run {m}\nrun_name: 'model-{m}'\ngrid: {m: [a, b]}\n")
    assert [r.name for r in good.expansion.runs] == ["model-a", "model-b"]
    with pytest.raises(SpecError) as info:
        plan("command: run {m}\nrun_name: '{m}'\ngrid:\n  m: [a, '..']\n")
    assert "outside" in info.value.message and info.value.where and info.value.where.line == 4
    with pytest.raises(SpecError, match="path separator"):
        plan("command: run {m}\nrun_name: 'x-{m}'\ngrid: {m: ['../../etc']}\n")
    with pytest.raises(SpecError, match="same name"):
        plan("command: run {m} {n}\nrun_name: 'x-{m}'\ngrid: {m: [a], n: [1, 2]}\n")


def test_expansion_is_deterministic(plan: PlanFn) -> None:
    text = "command: run {a} {b}\ngrid: {a: [3, 1, 2], b: [y, x]}\n"
    first = [(r.run_id, r.name) for r in plan(text).expansion.runs]
    assert first == [(r.run_id, r.name) for r in plan(text).expansion.runs]
