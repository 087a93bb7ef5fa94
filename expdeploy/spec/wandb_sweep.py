"""W&B sweep files, read as `wandb sweep` reads them (PyYAML's typing: `1e-5` is text) and run as
its agents run them: `method`, `parameters` (values, distributions, nested `parameters`),
`program`, `command` macros, `run_cap`, `metric`, and deploy_sweeps.py's composite `subtests`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from expdeploy.errors import Location
from expdeploy.launch import literal_word
from expdeploy.plugins import hookimpl
from expdeploy.spec.formats import MAYBE, NO, SURE, LoadOptions, SpecFormat
from expdeploy.spec.model import (
    AgentArgs,
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
from expdeploy.spec.source import LocatedDict, SpecSource, line_of
from expdeploy.spec.walk import Walker, type_name
from expdeploy.wandb_runs import ARGS_JSON_FILE

TOP_KEYS = ("method", "parameters", "program", "command", "name", "description", "entity",
            "project", "run_cap", "metric", "early_terminate", "controller", "metrics",
            "scheduler", "job", "image_uri", "apiVersion", "kind", "settings")
PARAM_KEYS = ("value", "values", "distribution", "min", "max", "mu", "sigma", "q",
              "probabilities", "a", "b", "parameters")
GRID_DISTRIBUTIONS = ("constant", "categorical", "int_uniform", "q_uniform")
SERVER_METHODS = ("bayes", "custom")  # only the W&B server can choose their runs
DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]
SUBTESTS = "subtests"
TAGS_PARAM = "_tags"  # deploy_sweeps.py gives every run `--_tags=<its subtest's key>`
TRIALS, NODES = "_num_trials", "_num_nodes"  # deploy_sweeps.py's own keys, never parameters

_MACROS = {
    "env": "/usr/bin/env",
    "interpreter": "python",
    "args": "{args}",
    "args_no_hyphens": "{args_no_hyphens}",
    "args_no_boolean_flags": "{args_no_boolean_flags}",
    "args_no_equals": "{args_no_equals}",
    "args_append_hydra": "{args_append_hydra}",
    "args_override_hydra": "{args_override_hydra}",
    "args_json": "{args_json}",
    "args_json_file": ARGS_JSON_FILE,
}
_ENVVAR = re.compile(r"\$\{envvar:([A-Z0-9_]*)\}")


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


@dataclass(frozen=True, slots=True)
class Subtest:
    """One sweep of a composite file, as deploy_sweeps.py makes it."""

    key: str  # the `subtests` key as written: the runs' `_tags` value
    parameters: LocatedDict  # W&B parameter entries: the shared ones, this subtest's over them
    trials: Any = None  # `_num_trials`: that many identical sweeps
    nodes: Any = None  # `_num_nodes`: how many agents to start (deploy_sweeps prints the line N times)

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in self.key.split(",") if t.strip())


def composite_subtests(parameters: Mapping[Any, Any]) -> list[Subtest]:
    """deploy_sweeps.py's reading of a composite `parameters:` block, one sweep per `subtests` key:
    the subtest's entries replace shared ones of the same name whole, `_tags` is set last to
    the key, and a plain value stands for an entry (a list is `values`, a mapping is kept,
    anything else is `value`). Shared by the loader and `--backend wandb`."""
    shared = {k: v for k, v in parameters.items() if k != SUBTESTS}
    subtests = parameters.get(SUBTESTS) or {}
    found = []
    for key, own in subtests.items():
        merged: dict[Any, Any] = {**shared, **(own or {})}
        trials, nodes = merged.pop(TRIALS, None), merged.pop(NODES, None)
        entries = LocatedDict()
        entries.line, entries.key_lines = line_of(subtests, key), {}
        for name, value in merged.items():
            source = own if isinstance(own, Mapping) and name in own else shared
            entries[name] = _entry(value, line_of(parameters if source is shared else own, name))
            entries.key_lines[name] = line_of(parameters if source is shared else own, name) or 0
        entries[TAGS_PARAM] = _entry({"value": str(key)}, line_of(subtests, key))
        entries.key_lines[TAGS_PARAM] = line_of(subtests, key) or 0
        found.append(Subtest(str(key), entries, trials, nodes))
    return found


def _entry(value: Any, line: int | None) -> Any:
    if isinstance(value, Mapping):
        return value
    entry = LocatedDict({"values": value} if isinstance(value, list) else {"value": value})
    entry.line = line
    return entry


@dataclass(frozen=True, slots=True)
class _Param:
    name: str  # the dotted name expdeploy uses (overrides, results, run names)
    path: tuple[str, ...]  # the keys W&B nests it under; a dotted name as written is one key
    spec: Mapping[str, Any]
    container: Any  # the mapping that holds it, for file:line

    @property
    def where_key(self) -> str:
        return self.path[-1]


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
        docs = [d for d in self.source.pyyaml_documents if d is not None]
        if len(docs) != 1 or not isinstance(docs[0], LocatedDict):
            raise self.fail(None, None, "", "a sweep file holds exactly one mapping")
        doc = docs[0]
        if self.options.title:
            raise self.fail(doc, None, "--title", "applies only to mlrunner files")
        self.check_keys(doc, TOP_KEYS, "")
        method = self.method(doc)
        elsewhere = self.options.server_search and method != "grid"
        run_cap = self.run_cap(doc, method, elsewhere)
        template = self.command(doc)
        blocks = []
        locations: dict[str, Location] = {}
        for tags, parameters in self.groups(doc):
            params = self.params(parameters, parameters, "parameters", ())
            recipe = Recipe((Step("main", template),), Resources(),
                            agent_args=AgentArgs({p.name: p.path for p in params if len(p.path) > 1}))
            blocks.append(self.block(recipe, method, run_cap, tags, params))
            locations.update({p.name: self.at(p.container, p.where_key) for p in params})
        name = self.options.name or self.experiment_name(doc)
        return ExperimentSpec(
            name=name, source=self.source.where(), format="wandb",
            blocks=tuple(blocks),  # for what a run needs (--resources); none is expanded elsewhere
            param_locations=locations, metric=self.metric(doc),
            extra={k: doc[k] for k in ("program", "method", "entity", "project") if k in doc},
            notes=self.notes(doc, elsewhere),
            chosen_elsewhere=(f"a {method} search, {f'run_cap {run_cap}' if run_cap else 'no run_cap'}: "
                              "the W&B server chooses its runs") if elsewhere else None,
        )

    def groups(self, doc: LocatedDict) -> list[tuple[tuple[str, ...], LocatedDict]]:
        """(tags, parameter entries) of each sweep the file makes: one, or one per subtest."""
        parameters = self.mapping(doc, "parameters", "parameters", required=True)
        if SUBTESTS not in parameters:
            return [((), parameters)]
        subtests = self.mapping(parameters, SUBTESTS, f"parameters.{SUBTESTS}")
        if not subtests:
            raise self.fail(parameters, SUBTESTS, "parameters.subtests", "is empty")
        for key in subtests:  # each a block of parameter entries (or nothing)
            self.mapping(subtests, key, f"parameters.subtests.{key}")
        found = []
        for sub in composite_subtests(parameters):
            path = f"parameters.subtests.{sub.key}"
            if sub.trials not in (None, 1) and not self.options.server_search:
                raise self.fail(parameters[SUBTESTS], sub.key, f"{path}.{TRIALS}",
                                f"{TRIALS}: {sub.trials} asks for identical sweeps, whose runs would be one "
                                "run here (a run is its parameters)",
                                hint="add a seed parameter with that many values, or use --backend wandb")
            found.append((sub.tags, sub.parameters))
        return found

    def experiment_name(self, doc: LocatedDict) -> str:
        from expdeploy.names import sanitize

        if "name" in doc:
            return sanitize(self.string(doc, "name", "name"))
        return self.source.path.stem

    def method(self, doc: LocatedDict) -> str:
        if "method" not in doc:
            raise self.fail(doc, None, "method", "is missing", hint="add `method: grid` or `random`")
        method = doc["method"]
        if method in SERVER_METHODS and not self.options.server_search:
            raise self.fail(doc, "method", "method",
                            f"a {method} search is driven by the W&B server and cannot be expanded here",
                            hint="run it with --backend wandb (agents here, runs chosen by W&B), or use "
                                 "method: grid, or random with run_cap, to expand it offline")
        if method not in ("grid", "random", *SERVER_METHODS):
            raise self.fail(doc, "method", "method", f"unknown method {method!r}",
                            hint="one of: grid, random, bayes, custom")
        return str(method)

    def run_cap(self, doc: LocatedDict, method: str, elsewhere: bool) -> int | None:
        cap = self.options.run_cap
        if cap is None and "run_cap" in doc:
            cap = self.integer(doc, "run_cap", "run_cap", minimum=1)
        if method == "random" and cap is None and not elsewhere:
            cap = self.options.sample
            if cap is None:
                raise self.fail(doc, "method", "method", "a random sweep needs `run_cap` to be expanded",
                                hint="add `run_cap: 20` to the file, or pass --run-cap 20 (how many runs "
                                     "to draw)")
        return cap

    def notes(self, doc: LocatedDict, elsewhere: bool) -> tuple[tuple[Location, str], ...]:
        if "early_terminate" in doc and not self.options.server_search:
            return ((self.at(doc, "early_terminate"),
                     "early_terminate is not applied when expdeploy expands the sweep: every run runs "
                     "to its end (under --backend wandb the W&B server stops runs)"),)
        return ()

    def command(self, doc: LocatedDict) -> Template:
        if self.options.command:  # expdeploy's own template syntax, as in every dialect
            return Template(self.options.command, Location("--command"))
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
                return literal_word(self.string(doc, "program", "program"))
            if macro not in _MACROS:
                raise self.fail(doc, "command", "command", f"unknown macro {word}",
                                hint=f"known: {', '.join('${' + m + '}' for m in _MACROS)}, "
                                "${program}, ${envvar:NAME}")
            return _MACROS[macro]
        pieces, pos = [], 0
        for match in _ENVVAR.finditer(word):
            pieces.append(literal_word(word[pos:match.start()]) if match.start() > pos else "")
            name = match.group(1)  # unset variables become their own name, as in wandb
            pieces.append(f'"${{{name}-{name}}}"')
            pos = match.end()
        if pos < len(word) or not pieces:
            pieces.append(literal_word(word[pos:]))
        return "".join(pieces)

    def params(self, params: Mapping[Any, Any], container: Any, path: str,
               prefix: tuple[str, ...]) -> list[_Param]:
        """Every parameter entry, nested `parameters:` blocks flattened (their keys in `path`), in
        the order W&B's sweeps engine takes them: keys sorted at every level."""
        out: list[_Param] = []
        for key in sorted(params, key=str):
            spec = params[key]
            name = self.param_name(container, key, key, f"{path}.{key}")
            if not isinstance(spec, Mapping):
                raise self.fail(container, key, f"{path}.{key}",
                                f"expected a mapping such as {{values: [...]}}, got {type_name(spec)}",
                                hint="plain values stand for entries only in a composite file (with "
                                     "`subtests`); here write {value: ...} or {values: [...]}")
            self.check_keys(spec, PARAM_KEYS, f"{path}.{key}")
            if "parameters" in spec:
                nested = self.mapping(spec, "parameters", f"{path}.{key}.parameters")
                out += self.params(nested, nested, f"{path}.{key}.parameters", (*prefix, name))
            else:
                out.append(_Param(".".join((*prefix, name)), (*prefix, name), spec, container))
        seen: dict[str, _Param] = {}
        for param in out:
            if param.name in seen:
                raise self.fail(param.container, param.where_key, f"parameters.{param.name}",
                                f"{param.name!r} is given twice: as a dotted name and as a nested "
                                "parameter", hint="keep one of them")
            seen[param.name] = param
        return out

    def distribution(self, param: _Param) -> str:
        spec, path = param.spec, f"parameters.{param.name}"
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
            return self.bounds_kind(param)
        raise self.fail(param.container, param.where_key, path, "has no value, values, or min/max",
                        hint="e.g. {values: [0.1, 0.01]} or {min: 0.0001, max: 0.1}")

    def bounds_kind(self, param: _Param) -> str:
        """min/max without a distribution, as `wandb sweep` fills it in: both integers give
        int_uniform, both floats uniform, anything else is refused as ambiguous."""
        low, high = param.spec["min"], param.spec["max"]
        if all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)):
            return "int_uniform"
        if all(isinstance(v, float) for v in (low, high)):
            return "uniform"
        texts = [v for v in (low, high) if isinstance(v, str)]
        raise self.fail(param.spec, "min", f"parameters.{param.name}",
                        f"min {low!r} and max {high!r} are ambiguous: W&B wants two integers "
                        "(int_uniform) or two floats (uniform)",
                        hint=f"W&B reads {texts[0]} as text, not a number: write it with a dot, e.g. "
                             f"{_with_dot(texts[0])}" if texts else "write both as floats, e.g. 0.0 and 1.0")

    def block(self, recipe: Recipe, method: str, run_cap: int | None, tags: tuple[str, ...],
              params: list[_Param]) -> Block:
        defaults: dict[str, Any] = {}
        factors: list[Factor] = []
        draws: list[Distribution] = []
        for param in params:
            dist = self.distribution(param)
            spec, name, path = param.spec, param.name, f"parameters.{param.name}"
            where = self.at(param.container, param.where_key)
            if method == "grid" and dist not in GRID_DISTRIBUTIONS:
                raise self.fail(param.container, param.where_key, path,
                                f"distribution {dist} cannot be used with method: grid",
                                hint=f"grid accepts {', '.join(GRID_DISTRIBUTIONS)}")
            if dist == "constant":
                defaults[name] = spec["value"]  # a mapping value stays one value, as W&B passes it
            elif dist == "categorical":
                values = spec["values"]
                if not isinstance(values, list) or not values:
                    raise self.fail(spec, "values", f"{path}.values", "expected a non-empty list")
                factors.append(Factor((name,), tuple({name: v} for v in values), where))
            elif dist in ("int_uniform", "q_uniform") and method == "grid":
                factors.append(Factor((name,), tuple({name: v} for v in self.grid_values(
                    dist, spec, path)), where))
            else:
                draws.append(Distribution(name, partial(_draw, _DRAWS[dist][1], dict(spec)), where))
        sampling = Sampling(run_cap or 0, self.options.seed) if method == "random" else None
        return Block(recipe, self.source.where(), defaults, tuple(factors), tags=tags,
                     distributions=tuple(draws), sampling=sampling,
                     limit=run_cap if method == "grid" else None)

    def grid_values(self, dist: str, spec: Mapping[str, Any], path: str) -> list[Any]:
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


def _with_dot(text: str) -> str:
    """`1e-5` as YAML 1.1 reads a float: a dot in the mantissa and a sign in the exponent."""
    mantissa, _, exponent = text.lower().partition("e")
    if not exponent:
        return text
    sign = "" if exponent[:1] in "+-" else "+"
    return f"{mantissa if '.' in mantissa else mantissa + '.0'}e{sign}{exponent}"


@hookimpl(trylast=True)
def expdeploy_register_spec_formats(register: Any) -> None:
    fmt: SpecFormat = WandbSweepFormat()
    register(fmt)
