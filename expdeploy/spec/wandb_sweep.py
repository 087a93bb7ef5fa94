"""W&B sweep files, read as they are: `method`, `parameters` (values, distributions, nested
`parameters`), `program`, `command` macros, `run_cap`, `metric`, and the composite `subtests`
extension. Grid and random sweeps expand offline; parameters reach the program as an agent passes them.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Callable
from functools import partial
from typing import Any

from expdeploy.launch import NAME
from expdeploy.plugins import hookimpl
from expdeploy.spec.formats import MAYBE, NO, SURE, LoadOptions, SpecFormat
from expdeploy.spec.model import (
    Block,
    Distribution,
    ExperimentSpec,
    Factor,
    Recipe,
    Resources,
    Sampling,
    Step,
    Template,
)
from expdeploy.spec.source import LocatedDict, SpecSource
from expdeploy.spec.walk import Walker, type_name

TOP_KEYS = ("method", "parameters", "program", "command", "name", "description", "entity",
            "project", "run_cap", "metric", "early_terminate", "controller", "metrics",
            "scheduler", "job", "image_uri", "apiVersion", "kind")
PARAM_KEYS = ("value", "values", "distribution", "min", "max", "mu", "sigma", "q",
              "probabilities", "a", "b", "parameters")
GRID_DISTRIBUTIONS = ("constant", "categorical", "int_uniform", "q_uniform")
DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]
SUBTESTS = "subtests"

_MACROS = {
    "env": "/usr/bin/env",
    "interpreter": "python",
    "args": "{args}",
    "args_no_hyphens": "{args_no_hyphens}",
    "args_no_boolean_flags": "{args_no_boolean_flags}",
    "args_no_equals": "{args_no_equals}",
    "args_append_hydra": "{args_append_hydra}",
    "args_override_hydra": "{args_override_hydra}",
    "args_json": "{params_json}",
    "args_json_file": "{params_file}",
}
_ENVVAR = re.compile(r"\$\{envvar:([A-Z0-9_]*)\}")
_FLAG_LIKE = re.compile(r"\[(" + NAME + r")\]")


def _draw(draw: Callable[[Any, dict[str, Any]], Any], spec: dict[str, Any], rng: Any) -> Any:
    return draw(rng, spec)


def _q(value: float, q: float) -> float:
    rounded = round(value / q) * q
    return int(rounded) if isinstance(q, int) else rounded


# name -> (required keys, draw(rng, spec) -> value)
_DRAWS: dict[str, tuple[tuple[str, ...], Callable[[Any, dict[str, Any]], Any]]] = {
    "uniform": (("min", "max"), lambda r, p: r.uniform(p["min"], p["max"])),
    "int_uniform": (("min", "max"), lambda r, p: r.randint(p["min"], p["max"])),
    "q_uniform": (("min", "max"), lambda r, p: _q(r.uniform(p["min"], p["max"]), p.get("q", 1.0))),
    "log_uniform_values": (("min", "max"), lambda r, p: math.exp(
        r.uniform(math.log(p["min"]), math.log(p["max"])))),
    "q_log_uniform_values": (("min", "max"), lambda r, p: _q(math.exp(
        r.uniform(math.log(p["min"]), math.log(p["max"]))), p.get("q", 1.0))),
    "inv_log_uniform_values": (("min", "max"), lambda r, p: math.exp(
        -r.uniform(-math.log(p["max"]), -math.log(p["min"])))),
    "normal": ((), lambda r, p: r.gauss(p.get("mu", 0), p.get("sigma", 1))),
    "q_normal": ((), lambda r, p: _q(r.gauss(p.get("mu", 0), p.get("sigma", 1)), p.get("q", 1.0))),
    "log_normal": ((), lambda r, p: r.lognormvariate(p.get("mu", 0), p.get("sigma", 1))),
    "q_log_normal": ((), lambda r, p: _q(
        r.lognormvariate(p.get("mu", 0), p.get("sigma", 1)), p.get("q", 1.0))),
    "beta": ((), lambda r, p: r.betavariate(p.get("a", 1), p.get("b", 1))),
    "q_beta": ((), lambda r, p: _q(r.betavariate(p.get("a", 1), p.get("b", 1)), p.get("q", 1.0))),
    "categorical_w_probabilities": (("values", "probabilities"), lambda r, p: r.choices(
        p["values"], weights=p["probabilities"])[0]),
}
_DEPRECATED = ("log_uniform", "q_log_uniform", "inv_log_uniform")


class WandbSweepFormat:
    name = "wandb"
    description = "W&B sweep configuration (method, parameters, program, command, subtests)"

    def sniff(self, source: SpecSource) -> int:
        docs = source.documents_or_none()
        first = docs[0] if docs and len(docs) == 1 else None
        if not isinstance(first, dict) or "parameters" not in first:
            return NO
        return SURE if "method" in first or "program" in first else MAYBE

    def load(self, source: SpecSource, options: LoadOptions) -> ExperimentSpec:
        return _SweepLoader(source, options).load()


class _SweepLoader(Walker):
    def load(self) -> ExperimentSpec:
        docs = [d for d in self.source.documents if d is not None]
        if len(docs) != 1 or not isinstance(docs[0], LocatedDict):
            raise self.fail(None, None, "", "a sweep file holds exactly one mapping")
        doc = docs[0]
        if self.options.title:
            raise self.fail(doc, None, "--title", "applies only to mlrunner files")
        self.check_keys(doc, TOP_KEYS, "")
        method = self.method(doc)
        parameters = self.mapping(doc, "parameters", "parameters", required=True)
        subtests = parameters.get(SUBTESTS)
        shared = self.params({k: v for k, v in parameters.items() if k != SUBTESTS},
                             parameters, "parameters", "")
        run_cap = self.integer(doc, "run_cap", "run_cap", minimum=1) if "run_cap" in doc else None
        if method == "random" and run_cap is None:
            raise self.fail(doc, "method", "method", "a random sweep needs `run_cap` to be expanded",
                            hint="add `run_cap: 20` (how many runs to draw)")
        groups: list[tuple[tuple[str, ...], list[tuple[str, dict[str, Any], Any]]]] = []
        if subtests is None:
            groups.append(((), shared))
        else:
            subs = self.mapping(parameters, SUBTESTS, f"parameters.{SUBTESTS}")
            if not subs:
                raise self.fail(parameters, SUBTESTS, "parameters.subtests", "is empty")
            for key in subs:
                tags = tuple(t.strip() for t in str(key).split(",") if t.strip())
                path = f"parameters.subtests.{key}"
                own = self.params(self.mapping(subs, key, path), subs, path, "")
                own_names = {n for n, _, _ in own}
                groups.append((tags, [p for p in shared if p[0] not in own_names] + own))
        recipe = Recipe((Step("main", self.command(doc)),), Resources(), nested_args=True)
        blocks = [self.block(recipe, method, run_cap, tags, params) for tags, params in groups]
        locations = {n: self.at(c, n.split(".")[-1]) for _, ps in groups for n, _, c in ps}
        name = self.options.name or self.experiment_name(doc)
        return ExperimentSpec(
            name=name, source=self.source.where(), format="wandb", blocks=tuple(blocks),
            param_locations=locations, metric=self.metric(doc),
            extra={k: doc[k] for k in ("program", "method", "entity", "project") if k in doc},
        )

    def experiment_name(self, doc: LocatedDict) -> str:
        from expdeploy.names import sanitize

        if "name" in doc:
            return sanitize(self.string(doc, "name", "name"))
        return self.source.path.stem

    def method(self, doc: LocatedDict) -> str:
        if "method" not in doc:
            raise self.fail(doc, None, "method", "is missing", hint="add `method: grid` or `random`")
        method = doc["method"]
        if method in ("bayes", "custom"):
            raise self.fail(doc, "method", "method",
                            f"a {method} search is driven by the W&B server and cannot be expanded",
                            hint="use method: grid, or random with run_cap, to expand it offline")
        if method not in ("grid", "random"):
            raise self.fail(doc, "method", "method", f"unknown method {method!r}",
                            hint="one of: grid, random, bayes, custom")
        return str(method)

    def command(self, doc: LocatedDict) -> Template:
        words = doc.get("command") or DEFAULT_COMMAND
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise self.fail(doc, "command", "command", "expected a list of strings",
                            hint='e.g. command: ["${env}", "${interpreter}", "${program}", "${args}"]')
        parts = [self.word(doc, w) for w in words]
        return Template(" ".join(p for p in parts if p), self.at(doc, "command"))

    def word(self, doc: LocatedDict, word: str) -> str:
        """One argv word of a wandb command as template text (macros become placeholders)."""
        if word.startswith("${") and word.endswith("}") and not _ENVVAR.fullmatch(word):
            macro = word[2:-1]
            if macro == "program":
                if "program" not in doc:
                    raise self.fail(doc, "command", "command", "${program} is used but `program` is "
                                    "not set", hint="add `program: train.py`")
                return _literal(self.string(doc, "program", "program"))
            if macro not in _MACROS:
                raise self.fail(doc, "command", "command", f"unknown macro {word}",
                                hint=f"known: {', '.join('${' + m + '}' for m in _MACROS)}, "
                                "${program}, ${envvar:NAME}")
            return _MACROS[macro]
        pieces, pos = [], 0
        for match in _ENVVAR.finditer(word):
            pieces.append(_literal(word[pos:match.start()]) if match.start() > pos else "")
            name = match.group(1)  # unset variables become their own name, as in wandb
            pieces.append(f'"${{{name}-{name}}}"')
            pos = match.end()
        if pos < len(word) or not pieces:
            pieces.append(_literal(word[pos:]))
        return "".join(pieces)

    def params(
        self, params: dict[str, Any], container: Any, path: str, prefix: str
    ) -> list[tuple[str, dict[str, Any], Any]]:
        """Flattened (dotted name, definition, container) triples, sorted by name as wandb does."""
        out = []
        for key, spec in params.items():
            name = self.param_name(container, key, key, f"{path}.{key}")
            if not isinstance(spec, dict):
                raise self.fail(container, key, f"{path}.{key}",
                                f"expected a mapping such as {{values: [...]}}, got {type_name(spec)}")
            self.check_keys(spec, PARAM_KEYS, f"{path}.{key}")
            if "parameters" in spec:
                nested = self.mapping(spec, "parameters", f"{path}.{key}.parameters")
                out += self.params(nested, nested, f"{path}.{key}.parameters", f"{prefix}{name}.")
            else:
                out.append((prefix + name, spec, container))
        return sorted(out, key=lambda p: p[0])

    def distribution(self, name: str, spec: dict[str, Any], container: Any) -> str:
        path = f"parameters.{name}"
        key = name.split(".")[-1]
        if "distribution" in spec:
            dist = spec["distribution"]
            if dist in _DEPRECATED:
                raise self.fail(spec, "distribution", path, f"{dist} takes base-e exponents and "
                                "is rejected by W&B", hint=f"use {dist}_values with real limits")
            if dist not in _DRAWS and dist not in ("constant", "categorical"):
                raise self.fail(spec, "distribution", path, f"unknown distribution {dist!r}",
                                hint=f"one of: constant, categorical, {', '.join(_DRAWS)}")
            required = {"constant": ("value",), "categorical": ("values",)}.get(
                dist, _DRAWS[dist][0] if dist in _DRAWS else ())
            for needed in required:
                if needed not in spec:
                    raise self.fail(spec, "distribution", path, f"{dist} needs `{needed}`")
            return str(dist)
        if "value" in spec:
            return "constant"
        if "values" in spec:
            return "categorical_w_probabilities" if "probabilities" in spec else "categorical"
        if "min" in spec and "max" in spec:
            ints = all(isinstance(spec[k], int) and not isinstance(spec[k], bool)
                       for k in ("min", "max"))
            return "int_uniform" if ints else "uniform"
        raise self.fail(container, key, path, "has no value, values, or min/max",
                        hint="e.g. {values: [0.1, 0.01]} or {min: 0.0001, max: 0.1}")

    def block(
        self, recipe: Recipe, method: str, run_cap: int | None, tags: tuple[str, ...],
        params: list[tuple[str, dict[str, Any], Any]],
    ) -> Block:
        defaults: dict[str, Any] = {}
        factors: list[Factor] = []
        draws: list[Distribution] = []
        for name, spec, container in params:
            dist = self.distribution(name, spec, container)
            where = self.at(container, name.split(".")[-1])
            path = f"parameters.{name}"
            if method == "grid" and dist not in GRID_DISTRIBUTIONS:
                raise self.fail(container, name.split(".")[-1], path,
                                f"distribution {dist} cannot be used with method: grid",
                                hint=f"grid accepts {', '.join(GRID_DISTRIBUTIONS)}")
            if dist == "constant":
                value = spec["value"]
                defaults.update(self.flat_params({name: value}, path) if isinstance(value, dict)
                                else {name: value})
            elif dist == "categorical":
                values = spec["values"]
                if not isinstance(values, list) or not values:
                    raise self.fail(spec, "values", f"{path}.values", "expected a non-empty list")
                factors.append(self.factor(spec, "values", name, values, path))
            elif dist in ("int_uniform", "q_uniform") and method == "grid":
                factors.append(Factor((name,), tuple({name: v} for v in self.grid_values(
                    dist, spec, path)), where))
            else:
                draws.append(Distribution(name, partial(_draw, _DRAWS[dist][1], dict(spec)), where))
        sampling = Sampling(run_cap or 0, self.options.seed) if method == "random" else None
        return Block(recipe, self.source.where(), defaults, tuple(factors), tags=tags,
                     distributions=tuple(draws), sampling=sampling,
                     limit=run_cap if method == "grid" else None)

    def grid_values(self, dist: str, spec: dict[str, Any], path: str) -> list[Any]:
        low, high = spec.get("min"), spec.get("max")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
            raise self.fail(spec, "min", path, "min and max must be numbers")
        assert isinstance(low, (int, float)) and isinstance(high, (int, float))
        if dist == "int_uniform":
            return list(range(int(low), int(high) + 1))  # both ends included, as in wandb
        q = spec.get("q", 1.0)
        if not isinstance(q, (int, float)) or q <= 0:
            raise self.fail(spec, "q", f"{path}.q", "q must be a positive number")
        count = max(0, math.ceil((high - low) / q))  # max excluded, as numpy.arange in wandb
        return [low + i * q for i in range(count)]

    def metric(self, doc: LocatedDict) -> dict[str, Any] | None:
        if "metric" not in doc:
            return None
        metric = self.mapping(doc, "metric", "metric")
        if "name" not in metric:
            raise self.fail(doc, "metric", "metric.name", "is missing")
        goal = metric.get("goal", "minimize")
        if goal not in ("minimize", "maximize"):
            raise self.fail(metric, "goal", "metric.goal", f"expected minimize or maximize, "
                            f"got {goal!r}")
        return {"name": metric["name"], "goal": goal}


def _literal(text: str) -> str:
    """A literal argv word as template text: shell-quoted, template syntax escaped."""
    quoted = shlex.quote(text).replace("{", "{{").replace("}", "}}")
    return _FLAG_LIKE.sub(r"[[\1]]", quoted)


@hookimpl(trylast=True)
def expdeploy_register_spec_formats(register: Any) -> None:
    fmt: SpecFormat = WandbSweepFormat()
    register(fmt)
