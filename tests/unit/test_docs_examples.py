"""Every shell example a newcomer may paste (README code blocks, the examples' comments, every
`--help`'s examples) is valid bash: `bash -n` parses it (an unquoted `seed=range(0,4)` is not)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator

import click
import pytest
import typer

from expdeploy.cli import app

from helpers import REPO

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def readme_snippets() -> Iterator[tuple[str, str]]:
    """(where, script): each `sh` block whole, and each `$ ` line of a `console` block."""
    text = (REPO / "README.md").read_text()
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        kind, body = match.group(1), match.group(2)
        if kind == "sh":
            yield f"README.md:{line}", body
        elif kind == "console":
            for offset, command in enumerate(body.splitlines(), start=1):
                if command.startswith("$ "):
                    yield f"README.md:{line + offset}", command[2:]


def example_comment_snippets() -> Iterator[tuple[str, str]]:
    """The `#   expdeploy ...` lines at the top of the example files."""
    for path in sorted((REPO / "examples").rglob("*")):
        if path.suffix not in (".yml", ".yaml", ".json", ".py"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            found = re.match(r"#\s+(expdeploy\s.*)$", line)
            if found:
                yield f"{path.relative_to(REPO)}:{number}", found.group(1)


def help_snippets() -> Iterator[tuple[str, str]]:
    """The example lines (`expdeploy ...`) of every command's --help, plugin commands too."""
    root = typer.main.get_command(app)

    def walk(command: click.Command, path: list[str]) -> Iterator[tuple[str, str]]:
        with click.Context(command, info_name=" ".join(path)) as ctx:
            text = command.get_help(ctx)
        for line in text.splitlines():
            if line.strip().startswith("expdeploy "):
                yield f"expdeploy {' '.join(path[1:])} --help", line.strip()
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from walk(sub, [*path, name])

    yield from walk(root, ["expdeploy"])


SNIPPETS = [*readme_snippets(), *example_comment_snippets(), *help_snippets()]


def test_there_are_examples_from_every_source() -> None:
    sources = {where.split(":")[0].split(" ")[0] for where, _ in SNIPPETS}
    assert {"README.md", "examples/quickstart.yml", "expdeploy"} <= sources
    assert sum(1 for where, _ in SNIPPETS if where.endswith("--help")) >= 20


@pytest.mark.parametrize(("where", "script"), SNIPPETS, ids=[w for w, _ in SNIPPETS])
def test_every_shell_example_parses_in_bash(where: str, script: str) -> None:
    done = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{where}: {script!r} is not valid bash: {done.stderr.strip()}"


def setup_section() -> str:
    text = (REPO / "README.md").read_text()
    return text.split("## Set up", 1)[1].split("\n## ", 1)[0]


def test_the_readme_says_to_activate_the_venv_it_installs_into() -> None:
    section = setup_section()
    assert ". .venv/bin/activate" in section, "the README uses bare `expdeploy` and `nox` after set-up"


def test_the_readme_names_everything_setup_sh_installs() -> None:
    script = (REPO / "tests/infra/setup.sh").read_text()
    packages = set(re.findall(r"\[[\w-]+\]=([\w.+-]+)", script))
    assert {"docker.io", "podman", "slurmd", "openssh-server"} <= packages
    section = " ".join(setup_section().split())
    missing = sorted(p for p in packages if p not in section and p != "python3")
    assert missing == [], f"README's list of what setup.sh installs lacks {missing}"
