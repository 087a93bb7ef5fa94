"""Options shared by every command that reads a spec (`plan`, later `run`): one definition each."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from expdeploy.spec.model import ExperimentSpec
    from expdeploy.spec.overrides import Override


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


SpecArg = Annotated[
    Path,
    typer.Argument(
        help="Experiment file: native YAML, a wandb sweep, an mlrunner params.yaml, "
        "or an experiments JSON.",
        show_default=False,
    ),
]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Hydra-style overrides: lr=0.1,0.01  seed=range(0,3)  +new=1  ~dropped",
        show_default=False,
    ),
]
OutputOpt = Annotated[
    Path, typer.Option("--output", "-o", help="Parent directory of experiment directories.")
]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", help="table for people, json for tools.")]
SpecFormatOpt = Annotated[
    str | None,
    typer.Option("--spec-format", help="Dialect of SPEC (see `expdeploy plugins`); sniffed if unset."),
]
CommandOpt = Annotated[
    str | None,
    typer.Option("--command", help="Command template, e.g. 'python run.py {params_json}' "
                 "(needed for experiments JSON; replaces the spec's command elsewhere)."),
]
TitleOpt = Annotated[
    str | None, typer.Option("--title", help="mlrunner: only the grids with this `_title`.")
]
NameOpt = Annotated[
    str | None, typer.Option("--name", help="Experiment name (default: from the file).")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for random sampling (wandb random).")]


def load_from_cli(
    spec_path: Path,
    overrides: list[str] | None,
    spec_format: str | None,
    command: str | None,
    title: str | None,
    name: str | None,
    seed: int,
) -> tuple[ExperimentSpec, tuple[Override, ...]]:
    from expdeploy.spec.formats import LoadOptions, load_spec
    from expdeploy.spec.overrides import parse_overrides

    parsed = parse_overrides(overrides or [])
    options = LoadOptions(name=name, command=command, title=title, seed=seed)
    return load_spec(spec_path, options, spec_format), parsed
