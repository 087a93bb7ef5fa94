"""Experiments JSON in the style of `prepare_experiments.py`: `{"experiment_group": ...,
"experiments": [{nested params}, ...]}`, one explicit run per entry; the command comes from --command.
As that script does, each run's parameters end with the file's `experiment_group`.
"""

from __future__ import annotations

from typing import Any

from expdeploy.errors import Location
from expdeploy.plugins import hookimpl
from expdeploy.spec.formats import NO, SURE, LoadOptions, SpecFormat
from expdeploy.spec.model import Block, ExperimentSpec, Recipe, Resources, Step, Template
from expdeploy.spec.source import LocatedDict, SpecSource
from expdeploy.spec.walk import Walker

GROUP = "experiment_group"
KEYS = (GROUP, "experiments")


class ExperimentsJsonFormat:
    name = "experiments-json"
    description = "experiments JSON ({experiment_group, experiments: [...]}; needs --command)"

    def sniff(self, source: SpecSource) -> int:
        docs = source.documents_or_none()
        first = docs[0] if docs else None
        return SURE if isinstance(first, dict) and isinstance(first.get("experiments"), list) else NO

    def load(self, source: SpecSource, options: LoadOptions) -> ExperimentSpec:
        walker = Walker(source, options)
        docs = source.documents
        doc = docs[0] if len(docs) == 1 else None
        if not isinstance(doc, LocatedDict):
            raise walker.fail(None, None, "", "expected one JSON object with `experiments`")
        walker.check_keys(doc, KEYS, "")
        if options.title:
            raise walker.fail(doc, None, "--title", "applies only to mlrunner files")
        walker.refuse_run_cap(doc)
        if not options.command:
            raise walker.fail(doc, None, "--command", "an experiments file has no command",
                              hint="pass --command 'python run_experiment.py {params_json}'")
        entries = doc["experiments"]
        if not entries:
            raise walker.fail(doc, "experiments", "experiments", "is empty")
        runs = []
        locations: dict[str, Location] = {}
        group = doc.get("experiment_group")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise walker.fail(entries, i, f"experiments[{i}]", "expected an object of parameters")
            flat = walker.flat_params(entry, f"experiments[{i}]")
            if group is not None:  # `experiment_config["experiment_group"] = ...`: last, or in place
                flat[GROUP] = group
            for key in flat:
                locations.setdefault(key, walker.at(entries, i))
            runs.append(flat)
        if options.name:
            name = options.name
        elif "experiment_group" in doc:
            name = walker.dir_name(doc, "experiment_group", "experiment_group",
                                   walker.string(doc, "experiment_group", "experiment_group"))
        else:
            name = source.path.stem
        recipe = Recipe((Step("main", Template(options.command, Location("--command"))),),
                        Resources())
        block = Block(recipe, walker.at(doc), explicit=tuple(runs))
        return ExperimentSpec(name=name, source=source.where(), format="experiments-json",
                              blocks=(block,), param_locations=locations)


@hookimpl(trylast=True)
def expdeploy_register_spec_formats(register: Any) -> None:
    fmt: SpecFormat = ExperimentsJsonFormat()
    register(fmt)
