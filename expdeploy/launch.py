"""Rendering command templates into concrete, shell-quoted commands for each run and step.

Placeholders: `{param}` (quoted value), `[param]` (`--param value`, `--param`, or nothing),
built-ins (`{run_dir}`, `{run_id}`, `{run_name}`, `{exp_dir}`, `{params_file}`, `{launch_time}`)
and all-parameter forms (`{args}`, `{args_no_hyphens}`, `{args_json}`, `{params_json}`, ...), which
for W&B sweep files are built exactly as a W&B agent builds them (`agent_args`).
`{{`/`}}` write literal braces and `[[name]]` a literal `[name]`; `${VAR}` is left to the shell.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from expdeploy.errors import SpecError
from expdeploy.params import format_value, unflatten
from expdeploy.spec.model import AgentArgs, Recipe

NAME = r"[A-Za-z_][A-Za-z0-9_.\-]*"
_TOKEN = re.compile(
    r"(?P<lbrace>\{\{)|(?P<rbrace>\}\})|\[\[(?P<literal>" + NAME + r")\]\]"
    r"|(?<!\$)\{(?P<value>" + NAME + r")\}|\[(?P<flag>" + NAME + r")\]"
)

BUILTINS = ("run_dir", "run_id", "run_name", "exp_dir", "params_file", "launch_time")
_FLAG_LIKE = re.compile(r"\[(" + NAME + r")\]")


def escape_template(text: str) -> str:
    """Text a template writes as it is: braces doubled, a `[name]` (a flag here) as `[[name]]`."""
    return _FLAG_LIKE.sub(r"[[\1]]", text.replace("{", "{{").replace("}", "}}"))


def literal_word(word: str) -> str:
    """One argv word as template text: shell-quoted, template syntax escaped (dialects that
    write their commands out: W&B's program and plain words, Hydra's jobs)."""
    return escape_template(shlex.quote(word))


def _pairs(style: Callable[[str, Any], list[str]]) -> Callable[[Mapping[str, Any]], list[str]]:
    def render(params: Mapping[str, Any]) -> list[str]:
        return [arg for key, value in params.items() for arg in style(key, value)]

    return render


# Each all-parameter form turns the run's parameters into argv words (quoted when rendered); the
# `args*` forms are a W&B agent's macros of the same names (`{k}={v}` with str(v), as it writes them).
ARG_STYLES: dict[str, Callable[[Mapping[str, Any]], list[str]]] = {
    "args": _pairs(lambda k, v: [f"--{k}={format_value(v)}"]),
    "args_no_hyphens": _pairs(lambda k, v: [f"{k}={format_value(v)}"]),
    "args_no_boolean_flags": _pairs(
        lambda k, v: ([f"--{k}"] if v else []) if isinstance(v, bool) else [f"--{k}={format_value(v)}"]
    ),
    "args_no_equals": _pairs(lambda k, v: [f"--{k}", format_value(v)]),
    "args_append_hydra": _pairs(lambda k, v: [f"+{k}={format_value(v)}"]),
    "args_override_hydra": _pairs(lambda k, v: [f"++{k}={format_value(v)}"]),
    "args_json": lambda params: [json.dumps(dict(params))],
    # dotted names nested again, json.dumps' defaults (as prepare_experiments.py writes a run)
    "params_json": lambda params: [json.dumps(unflatten(params))],
}

# W&B's sweeps engine orders parameters by their flattened names, nested keys joined with this
# (its NESTING_DELIMITER); a dotted name as written is one key, never split.
_WANDB_NESTING = ".wbnest[599c28ca25da]."


def agent_args(params: Mapping[str, Any], spec: AgentArgs) -> dict[str, Any]:
    """The run's parameters as a W&B agent receives them (`command["args"]`, values unwrapped):
    the sweeps engine's order, nested blocks as dicts."""
    flat = sorted(((_WANDB_NESTING.join(spec.paths.get(name, (name,))), value)
                   for name, value in params.items()), key=lambda item: item[0])
    # the engine re-nests after the flat keys: nested parents follow every plain key
    out: dict[str, Any] = {key: value for key, value in flat if _WANDB_NESTING not in key}
    for key, value in flat:
        if _WANDB_NESTING in key:
            *parents, leaf = key.split(_WANDB_NESTING)
            node = out
            for parent in parents:
                node = node.setdefault(parent, {})
            node[leaf] = value
    return out

RESERVED = frozenset(BUILTINS) | frozenset(ARG_STYLES)


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    """A template split into literal text and placeholders, compiled once per template."""

    parts: tuple[tuple[str, str], ...]  # (kind, text): literal | value | flag | builtin | all

    @property
    def value_names(self) -> frozenset[str]:
        return frozenset(t for k, t in self.parts if k in ("value", "flag"))

    @property
    def uses_all(self) -> bool:
        return any(kind == "all" for kind, _ in self.parts)


@lru_cache(maxsize=1024)
def compile_template(text: str) -> CompiledTemplate:
    parts: list[tuple[str, str]] = []
    pos = 0
    for match in _TOKEN.finditer(text):
        if match.start() > pos:
            parts.append(("literal", text[pos : match.start()]))
        pos = match.end()
        kind = match.lastgroup or ""
        token = match.group(kind)
        if kind == "lbrace":
            parts.append(("literal", "{"))
        elif kind == "rbrace":
            parts.append(("literal", "}"))
        elif kind == "literal":
            parts.append(("literal", f"[{token}]"))
        elif kind == "value" and token in BUILTINS:
            parts.append(("builtin", token))
        elif kind == "value" and token in ARG_STYLES:
            parts.append(("all", token))
        else:
            parts.append((kind, token))
    if pos < len(text):
        parts.append(("literal", text[pos:]))
    return CompiledTemplate(tuple(parts))


def missing_names(template: str, available: Iterable[str]) -> list[str]:
    """Placeholders in `template` that name no available parameter, in order of appearance."""
    have = set(available)
    compiled = compile_template(template)
    return [t for k, t in compiled.parts if k in ("value", "flag") and t not in have]


def render(
    template: str,
    params: Mapping[str, Any],
    builtins: Mapping[str, str],
    *,
    agent: AgentArgs | None = None,
    quote: Callable[[str], str] = shlex.quote,
) -> str:
    """One command line; every substituted value is shell-quoted, so it reaches the program literally.

    With `agent`, the `args*` forms pass the parameters as a W&B agent does (see `agent_args`).
    """
    out: list[str] = []
    for kind, token in compile_template(template).parts:
        if kind == "literal":
            out.append(token)
        elif kind == "value":
            out.append(quote(format_value(params[token])))
        elif kind == "builtin":
            out.append(quote(builtins[token]))
        elif kind == "flag":
            value = params[token]
            if value is True:
                out.append(f"--{token}")
            elif value is False or value is None:
                # drop one separating space so `a [off] b` renders as `a b`
                if out and out[-1].endswith(" "):
                    out[-1] = out[-1][:-1]
            else:
                out.append(f"--{token} {quote(format_value(value))}")
        else:  # all-parameter form
            source = agent_args(params, agent) if agent is not None and token != "params_json" else params
            out.append(" ".join(quote(word) for word in ARG_STYLES[token](source)))
    return "".join(out)


class RunLike(Protocol):
    """What rendering needs of a run (grid.Run provides it)."""

    @property
    def run_id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def params(self) -> Mapping[str, Any]: ...

    @property
    def recipe(self) -> Recipe: ...


def builtins_for(run: RunLike, exp_dir: Path, launch_time: str) -> dict[str, str]:
    run_dir = exp_dir / "runs" / run.name  # the layout worker.run_dir_of reads
    return {
        "run_dir": str(run_dir),
        "run_id": run.run_id,
        "run_name": run.name,
        "exp_dir": str(exp_dir),
        "params_file": str(run_dir / "params.json"),
        "launch_time": launch_time,
    }


def commands_for(run: RunLike, exp_dir: Path, launch_time: str) -> dict[str, str]:
    """Every step of `run` rendered to a concrete command line, in pipeline order."""
    builtins = builtins_for(run, exp_dir, launch_time)
    agent = run.recipe.agent_args
    return {
        step.name: render(step.template.text, run.params, builtins, agent=agent)
        for step in run.recipe.steps
    }


def check_placeholders(runs: Iterable[RunLike]) -> dict[int, set[str]]:
    """Raise SpecError for a placeholder some run has no value for; return param names per recipe.

    Runs are grouped by (recipe, parameter names), so a 100,000-run grid costs a handful of checks.
    """
    seen: set[tuple[int, frozenset[str]]] = set()
    keys_by_recipe: dict[int, set[str]] = {}
    for run in runs:
        group = (id(run.recipe), frozenset(run.params))
        if group in seen:
            continue
        seen.add(group)
        keys_by_recipe.setdefault(id(run.recipe), set()).update(group[1])
        for step in run.recipe.steps:
            missing = missing_names(step.template.text, group[1])
            if missing:
                raise SpecError(
                    f"placeholder {{{missing[0]}}} has no value in run {run.name}",
                    where=step.template.where, key=f"step {step.name}",
                    hint=f"set {missing[0]} in `defaults:` (null for an optional [flag]), "
                    f"or write {{{{{missing[0]}}}}} for literal braces",
                )
    return keys_by_recipe


def unused_params(recipes: Iterable[Recipe], keys_by_recipe: Mapping[int, set[str]]) -> list[str]:
    """Parameters set on runs but referenced by no step of any recipe (orphans)."""
    present: set[str] = set()
    used: set[str] = set()
    for recipe in recipes:
        keys = keys_by_recipe.get(id(recipe), set())
        present |= keys
        for step in recipe.steps:
            compiled = compile_template(step.template.text)
            used |= keys if compiled.uses_all or recipe.holds_params else compiled.value_names
    return sorted(present - used)
