"""W&B sweep files run exactly as W&B runs them: the runs of wandb's own sweeps engine (the
`sweeps` package the W&B server runs), each turned into a process by the installed wandb agent's
own `_command_run`, against expdeploy's runs of the same file, argv for argv (through a real
shell), sweep-param file for sweep-param file. No expectation here is typed by hand."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from expdeploy import worker
from expdeploy.expdir import plan_record
from expdeploy.grid import Run
from expdeploy.launch import commands_for
from expdeploy.plan import Plan, make_plan
from expdeploy.spec.formats import LoadOptions, load_spec
from expdeploy.wandb_runs import run_variables

from helpers import REPO

grid_search = pytest.importorskip("sweeps.grid_search", reason="wandb's sweeps engine is in the test extra")
wandb_agent = pytest.importorskip("wandb.wandb_agent")
FIXTURES = REPO / "tests/fixtures/wandb"

# One parameter of every kind of value W&B passes (the text forms are PyYAML's typing).
EVERY_VALUE = """
    program: train.py
    method: grid
    parameters:
      flag: {values: [true, false]}
      count: {value: 3}
      big: {value: 12345678901234567890}
      rate: {values: [0.1, 1.0e-5]}
      as_text: {value: 1e-5}
      nothing: {value: null}
      words: {value: "it's a $(touch x); rm -rf ~ \\"quoted\\" \\u00e9"}
      items: {value: [1, two, 3.5, null]}
      table: {value: {b: 1, a: [x, y]}}
      layers: {distribution: int_uniform, min: 1, max: 2}
      optimizer.config.learning_rate: {values: [0.01]}
      model:
        parameters:
          depth: {values: [2, 4]}
          head:
            parameters:
              size: {value: 8}
"""
MACROS = [
    "${args}",
    "${args_no_hyphens}",
    "${args_no_boolean_flags}",
    "${args_no_equals}",
    "${args_append_hydra}",
    "${args_override_hydra}",
    "${args_json}",
    "${args_json_file}",
]


def wandb_config(text: str) -> dict[str, Any]:
    """The sweep as `wandb sweep` uploads it: yaml.safe_load, wandb's own fill-in, a JSON round trip."""
    import yaml
    from wandb.apis.public.sweeps import _validate_config_and_fill_distribution

    return dict(json.loads(json.dumps(_validate_config_and_fill_distribution(yaml.safe_load(text)))))


def server_runs(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Every run of a grid sweep in the order the W&B server hands them out (its sweeps engine)."""
    found = grid_search.grid_search_next_runs([], config, n=10_000)
    return [run.config for run in found if run is not None]


class Agent:
    """The installed wandb agent's `_command_run` with the process start captured."""

    def __init__(self, config: dict[str, Any], base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.config, self.base = config, base
        self.started: list[tuple[list[str], dict[str, str]]] = []
        monkeypatch.setattr(wandb_agent, "AgentProcess", self._record)
        monkeypatch.setenv("WANDB_DIR", str(base))
        monkeypatch.setenv("WANDB_SWEEP_ID", "sweep1")
        for name in ("WANDB_RUN_ID", "WANDB_SWEEP_PARAM_PATH"):
            monkeypatch.setenv(name, "")

    def _record(self, command: list[str], env: dict[str, str], **_: Any) -> SimpleNamespace:
        self.started.append((list(command), dict(env)))
        return SimpleNamespace()

    def run(self, args: dict[str, Any], run_id: str) -> tuple[list[str], Path]:
        """(argv, sweep-param file) of one run the server gave the agent."""
        fake = SimpleNamespace(
            _sweep_command=list(self.config.get("command") or []) or None,
            _function=None,
            _in_jupyter=False,
            _run_processes={},
            _forward_signals=False,
        )
        wandb_agent.Agent._command_run(
            fake, {"type": "run", "run_id": run_id, "args": args, "program": self.config.get("program")}
        )
        argv, env = self.started[-1]
        return argv, Path(env["WANDB_SWEEP_PARAM_PATH"])


def shell_argv(command: str, env: dict[str, str]) -> list[str]:
    """The argv a command line gives the program, through a real shell (as the worker runs it)."""
    done = subprocess.run(
        ["/bin/sh", "-c", f'set -- {command}; printf "%s\\0" "$@"'], env=env, capture_output=True, check=True
    )
    return done.stdout.decode().split("\0")[:-1]


def json_files_read(argv: list[str]) -> list[str]:
    """argv with each word naming a sweep's .json args file replaced by the file's text."""
    return [Path(w).read_text() if w.endswith(".json") and os.path.isfile(w) else w for w in argv]


@pytest.fixture
def expand(tmp_path: Path) -> Callable[..., Plan]:
    def _expand(text: str, **options: Any) -> Plan:
        path = tmp_path / "sweep.yaml"
        path.write_text(textwrap.dedent(text).lstrip())
        return make_plan(load_spec(path, LoadOptions(**options)), (), tmp_path / "experiments")

    return _expand


def ours(plan: Plan, env: dict[str, str]) -> Iterator[tuple[Run, list[str], dict[str, Any]]]:
    """Each run's argv through a shell, after the worker wrote its sweep files; and its plan."""
    for run in plan.expansion.runs:
        run_dir = plan.exp_dir / "runs" / run.name
        record = plan_record(
            run,
            plan.exp_dir,
            plan.launch_time,
            Path.cwd(),
            None,
            run_variables(
                "wandb",
                plan.spec.extra,
                plan.spec.name,
                run.name,
                run.tags,
                str(run_dir),
                "offline",
                run.run_id,
            ),
        )
        worker.write_sweep_files(record)
        (command,) = commands_for(run, plan.exp_dir, plan.launch_time).values()
        yield run, shell_argv(command, env), record


def with_command(text: str, *words: str) -> str:
    return textwrap.dedent(text) + "command: [" + ", ".join(f'"{w}"' for w in words) + "]\n"


@pytest.mark.parametrize("macro", MACROS)
def test_every_macro_renders_every_value_as_the_agent_does(
    macro: str, expand: Callable[..., Plan], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = with_command(EVERY_VALUE, "${env}", "${interpreter}", "${program}", macro)
    config = wandb_config(text)
    expected = server_runs(config)
    agent = Agent(config, tmp_path / "agent", monkeypatch)
    plan = expand(text)
    got = list(ours(plan, dict(os.environ)))
    assert len(got) == len(expected) == 16
    for index, ((run, argv, _), args) in enumerate(zip(got, expected, strict=True)):
        their_argv, _ = agent.run(args, f"r{index}")
        assert json_files_read(argv) == json_files_read(their_argv), f"run {index} ({run.name})"


def test_the_sweep_param_file_gives_wandb_config_the_same_values(
    expand: Callable[..., Plan], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wandb.sdk.lib.config_util import dict_from_config_file

    text = with_command(EVERY_VALUE, "${program}")
    config = wandb_config(text)
    agent = Agent(config, tmp_path / "agent", monkeypatch)
    for index, ((_, _, record), args) in enumerate(
        zip(ours(expand(text), dict(os.environ)), server_runs(config), strict=True)
    ):
        _, their_file = agent.run(args, f"r{index}")
        mine = dict_from_config_file(record["env"]["WANDB_SWEEP_PARAM_PATH"], must_exist=True)
        theirs = dict_from_config_file(str(their_file), must_exist=True)
        assert mine == theirs and _types(mine) == _types(theirs)


def _types(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value).__name__


def test_envvar_macros_read_the_runs_environment_as_the_agent_does(
    expand: Callable[..., Plan], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = with_command(
        "program: t.py\nmethod: grid\nparameters:\n  a: {values: [1]}\n",
        "${program}",
        "--key=${envvar:MY_KEY}",
        "${envvar:UNSET_ONE}",
        "x${envvar:MY_KEY}y",
    )
    monkeypatch.setenv("MY_KEY", "s e$cret")
    monkeypatch.delenv("UNSET_ONE", raising=False)
    config = wandb_config(text)
    agent = Agent(config, tmp_path / "agent", monkeypatch)
    ((_, argv, _),) = ours(expand(text), dict(os.environ))
    their_argv, _ = agent.run(server_runs(config)[0], "r0")
    assert argv == their_argv


@pytest.mark.parametrize("name", ["sweep-nested-cli.yaml", "sweep-grid.yaml", "sweep-local-hyperband.yaml"])
def test_real_grid_sweeps_run_the_servers_runs_in_its_order(
    name: str, expand: Callable[..., Plan], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (FIXTURES / name).read_text()
    config = wandb_config(text)
    expected = server_runs(config)
    agent = Agent(config, tmp_path / "agent", monkeypatch)
    got = list(ours(expand(text), dict(os.environ)))
    assert len(got) == len(expected) > 1
    for index, ((_, argv, _), args) in enumerate(zip(got, expected, strict=True)):
        assert argv == agent.run(args, f"r{index}")[0]


def test_random_draws_are_passed_as_the_agent_would_pass_them(
    expand: Callable[..., Plan], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = with_command(
        """
        program: t.py
        method: random
        parameters:
          lr: {distribution: log_uniform_values, min: 0.0001, max: 0.1}
          layers: {min: 1, max: 4}
          act: {values: [relu, gelu]}
          opt:
            parameters:
              momentum: {distribution: q_normal, mu: 0.9, sigma: 0.05, q: 0.01}
    """,
        "${env}",
        "${interpreter}",
        "${program}",
        "${args}",
    )
    agent = Agent(wandb_config(text), tmp_path / "agent", monkeypatch)
    got = list(ours(expand(text, run_cap=5), dict(os.environ)))
    assert len(got) == 5
    for index, (_, argv, record) in enumerate(got):
        server_view = {k: {"value": v} for k, v in record["sweep_args"].items()}
        assert argv == agent.run(server_view, f"r{index}")[0]


def test_composite_files_run_each_subtests_sweep_as_deploy_sweeps_makes_it(
    expand: Callable[..., Plan], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from expdeploy_wandb.sweeps import sweeps_of

    text = """
        program: main.py
        method: grid
        parameters:
          seed:
            value: 42
          subtests:
            iso_tests,hp1_iso:
              hp1: [1, 2, 3]
              hp2: 4
            iso_tests,hp2_iso:
              hp1:
                value: 1
              hp2:
                values: [4, 5, 6]
    """
    plan = expand(text)
    got = list(ours(plan, dict(os.environ)))
    assert len(got) == 6, "a point two subtests share runs once in each, as in two W&B sweeps"
    path = tmp_path / "sweep.yaml"
    for sweep in sweeps_of(path, None, None):
        config = dict(sweep.config)
        agent = Agent(config, tmp_path / "agent", monkeypatch)
        mine = sorted(argv for run, argv, _ in got if run.tags == sweep.tags)
        theirs = sorted(agent.run(args, f"r{i}")[0] for i, args in enumerate(server_runs(config)))
        assert mine == theirs and len(mine) == 3
        assert all(f"--_tags={','.join(sweep.tags)}" in argv for argv in mine)


def test_a_composite_files_dates_stay_text_for_the_server(tmp_path: Path) -> None:
    from expdeploy_wandb.sweeps import sweeps_of

    path = tmp_path / "sweep.yaml"
    path.write_text("program: m.py\nmethod: grid\nparameters:\n  subtests:\n    a:\n      day: 2024-01-01\n")
    (sweep,) = sweeps_of(path, None, None)
    assert sweep.config["parameters"]["day"] == {"value": "2024-01-01"}
