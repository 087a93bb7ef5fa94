"""Metrics a run leaves in files of its own format (logs, TensorBoard events): the `MetricParser`
protocol that plugins register, the registry of parsers, and `RegexParser` over the steps' logs."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Protocol

# A number or text is a final value; a sequence of numbers is a series in step order: its last
# element is the final value and the best over it (per --goal) is the metric's best.
MetricValue = float | str | Sequence[float]


class MetricParser(Protocol):
    """Reads metrics out of one run directory; an empty mapping when it finds nothing there."""

    @property
    def name(self) -> str:
        """Identifies the parser: the first registered under a name wins."""
        ...

    def parse(self, run_dir: Path) -> Mapping[str, MetricValue]:
        """Metric name -> value or series, read from the files under `run_dir`."""
        ...


@cache
def available_parsers() -> dict[str, MetricParser]:
    """Registered parsers by name, in registration order (plugins first, built-ins last)."""
    from expdeploy.plugins import get_plugin_manager

    found: dict[str, MetricParser] = {}

    def register(parser: MetricParser) -> None:
        found.setdefault(parser.name, parser)

    get_plugin_manager().hook.expdeploy_register_metric_parsers(register=register)
    return found


_warned: set[str] = set()


def warn_once(key: str, message: str) -> None:
    """A warning on stderr, once per `key` in this process: results are gathered over many runs
    and the same cause (a missing extra, a broken parser) would otherwise repeat for each."""
    if key not in _warned:
        _warned.add(key)
        print(f"warning: {message}", file=sys.stderr)


@dataclass(frozen=True, slots=True)
class RegexParser:
    """Every match of `pattern` in the run's files matching `files` (a glob under the run
    directory; `*.log` is each step's log). Named groups are metric names; a pattern without
    named groups reports its first group (or the whole match) as metric `name`.

    `^` and `$` match at line boundaries. Each metric is a series over the matches, files in the
    order they were last written (steps run in order), so a retried step's last value counts.
    A matched text that is not a number is reported as text (the last one)."""

    name: str
    pattern: str | re.Pattern[str]
    files: str = "*.log"
    _compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        compiled = (self.pattern if isinstance(self.pattern, re.Pattern)
                    else re.compile(self.pattern, re.MULTILINE))
        object.__setattr__(self, "_compiled", compiled)

    def parse(self, run_dir: Path) -> dict[str, MetricValue]:
        found: dict[str, list[float | str]] = {}
        for path in self._paths(run_dir):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue  # removed between listing and reading
            for match in self._compiled.finditer(text):
                for metric, raw in self._values(match).items():
                    found.setdefault(metric, []).append(_number_or_text(raw))
        return {metric: _series_or_last(values) for metric, values in found.items()}

    def _paths(self, run_dir: Path) -> list[Path]:
        paths = [p for p in run_dir.glob(self.files) if p.is_file()]

        def written(path: Path) -> tuple[float, str]:
            try:
                return (path.stat().st_mtime, path.name)
            except OSError:
                return (0.0, path.name)

        return sorted(paths, key=written)

    def _values(self, match: re.Match[str]) -> dict[str, str]:
        named = {k: v for k, v in match.groupdict().items() if v is not None}
        if self._compiled.groupindex:
            return named
        return {self.name: match.group(1) if self._compiled.groups else match.group(0)}


def _number_or_text(raw: str) -> float | str:
    try:
        return float(raw)
    except ValueError:
        return raw.strip()


def _series_or_last(values: list[float | str]) -> MetricValue:
    numbers = [v for v in values if isinstance(v, float)]
    return numbers if len(numbers) == len(values) else values[-1]
