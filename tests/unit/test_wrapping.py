"""Environments: the spec's `env:` table checked with file:line errors, each wrapper's command
line pinned (golden), run through a real `sh -n`, and a third-party wrapper used as a plugin."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from expdeploy.errors import SpecError
from expdeploy.plugins import get_plugin_manager, hookimpl
from expdeploy.spec.model import ExperimentSpec
from expdeploy.wrapping import RunContext, available_wrappers, stop_command, wrap_command

GOLDEN = Path(__file__).parent / "golden"
RUN = RunContext("0123456789abcdef", "/work/me/proj/experiments/exp", "/work/me/proj", gpus=0)


def env_of(load: Callable[..., ExperimentSpec], table: str) -> Any:
    spec = load(f"name: exp\ncommand: python train.py --lr {{lr}}\ngrid:\n  lr: [0.1]\nenv:\n{table}")
    return spec.recipes[0].env


def test_conda_inside_docker(load: Callable[..., ExperimentSpec]) -> None:
    env = env_of(load, "  conda: /work/me/envs/proj\n  docker: me/train:1.2\n  args: [--shm-size=8g]\n")
    assert (env.python, env.container) == ("conda", "docker")
    line = wrap_command(env, "python train.py --lr 0.1", RUN)
    assert line + "\n" == (GOLDEN / "docker_conda.sh").read_text()
    assert stop_command(env, RUN) == \
        'docker rm -f ed-0123456789abcdef-"$EXPDEPLOY_ATTEMPT" >/dev/null 2>&1 || true'


def test_gpus_cross_into_docker_by_device_not_by_variable(load: Callable[..., ExperimentSpec]) -> None:
    env = env_of(load, "  docker: img\n  runtime: podman\n")
    line = wrap_command(env, "nvidia-smi", RunContext("ab", "/e", "/c", gpus=2))
    assert line.startswith("podman run --rm --name ed-ab-\"$EXPDEPLOY_ATTEMPT\" ")
    assert '--gpus "device=$CUDA_VISIBLE_DEVICES"' in line and "-e CUDA_VISIBLE_DEVICES" not in line
    assert "-e WANDB_API_KEY" in line, "secrets cross by name only"


def test_singularity_with_a_clean_environment(load: Callable[..., ExperimentSpec]) -> None:
    env = env_of(load, "  singularity: /work/me/img.sif\n  conda: /work/me/envs/proj\n  nv: true\n"
                       "  cleanenv: true\n  binds: [/data]\n")
    line = wrap_command(env, "python train.py --lr 0.1", RUN)
    assert line + "\n" == (GOLDEN / "singularity_conda.sh").read_text()
    assert stop_command(env, RUN) is None


def test_venv_and_python_layers(load: Callable[..., ExperimentSpec]) -> None:
    venv = wrap_command(env_of(load, "  venv: /opt/my env\n"), "python x.py", RUN)
    assert venv == ("export VIRTUAL_ENV='/opt/my env' PATH='/opt/my env'/bin:\"$PATH\"; "
                    "unset PYTHONHOME; python x.py")
    python = wrap_command(env_of(load, "  python: /opt/py/bin/python3\n"), "python3 x.py", RUN)
    assert python == 'export PATH=/opt/py/bin:"$PATH"; python3 x.py'


@pytest.mark.parametrize("golden", ["docker_conda.sh", "singularity_conda.sh"])
def test_generated_lines_are_valid_sh(golden: str) -> None:
    checked = subprocess.run(["sh", "-n", str(GOLDEN / golden)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize(("table", "line", "message", "hint"), [
    ("  conda: /a\n  venv: /b\n", 7, "both `conda` and `venv` are set", "one Python env"),
    ("  docker: img\n  nv: true\n", 7, "`nv` needs singularity", None),
    ("  docker: img\n  colour: red\n", 7, "unknown key", "known: conda"),
    ("  conda: envs/proj\n", 6, "expected the absolute path of a conda environment", "by reference"),
    ("  docker: img\n  runtime: lxc\n", 7, "unknown runtime 'lxc'", "docker, podman"),
    ("  singularity: /i.sif\n  nv: yes please\n", 7, "expected true or false", None),
    ("  binds: [/a]\n", 6, "`binds` needs singularity", None),
])
def test_bad_env_tables_name_file_line_and_key(load: Callable[..., ExperimentSpec], table: str, line: int,
                                               message: str, hint: str | None) -> None:
    with pytest.raises(SpecError) as caught:
        env_of(load, table)
    error = caught.value
    assert error.where is not None and error.where.line == line, str(error)
    assert message in error.message
    if hint:
        assert error.hint and hint in error.hint


def test_an_env_with_no_environment_key(load: Callable[..., ExperimentSpec]) -> None:
    with pytest.raises(SpecError, match="names no environment"):
        env_of(load, "  {}\n")


class ModuleLoads:
    """A site's own wrapper: `module load` lines before the command (an HPC habit)."""

    name = "modules"
    layer = "python"
    options: tuple[str, ...] = ()

    def check(self, env: Any, fail: Any) -> None:
        if not isinstance(env["modules"], list):
            raise fail("modules", "expected a list of modules", None)

    def wrap(self, command: str, env: Any, run: RunContext, inner: Any) -> str:
        return "".join(f"module load {m}; " for m in env["modules"]) + command

    def stop(self, env: Any, run: RunContext) -> None:
        return None

    def mounts(self, env: Any) -> list[tuple[str, bool]]:
        return []

    def problem(self, env: Any) -> None:
        return None


class ModulesPlugin:
    @hookimpl
    def expdeploy_register_environments(self, register: Any) -> None:
        register(ModuleLoads())


@pytest.fixture
def modules_plugin() -> Iterator[None]:
    manager = get_plugin_manager()
    plugin = ModulesPlugin()
    manager.register(plugin, name="test-modules")
    available_wrappers.cache_clear()
    try:
        yield
    finally:
        manager.unregister(plugin)
        available_wrappers.cache_clear()


def test_a_plugin_wrapper_is_used_like_a_builtin(load: Callable[..., ExperimentSpec],
                                                 modules_plugin: None) -> None:
    env = env_of(load, "  modules: [cuda/12.1, gcc]\n  docker: img\n")
    line = wrap_command(env, "python x.py", RUN)
    assert "sh -c 'module load cuda/12.1; module load gcc; python x.py'" in line
