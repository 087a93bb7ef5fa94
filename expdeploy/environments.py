"""Which Python environment a target uses, recognised by its layout: a venv (`pyvenv.cfg`) or a
conda prefix (`conda-meta/`, `bin/python`); used by reference, at the same path everywhere."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from expdeploy.errors import BadInput, Location

if TYPE_CHECKING:
    from expdeploy.targets import Target

HINT = "point `environment` at a venv (python -m venv DIR) or a conda prefix (the directory above bin/python)"


@dataclass(frozen=True, slots=True)
class Environment:
    kind: str  # "venv" or "conda"
    prefix: str  # absolute, as given (not resolved: the remote copy is found by this path)
    activate_scripts: bool = False  # conda's etc/conda/activate.d holds scripts that activation runs

    @property
    def python(self) -> str:
        return f"{self.prefix}/bin/python"


def kind_of(prefix: Path) -> str | None:
    """"venv", "conda", or None when `prefix` has neither layout."""
    if (prefix / "pyvenv.cfg").is_file():
        return "venv"
    if (prefix / "conda-meta").is_dir() and os.path.lexists(prefix / "bin" / "python"):
        return "conda"
    return None


def target_environment(target: Target, environ: Mapping[str, str] | None = None) -> Environment:
    """The target's `environment`, else the active one ($VIRTUAL_ENV, then $CONDA_PREFIX);
    BadInput when there is none or it is not an environment."""
    environ = os.environ if environ is None else environ
    if target.environment:
        where, key, prefix = target.where, f"targets.{target.name}.environment", target.environment
    else:
        variable = "VIRTUAL_ENV" if environ.get("VIRTUAL_ENV") else "CONDA_PREFIX"
        prefix, where, key = environ.get(variable, ""), Location(f"${variable}"), None
        if not prefix:
            raise BadInput(f"no environment for target {target.name!r}: none is active and "
                           "the target sets no `environment`", where=target.where,
                           hint=f"activate it first, or set environment = \"/path/to/env\" in "
                           f"[targets.{target.name}]")
    return detect(prefix, where=where, key=key)


def detect(prefix: str, *, where: Location | None = None, key: str | None = None) -> Environment:
    path = Path(os.path.abspath(prefix))
    if not path.is_dir():
        raise BadInput(f"environment {path} does not exist", where=where, key=key, hint=HINT)
    kind = kind_of(path)
    if kind is None:
        raise BadInput(f"{path} is neither a venv (no pyvenv.cfg) nor a conda environment (no conda-meta/ "
                       "and bin/python)", where=where, key=key, hint=HINT)
    return Environment(kind, str(path), (path / "etc" / "conda" / "activate.d").is_dir())


def project_venv_bin(cwd: Path, prefix: str, base_prefix: str, path: str) -> str | None:
    """The bin directory of the venv expdeploy runs from (`prefix`, sys.prefix), when that venv is
    inside the project (`python3 -m venv .venv && .venv/bin/expdeploy run ...`) and not on `path`:
    runs then find its `python` first, as they would with it activated. A venv elsewhere (a pipx
    tool's) is left out: its Python lacks the project's packages."""
    if prefix == base_prefix:
        return None
    bin_dir = Path(prefix) / "bin"
    try:
        Path(prefix).resolve().relative_to(cwd.resolve())
    except ValueError:
        return None
    listed = {os.path.realpath(p) for p in path.split(os.pathsep) if p}
    return None if os.path.realpath(bin_dir) in listed else str(bin_dir)
