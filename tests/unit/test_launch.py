"""Templates: placeholders, flags, all-parameter forms, escapes, and quoting through a real shell."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from expdeploy.errors import SpecError
from expdeploy.launch import commands_for, missing_names, render
from expdeploy.plan import Plan
from expdeploy.spec.model import AgentArgs

BUILTINS = {"run_dir": "/e/runs/r", "run_id": "abc", "run_name": "r", "exp_dir": "/e",
            "params_file": "/e/runs/r/params.json", "launch_time": "20260101.000000"}

NASTY = ["$(touch {marker}); echo", "a b", "it's", '"q"', "`id`", "x;y|z&", "*", "~", "\\n", ""]


def test_value_placeholder_quotes() -> None:
    assert render("run {a} {b}", {"a": 0.1, "b": "x y"}, BUILTINS) == "run 0.1 'x y'"


@pytest.mark.parametrize(("value", "expected"), [
    (True, "run --amp end"), (False, "run end"), (None, "run end"), (3, "run --amp 3 end"),
    ("a b", "run --amp 'a b' end"),
])
def test_flag_placeholder(value: object, expected: str) -> None:
    assert render("run [amp] end", {"amp": value}, BUILTINS) == expected


def test_builtins_are_quoted() -> None:
    out = render("cd {run_dir} && echo {run_id} {run_name} {exp_dir} {params_file} {launch_time}",
                 {}, {**BUILTINS, "run_dir": "/e/runs/a b"})
    assert out == ("cd '/e/runs/a b' && echo abc r /e /e/runs/r/params.json 20260101.000000")


def test_all_parameter_forms() -> None:
    params = {"lr": 0.1, "amp": True, "off": False, "model.depth": 4, "n": None}
    assert render("{args}", params, BUILTINS) == (
        "--lr=0.1 --amp=True --off=False --model.depth=4 --n=None")
    assert render("{args_no_hyphens}", params, BUILTINS) == (
        "lr=0.1 amp=True off=False model.depth=4 n=None")
    assert render("{args_no_boolean_flags}", params, BUILTINS) == (
        "--lr=0.1 --amp --model.depth=4 --n=None")
    assert render("{args_no_equals}", {"lr": 0.1}, BUILTINS) == "--lr 0.1"
    assert render("{args_append_hydra} {args_override_hydra}", {"a": 1}, BUILTINS) == "+a=1 ++a=1"
    out = render("{params_json}", params, BUILTINS)
    assert json.loads(out.strip("'")) == {"lr": 0.1, "amp": True, "off": False,
                                          "model": {"depth": 4}, "n": None}


def test_agent_args_nest_only_nested_blocks_after_the_plain_keys() -> None:
    params = {"opt.lr": 0.1, "opt.name": "adam", "seed": 1, "a.b": 2}
    agent = AgentArgs({"opt.lr": ("opt", "lr"), "opt.name": ("opt", "name")})
    out = render("{args}", params, BUILTINS, agent=agent)
    assert shlex.split(out) == ["--a.b=2", "--seed=1", "--opt={'lr': 0.1, 'name': 'adam'}"]


def test_escapes_and_shell_syntax_left_alone() -> None:
    text = "echo {{lr}} [[amp]] ${HOME} $HOME {1..3} {a,b} [ -f x ] awk '{print $1}' arr[0]"
    assert render(text, {}, BUILTINS) == (
        "echo {lr} [amp] ${HOME} $HOME {1..3} {a,b} [ -f x ] awk '{print $1}' arr[0]")


def test_missing_names_lists_unknown_placeholders() -> None:
    assert missing_names("run {a} [b] {run_dir} {args} {c}", ["a"]) == ["b", "c"]


# --- through a real shell -------------------------------------------------------------------


ECHO_ARGS = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]


def shell_argv(command: str, cwd: Path) -> list[str]:
    done = subprocess.run(["sh", "-c", command], cwd=cwd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_values_reach_the_program_literally_through_sh(
    plan: Callable[..., Plan], tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    values = [v.format(marker=marker) for v in NASTY]
    prog = " ".join(f"'{w}'" for w in ECHO_ARGS)
    result = plan(
        f"command: {json.dumps(prog + ' {p} [flag] {args}')}\n"
        f"grid:\n  p: {json.dumps(values)}\ndefaults: {{flag: '$(touch {marker})'}}\n"
    )
    for run in result.expansion.runs:
        (command,) = commands_for(run, result.exp_dir, result.launch_time).values()
        argv = shell_argv(command, tmp_path)
        value = run.params["p"]
        assert argv[0] == value
        assert argv[1:3] == ["--flag", f"$(touch {marker})"]
        assert f"--p={value}" in argv
    assert not marker.exists()


def test_placeholder_without_value_is_a_spec_error(plan: Callable[..., Plan]) -> None:
    with pytest.raises(SpecError) as info:
        plan("command: run {lr} {missing}\ngrid: {lr: [1]}\n")
    assert info.value.where is not None and info.value.where.line == 1
    assert "{missing}" in info.value.message


def test_placeholder_missing_in_one_subgrid_only(plan: Callable[..., Plan]) -> None:
    with pytest.raises(SpecError, match=r"\{beam\} has no value in run"):
        plan("""
            command: run {beam}
            subgrids:
              - grid: {beam: [1, 2]}
              - grid: {other: [1]}
        """)
