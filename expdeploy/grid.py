"""Expansion of a spec into runs: products, zips, subgrids, samples, overrides, exclusions,
de-duplication (tags merged), run ids and readable names. Deterministic order.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from expdeploy.errors import Location, SpecError
from expdeploy.launch import missing_names, render
from expdeploy.names import dir_name_problem, sanitize, shorten
from expdeploy.params import canonical, format_value, run_id_of, same_value
from expdeploy.spec.model import Block, Exclusion, ExperimentSpec, Recipe
from expdeploy.spec.overrides import WHERE as OVERRIDE_WHERE
from expdeploy.spec.overrides import Override

_MISSING = object()


@dataclass(frozen=True, slots=True)
class Run:
    """One run: identity from its parameters, a readable directory name, tags, and its recipe."""

    run_id: str
    name: str
    params: Mapping[str, Any]
    tags: tuple[str, ...]
    recipe: Recipe


@dataclass(frozen=True, slots=True)
class Expansion:
    """All runs of an experiment and what varies between them."""

    spec: ExperimentSpec
    runs: list[Run]
    varying: dict[str, int]  # parameter -> number of distinct values (absent counts as one)


def expand(spec: ExperimentSpec, overrides: Sequence[Override] = ()) -> Expansion:
    """Every run of `spec` with `overrides` applied; raises SpecError before anything is started."""
    if spec.chosen_elsewhere:  # a service picks the runs as it goes (a bayes W&B sweep)
        return Expansion(spec, [], {})
    _check_overrides(spec, overrides)
    _check_exclusions(spec, overrides)
    found: dict[str, list[Any]] = {}  # run_id -> [params, tags, recipe, the dialect's name or None]
    for block in spec.blocks:
        exclusions = block.exclude + spec.exclude
        if block.naming is not None:
            _add_named_runs(block, overrides, exclusions, found)
            continue
        for params in _with_overrides(_block_params(block), overrides):
            if exclusions and any(_matches(params, ex) for ex in exclusions):
                continue
            run_id = run_id_of(canonical(params))
            seen = found.get(run_id)
            if seen is None:
                found[run_id] = [params, block.tags, block.recipe, None]
            elif block.tags:
                seen[1] = tuple(dict.fromkeys(seen[1] + block.tags))
    if not found:
        raise SpecError("the experiment has no runs (every run is excluded)", where=spec.source,
                        hint="check `exclude:` and the overrides")
    varying = _varying([entry[0] for entry in found.values()])
    runs = _named_runs(spec, found, varying)
    return Expansion(spec, runs, varying)


def _block_params(block: Block) -> Iterator[dict[str, Any]]:
    defaults = dict(block.defaults)
    produced = 0
    if block.has_product:
        for params in _product(block, defaults):
            if block.limit is not None and produced >= block.limit:
                return
            produced += 1
            yield params
    for run in block.explicit:
        if block.limit is not None and produced >= block.limit:
            return
        produced += 1
        yield {**defaults, **run}


def _product(block: Block, defaults: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if block.sampling is not None:
        rng = random.Random(block.sampling.seed)
        for _ in range(block.sampling.count):
            params = dict(defaults)
            for factor in block.factors:
                params.update(rng.choice(factor.fragments))
            for dist in block.distributions:
                params[dist.name] = dist.draw(rng)
            yield params
        return
    for combo in itertools.product(*(f.fragments for f in block.factors)):
        params = dict(defaults)
        for fragment in combo:
            params.update(fragment)
        yield params


def _with_overrides(
    runs: Iterator[dict[str, Any]], overrides: Sequence[Override]
) -> Iterator[dict[str, Any]]:
    if not overrides:
        yield from runs
        return
    deleted = [o.name for o in overrides if o.op == "delete"]
    axes = [o for o in overrides if o.op != "delete"]
    for params in runs:
        for name in deleted:
            params.pop(name, None)
        if not axes:
            yield params
            continue
        for values in itertools.product(*(o.values for o in axes)):
            run = dict(params)
            for override, value in zip(axes, values, strict=True):
                run[override.name] = value
            yield run


def _add_named_runs(block: Block, overrides: Sequence[Override], exclusions: tuple[Exclusion, ...],
                    found: dict[str, list[Any]]) -> None:
    """The runs of a block whose dialect names them (see RunNaming); the same parameters reached
    again under the same name take the steps of both recipes."""
    naming = block.naming
    assert naming is not None
    for params, labels in _labelled(block, overrides):
        if exclusions and any(_matches(params, ex) for ex in exclusions):
            continue
        run_id = run_id_of(canonical(params))
        name = naming.name(labels)
        seen = found.get(run_id)
        if seen is None:
            found[run_id] = [params, block.tags, block.recipe, name]
            continue
        if block.tags:
            seen[1] = tuple(dict.fromkeys(seen[1] + block.tags))
        if seen[3] == name and seen[2] is not block.recipe:
            wanted = {s.name for s in seen[2].steps} | {s.name for s in block.recipe.steps}
            seen[2] = next((r for r in naming.recipes if {s.name for s in r.steps} == wanted), seen[2])


def _labelled(block: Block, overrides: Sequence[Override]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """The block's runs with their labels, the overrides applied to both (a label the override
    sets keeps its place; a new one goes last)."""
    deleted = {o.name for o in overrides if o.op == "delete"}
    axes = [o.name for o in overrides if o.op != "delete"]
    for params, labels in _labelled_base(block):
        shown = {k: v for k, v in labels.items() if k not in deleted} if deleted else labels
        for run in _with_overrides(iter([params]), overrides):
            yield run, {**shown, **{name: run[name] for name in axes}} if axes else shown


def _labelled_base(block: Block) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    defaults = dict(block.defaults)
    if block.has_product:
        choices = [tuple(zip(f.fragments, f.labels or f.fragments, strict=True)) for f in block.factors]
        for combo in itertools.product(*choices):
            params = dict(defaults)
            labels: dict[str, Any] = {}
            for fragment, label in combo:
                params.update(fragment)
                labels.update(label)
            yield params, labels
    for run in block.explicit:
        yield {**defaults, **run}, dict(run)


def _matches(params: Mapping[str, Any], exclusion: Exclusion) -> bool:
    return all(same_value(params.get(k, _MISSING), v) for k, v in exclusion.match.items())


def _check_overrides(spec: ExperimentSpec, overrides: Sequence[Override]) -> None:
    known = spec.known_params()
    for override in overrides:
        if override.op in ("set", "delete") and override.name not in known:
            names = ", ".join(sorted(known)[:12]) or "none"
            if override.op == "delete":
                raise SpecError(f"no parameter named {override.name!r} in the spec (it has: {names})",
                                where=OVERRIDE_WHERE, key=override.text, hint="nothing to remove")
            # as Hydra: a key the config lacks is added with `+`, never by a typo
            raise SpecError(f"no parameter named {override.name!r} in the spec (it has: {names})",
                            where=OVERRIDE_WHERE, key=override.text,
                            hint=f"a parameter the spec lacks is added with a leading +, as in Hydra: "
                                 f"+{override.text}", fix=(override.text, f"+{override.text}"))
        if override.op == "add" and override.name in known:
            raise SpecError(f"parameter {override.name!r} already exists",
                            where=OVERRIDE_WHERE, key=override.text,
                            hint=f"drop the + to replace its values: {override.text[1:]}",
                            fix=(override.text, override.text[1:]))
        if override.op != "delete" and not override.values:
            raise SpecError("no values", where=OVERRIDE_WHERE, key=override.text)


def _check_exclusions(spec: ExperimentSpec, overrides: Sequence[Override]) -> None:
    known = spec.known_params() | {o.name for o in overrides}
    for exclusion in spec.exclude + tuple(e for b in spec.blocks for e in b.exclude):
        for name in exclusion.match:
            if name not in known:
                raise SpecError(f"exclude names {name!r}, which no run sets",
                                where=exclusion.where, key="exclude",
                                hint="check the spelling; exclude entries match parameter values")


def _distinct(column: list[Any]) -> int:
    """Number of distinct values, keeping 1, 1.0 and True apart."""
    try:
        return len({(v.__class__, v) for v in column})
    except TypeError:  # lists or mappings among the values
        return len({json.dumps(v, sort_keys=True, default=str) + v.__class__.__name__
                    for v in column})


def _varying(all_params: list[Mapping[str, Any]]) -> dict[str, int]:
    """Parameters whose value differs between runs (absent counts as a value), in first-seen order."""
    keys = dict.fromkeys(k for params in all_params for k in params)
    varying = {}
    for key in keys:
        column = [params.get(key, _MISSING) for params in all_params]
        count = _distinct(column)
        if count > 1:
            varying[key] = count
    return varying


def _named_runs(
    spec: ExperimentSpec, found: dict[str, list[Any]], varying: Mapping[str, int]
) -> list[Run]:
    runs: list[Run] = []
    taken: set[str] = set()
    keys = list(varying)
    for run_id, (params, tags, recipe, own) in found.items():
        if spec.run_name is not None:
            name = _custom_name(spec, params, run_id)
            if name in taken:
                raise SpecError(f"run_name gives two runs the same name {name!r}",
                                where=spec.run_name.where, key="run_name",
                                hint="include every parameter that varies, or {run_id}")
        else:
            if own is not None:  # the dialect's own name, where it can be a directory
                name = own if not dir_name_problem(own) else shorten(sanitize(own), run_id)
                name = name if name and not dir_name_problem(name) else f"run-{run_id[:12]}"
            else:
                label = ",".join([f"{k}={format_value(params[k])}" for k in keys if k in params])
                name = shorten(sanitize(label), run_id) if label else f"run-{run_id[:12]}"
            if name in taken:  # two labels sanitized to the same text, or a dialect's name twice
                name = shorten(f"{name}-{run_id[:12]}", run_id)
        taken.add(name)
        runs.append(Run(run_id, name, params, tuple(tags), recipe))
    return runs


def _custom_name(spec: ExperimentSpec, params: Mapping[str, Any], run_id: str) -> str:
    template = spec.run_name
    assert template is not None
    missing = missing_names(template.text, params)
    if missing:
        raise SpecError(f"placeholder {{{missing[0]}}} has no value in some runs",
                        where=template.where, key="run_name",
                        hint="run_name may use parameters every run has, and {run_id}")
    name = render(template.text, params, {"run_id": run_id}, quote=lambda s: s)
    problem = dir_name_problem(name)
    if problem:
        raise SpecError(f"run directory name {problem}", where=_location_of(spec, template.text, params),
                        key="run_name",
                        hint="run names are single directories under <experiment>/runs/")
    return name


def _location_of(spec: ExperimentSpec, text: str, params: Mapping[str, Any]) -> Location:
    """Point at the parameter whose value broke a run name (best effort)."""
    for name in params:
        if f"{{{name}}}" in text and dir_name_problem(format_value(params[name])):
            return spec.param_locations.get(name, spec.source)
    return spec.run_name.where if spec.run_name else spec.source
