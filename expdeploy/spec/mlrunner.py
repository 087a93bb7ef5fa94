"""mlrunner `params.yaml` (0.5.3-0.5.9), read as mlrunner 0.5.9 reads it: a first document with
`template`, `default`, `resource` and `alias`, then grid documents with `_cmd` and `_title`.
"""

from __future__ import annotations

import re
from typing import Any

from expdeploy.launch import escape_template
from expdeploy.mlrunner_layout import LAYOUT, run_name
from expdeploy.plugins import hookimpl
from expdeploy.spec.formats import NO, SURE, LoadOptions, SpecFormat
from expdeploy.spec.model import (
    Block,
    ExperimentSpec,
    Factor,
    Recipe,
    Resources,
    RunNaming,
    Step,
    Template,
)
from expdeploy.spec.source import LocatedDict, LocatedList, SpecSource
from expdeploy.spec.walk import PARAM_NAME, Walker

FIRST_KEYS = ("template", "default", "resource", "alias")
GRID_KEYS = ("_title", "_cmd")
META = ("_name", "_output", "_time", "_scripts")  # what mlrunner adds to every run's `param`
# mlrunner's reserved placeholders and the expdeploy built-ins they mean
_BUILTINS = {"_output": "run_dir", "_name": "run_name", "_time": "launch_time"}
_NEWLINES = re.compile(r"\s*\n\s*")
_PLACEHOLDER = re.compile(r"\{([\w-]+)\}|\[([\w-]+)\]")  # as mlrunner finds `{param}` and `[param]`
_MAX_RECIPES = 256  # unions of `_cmd` step sets prepared for runs reached twice (see RunNaming)

_V01 = "a key of mlrunner 0.1, ignored since 0.2"
# First-document keys of older mlrunner versions, which 0.5.3 and later skip without a word
_OLD_KEYS = {
    "pack": (
        "a key of mlrunner 0.4.0-0.5.2, ignored since 0.5.3",
        "0.5.3 renamed its mapping form `alias` (its list form is gone): rename `pack:` to `alias:`",
    ),
    "commands": (_V01, "0.2 renamed it `template`, with {param} and [param] where the values go"),
    "resources": (_V01, "0.2 renamed it `resource`"),
    "remaps": (_V01, "0.2 renamed it `alias`: `key: {choice: {param: value, ...}}`"),
    "dirs": (_V01, "0.2 removed it: write {_output}/DIR in the template"),
    "escapes": (_V01, "0.2 removed it: a parameter no template uses only names the run"),
    "replaces": (_V01, "0.2 removed it: write {param} where the value goes"),
}


class MlrunnerFormat:
    name = "mlrunner"
    description = "mlrunner params.yaml (template, default, resource, alias; grid documents)"

    def sniff(self, source: SpecSource) -> int:
        docs = source.documents_or_none()
        first = docs[0] if docs else None
        if not isinstance(first, dict):
            return NO
        # an mlrunner 0.1 file is read too, to say what became of its keys
        old = "commands" in first and "resources" in first and "grid" not in first
        return SURE if "template" in first or old else NO

    def load(self, source: SpecSource, options: LoadOptions) -> ExperimentSpec:
        return _MlrunnerLoader(source, options).load()


class _MlrunnerLoader(Walker):
    def __init__(self, source: SpecSource, options: LoadOptions) -> None:
        super().__init__(source, options)
        self.steps: tuple[Step, ...] = ()
        self.pool = Resources()  # every step's: one slot per `resource` entry
        self.recipes: dict[tuple[str, ...], Recipe] = {}
        self.locations: dict[str, Any] = {}

    def load(self) -> ExperimentSpec:
        # typed as mlrunner's yaml.FullLoader types them: `1e-5` is text, `yes` is true
        docs = [d for d in self.source.pyyaml_documents if d is not None]
        if not docs or not isinstance(docs[0], LocatedDict):
            raise self.fail(None, None, "", "the first document must be a mapping with `template`")
        first = docs[0]
        self.refuse_run_cap(first)
        self.check_first_keys(first)
        self.steps = self.templates(first)
        self.pool = self.resource(first)
        defaults = self.values(self.mapping(first, "default", "default"), "default")
        self.locations.update({k: self.at(first, "default") for k in defaults})
        aliases = self.aliases(first)
        self.check_alias_placeholders(first, aliases)
        chosen = self.chosen_documents(first, docs[1:])
        naming = RunNaming(run_name, self.merged_recipes())
        blocks = tuple(
            Block(
                recipe,
                self.at(doc),
                defaults,
                self.factors(doc, aliases),
                tags=(title,) if title else (),
                naming=naming,
            )
            for doc, recipe, title in chosen
        )
        name = self.options.name or self.source.path.stem + (
            f"-{self.options.title}" if self.options.title else ""
        )
        return ExperimentSpec(
            name=name,
            source=self.source.where(),
            format="mlrunner",
            blocks=blocks,
            param_locations=self.locations,
        )

    def chosen_documents(
        self, first: LocatedDict, grids: list[Any]
    ) -> list[tuple[LocatedDict, Recipe, str | None]]:
        """The grid documents to run (those with `_title` TITLE under --title), with their recipes."""
        if not grids:
            raise self.fail(
                first,
                None,
                "",
                "no grid documents after the first",
                hint="add `---` and a grid such as `lr: [0.1, 0.01]`",
            )
        chosen = []
        titles: list[str] = []
        for number, doc in enumerate(grids, start=2):
            if not isinstance(doc, LocatedDict):
                raise self.fail(doc, None, f"document {number}", "expected a mapping of parameters")
            title = str(doc["_title"]) if doc.get("_title") is not None else None
            if title:
                titles.append(title)
            if not self.options.title or title == self.options.title:
                chosen.append((doc, self.recipe_for(self.chosen_steps(doc)), title))
        if not chosen:
            raise self.fail(
                first,
                None,
                "--title",
                f"no grid has _title {self.options.title!r}",
                hint=f"titles in this file: {', '.join(titles) or 'none'}",
            )
        return chosen

    def check_first_keys(self, first: LocatedDict) -> None:
        for key in first:
            if key in _OLD_KEYS:
                message, hint = _OLD_KEYS[key]
                raise self.fail(first, key, str(key), message, hint=hint)
        self.check_keys(first, FIRST_KEYS, "")

    def templates(self, first: LocatedDict) -> tuple[Step, ...]:
        if self.options.command:
            return (Step("main", Template(self.options.command, self.source.where())),)
        mapping = self.mapping(first, "template", "template", required=True)
        if not mapping:
            raise self.fail(
                first,
                "template",
                "template",
                "is empty",
                hint="name each step: `train: python train.py --lr {lr}`",
            )
        steps = []
        for step_name in mapping:
            path = f"template.{step_name}"
            # mlrunner joins a template's lines into one command line
            text = _NEWLINES.sub(" ", self.string(mapping, step_name, path)).strip()
            steps.append(
                Step(
                    str(step_name),
                    Template(self.translate(mapping, step_name, path, text), self.at(mapping, step_name)),
                )
            )
        return tuple(steps)

    def translate(self, mapping: LocatedDict, key: Any, path: str, text: str) -> str:
        """An mlrunner template in expdeploy's syntax: its `{p}` and `[p]` as mlrunner finds them,
        `{_output}` `{_name}` `{_time}` as built-ins, all other text literal (`${VAR}` is the shell's)."""
        out: list[str] = []
        pos = 0
        forms: dict[str, set[str]] = {"{": set(), "[": set()}
        for match in _PLACEHOLDER.finditer(text):
            out.append(escape_template(text[pos : match.start()]))
            pos = match.end()
            name, flag = match.group(1) or match.group(2), match.group(2) is not None
            if not flag and text[match.start() - 1 : match.start()] == "$":
                out.append(escape_template(match.group()))
            elif name in _BUILTINS:
                out.append(f"--{name} {{{_BUILTINS[name]}}}" if flag else f"{{{_BUILTINS[name]}}}")
            elif not PARAM_NAME.match(name):
                raise self.fail(
                    mapping,
                    key,
                    path,
                    f"placeholder {match.group()} can have no value",
                    hint="parameter names start with a letter or _ (mlrunner refuses it too)",
                )
            else:
                forms["[" if flag else "{"].add(name)
                out.append(match.group())
        out.append(escape_template(text[pos:]))
        both = sorted(forms["{"] & forms["["])
        if both:
            raise self.fail(
                mapping,
                key,
                path,
                f"{both[0]} is both {{{both[0]}}} and [{both[0]}] here",
                hint="use one of the two (mlrunner refuses both in one template too)",
            )
        return "".join(out)

    def resource(self, first: LocatedDict) -> Resources:
        if "resource" not in first:
            raise self.fail(
                first,
                None,
                "resource",
                "is missing",
                hint='list one CUDA_VISIBLE_DEVICES per worker: resource: ["0", "1,2"]',
            )
        workers = first["resource"]
        if not isinstance(workers, list) or not workers:
            raise self.fail(first, "resource", "resource", "expected a non-empty list of GPU ids")
        names = tuple(str(w).replace(" ", "") for w in workers)
        return Resources(gpus=max(len(w.split(",")) for w in names), workers=names)

    def values(self, mapping: LocatedDict, path: str) -> dict[str, Any]:
        """Parameters and their values as mlrunner keeps them (a mapping is one value)."""
        return {self.name_of(mapping, key, f"{path}.{key}"): _plain(value) for key, value in mapping.items()}

    def name_of(self, container: Any, key: Any, path: str) -> str:
        name = self.param_name(container, key, key, path)
        if name in META:
            raise self.fail(
                container,
                key,
                path,
                f"{name!r} is a name mlrunner gives every run itself",
                hint="rename the parameter",
            )
        return name

    def aliases(self, first: LocatedDict) -> dict[str, dict[Any, dict[str, Any]]]:
        table = self.mapping(first, "alias", "alias")
        out: dict[str, dict[Any, dict[str, Any]]] = {}
        for key, choices in table.items():
            path = f"alias.{key}"
            if isinstance(choices, list):
                raise self.fail(
                    table,
                    key,
                    path,
                    "the list form (one value for several parameters) was dropped in mlrunner 0.5.3",
                    hint=f"name each choice and what it sets: `{key}: {{small: {{a: 1, b: 1}}}}`",
                )
            choice_map = self.mapping(table, key, path)
            if not choice_map:
                raise self.fail(table, key, path, "has no choices")
            parsed = {}
            for choice in choice_map:
                where = f"{path}.{choice}"
                targets = self.values(self.mapping(choice_map, choice, where), where)
                if not targets:
                    raise self.fail(choice_map, choice, where, "sets no parameters")
                parsed[choice] = targets
            if len({frozenset(v) for v in parsed.values()}) != 1:
                raise self.fail(table, key, path, "every choice must set the same parameters")
            out[self.name_of(table, key, path)] = parsed
        return out

    def check_alias_placeholders(self, first: LocatedDict, aliases: dict[str, Any]) -> None:
        for step in self.steps:
            for alias in aliases:
                if re.search(r"[{\[]" + re.escape(alias) + r"[}\]]", step.template.text):
                    raise self.fail(
                        first,
                        "template",
                        f"template.{step.name}",
                        f"alias {alias!r} cannot be a placeholder",
                        hint="use the parameters it sets; since mlrunner 0.5.3 an alias sets "
                        "parameters (before, it expanded inside [alias] only)",
                    )

    def factors(self, doc: LocatedDict, aliases: dict[str, dict[Any, dict[str, Any]]]) -> tuple[Factor, ...]:
        """One axis per key of the document, in its order (a scalar is one value); each axis'
        labels are the values as written, which name the run."""
        keys = [k for k in doc if k not in GRID_KEYS]
        names = [self.name_of(doc, k, str(k)) for k in keys]
        # mlrunner applies an alias after the grid: what it sets wins over the document's own
        # values of those parameters, which then only name the runs
        by_alias = {t for n in names if n in aliases for t in next(iter(aliases[n].values()))}
        factors = []
        for key, name in zip(keys, names, strict=True):
            raw = doc[key] if isinstance(doc[key], list) else [doc[key]]
            if not raw:
                raise self.fail(
                    doc,
                    key,
                    name,
                    "has no values (an empty grid axis)",
                    hint="give at least one value (mlrunner starts nothing for this document)",
                )
            labels = tuple({name: _plain(v)} for v in raw)
            where = self.at(doc, key)
            self.locations.setdefault(name, where)
            if name in aliases:
                frags = tuple(self.choice(doc, key, name, v, aliases[name]) for v in raw)
                factors.append(Factor(tuple(frags[0]), frags, where, labels))
            elif name in by_alias:
                factors.append(Factor((), tuple({} for _ in raw), where, labels))
            else:
                factors.append(Factor((name,), labels, where))
        return tuple(factors)

    def choice(
        self, doc: LocatedDict, key: Any, name: str, value: Any, choices: dict[Any, dict[str, Any]]
    ) -> dict[str, Any]:
        if isinstance(value, (list, dict)) or value not in choices:
            raise self.fail(
                doc,
                key,
                name,
                f"{value!r} is not a choice of alias {name!r}",
                hint=f"choices: {', '.join(map(str, choices))}",
            )
        return choices[value]

    def chosen_steps(self, doc: LocatedDict) -> tuple[str, ...]:
        """The steps of `_cmd` (one name or a list), in template order as mlrunner runs them."""
        known = [s.name for s in self.steps]
        if "_cmd" not in doc or self.options.command:
            return tuple(known)
        wanted = [str(c) for c in (doc["_cmd"] if isinstance(doc["_cmd"], list) else [doc["_cmd"]])]
        for item in wanted:
            if item not in known:
                raise self.fail(
                    doc, "_cmd", "_cmd", f"no template step named {item!r}", hint=f"steps: {', '.join(known)}"
                )
        return tuple(n for n in known if n in wanted)

    def recipe_for(self, names: tuple[str, ...]) -> Recipe:
        if names not in self.recipes:
            steps = tuple(s for s in self.steps if s.name in names)
            self.recipes[names] = Recipe(steps, self.pool, layout=LAYOUT)
        return self.recipes[names]

    def merged_recipes(self) -> tuple[Recipe, ...]:
        """A recipe for every union of the documents' step sets: mlrunner runs a task reached
        again under the same name (another `_cmd`) in the same directory."""
        sets = {frozenset(names) for names in self.recipes}
        fresh = set(sets)
        while fresh and len(sets) < _MAX_RECIPES:
            fresh = {a | b for a in fresh for b in sets} - sets
            sets |= fresh
        order = [s.name for s in self.steps]
        for names in sets:
            self.recipe_for(tuple(n for n in order if n in names))
        return tuple(self.recipes.values())


def _plain(value: Any) -> Any:
    """A YAML value as plain Python containers (the `param` file and run ids need no line marks)."""
    if isinstance(value, (LocatedDict, dict)):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (LocatedList, list)):
        return [_plain(v) for v in value]
    return value


@hookimpl(trylast=True)
def expdeploy_register_spec_formats(register: Any) -> None:
    fmt: SpecFormat = MlrunnerFormat()
    register(fmt)
