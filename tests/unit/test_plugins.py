"""The plugin system: hooks documented and tested, built-ins listed, an in-process plugin used."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from expdeploy.backend import available_backends
from expdeploy.hookspecs import HOOK_NAMES
from expdeploy.plugins import get_plugin_manager, hookimpl, list_plugins
from expdeploy.spec.formats import SURE, LoadOptions, available_formats, load_spec
from expdeploy.spec.model import Block, ExperimentSpec, Recipe, Resources, Step, Template
from expdeploy.spec.source import SpecSource

from helpers import REPO

BUILTIN_FORMATS = {"native", "wandb", "mlrunner", "experiments-json"}


@pytest.mark.parametrize("hook", HOOK_NAMES)
def test_every_hook_is_documented_and_tested(hook: str) -> None:
    assert hook in (REPO / "README.md").read_text(), f"{hook} is not documented in README.md"
    tests = "".join(p.read_text() for p in (REPO / "tests").rglob("test_*.py")
                    if p.name != "test_plugins.py")
    assert re.search(rf"\b{hook}\b", tests), f"no test outside this file implements {hook}"


def test_builtins_load_through_entry_points() -> None:
    builtins = {p.name: p for p in list_plugins() if p.builtin}
    assert set(builtins) >= {"native", "wandb_sweep", "mlrunner", "experiments_json", "local"}
    for name in ("native", "wandb_sweep", "mlrunner", "experiments_json"):
        assert builtins[name].hooks == ("expdeploy_register_spec_formats",)
    assert builtins["local"].hooks == ("expdeploy_register_backends",)
    assert set(available_formats()) >= BUILTIN_FORMATS
    assert "local" in available_backends()


class _ToyFormat:
    """One run per line: `a=1 b=x`."""

    name = "toy"
    description = "toy lines"

    def sniff(self, source: SpecSource) -> int:
        return SURE if source.path.suffix == ".toy" else 0

    def load(self, source: SpecSource, options: LoadOptions) -> ExperimentSpec:
        runs = tuple(dict(w.split("=", 1) for w in line.split()) for line in
                     source.text.splitlines() if line.strip())
        recipe = Recipe((Step("main", Template("echo {args}", source.where())),), Resources())
        block = Block(recipe, source.where(), explicit=runs)
        return ExperimentSpec(name="toy", source=source.where(), format="toy", blocks=(block,))


class _ToyPlugin:
    @hookimpl
    def expdeploy_register_spec_formats(self, register: Any) -> None:
        register(_ToyFormat())


def test_in_process_plugin_format_is_sniffed_and_used(tmp_path: Path) -> None:
    spec = tmp_path / "runs.toy"
    spec.write_text("a=1 b=x\na=2 b=y\n")
    manager = get_plugin_manager()
    manager.register(_ToyPlugin(), name="toy-test")
    try:
        assert "toy-test" in {p.name for p in list_plugins()}
        loaded = load_spec(spec, LoadOptions())
        assert loaded.format == "toy" and loaded.blocks[0].explicit[1] == {"a": "2", "b": "y"}
    finally:
        manager.unregister(name="toy-test")
    assert "toy" not in available_formats()
