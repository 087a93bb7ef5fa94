"""A throwaway plugin package, really installed with pip, is listed and used like a built-in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

PYPROJECT = """
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "toy-expdeploy"
version = "0.3.0"

[project.entry-points.expdeploy]
toy = "toy_expdeploy"

[tool.hatch.build.targets.wheel]
packages = ["toy_expdeploy"]
"""

MODULE = '''
"""A third-party expdeploy plugin: a spec format and a command."""
import typer

from expdeploy.plugins import hookimpl
from expdeploy.spec.model import Block, ExperimentSpec, Recipe, Resources, Step, Template


class ToyFormat:
    name = "toy"
    description = "one run per line: key=value ..."

    def sniff(self, source):
        return 2 if source.path.suffix == ".toy" else 0

    def load(self, source, options):
        runs = tuple(dict(w.split("=", 1) for w in line.split())
                     for line in source.text.splitlines() if line.strip())
        recipe = Recipe((Step("main", Template("toy-run {args}", source.where())),), Resources())
        return ExperimentSpec(name="toy", source=source.where(), format="toy",
                              blocks=(Block(recipe, source.where(), explicit=runs),))


@hookimpl
def expdeploy_register_spec_formats(register):
    register(ToyFormat())


@hookimpl
def expdeploy_register_commands(app):
    @app.command("toy-hello")
    def hello(name: str = "world") -> None:
        """Say hello from the toy plugin."""
        typer.echo(f"hello {name} from toy")
'''


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("toy-src")
    (src / "pyproject.toml").write_text(PYPROJECT)
    (src / "toy_expdeploy").mkdir()
    (src / "toy_expdeploy" / "__init__.py").write_text(textwrap.dedent(MODULE))
    target = tmp_path_factory.mktemp("toy-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(src)],
        check=True, capture_output=True,
    )
    return target


def expdeploy(site: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": str(site), **env}
    return subprocess.run([sys.executable, "-m", "expdeploy", *args], capture_output=True,
                          text=True, env=environ, cwd=site)


def test_installed_plugin_is_listed_with_version_and_hooks(installed: Path) -> None:
    result = expdeploy(installed, "plugins", "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    toy = next(p for p in data["plugins"] if p["name"] == "toy")
    assert (toy["distribution"], toy["version"], toy["builtin"]) == ("toy-expdeploy", "0.3.0", False)
    assert toy["hooks"] == ["expdeploy_register_commands", "expdeploy_register_spec_formats"]
    assert "toy" in data["spec_formats"]
    table = expdeploy(installed, "plugins").stdout
    assert "toy-expdeploy" in table and "0.3.0" in table


def test_installed_format_and_command_are_used(installed: Path) -> None:
    spec = installed / "runs.toy"
    spec.write_text("lr=0.1 seed=1\nlr=0.2 seed=1\n")
    result = expdeploy(installed, "plan", str(spec), "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["format"] == "toy" and data["count"] == 2
    assert data["runs"][0]["commands"]["main"] == "toy-run --lr=0.1 --seed=1"
    hello = expdeploy(installed, "toy-hello", "--name", "lab")
    assert hello.returncode == 0 and hello.stdout.strip() == "hello lab from toy"
    assert "toy-hello" in expdeploy(installed, "--help").stdout


def test_load_and_block_controls(installed: Path) -> None:
    def names(**env: str) -> set[str]:
        out = expdeploy(installed, "plugins", "--format", "json", **env).stdout
        return {p["name"] for p in json.loads(out)["plugins"]}

    assert "toy" not in names(EXPDEPLOY_BLOCK_PLUGINS="toy")
    assert "mlrunner" not in names(EXPDEPLOY_BLOCK_PLUGINS="mlrunner")
    only_other = names(EXPDEPLOY_LOAD_PLUGINS="something-else")
    assert "toy" not in only_other and "native" in only_other
    assert "toy" in names(EXPDEPLOY_LOAD_PLUGINS="toy-expdeploy")


def test_broken_plugin_warns_and_the_cli_keeps_working(installed: Path, tmp_path: Path) -> None:
    broken = tmp_path / "site"
    dist = broken / "broken_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[expdeploy]\nbroken = no_such_module_here\n")
    result = expdeploy(broken, "plugins")
    assert result.returncode == 0
    assert "plugin 'broken' failed to load: ModuleNotFoundError" in result.stderr
