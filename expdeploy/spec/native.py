"""The native experiment YAML: `command`/`steps`, `defaults`, `grid`, `zip`, `subgrids`, `exclude`,
`runs`, `resources`; several documents in one file are united (later ones inherit the first's
command, defaults and resources).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from expdeploy.errors import Location
from expdeploy.launch import BUILTINS, compile_template
from expdeploy.plugins import hookimpl
from expdeploy.spec.formats import MAYBE, NO, LoadOptions, SpecFormat
from expdeploy.spec.model import (
    Block,
    Exclusion,
    ExperimentSpec,
    Factor,
    Recipe,
    Resources,
    Step,
    Template,
)
from expdeploy.spec.source import LocatedDict, SpecSource
from expdeploy.spec.walk import PARAM_NAME, Walker

TOP_KEYS = ("name", "description", "command", "steps", "defaults", "grid", "zip", "subgrids",
            "exclude", "runs", "resources", "env", "run_name", "tags")
LATER_KEYS = tuple(k for k in TOP_KEYS if k not in ("name", "run_name"))
SUBGRID_KEYS = ("tags", "grid", "zip", "defaults", "exclude", "runs", "resources")
_NATIVE_HINTS = {"command", "steps", "grid", "zip", "subgrids", "runs"}


class NativeFormat:
    name = "native"
    description = "expdeploy experiment YAML (command/steps, grid, zip, subgrids, exclude, runs)"

    def sniff(self, source: SpecSource) -> int:
        docs = source.documents_or_none()
        first = docs[0] if docs else None
        return MAYBE if isinstance(first, dict) and _NATIVE_HINTS & set(first) else NO

    def load(self, source: SpecSource, options: LoadOptions) -> ExperimentSpec:
        return _NativeLoader(source, options).load()


class _NativeLoader(Walker):
    def __init__(self, source: SpecSource, options: LoadOptions) -> None:
        super().__init__(source, options)
        self.locations: dict[str, Location] = {}

    def load(self) -> ExperimentSpec:
        docs = [d for d in self.source.documents if d is not None]
        if not docs:
            raise self.fail(None, None, "", "the file holds no experiment",
                            hint="start with `command:` and `grid:`; see examples/quickstart.yml")
        for i, doc in enumerate(docs):
            if not isinstance(doc, LocatedDict):
                raise self.fail(doc, None, f"document {i + 1}", "expected a mapping of spec keys")
            self.check_keys(doc, TOP_KEYS if i == 0 else LATER_KEYS, "")
        first = docs[0]
        if self.options.title:
            raise self.fail(first, None, "--title", "applies only to mlrunner files")
        self.refuse_run_cap(first)
        name = self.options.name or (
            self.string(first, "name", "name") if "name" in first else self.source.path.stem
        )
        self.dir_name(first, "name" if "name" in first else None, "name", name)
        base_recipe = self.recipe(first, None)
        base_defaults = self.defaults(first, {})
        blocks: list[Block] = []
        exclude: tuple[Exclusion, ...] = ()
        for i, doc in enumerate(docs):
            recipe = base_recipe if i == 0 else self.recipe(doc, base_recipe)
            defaults = base_defaults if i == 0 else self.defaults(doc, base_defaults)
            doc_exclude = self.exclusions(doc, "exclude")
            if i == 0:
                exclude = doc_exclude  # the first document's exclusions apply to every run
                doc_exclude = ()
            blocks.extend(self.blocks(doc, recipe, defaults, doc_exclude))
        return ExperimentSpec(
            name=name,
            source=self.source.where(),
            format="native",
            blocks=tuple(blocks),
            exclude=exclude,
            param_locations=self.locations,
            run_name=self.run_name(first),
        )

    def note(self, names: Any, where: Location) -> None:
        for name in names:
            self.locations.setdefault(name, where)

    def recipe(self, doc: LocatedDict, base: Recipe | None) -> Recipe:
        if "command" in doc and "steps" in doc:
            raise self.fail(doc, "steps", "steps", "both `command` and `steps` are set",
                            hint="use `command:` for one step or `steps:` for a pipeline")
        if self.options.command:
            steps: tuple[Step, ...] = (
                Step("main", Template(self.options.command, Location("--command"))),
            )
        elif "command" in doc:
            text = self.string(doc, "command", "command")
            steps = (Step("main", Template(text, self.at(doc, "command"))),)
        elif "steps" in doc:
            steps = self.steps(doc)
        elif base is not None:
            steps = base.steps
        else:
            raise self.fail(doc, None, "command", "no command to run",
                            hint="add `command: python train.py --lr {lr}` or a `steps:` mapping")
        resources = base.resources if base else Resources()
        if "resources" in doc:
            resources = self.resources(doc, "resources", "resources", resources)
        env = self.env(doc, "env", "env") if "env" in doc else base.env if base else None
        return Recipe(steps, resources, env=env)

    def steps(self, doc: LocatedDict) -> tuple[Step, ...]:
        mapping = self.mapping(doc, "steps", "steps")
        if not mapping:
            raise self.fail(doc, "steps", "steps", "is empty", hint="name each step: `train: ...`")
        steps = []
        for step_name in mapping:
            if not isinstance(step_name, str) or not PARAM_NAME.match(step_name):
                raise self.fail(mapping, step_name, f"steps.{step_name}", "is not a valid step name",
                                hint="step names are used for log files: letters, digits, _ . -")
            text = self.string(mapping, step_name, f"steps.{step_name}")
            steps.append(Step(step_name, Template(text, self.at(mapping, step_name))))
        return tuple(steps)

    def defaults(self, doc: LocatedDict, base: Mapping[str, Any]) -> dict[str, Any]:
        own = self.flat_params(self.mapping(doc, "defaults", "defaults"), "defaults")
        self.note(own, self.at(doc, "defaults"))
        return {**base, **own}

    def factors(self, doc: LocatedDict, path: str) -> list[Factor]:
        factors: list[Factor] = []
        if "grid" in doc:
            factors += self.grid(doc, "grid", f"{path}grid")
        if "zip" in doc:
            factors += self.zip(doc, "zip", f"{path}zip")
        for factor in factors:
            self.note(factor.names, factor.where)
        return factors

    def explicit_runs(self, doc: LocatedDict, path: str) -> tuple[dict[str, Any], ...]:
        if "runs" not in doc:
            return ()
        runs = doc["runs"]
        if not isinstance(runs, list) or not runs:
            raise self.fail(doc, "runs", path, "expected a non-empty list of parameter mappings")
        out = []
        for i, run in enumerate(runs):
            if not isinstance(run, dict):
                raise self.fail(runs, i, f"{path}[{i}]", "expected a mapping of parameter values")
            flat = self.flat_params(run, f"{path}[{i}]")
            self.note(flat, self.at(runs, i))
            out.append(flat)
        return tuple(out)

    def exclusions(self, doc: LocatedDict, path: str) -> tuple[Exclusion, ...]:
        if "exclude" not in doc:
            return ()
        entries = doc["exclude"]
        if not isinstance(entries, list):
            raise self.fail(doc, "exclude", path, "expected a list of parameter mappings",
                            hint="e.g. exclude: [{lr: 0.1, norm: layer}]")
        out = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or not entry:
                raise self.fail(entries, i, f"{path}[{i}]", "expected a mapping of parameter values")
            out.append(Exclusion(self.flat_params(entry, f"{path}[{i}]"), self.at(entries, i)))
        return tuple(out)

    def tags(self, doc: LocatedDict, path: str) -> tuple[str, ...]:
        raw = doc.get("tags")
        if raw is None:
            return ()
        items = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(items, list) or not all(isinstance(t, str) and t.strip() for t in items):
            raise self.fail(doc, "tags", path, "expected a list of tag names")
        return tuple(t.strip() for t in items)

    def blocks(
        self, doc: LocatedDict, recipe: Recipe, defaults: dict[str, Any],
        exclude: tuple[Exclusion, ...],
    ) -> list[Block]:
        tags = self.tags(doc, "tags")
        factors = self.factors(doc, "")
        explicit = self.explicit_runs(doc, "runs")
        where = self.at(doc)
        if "subgrids" not in doc:
            return [Block(recipe, where, defaults, tuple(factors), explicit, exclude, tags)]
        subgrids = doc["subgrids"]
        if not isinstance(subgrids, list) or not subgrids:
            raise self.fail(doc, "subgrids", "subgrids", "expected a non-empty list of subgrids",
                            hint="e.g. subgrids: [{tags: [small], grid: {depth: [2, 4]}}]")
        blocks = []
        for i, sub in enumerate(subgrids):
            path = f"subgrids[{i}]"
            if not isinstance(sub, LocatedDict):
                raise self.fail(subgrids, i, path, "expected a mapping (tags, grid, zip, ...)")
            self.check_keys(sub, SUBGRID_KEYS, path)
            sub_defaults = self.flat_params(
                self.mapping(sub, "defaults", f"{path}.defaults"), f"{path}.defaults"
            )
            self.note(sub_defaults, self.at(sub, "defaults"))
            own = self.factors(sub, f"{path}.")
            replaced = set(sub_defaults) | {n for f in own for n in f.names}
            shared = [f2 for f in factors if (f2 := f.without(replaced)) is not None]
            sub_recipe = recipe
            if "resources" in sub:
                res = self.resources(sub, "resources", f"{path}.resources", recipe.resources)
                sub_recipe = replace(recipe, resources=res)
            blocks.append(Block(
                sub_recipe, self.at(subgrids, i), {**defaults, **sub_defaults},
                tuple(shared + own), self.explicit_runs(sub, f"{path}.runs"),
                exclude + self.exclusions(sub, f"{path}.exclude"),
                tuple(dict.fromkeys(tags + self.tags(sub, f"{path}.tags"))),
            ))
        if explicit:
            blocks.append(Block(recipe, where, defaults, (), explicit, exclude, tags))
        return blocks

    def run_name(self, doc: LocatedDict) -> Template | None:
        if "run_name" not in doc:
            return None
        text = self.string(doc, "run_name", "run_name")
        compiled = compile_template(text)
        for kind, token in compiled.parts:
            if kind == "all" or (kind == "builtin" and token != "run_id") or kind == "flag":
                raise self.fail(doc, "run_name", "run_name", f"cannot use {token!r} in a run name",
                                hint=f"use {{param}} placeholders and {{run_id}}; not {BUILTINS}")
        return Template(text, self.at(doc, "run_name"))


@hookimpl(trylast=True)
def expdeploy_register_spec_formats(register: Any) -> None:
    fmt: SpecFormat = NativeFormat()
    register(fmt)
