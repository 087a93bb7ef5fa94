"""Spec dialects: the format interface, the registry fed by plugins, sniffing and loading."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from expdeploy.errors import BadInput, SpecError
from expdeploy.names import dir_name_problem
from expdeploy.spec.model import ExperimentSpec
from expdeploy.spec.source import SpecSource

SURE, MAYBE, NO = 2, 1, 0


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """Command-line settings a dialect may need; a format rejects the ones it cannot use."""

    name: str | None = None  # experiment name instead of the file's
    command: str | None = None  # command template for formats that have none (experiments JSON)
    title: str | None = None  # mlrunner: only the grid documents with this `_title`
    seed: int = 0  # random sampling (wandb `method: random`)
    run_cap: int | None = None  # W&B sweeps: `run_cap` in place of the file's (--run-cap)
    sample: int | None = None  # --sample N: also the draws of a random sweep that has no run_cap
    # The backend's own service drives the search (a W&B sweep under --backend wandb): methods
    # that cannot be expanded here (bayes, random without run_cap, early_terminate) are accepted.
    server_search: bool = False


class SpecFormat(Protocol):
    """A spec dialect, registered through `expdeploy_register_spec_formats`."""

    name: str
    description: str

    def sniff(self, source: SpecSource) -> int:
        """How sure this format is that it can read `source`: 2 sure, 1 maybe, 0 no. Keep it cheap."""
        ...

    def load(self, source: SpecSource, options: LoadOptions) -> ExperimentSpec:
        """The spec, or a SpecError naming file:line."""
        ...


def available_formats() -> dict[str, SpecFormat]:
    from expdeploy.plugins import get_plugin_manager

    formats: dict[str, SpecFormat] = {}

    def register(fmt: SpecFormat) -> None:
        formats.setdefault(fmt.name, fmt)

    get_plugin_manager().hook.expdeploy_register_spec_formats(register=register)
    return formats


def choose_format(source: SpecSource, forced: str | None) -> SpecFormat:
    formats = available_formats()
    if forced:
        if forced not in formats:
            raise BadInput(f"unknown spec format {forced!r}", key="--spec-format",
                           hint=f"available: {', '.join(sorted(formats))}")
        return formats[forced]
    source.text  # noqa: B018 - a missing file is reported as such, not as an unknown format
    scores = sorted(((fmt.sniff(source), name) for name, fmt in formats.items()), reverse=True)
    if not scores or scores[0][0] == NO:
        source.documents  # noqa: B018 - malformed YAML is the more useful error
        raise SpecError("cannot tell which kind of experiment file this is", where=source.where(),
                        hint=f"pass --spec-format with one of: {', '.join(sorted(formats))}")
    return formats[scores[0][1]]


def load_spec(path: Path, options: LoadOptions, forced_format: str | None = None) -> ExperimentSpec:
    source = SpecSource(path)
    spec = choose_format(source, forced_format).load(source, options)
    problem = dir_name_problem(spec.name)
    if problem:  # covers --name and third-party formats; dialects report their own file:line
        raise BadInput(f"experiment name {problem}", where=spec.source, key="name",
                       hint="use a plain name such as `lr-sweep`; it becomes <output>/<name>/")
    return spec
