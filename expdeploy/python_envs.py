"""The Python layer of a run's environment, by reference: `conda:` or `venv:` (a prefix at an
absolute path, the same wherever the run executes) or `python:` (one interpreter), put first on
PATH with the variables activation would set, so no `conda activate` is needed anywhere."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from typing import Any

from expdeploy.plugins import hookimpl
from expdeploy.wrapping import PYTHON, Fail, RunContext, Wrapper


def _absolute(env: Mapping[str, Any], key: str, fail: Fail, what: str) -> None:
    value = env[key]
    if not isinstance(value, str) or not value.startswith("/"):
        raise fail(key, f"expected the absolute path of {what}, got {value!r}",
                   "by reference: the same absolute path here and wherever the runs execute")


class _Prefix:
    """A conda env or venv: `<prefix>/bin` first on PATH."""

    name = ""
    layer = PYTHON
    options: tuple[str, ...] = ()

    def check(self, env: Mapping[str, Any], fail: Fail) -> None:
        _absolute(env, self.name, fail, f"a {self.name} environment")

    def stop(self, env: Mapping[str, Any], run: RunContext) -> str | None:
        return None

    def mounts(self, env: Mapping[str, Any]) -> list[tuple[str, bool]]:
        return [(env[self.name], False)]

    def problem(self, env: Mapping[str, Any]) -> str | None:
        from pathlib import Path

        from expdeploy.environments import kind_of

        prefix = Path(env[self.name])
        if not prefix.is_dir():
            return f"{self.name} environment {prefix} does not exist"
        if kind_of(prefix) is None:
            return f"{prefix} is not a {self.name} environment (no pyvenv.cfg; no conda-meta/, bin/python)"
        return None


class Conda(_Prefix):
    name = "conda"

    def wrap(self, command: str, env: Mapping[str, Any], run: RunContext, inner: Wrapper | None) -> str:
        prefix = shlex.quote(env["conda"])
        # what `conda activate` sets, then the env's own activation scripts (CUDA paths and such)
        return (f"export CONDA_PREFIX={prefix} CONDA_DEFAULT_ENV={prefix} CONDA_SHLVL=1 "
                f"PATH={prefix}/bin:\"$PATH\"; unset PYTHONHOME; "
                f"for f in {prefix}/etc/conda/activate.d/*.sh; do if [ -r \"$f\" ]; then . \"$f\"; fi; done; "
                f"{command}")


class Venv(_Prefix):
    name = "venv"

    def mounts(self, env: Mapping[str, Any]) -> list[tuple[str, bool]]:
        # a venv links to the interpreter it was made from: that installation goes in read-only
        home = _venv_home(env["venv"])
        return [(env["venv"], False), *([(os.path.dirname(home), True)] if home else [])]

    def wrap(self, command: str, env: Mapping[str, Any], run: RunContext, inner: Wrapper | None) -> str:
        prefix = shlex.quote(env["venv"])
        return f"export VIRTUAL_ENV={prefix} PATH={prefix}/bin:\"$PATH\"; unset PYTHONHOME; {command}"


class Python:
    """`python: /path/to/python`: that interpreter's directory first on PATH."""

    name = "python"
    layer = PYTHON
    options: tuple[str, ...] = ()

    def check(self, env: Mapping[str, Any], fail: Fail) -> None:
        _absolute(env, "python", fail, "a Python interpreter")

    def wrap(self, command: str, env: Mapping[str, Any], run: RunContext, inner: Wrapper | None) -> str:
        return f"export PATH={shlex.quote(os.path.dirname(env['python']))}:\"$PATH\"; {command}"

    def stop(self, env: Mapping[str, Any], run: RunContext) -> str | None:
        return None

    def mounts(self, env: Mapping[str, Any]) -> list[tuple[str, bool]]:
        return [(os.path.dirname(os.path.dirname(os.path.realpath(env["python"]))), True)]

    def problem(self, env: Mapping[str, Any]) -> str | None:
        path = env["python"]
        return None if os.access(path, os.X_OK) else f"python {path} is not an executable file"


def _venv_home(prefix: str) -> str | None:
    """The `home` of a venv's pyvenv.cfg (the base interpreter's bin directory)."""
    try:
        with open(os.path.join(prefix, "pyvenv.cfg")) as handle:
            for line in handle:
                key, _, value = line.partition("=")
                if key.strip() == "home":
                    return os.path.realpath(value.strip())
    except OSError:
        return None
    return None


@hookimpl(trylast=True)
def expdeploy_register_environments(register: Any) -> None:
    for wrapper in (Conda(), Venv(), Python()):
        register(wrapper)
