"""A newcomer's first ten minutes: the README's first set-up line from a fresh copy of the project
on a stock Debian PATH (only `python3`), help that reads right, messages that keep their brackets,
and a missing program named in one hint."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import click
import pytest
import typer
from conftest import Project

from expdeploy.cli import app

from helpers import REPO

pytestmark = pytest.mark.integration

STOCK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def first_setup_line() -> str:
    """The README's first command: set up and run the quickstart."""
    text = (REPO / "README.md").read_text()
    block = text.split("## Set up", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    return block.strip()


@pytest.mark.skipif(
    shutil.which("git") is None or not (REPO / ".git").exists(), reason="copies the project as git lists it"
)
def test_the_readme_quickstart_on_a_stock_path(tmp_path: Path) -> None:
    line = first_setup_line()
    assert line.startswith("python3 -m venv .venv") and "examples/quickstart.yml" in line
    listed = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True
        )
        .stdout.decode()
        .split("\0")
    )
    clone = tmp_path / "expdeploy"
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, clone / name)
    env = {
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "PATH": STOCK_PATH,
        "LANG": "C.UTF-8",
        **{k: v for k, v in os.environ.items() if k.startswith("PIP_")},
    }  # the package index
    done = subprocess.run(["sh", "-c", line], cwd=clone, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "10 succeeded" in done.stdout
    states = list((clone / "experiments" / "quickstart" / "runs").glob("*/state.json"))
    assert len(states) == 10 and all('"succeeded"' in p.read_text() for p in states)


def test_a_missing_program_is_named_in_one_hint(project: Project) -> None:
    project.write("grid.yml", "command: pyhton train.py {x}\ngrid:\n  x: [1, 2]\n")
    done = project.run("run", "grid.yml")
    assert done.returncode == 1
    assert (
        "hint: pyhton: no such program where the runs execute (exit 127): write its full path, or "
        "give the runs their environment"
    ) in done.stdout


def test_messages_keep_their_brackets(project: Project) -> None:
    project.env["XDG_CONFIG_HOME"] = str(project.root / "config")
    done = project.run("targets", "list")
    assert "add [targets.NAME] tables to ./expdeploy.toml" in done.stderr
    project.write("params.yaml", "template:\n  main: echo {x}\nresource: [0]\n---\nx: [[1, 2]]\ny: ['[z]']\n")
    assert project.run("run", "params.yaml").returncode == 0
    shown = project.run("status", str(project.exp("params")), "--all")
    assert "X_[1, 2]-Y_[z]" in shown.stdout, "a run's name is text, not markup"


def all_commands() -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []

    def walk(command: click.Command, path: str) -> None:
        subs = getattr(command, "commands", {})
        if not subs:
            found.append((path, command))
        for name, sub in subs.items():
            walk(sub, f"{path} {name}")

    walk(typer.main.get_command(app), "expdeploy")
    return found


@pytest.mark.parametrize(("path", "command"), all_commands(), ids=[p for p, _ in all_commands()])
def test_usage_lines_read_as_one_style(path: str, command: click.Command) -> None:
    with click.Context(command, info_name=path) as ctx:
        usage = command.get_usage(ctx)
    arguments = usage.split("[OPTIONS]", 1)[-1].split()
    assert all(re.fullmatch(r"\[?[A-Z_]+\]?(\.\.\.)?|\[[A-Z_]+\]\.\.\.", a) for a in arguments), usage


def test_a_missing_argument_is_said(project: Project) -> None:
    for verb, name in (("logs", "RUN"), ("run", "SPEC"), ("restore", "RUN"), ("agent", "EXP_DIR")):
        done = project.run(verb)
        assert done.returncode == 2 and f"Missing argument '{name}'" in done.stderr, done.stderr


def test_results_say_their_unit(project: Project) -> None:
    project.write("grid.yml", "name: g\ncommand: 'true'\ngrid:\n  x: [1, 2]\n")
    assert project.run("run", "grid.yml").returncode == 0
    header = project.run("results", str(project.exp("g"))).stdout.splitlines()[0]
    assert "duration_s" in header.split()
