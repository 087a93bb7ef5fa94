"""Shared helpers: write a spec into a temp dir and load, expand or plan it; run the CLI in-process."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from expdeploy.cli import app
from expdeploy.plan import Plan, make_plan
from expdeploy.spec.formats import LoadOptions, load_spec
from expdeploy.spec.model import ExperimentSpec
from expdeploy.spec.overrides import parse_overrides

# Real services (Slurm, sshd) as session fixtures, started by the tests themselves.
pytest_plugins = ["services.slurm", "services.ssh", "services.hosts", "services.containers"]


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    def _write(text: str, name: str = "exp.yml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return _write


@pytest.fixture
def load(write: Callable[..., Path]) -> Callable[..., ExperimentSpec]:
    def _load(text: str, name: str = "exp.yml", fmt: str | None = None, **options: Any) -> ExperimentSpec:
        return load_spec(write(text, name), LoadOptions(**options), fmt)

    return _load


@pytest.fixture
def plan(write: Callable[..., Path], tmp_path: Path) -> Callable[..., Plan]:
    def _plan(text: str, *overrides: str, name: str = "exp.yml", **options: Any) -> Plan:
        spec = load_spec(write(text, name), LoadOptions(**options))
        return make_plan(spec, parse_overrides(overrides), tmp_path / "experiments")

    return _plan


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """Run `expdeploy ARGS` in-process from an empty working directory."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def _cli(*args: str) -> Any:
        return runner.invoke(app, list(args), catch_exceptions=False)

    return _cli
