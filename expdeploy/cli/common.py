"""Options shared by every command that reads a spec (`plan`, later `run`): one definition each."""

from __future__ import annotations

import shlex
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from expdeploy.spec.formats import LoadOptions
    from expdeploy.spec.model import ExperimentSpec
    from expdeploy.spec.overrides import Override


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


SpecArg = Annotated[
    Path,
    typer.Argument(
        help="Experiment file: native YAML, a wandb sweep, an mlrunner params.yaml, "
        "an experiments JSON or a Hydra config; or, after --, a Hydra multirun command line "
        "(-- python3 train.py -m lr=0.1,0.01).",
        show_default=False,
        metavar="SPEC",
    ),
]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(
        help="Hydra-style overrides: lr=0.1,0.01  'seed=range(0,3)'  +new=1  ~dropped",
        show_default=False,
        metavar="[OVERRIDES]...",
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
ResourcesOpt = Annotated[str | None, typer.Option(
    "--resources", help="What every run needs, in place of the spec's resources: gpus=1,cpus=4,"
    "mem=16G,time=2h (W&B sweep files and Hydra lines have nowhere else to say it).",
    show_default=False)]
RunCapOpt = Annotated[int | None, typer.Option(
    "--run-cap", help="W&B sweep files: the number of runs, in place of the file's run_cap (a random "
    "sweep draws this many; a grid keeps its first N).", show_default=False)]


def load_options(command: str | None = None, title: str | None = None, name: str | None = None,
                 seed: int = 0, run_cap: int | None = None, sample: int | None = None,
                 server_search: bool = False) -> LoadOptions:
    """The settings a spec is read with, from the options `plan` and `run` share."""
    from expdeploy.errors import BadInput
    from expdeploy.spec.formats import LoadOptions

    if run_cap is not None and run_cap < 1:
        raise BadInput("--run-cap must be at least 1", key="--run-cap")
    if sample is not None and sample < 0:
        raise BadInput("--sample must not be negative", key="--sample")
    return LoadOptions(name=name, command=command, title=title, seed=seed, run_cap=run_cap,
                       sample=sample, server_search=server_search)


def _refuse_a_forgotten_multirun(spec_path: Path, overrides: list[str]) -> None:
    """`expdeploy run -- python3 train.py a=1,2`: a program, not a spec file, and no `-m`."""
    import shutil

    from expdeploy.errors import BadInput

    if spec_path.exists() or shutil.which(str(spec_path)) is None:
        return
    line = shlex.join([str(spec_path), *overrides[:1], "-m", *overrides[1:]])
    raise BadInput(f"{spec_path} is a program, not an experiment file",
                   hint=f"a Hydra multirun line needs its -m:  expdeploy run -- {line}")


def load_from_cli(
    spec_path: Path,
    overrides: list[str] | None,
    options: LoadOptions,
    spec_format: str | None = None,
    resources: str | None = None,
) -> tuple[ExperimentSpec, tuple[Override, ...]]:
    """The spec and overrides of `plan`/`run`: SPEC [OVERRIDES], or after `--` a Hydra multirun
    line, which Hydra itself expands (its words are Hydra's, not expdeploy overrides); with
    `--resources`, every run's resources replaced."""
    from expdeploy.errors import BadInput
    from expdeploy.spec.formats import load_spec
    from expdeploy.spec.hydra_line import is_hydra_line, load_hydra_line
    from expdeploy.spec.overrides import parse_overrides
    from expdeploy.spec.resource_flag import parse_resources, with_resources

    wanted = parse_resources(resources) if resources is not None else None
    words = [str(spec_path), *(overrides or [])]
    parsed: tuple[Override, ...] = ()
    if is_hydra_line(words):
        if spec_format is not None:
            raise BadInput("--spec-format does not apply to a Hydra command line", key="--spec-format")
        spec = load_hydra_line(words, options)
    else:
        _refuse_a_forgotten_multirun(spec_path, overrides or [])
        parsed = parse_overrides(overrides or [])
        spec = load_spec(spec_path, options, spec_format)
    return (with_resources(spec, wanted) if wanted else spec), parsed
