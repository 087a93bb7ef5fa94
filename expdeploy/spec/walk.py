"""Typed access to located YAML values for dialect loaders: every failure names file:line and key."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from expdeploy.errors import Location, SpecError
from expdeploy.launch import RESERVED
from expdeploy.names import dir_name_problem
from expdeploy.spec.formats import LoadOptions
from expdeploy.spec.model import Factor, Resources
from expdeploy.spec.source import LocatedDict, SpecSource, line_of
from expdeploy.units import parse_duration

if TYPE_CHECKING:
    from expdeploy.wrapping import EnvSpec

PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")

_TYPE_NAMES = {dict: "a mapping", list: "a list", str: "a string", int: "an integer"}


def type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, float):
        return "a number"
    for kind, name in _TYPE_NAMES.items():
        if isinstance(value, kind):
            return name
    return type(value).__name__


class Walker:
    """Raises SpecErrors located in one source file; dialect loaders extend it."""

    def __init__(self, source: SpecSource, options: LoadOptions | None = None) -> None:
        self.source = source
        self.options = options or LoadOptions()

    def at(self, container: Any, key: Any = None) -> Location:
        return self.source.where(line_of(container, key))

    def fail(self, container: Any, key: Any, path: str, message: str, hint: str | None = None) -> SpecError:
        return SpecError(message, where=self.at(container, key), key=path or None, hint=hint)

    def mapping(self, parent: Any, key: Any, path: str, *, required: bool = False) -> LocatedDict:
        if isinstance(parent, Mapping):
            value = parent.get(key)
        elif isinstance(parent, list) and isinstance(key, int):
            value = parent[key]
        else:
            value = None
        if value is None:
            if required:
                raise self.fail(parent, None, path, "is missing", hint=f"add a `{key}:` mapping")
            empty = LocatedDict()
            empty.line = line_of(parent, key)
            return empty
        if not isinstance(value, dict):
            raise self.fail(parent, key, path, f"expected a mapping, got {type_name(value)}")
        return value if isinstance(value, LocatedDict) else _located(value, line_of(parent, key))

    def string(self, parent: Any, key: Any, path: str) -> str:
        value = parent[key]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(parent, key, path, f"expected a non-empty string, got {type_name(value)}")
        return value

    def integer(self, parent: Any, key: Any, path: str, *, minimum: int = 0) -> int:
        value = parent[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(
                parent, key, path, f"expected an integer >= {minimum}, got {value!r}"
            )
        return value

    def refuse_run_cap(self, container: Any) -> None:
        """`--run-cap` is a W&B sweep file's `run_cap`: other dialects say so rather than ignore it."""
        if self.options.run_cap is not None:
            raise self.fail(container, None, "--run-cap", "applies only to W&B sweep files",
                            hint="--sample N runs a random subset of N runs")

    def check_keys(self, mapping: Mapping[Any, Any], allowed: Iterable[str], path: str) -> None:
        allowed = list(allowed)
        for key in mapping:
            if key not in allowed:
                import difflib  # only on this error path

                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean `{close[0]}`?" if close else f"allowed here: {', '.join(allowed)}"
                raise self.fail(mapping, key, _join(path, str(key)), "unknown key", hint=hint)

    def param_name(self, container: Any, key: Any, name: Any, path: str) -> str:
        if not isinstance(name, str) or not PARAM_NAME.match(name):
            raise self.fail(
                container, key, path, f"{name!r} is not a valid parameter name",
                hint="names start with a letter or _ and hold letters, digits, _, . and -",
            )
        if name in RESERVED:
            raise self.fail(
                container, key, path, f"{name!r} is a reserved placeholder name",
                hint=f"rename the parameter; reserved: {', '.join(sorted(RESERVED))}",
            )
        return name

    def flat_params(self, mapping: Mapping[Any, Any], path: str) -> dict[str, Any]:
        """A mapping of parameter values, nested mappings flattened to dotted names."""
        flat: dict[str, Any] = {}
        for key, value in mapping.items():
            name = self.param_name(mapping, key, key, _join(path, str(key)))
            if isinstance(value, dict) and value:
                for sub, sub_value in self.flat_params(value, _join(path, name)).items():
                    flat[f"{name}.{sub}"] = sub_value
            else:
                flat[name] = value
        return flat

    def factor(self, parent: Any, key: Any, name: str, values: Any, path: str) -> Factor:
        """A grid axis: a list (or one scalar) of values; mappings in it set several params at once."""
        where = self.at(parent, key)
        if not isinstance(values, list):
            values = [values]
        if not values:
            raise self.fail(parent, key, path, "has no values (an empty grid axis)",
                            hint="give at least one value, or remove the axis")
        if any(isinstance(v, dict) for v in values):
            if not all(isinstance(v, dict) and v for v in values):
                raise self.fail(parent, key, path, "mixes mappings with plain values",
                                hint="use all mappings (params set together) or all plain values")
            frags = tuple(
                {f"{name}.{k}": v for k, v in self.flat_params(v, f"{path}[{i}]").items()}
                for i, v in enumerate(values)
            )
            names = tuple(dict.fromkeys(k for f in frags for k in f))
            return Factor(names, frags, where)
        return Factor((name,), tuple({name: v} for v in values), where)

    def grid(self, parent: Any, key: str, path: str, prefix: str = "") -> list[Factor]:
        """Product axes; a nested mapping gives axes with dotted names (`model: {depth: [2, 4]}`)."""
        grid = self.mapping(parent, key, path)
        if not grid:
            raise self.fail(parent, key, path, "is empty (an empty grid)",
                            hint="list parameters with their values, or remove `grid:`")
        factors: list[Factor] = []
        for name, values in grid.items():
            self.param_name(grid, name, name, _join(path, str(name)))
            if isinstance(values, dict):
                factors.extend(self.grid(grid, name, _join(path, name), f"{prefix}{name}."))
            else:
                factors.append(self.factor(grid, name, prefix + name, values, _join(path, name)))
        return factors

    def zip(self, parent: Any, key: str, path: str) -> list[Factor]:
        value = parent.get(key)
        groups = value if isinstance(value, list) else [value]
        factors = []
        for i, _ in enumerate(groups):
            group_path = f"{path}[{i}]" if isinstance(value, list) else path
            container, index = (value, i) if isinstance(value, list) else (parent, key)
            group = self.mapping(container, index, group_path)
            if not group:
                raise self.fail(container, index, group_path, "is empty",
                                hint="a zip lists parameters whose values advance together")
            lengths = {}
            for name, values in group.items():
                self.param_name(group, name, name, _join(group_path, str(name)))
                if not isinstance(values, list) or not values:
                    raise self.fail(group, name, _join(group_path, name),
                                    f"expected a non-empty list, got {type_name(values)}",
                                    hint="every axis of a zip is a list of the same length")
                lengths[name] = len(values)
            if len(set(lengths.values())) > 1:
                detail = ", ".join(f"{n} has {k}" for n, k in lengths.items())
                raise self.fail(parent, key, group_path, f"axes have unequal lengths ({detail})",
                                hint="zip advances its axes together, so they need the same length")
            names = tuple(group)
            rows = zip(*(group[n] for n in names), strict=True)
            frags = tuple(dict(zip(names, row, strict=True)) for row in rows)
            factors.append(Factor(names, frags, self.at(container, index)))
        return factors

    def resources(self, parent: Any, key: str, path: str, base: Resources) -> Resources:
        res = self.mapping(parent, key, path)
        self.check_keys(res, ("gpus", "cpus", "mem", "time"), path)
        values: dict[str, Any] = {}
        if "gpus" in res:
            values["gpus"] = self.integer(res, "gpus", f"{path}.gpus")
        if "cpus" in res:
            values["cpus"] = self.integer(res, "cpus", f"{path}.cpus", minimum=1)
        if "mem" in res:
            mem = res["mem"]
            if isinstance(mem, bool) or not isinstance(mem, (str, int)):
                raise self.fail(res, "mem", f"{path}.mem", f"expected a size such as 16G, got {mem!r}")
            values["mem"] = str(mem)
        if "time" in res:
            try:
                values["time_seconds"] = parse_duration(res["time"])
            except (ValueError, TypeError) as exc:
                raise self.fail(res, "time", f"{path}.time", f"{res['time']!r}: {exc}") from None
            values["time"] = str(res["time"])
        fields = {f: getattr(base, f) for f in base.__dataclass_fields__}
        return Resources(**{**fields, **values})

    def env(self, parent: Any, key: str, path: str) -> EnvSpec:
        """An `env:` table, checked by the environment wrappers plugins register."""
        from expdeploy.wrapping import read_env

        table = self.mapping(parent, key, path)

        def fail(sub: str, message: str, hint: str | None) -> Exception:
            if not sub:
                return self.fail(parent, key, path, message, hint)
            return self.fail(table, sub, f"{path}.{sub}", message, hint)

        return read_env(table, self.at(parent, key), fail)

    def dir_name(self, parent: Any, key: Any, path: str, name: str) -> str:
        problem = dir_name_problem(name)
        if problem:
            raise self.fail(parent, key, path, f"experiment name {problem}",
                            hint="use a plain name such as `lr-sweep`; it becomes <output>/<name>/")
        return name


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _located(value: dict[Any, Any], line: int | None) -> LocatedDict:
    out = LocatedDict(value)
    out.line = line
    return out
