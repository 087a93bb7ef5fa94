"""A Hydra multirun command line as an experiment (`expdeploy run -- python3 train.py -m a=1,2`):
Hydra itself expands the sweep; each point becomes a run of the same program without `-m`.
"""

from __future__ import annotations

import itertools
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from expdeploy.errors import BadInput, Location
from expdeploy.names import dir_name_problem

if TYPE_CHECKING:
    from expdeploy.spec.formats import LoadOptions
    from expdeploy.spec.model import ExperimentSpec

MULTIRUN = ("-m", "--multirun")
WHERE = Location("command line")


@dataclass(frozen=True, slots=True)
class HydraLine:
    """A Hydra command line split: interpreter and program, then the program's own arguments."""

    head: tuple[str, ...]  # `python3 -u train.py`, `python3 -m pkg.train`, `./train`
    arguments: tuple[str, ...]  # Hydra's: `-m`, overrides, `--config-name x`, ...
    stem: str  # the script's or module's name: the experiment's default name

    @property
    def words(self) -> list[str]:
        return [*self.head, *self.arguments]

    @property
    def is_multirun(self) -> bool:
        return any(word in MULTIRUN for word in self.arguments)


def split_line(words: Sequence[str]) -> HydraLine:
    """Find the program in `python3 [options] train.py ...`, `python3 -m pkg ...` or a launcher
    such as `uv run python train.py ...`; the interpreter's own `-m` is not Hydra's."""
    # the interpreter comes before Hydra's `-m` (`env A=1 python3 train.py -m`, `uv run python ...`)
    before = itertools.takewhile(lambda word: word not in MULTIRUN, words)
    start = next((i for i, word in enumerate(before) if _is_python(word)), None)
    if start is None:  # a program of its own (`./train`): everything after it is Hydra's
        return HydraLine(tuple(words[:1]), tuple(words[1:]), _stem(words[0]) if words else "")
    index = start + 1
    while index < len(words) and words[index].startswith("-"):
        if words[index] in ("-m", "-c"):
            module = words[index + 1] if index + 1 < len(words) else ""
            stem = module.rsplit(".", 1)[-1] if words[index] == "-m" else "hydra"
            return HydraLine(tuple(words[: index + 2]), tuple(words[index + 2 :]), stem)
        index += 2 if words[index] in ("-X", "-W") else 1
    script = words[index] if index < len(words) else ""
    return HydraLine(tuple(words[: index + 1]), tuple(words[index + 1 :]), _stem(script))


def _is_python(word: str) -> bool:
    return re.fullmatch(r"python[0-9.]*", word.rsplit("/", 1)[-1]) is not None


def _stem(word: str) -> str:
    return Path(word).stem if word else ""


def is_hydra_line(words: Sequence[str]) -> bool:
    """Is this `SPEC OVERRIDES...` really a Hydra multirun line (given after `--`), or a Hydra
    config with overrides, which are Hydra's too (the `hydra` dialect: see hydra_config)?"""
    return split_line(words).is_multirun or (len(words) > 1 and _sweep_config(words[0]))


def _sweep_config(word: str) -> bool:
    from expdeploy.spec.hydra_config import is_sweep_config

    return is_sweep_config(Path(word))


def load_hydra_line(words: Sequence[str], options: LoadOptions) -> ExperimentSpec:
    """Expand the line with the user's own Hydra (see hydra_collect) into one run per job."""
    from expdeploy.spec.hydra_collect import collect, experiment

    if not split_line(words).is_multirun:  # CONFIG OVERRIDES: Hydra's overrides of a Hydra config
        from expdeploy.spec.hydra_config import load_config
        from expdeploy.spec.source import SpecSource

        return load_config(SpecSource(Path(words[0])), options, words[1:])
    for flag, value in (
        ("--command", options.command),
        ("--title", options.title),
        ("--run-cap", options.run_cap),
    ):
        if value is not None:
            raise BadInput(
                f"{flag} does not apply to a Hydra command line",
                key=flag,
                hint="the line after -- is the command; Hydra's overrides choose the runs",
            )
    line = split_line(_as_typed(words))
    name = options.name or line.stem
    problem = dir_name_problem(name)
    if problem:
        raise BadInput(
            f"experiment name {problem}",
            where=WHERE,
            key="--name",
            hint="pass --name NAME; it becomes <output>/<name>/",
        )
    sweep = collect(line)
    return experiment(name, WHERE, line, sweep, {"command_line": line.words})


def _as_typed(words: Sequence[str]) -> list[str]:
    """The words as the user typed them: SPEC reaches us as a path, which drops the `./` of
    `./train.py`; a bare name that is no command on PATH but a file here had it."""
    first = words[0] if words else ""
    if first and "/" not in first and shutil.which(first) is None and Path(first).is_file():
        return [f"./{first}", *words[1:]]
    return list(words)
