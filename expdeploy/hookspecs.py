"""Every hook a plugin can implement. Hooks take a `register` callback instead of returning values."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import typer

    from expdeploy.backend import Backend
    from expdeploy.metric_parsers import MetricParser
    from expdeploy.spec.formats import SpecFormat
    from expdeploy.wrapping import Wrapper

hookspec = pluggy.HookspecMarker("expdeploy")


@hookspec
def expdeploy_register_spec_formats(register: Callable[[SpecFormat], None]) -> None:
    """Register spec dialects: objects with `name`, `description`, `sniff(source) -> int` and
    `load(source, options) -> ExperimentSpec`.

    The first format registered under a name wins; built-ins register last, so a plugin's
    format of the same name replaces the built-in one.
    """


@hookspec
def expdeploy_register_backends(register: Callable[[type[Backend]], None]) -> None:
    """Register placement backends: subclasses of `expdeploy.backend.Backend` with a `name`.

    `expdeploy run --backend NAME` picks one; the first registered under a name wins and
    built-ins register last, so a plugin can replace `local`.
    """


@hookspec
def expdeploy_register_environments(register: Callable[[Wrapper], None]) -> None:
    """Register environment wrappers (`expdeploy.wrapping.Wrapper`): the spec key `name` selects
    one in `env:`; a `python` layer (conda, venv) runs inside an optional `container` layer
    (docker, singularity), and `wrap` turns each step's command into its wrapped form.

    The first wrapper registered under a name wins; built-ins register last.
    """


@hookspec
def expdeploy_register_metric_parsers(register: Callable[[MetricParser], None]) -> None:
    """Register metric parsers (`expdeploy.metric_parsers.MetricParser`): objects with a `name` and
    `parse(run_dir) -> {metric: value}`, for programs that leave metrics only in their own files
    (logs, TensorBoard events). A value is a number or text (the final value) or a sequence of
    numbers in step order (the last is the final value; the best is taken over all of them).

    Parsers run where results are gathered, over each run directory. What a run reports with
    `expdeploy.log`/`summary`, its `summary.json` or W&B's summary wins over a parsed value of the
    same name; between parsers the first registered wins, and built-ins register last.
    """


@hookspec
def expdeploy_register_commands(app: typer.Typer) -> None:
    """Add sub-commands to the `expdeploy` Typer app (`@app.command()` or `app.add_typer(...)`).

    Keep module import cheap: import heavy libraries inside the command function.
    """


HOOK_NAMES: tuple[str, ...] = tuple(
    name for name, value in dict(globals()).items()
    if name.startswith("expdeploy_") and callable(value)
)
