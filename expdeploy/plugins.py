"""The plugin manager: built-in and third-party plugins load the same way, from the `expdeploy`
entry-point group. `EXPDEPLOY_LOAD_PLUGINS=a,b` loads only those (built-ins always load);
`EXPDEPLOY_BLOCK_PLUGINS=a,b` skips those, built-ins included.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from importlib import metadata

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


@cache
def get_plugin_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager("expdeploy")
    manager.add_hookspecs(hookspecs)
    only = _names_from_env("EXPDEPLOY_LOAD_PLUGINS")
    blocked = _names_from_env("EXPDEPLOY_BLOCK_PLUGINS")
    for entry in metadata.entry_points(group="expdeploy"):
        dist = entry.dist.name if entry.dist else "?"
        version = entry.dist.version if entry.dist else "?"
        builtin = dist == BUILTIN_DIST
        if entry.name in blocked or (only and not builtin and not {entry.name, dist} & only):
            continue
        if manager.has_plugin(entry.name):
            continue  # the same distribution seen twice on sys.path
        try:
            module = entry.load()
        except Exception as exc:  # a broken third-party plugin must not break the CLI
            _failed[entry.name] = f"{type(exc).__name__}: {exc}"
            continue
        manager.register(module, name=entry.name)
        _loaded[entry.name] = (entry.value, dist, version)
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
