"""Reading spec files: YAML (and JSON, a subset of it) with a line for every key and item.

Dialect loaders walk the located documents and name `file:line` in every error they raise.
"""

from __future__ import annotations

import re
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from expdeploy.errors import Location, SpecError


class LocatedDict(dict[Any, Any]):
    """A mapping that remembers the line of itself and of each key."""

    line: int | None = None
    key_lines: dict[Any, int]

    def line_of(self, key: Any) -> int | None:
        return self.key_lines.get(key, self.line) if hasattr(self, "key_lines") else self.line


class LocatedList(list[Any]):
    """A sequence that remembers the line of itself and of each item."""

    line: int | None = None
    item_lines: list[int]

    def line_of(self, index: int) -> int | None:
        lines = getattr(self, "item_lines", [])
        return lines[index] if index < len(lines) else self.line


def line_of(container: Any, key: Any = None) -> int | None:
    """Line of `container[key]` (or of the container when key is None), if known."""
    if isinstance(container, (LocatedDict, LocatedList)):
        return container.line if key is None else container.line_of(key)
    return None


@cache
def _loader(pyyaml_typing: bool = False) -> Any:
    """Safe loader with YAML 1.2 floats (`1e-4`), no timestamp conversion, and located nodes.
    With `pyyaml_typing`, scalars are typed exactly as `yaml.safe_load` types them (YAML 1.1:
    `1e-4` is a string), which is how tools built on PyYAML (wandb, mlrunner) read their files;
    timestamps still stay text.

    Built on first use: importing PyYAML and compiling its resolvers costs ~20 ms at start-up.
    """
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser is several times faster

    class Loader(base):  # type: ignore[misc, valid-type]
        pass

    # Copy the class-level resolver table so PyYAML's own loaders stay untouched.
    Loader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in base.yaml_implicit_resolvers.items()
    }
    if not pyyaml_typing:
        Loader.add_implicit_resolver(
            "tag:yaml.org,2002:float",
            re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
            list("-+0123456789"),
        )
    Loader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
    Loader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)
    return Loader


def _construct_mapping(loader: Any, node: Any) -> LocatedDict:
    loader.flatten_mapping(node)
    result = LocatedDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if isinstance(key, (dict, list)):
            raise SpecError("a mapping key must be a plain value", where=Location(loader.name, line))
        if key in result:
            raise SpecError(
                f"duplicate key {key!r} (first on line {result.key_lines[key]})",
                where=Location(loader.name, line),
                hint="YAML keeps only the last value; remove one of them",
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = line
    return result


def _construct_sequence(loader: Any, node: Any) -> LocatedList:
    result = LocatedList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


def parse_scalar(text: str) -> Any:
    """Type a bare command-line value the way the spec files type it (`0.1`, `true`, `1e-4`)."""
    import yaml

    loader = _loader()
    if loader.resolve(loader, yaml.ScalarNode, text, (True, False)) == "tag:yaml.org,2002:str":
        return text
    return yaml.load(text, Loader=loader)


def parse_flow(text: str, where: Location) -> Any:
    """Parse a YAML flow value such as `[1, 2]` or `{a: 1}` given on the command line."""
    import yaml

    try:
        return yaml.load(text, Loader=_loader())
    except yaml.YAMLError as exc:
        raise SpecError(f"cannot read {text!r}: {_short_yaml_problem(exc)}", where=where) from None


def _short_yaml_problem(exc: Exception) -> str:
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return str(problem)


class SpecSource:
    """One spec file: its path, its text and (when it is YAML/JSON) its located documents."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)

    def where(self, line: int | None = None) -> Location:
        return Location(self.name, line)

    @cached_property
    def text(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SpecError(
                "no such file", where=self.where(), hint="check the path to the spec file"
            ) from None
        except IsADirectoryError:
            raise SpecError("is a directory, not a spec file", where=self.where()) from None
        except UnicodeDecodeError as exc:
            raise SpecError(f"not UTF-8 text ({exc.reason})", where=self.where()) from None

    @cached_property
    def documents(self) -> list[Any]:
        """All YAML documents, located; raises SpecError with file:line when malformed."""
        return self._parse(pyyaml_typing=False)

    @cached_property
    def pyyaml_documents(self) -> list[Any]:
        """The documents with scalars typed as `yaml.safe_load` types them (see `_loader`)."""
        return self._parse(pyyaml_typing=True)

    def _parse(self, pyyaml_typing: bool) -> list[Any]:
        import yaml

        loader = _loader(pyyaml_typing)(self.text)
        loader.name = self.name
        try:
            docs = []
            while loader.check_data():
                docs.append(loader.get_data())
            return docs
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else None
            raise SpecError(
                f"not valid YAML: {exc.problem or exc.context}",
                where=self.where(line),
                hint="check indentation and quoting around this line",
            ) from None
        except yaml.YAMLError as exc:
            raise SpecError(f"not valid YAML: {exc}", where=self.where()) from None
        finally:
            loader.dispose()

    def documents_or_none(self) -> list[Any] | None:
        """Documents for sniffing: None when the file is not YAML/JSON at all."""
        try:
            return self.documents
        except SpecError:
            return None
