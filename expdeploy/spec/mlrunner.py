"""mlrunner `params.yaml`, read as it is: a first document with `template` (named steps),
`default`, `resource` (CUDA_VISIBLE_DEVICES per worker) and `alias`; then grid documents with
optional `_cmd` (steps to run) and `_title` (chosen with --title).
"""

from __future__ import annotations

import re
from typing import Any

from expdeploy.plugins import hookimpl
from expdeploy.spec.formats import NO, SURE, LoadOptions, SpecFormat
from expdeploy.spec.model import Block, ExperimentSpec, Factor, Recipe, Resources, Step, Template
from expdeploy.spec.source import LocatedDict, SpecSource
from expdeploy.spec.walk import Walker

FIRST_KEYS = ("template", "default", "resource", "alias")
# mlrunner's reserved placeholders and the expdeploy built-ins they mean
_RESERVED = {"{_output}": "{run_dir}", "{_name}": "{run_name}", "{_time}": "{launch_time}"}
_NEWLINES = re.compile(r"\s*\n\s*")


class MlrunnerFormat:
    name = "mlrunner"
    description = "mlrunner params.yaml (template, default, resource, alias; grid documents)"

    def sniff(self, source: SpecSource) -> int:
        docs = source.documents_or_none()
        first = docs[0] if docs else None
        return SURE if isinstance(first, dict) and "template" in first else NO

    def load(self, source: SpecSource, options: LoadOptions) -> ExperimentSpec:
        return _MlrunnerLoader(source, options).load()


class _MlrunnerLoader(Walker):
    def load(self) -> ExperimentSpec:
        docs = [d for d in self.source.documents if d is not None]
        if not docs or not isinstance(docs[0], LocatedDict):
            raise self.fail(None, None, "", "the first document must be a mapping with `template`")
        first = docs[0]
        self.check_keys(first, FIRST_KEYS, "")
        steps = self.templates(first)
        resources = self.resource(first)
        defaults = self.flat_params(self.mapping(first, "default", "default"), "default")
        aliases = self.aliases(first)
        for step in steps:
            for alias in aliases:
                if re.search(r"[{\[]" + re.escape(alias) + r"[}\]]", step.template.text):
                    raise self.fail(first, "template", f"template.{step.name}",
                                    f"alias {alias!r} cannot be a placeholder",
                                    hint="use the parameters the alias sets instead")
        grids = [(i, d) for i, d in enumerate(docs[1:], start=2)]
        if not grids:
            raise self.fail(first, None, "", "no grid documents after the first",
                            hint="add `---` and a grid such as `lr: [0.1, 0.01]`")
        blocks: list[Block] = []
        titles: list[str] = []
        locations: dict[str, Any] = {k: self.at(first, "default") for k in defaults}
        for number, doc in grids:
            if not isinstance(doc, LocatedDict):
                raise self.fail(doc, None, f"document {number}", "expected a mapping of parameters")
            title = str(doc["_title"]) if "_title" in doc else None
            if title:
                titles.append(title)
            if self.options.title and title != self.options.title:
                continue
            recipe = Recipe(self.chosen_steps(doc, steps), resources)
            factors = []
            for key, values in doc.items():
                if key in ("_title", "_cmd"):
                    continue
                name = self.param_name(doc, key, key, str(key))
                factors.append(self.alias_factor(doc, name, values, aliases[name])
                               if name in aliases else self.factor(doc, key, name, values, name))
                for n in factors[-1].names:
                    locations.setdefault(n, self.at(doc, key))
            blocks.append(Block(recipe, self.at(doc), defaults, tuple(factors),
                                tags=(title,) if title else ()))
        if not blocks:
            raise self.fail(first, None, "--title", f"no grid has _title {self.options.title!r}",
                            hint=f"titles in this file: {', '.join(titles) or 'none'}")
        name = self.options.name or self.source.path.stem + (
            f"-{self.options.title}" if self.options.title else "")
        return ExperimentSpec(name=name, source=self.source.where(), format="mlrunner",
                              blocks=tuple(blocks), param_locations=locations)

    def templates(self, first: LocatedDict) -> tuple[Step, ...]:
        if self.options.command:
            return (Step("main", Template(self.options.command, self.source.where())),)
        mapping = self.mapping(first, "template", "template", required=True)
        if not mapping:
            raise self.fail(first, "template", "template", "is empty",
                            hint="name each step: `train: python train.py --lr {lr}`")
        steps = []
        for step_name in mapping:
            text = _NEWLINES.sub(" ", self.string(mapping, step_name, f"template.{step_name}"))
            for token, builtin in _RESERVED.items():
                text = text.replace(token, builtin)
            steps.append(Step(str(step_name), Template(text.strip(), self.at(mapping, step_name))))
        return tuple(steps)

    def resource(self, first: LocatedDict) -> Resources:
        if "resource" not in first:
            raise self.fail(first, None, "resource", "is missing",
                            hint='list one CUDA_VISIBLE_DEVICES per worker: resource: ["0", "1,2"]')
        workers = first["resource"]
        if not isinstance(workers, list) or not workers:
            raise self.fail(first, "resource", "resource", "expected a non-empty list of GPU ids")
        names = tuple(str(w).replace(" ", "") for w in workers)
        return Resources(gpus=max(len(w.split(",")) for w in names), workers=names)

    def aliases(self, first: LocatedDict) -> dict[str, dict[str, dict[str, Any]]]:
        table = self.mapping(first, "alias", "alias")
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for key in table:
            path = f"alias.{key}"
            choice_map = self.mapping(table, key, path)
            if not choice_map:
                raise self.fail(table, key, path, "has no choices")
            parsed = {str(c): self.flat_params(self.mapping(choice_map, c, f"{path}.{c}"),
                                               f"{path}.{c}") for c in choice_map}
            key_sets = {frozenset(v) for v in parsed.values()}
            if len(key_sets) != 1 or not next(iter(key_sets)):
                raise self.fail(table, key, path, "every choice must set the same parameters")
            out[str(key)] = parsed
        return out

    def alias_factor(self, doc: LocatedDict, name: str, values: Any,
                     choices: dict[str, dict[str, Any]]) -> Factor:
        picked = values if isinstance(values, list) else [values]
        for value in picked:
            if str(value) not in choices:
                raise self.fail(doc, name, name, f"{value!r} is not a choice of alias {name!r}",
                                hint=f"choices: {', '.join(choices)}")
        fragments = tuple(choices[str(v)] for v in picked)
        return Factor(tuple(fragments[0]), fragments, self.at(doc, name))

    def chosen_steps(self, doc: LocatedDict, steps: tuple[Step, ...]) -> tuple[Step, ...]:
        if "_cmd" not in doc or self.options.command:
            return steps
        wanted = doc["_cmd"] if isinstance(doc["_cmd"], list) else [doc["_cmd"]]
        known = [s.name for s in steps]
        for item in wanted:
            if item not in known:
                raise self.fail(doc, "_cmd", "_cmd", f"no template step named {item!r}",
                                hint=f"steps: {', '.join(known)}")
        return tuple(s for s in steps if s.name in wanted)


@hookimpl(trylast=True)
def expdeploy_register_spec_formats(register: Any) -> None:
    fmt: SpecFormat = MlrunnerFormat()
    register(fmt)
