"""Environment wrappers: the spec's `env:` table read by the wrappers plugins register (a Python
env layer such as conda or venv, inside an optional container layer such as docker or
singularity), and every step's command wrapped by them at render time."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

from expdeploy.errors import Location

PYTHON, CONTAINER = "python", "container"
# Variables a run's steps get from the worker; a container must receive them by name.
RUN_VARIABLES = ("EXPDEPLOY_RUN_ID", "EXPDEPLOY_RUN_NAME", "EXPDEPLOY_RUN_DIR", "EXPDEPLOY_EXP_DIR",
                 "EXPDEPLOY_ATTEMPT")
# Secrets cross into containers by name only (`-e NAME`): their values never enter a command line.
SECRETS = ("WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")

Fail = Callable[[str, str, str | None], Exception]  # (key, message, hint) -> the error to raise


@dataclass(frozen=True, slots=True)
class RunContext:
    """What a wrapper knows of the run whose steps it wraps."""

    run_id: str
    exp_dir: str
    cwd: str
    gpus: int  # GPUs the run asks for: the backend sets CUDA_VISIBLE_DEVICES to them
    variables: tuple[str, ...] = ()  # names of the run's own variables (the plan's env), by name


class Wrapper(Protocol):
    """One kind of environment, selected by the spec key `name` (`env: {docker: img}`)."""

    name: str
    layer: str  # PYTHON (changes PATH and variables) or CONTAINER (runs the command inside)
    options: tuple[str, ...]  # further keys of `env:` this wrapper reads

    def check(self, env: Mapping[str, Any], fail: Fail) -> None:
        """Raise `fail(key, message, hint)` for a value of the wrong type or shape."""

    def wrap(self, command: str, env: Mapping[str, Any], run: RunContext, inner: Wrapper | None) -> str:
        """`command` (a shell line) as it runs in this environment; `inner` is the Python layer
        a container wraps, whose paths it must make visible inside."""

    def stop(self, env: Mapping[str, Any], run: RunContext) -> str | None:
        """A shell line that ends the run's environment after a cancel (removes its container)."""

    def mounts(self, env: Mapping[str, Any]) -> list[tuple[str, bool]]:
        """Paths (and whether read-only) a container must show at their own path for this Python
        layer to work inside it; [] for a container layer."""

    def problem(self, env: Mapping[str, Any]) -> str | None:
        """What is missing on this machine to run it (runtime, image, path), or None."""


@dataclass(frozen=True, slots=True)
class EnvSpec:
    """A recipe's `env:` table as written, checked by its wrappers."""

    table: Mapping[str, Any]
    where: Location
    python: str | None  # the key of its Python layer (conda, venv, python)
    container: str | None  # the key of its container layer (docker, singularity)


@cache
def available_wrappers() -> dict[str, Wrapper]:
    from expdeploy.plugins import get_plugin_manager

    found: dict[str, Wrapper] = {}

    def register(wrapper: Wrapper) -> None:
        found.setdefault(wrapper.name, wrapper)

    get_plugin_manager().hook.expdeploy_register_environments(register=register)
    return found


def read_env(table: Mapping[str, Any], where: Location, fail: Fail) -> EnvSpec:
    """Check an `env:` table against the registered wrappers: one Python layer at most, one
    container at most, and only the option keys those two read."""
    wrappers = available_wrappers()
    chosen = [wrappers[k] for k in table if k in wrappers]
    layers: dict[str, Wrapper] = {}
    for wrapper in chosen:
        if wrapper.layer in layers:
            raise fail(wrapper.name, f"both `{layers[wrapper.layer].name}` and `{wrapper.name}` are set",
                       "an environment has one Python env and at most one container")
        layers[wrapper.layer] = wrapper
    allowed = {w.name for w in chosen} | {o for w in chosen for o in w.options}
    for key in table:
        if key not in allowed:
            owners = sorted(w.name for w in wrappers.values() if key in w.options)
            hint = (f"`{key}` goes with {' or '.join(owners)}" if owners
                    else f"known: {', '.join(sorted(wrappers))} and their options")
            raise fail(str(key), "unknown key" if not owners else f"`{key}` needs {' or '.join(owners)}",
                       hint)
    if not chosen:
        raise fail("", "names no environment", f"set one of {', '.join(sorted(wrappers))}")
    for wrapper in chosen:
        wrapper.check(table, fail)
    python, container = layers.get(PYTHON), layers.get(CONTAINER)
    return EnvSpec(dict(table), where, python.name if python else None,
                   container.name if container else None)


def with_target(env: EnvSpec | None, table: Mapping[str, Any], where: Location, fail: Fail) -> EnvSpec:
    """A target's `wrap` table over a spec's `env:`: each layer the target sets (its key and its
    options) replaces the spec's layer of that kind; the spec's other layer stays."""
    wrappers = available_wrappers()
    replaced = {wrappers[k].layer for k in table if k in wrappers}
    merged = dict(table)
    if env is not None:
        for key in (env.python, env.container):
            if key and wrappers[key].layer not in replaced:
                merged.setdefault(key, env.table[key])
                for option in wrappers[key].options:
                    if option in env.table:
                        merged.setdefault(option, env.table[option])
    return read_env(merged, where, fail)


def wrap_command(env: EnvSpec | None, command: str, run: RunContext,
                 wrappers: Mapping[str, Wrapper] | None = None) -> str:
    """The step's command line inside its environment (unchanged without one)."""
    if env is None:
        return command
    wrappers = wrappers or available_wrappers()
    inner = wrappers[env.python] if env.python else None
    if inner is not None:
        command = inner.wrap(command, env.table, run, None)
    if env.container:
        command = wrappers[env.container].wrap(command, env.table, run, inner)
    return command


def stop_command(env: EnvSpec | None, run: RunContext, wrappers: Mapping[str, Wrapper] | None = None,
                 ) -> str | None:
    if env is None or not env.container:
        return None
    return (wrappers or available_wrappers())[env.container].stop(env.table, run)


def problems(env: EnvSpec, wrappers: Mapping[str, Wrapper] | None = None) -> list[str]:
    """What this machine lacks for `env`, for each of its layers."""
    wrappers = wrappers or available_wrappers()
    found = [wrappers[k].problem(env.table) for k in (env.python, env.container) if k]
    return [p for p in found if p]
