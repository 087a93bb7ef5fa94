"""The plugin manager: built-in and third-party plugins load the same way, from the `expdeploy`
entry-point group. `EXPDEPLOY_LOAD_PLUGINS=a,b` loads only those (built-ins always load);
`EXPDEPLOY_BLOCK_PLUGINS=a,b` skips those, built-ins included.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pluggy

from expdeploy import hookspecs

hookimpl = pluggy.HookimplMarker("expdeploy")

BUILTIN_DIST = "expdeploy"


@dataclass(frozen=True, slots=True)
class PluginInfo:
    name: str
    module: str
    distribution: str
    version: str
    hooks: tuple[str, ...]

    @property
    def builtin(self) -> bool:
        return self.distribution == BUILTIN_DIST


_loaded: dict[str, tuple[str, str, str]] = {}  # plugin name -> (module, dist, version)
_failed: dict[str, str] = {}  # plugin name -> why it did not load


def _names_from_env(var: str) -> set[str]:
    return {n.strip() for n in os.environ.get(var, "").split(",") if n.strip()}


@dataclass(frozen=True, slots=True)
class _EntryPoint:
    name: str
    value: str  # "module" or "module:attribute"
    dist: str
    version: str

    def load(self) -> Any:
        module_name, _, attribute = self.value.partition(":")
        target: Any = importlib.import_module(module_name.strip())
        for part in filter(None, attribute.strip().split(".")):
            target = getattr(target, part)
        return target


def _entry_points(group: str) -> Iterator[_EntryPoint]:
    """Entry points of `group` in every installed distribution on sys.path.

    What importlib.metadata.entry_points(group=...) returns, read directly: that module
    costs ~25 ms to import and parses every distribution's entry points at each start.
    """
    header = f"[{group}]"
    for folder in sys.path:
        try:
            infos = [p for p in Path(folder or ".").iterdir()
                     if p.suffix in (".dist-info", ".egg-info")]
        except OSError:
            continue
        for info in sorted(infos):
            try:
                text = (info / "entry_points.txt").read_text()
            except OSError:
                continue
            if header not in text:
                continue
            dist, version = _name_and_version(info)
            section = False
            for line in text.splitlines():
                line = line.strip()
                if line.startswith("["):
                    section = line == header
                elif section and "=" in line and not line.startswith(("#", ";")):
                    name, value = (part.strip() for part in line.split("=", 1))
                    yield _EntryPoint(name, value, dist, version)


def _name_and_version(info: Path) -> tuple[str, str]:
    fields = {"Name": "?", "Version": "?"}
    try:
        with open(info / ("METADATA" if info.suffix == ".dist-info" else "PKG-INFO")) as meta:
            for line in meta:
                key, _, value = line.partition(":")
                if key in fields:
                    fields[key] = value.strip()
                if not line.strip():
                    break  # the headers end at the first blank line
    except OSError:
        pass
    return fields["Name"], fields["Version"]


@cache
def get_plugin_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager("expdeploy")
    manager.add_hookspecs(hookspecs)
    only = _names_from_env("EXPDEPLOY_LOAD_PLUGINS")
    blocked = _names_from_env("EXPDEPLOY_BLOCK_PLUGINS")
    for entry in _entry_points("expdeploy"):
        builtin = entry.dist == BUILTIN_DIST
        if entry.name in blocked or (only and not builtin and not {entry.name, entry.dist} & only):
            continue
        if manager.has_plugin(entry.name):
            continue  # the same distribution seen twice on sys.path
        try:
            module = entry.load()
        except Exception as exc:  # a broken third-party plugin must not break the CLI
            _failed[entry.name] = f"{type(exc).__name__}: {exc}"
            continue
        manager.register(module, name=entry.name)
        _loaded[entry.name] = (entry.value, entry.dist, entry.version)
    return manager


def plugin_failures() -> dict[str, str]:
    get_plugin_manager()
    return dict(_failed)


def list_plugins() -> list[PluginInfo]:
    """Every loaded plugin with its distribution, version and the hooks it implements."""
    manager = get_plugin_manager()
    infos = []
    for name, plugin in manager.list_name_plugin():
        if plugin is None:
            continue
        module, dist, version = _loaded.get(
            name, (getattr(plugin, "__name__", repr(plugin)), "(registered in-process)", "")
        )
        callers = manager.get_hookcallers(plugin) or []
        infos.append(PluginInfo(name, module, dist, version, tuple(sorted(c.name for c in callers))))
    return sorted(infos, key=lambda p: (not p.builtin, p.name))
