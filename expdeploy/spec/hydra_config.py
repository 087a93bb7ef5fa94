"""The `hydra` dialect: a Hydra primary config with `hydra.sweeper.params` is an experiment; the
app that reads it (`--command 'python3 my_app.py'`) expands it with its own Hydra, as `-m` would.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from expdeploy.errors import SpecError
from expdeploy.names import dir_name_problem
from expdeploy.plugins import hookimpl
from expdeploy.spec.formats import NO, SURE, LoadOptions, SpecFormat
from expdeploy.spec.model import ExperimentSpec
from expdeploy.spec.source import SpecSource

# Hydra's own name for a primary config: an experiment named after it would say nothing
_DEFAULT_CONFIG_NAME = "config"


class HydraConfigFormat:
    name = "hydra"
    description = "Hydra config with hydra.sweeper.params (--command 'python3 my_app.py' runs it)"

    def sniff(self, source: SpecSource) -> int:
        docs = source.documents_or_none()
        first = docs[0] if docs and len(docs) == 1 else None
        return SURE if isinstance(_sweep_params(first), Mapping) else NO

    def load(self, source: SpecSource, options: LoadOptions) -> ExperimentSpec:
        return load_config(source, options)


def is_sweep_config(path: Path) -> bool:
    """Is this file a Hydra config with `hydra.sweeper.params` (cheap for other files)?"""
    if path.suffix != ".yaml" or not path.is_file():
        return False
    return HydraConfigFormat().sniff(SpecSource(path)) == SURE


def load_config(source: SpecSource, options: LoadOptions, overrides: Sequence[str] = ()) -> ExperimentSpec:
    """The runs of `--command --config-path <dir> --config-name <stem> -m OVERRIDES`, as the
    program's Hydra expands them (the config's own sweep and the overrides, which are Hydra's)."""
    from expdeploy.spec.hydra_collect import collect, experiment
    from expdeploy.spec.hydra_line import split_line

    if not options.command:
        raise SpecError(
            "a Hydra config needs the program that reads it",
            where=source.where(),
            key="--command",
            hint="pass --command 'python3 my_app.py' (your @hydra.main app; expdeploy adds "
            "--config-path and --config-name)",
        )
    for flag, value in (("--title", options.title), ("--run-cap", options.run_cap)):
        if value is not None:
            raise SpecError(f"{flag} does not apply to a Hydra config", where=source.where(), key=flag)
    source.documents  # noqa: B018 - malformed YAML is reported as such, with its line
    path = source.path.absolute()
    if path.suffix != ".yaml":  # Hydra looks for `<config-name>.yaml` only
        raise SpecError(
            "Hydra reads only configs named *.yaml",
            where=source.where(),
            hint=f"rename it to {path.stem}.yaml",
        )
    try:
        program = shlex.split(options.command)
    except ValueError as exc:
        raise SpecError(f"--command: {exc}", where=source.where(), key="--command") from None
    words = [*program, "--config-path", _config_path(program, path), "--config-name", path.stem, "--multirun"]
    line = split_line([*words, *overrides])
    name = options.name or (line.stem if path.stem == _DEFAULT_CONFIG_NAME and line.stem else path.stem)
    problem = dir_name_problem(name)
    if problem:
        raise SpecError(
            f"experiment name {problem}",
            where=source.where(),
            key="--name",
            hint="pass --name NAME; it becomes <output>/<name>/",
        )
    return experiment(name, source.where(), line, collect(line))


def _config_path(program: Sequence[str], config: Path) -> str:
    """`--config-path` for the runs: relative to the app's script where both are in this
    directory (Hydra reads it relative to the script), so a --snapshot copy or a target's
    work directory finds the config beside its own copy of the app; else absolute."""
    from expdeploy.spec.hydra_line import split_line

    head = split_line([*program, "-m"]).head
    script = Path(head[-1]) if head and head[-1].endswith(".py") else None
    here = Path.cwd().resolve()
    if script is None or not script.is_file():
        return str(config.parent)
    try:
        config.parent.resolve().relative_to(here)
        script.resolve().relative_to(here)
    except ValueError:
        return str(config.parent)
    return os.path.relpath(config.parent.resolve(), script.resolve().parent)


def _sweep_params(doc: Any) -> Any:
    """`hydra.sweeper.params` of a document, or None."""
    for key in ("hydra", "sweeper", "params"):
        if not isinstance(doc, Mapping):
            return None
        doc = doc.get(key)
    return doc


@hookimpl(trylast=True)
def expdeploy_register_spec_formats(register: Any) -> None:
    fmt: SpecFormat = HydraConfigFormat()
    register(fmt)
