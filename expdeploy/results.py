"""An experiment's results: each run's metrics gathered from the files it wrote (`metrics.jsonl`,
`summary.json`, W&B's `wandb-summary.json` or its `.wandb` log's summary and history, and what metric
parsers read: TensorBoard events, log patterns), one row per run with the parameters that vary,
filters (`--where`, `--tag`), sorting by a metric, and mean ± std over grouped-out parameters."""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expdeploy.errors import BadInput

if TYPE_CHECKING:
    from expdeploy.metric_parsers import MetricParser
    from expdeploy.wandb_records import RunLog

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<=": operator.le, ">=": operator.ge, "!=": operator.ne, "==": operator.eq, "<": operator.lt,
    ">": operator.gt, "=": operator.eq}
_WHERE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*(<=|>=|!=|==|<|>|=)\s*(.+?)\s*$")


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    params: Mapping[str, Any]
    state: str
    duration: float | None
    metrics: Mapping[str, Any]
    tags: tuple[str, ...] = ()
    best: Mapping[str, float] = field(default_factory=dict)  # over metrics.jsonl, W&B history, parsed series
    code: Mapping[str, Any] = field(default_factory=dict)  # the launch, commit and host of its attempt


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def run_metrics(run_dir: Path, goal: str = "min", parsers: Iterable[MetricParser] | None = None,
                ) -> tuple[dict[str, Any], dict[str, float]]:
    """(final value, best value) of each metric the run reported. Files written for metrics come
    first: metrics.jsonl (its last line with a metric holds the final value), then W&B's summary
    and summary.json, which win for final values; W&B's history gives the best value of a metric
    metrics.jsonl lacks. A metric none of them names is taken from the metric parsers (`parsers`,
    by default every registered one: TensorBoard events, log patterns)."""
    final, best = _metric_lines(run_dir, goal)
    summary, history = _wandb(run_dir)
    final.update(summary)
    final.update(_summary_file(run_dir / "summary.json"))
    pick = min if goal == "min" else max
    for name, points in history.items():
        final.setdefault(name, points[-1][1])
        best.setdefault(name, pick(value for _, value in points))
    parsed, parsed_best = _parsed(run_dir, goal, parsers)
    for name, value in parsed.items():
        if name not in final:
            final[name] = value
            if name in parsed_best:
                best[name] = parsed_best[name]
    return final, best


def _parsed(run_dir: Path, goal: str, parsers: Iterable[MetricParser] | None,
            ) -> tuple[dict[str, Any], dict[str, float]]:
    from expdeploy.metric_parsers import available_parsers, warn_once

    final: dict[str, Any] = {}
    best: dict[str, float] = {}
    for parser in available_parsers().values() if parsers is None else parsers:
        try:
            values = parser.parse(run_dir)
        except Exception as exc:  # a plugin's bug must not take every run's results with it
            warn_once(f"parser:{parser.name}",
                      f"metric parser {parser.name!r} failed on {run_dir}: {type(exc).__name__}: {exc}")
            continue
        for name, value in values.items():
            if name in final:
                continue  # between parsers, the first registered wins
            if isinstance(value, str) or not isinstance(value, Iterable):
                final[name] = value
                continue
            series = [n for n in map(_number, value) if n is not None]
            if series:
                final[name] = series[-1]
                best[name] = min(series) if goal == "min" else max(series)
    return final, best


def _metric_lines(run_dir: Path, goal: str) -> tuple[dict[str, Any], dict[str, float]]:
    final: dict[str, Any] = {}
    best: dict[str, float] = {}
    pick = min if goal == "min" else max
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return final, best
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line being written as we read
        for key, value in record.items():
            if key in ("step", "time"):
                continue
            final[key] = value
            number = _number(value)
            if number is not None:
                best[key] = pick(best.get(key, number), number)
    return final, best


def _summary_file(path: Path) -> dict[str, Any]:
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in values.items() if not k.startswith("_")} if isinstance(values, dict) else {}


def wandb_series(run_dir: Path) -> dict[str, tuple[tuple[int, float], ...]]:
    """Each numeric metric of the run's W&B history as (step, value) points in step order; a step
    logged again (by a resumed or restarted W&B run) keeps its last value."""
    return _wandb(run_dir)[1]


def _wandb(run_dir: Path) -> tuple[dict[str, Any], dict[str, tuple[tuple[int, float], ...]]]:
    """The summary and history of the run's W&B runs, a later one's values winning. A W&B run's
    summary is its `files/wandb-summary.json` where W&B wrote one (online), else the summary its
    `.wandb` log records (offline runs write only that)."""
    summary: dict[str, Any] = {}
    steps: dict[str, dict[int, float]] = {}
    for folder in _wandb_folders(run_dir):
        written = folder / "files" / "wandb-summary.json"
        for log in _logs(folder):
            if not written.exists():
                summary.update(log.summary)
            for row in log.history:
                for name, value in row.values.items():
                    number = _number(value)
                    if number is not None:
                        steps.setdefault(name, {})[row.step] = number
        summary.update(_summary_file(written))
    return summary, {name: tuple(sorted(points.items())) for name, points in steps.items()}


_STARTED = re.compile(r"run-(\d{8}_\d{6})-")


def _wandb_folders(run_dir: Path) -> list[Path]:
    """The run's W&B run directories, oldest first by the start time W&B puts in their names
    (`offline-run-20261203_122654-<id>`, `run-...`); `latest-run` links to one of them."""

    def started(folder: Path) -> tuple[str, str]:
        match = _STARTED.search(folder.name)
        return (match.group(1) if match else "", folder.name)

    try:
        folders = [p for p in (run_dir / "wandb").iterdir() if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []
    return sorted(folders, key=started)


def _logs(folder: Path) -> list[RunLog]:
    paths = sorted(folder.glob("run-*.wandb"))
    if not paths:
        return []
    from expdeploy.wandb_records import read_run_log

    try:
        return [log for log in map(read_run_log, paths) if log is not None]
    except ImportError as exc:
        from expdeploy.metric_parsers import warn_once

        warn_once("wandb-missing", f"W&B run logs (.wandb) are skipped: their reader needs wandb ({exc})")
        return []


def collect(exp_dir: Path, goal: str = "min") -> list[Row]:
    """A row per run of the experiment, from its ledger and run directories."""
    from expdeploy import worker
    from expdeploy.ledger import Ledger

    plans = worker.read_manifest(str(exp_dir))
    ledger = Ledger(exp_dir)
    try:
        ledger.reconcile()
        rows = []
        launches: dict[str, dict[str, Any]] = {}
        for run in ledger.rows():
            final, best = run_metrics(exp_dir / "runs" / run.name, goal)
            duration = run.ended - run.started if run.ended and run.started else None
            rows.append(Row(run.name, plans.get(run.run_id, {}).get("params", {}), run.state, duration, final,
                            run.tags, best, _code_of(exp_dir, run.name, launches)))
        return rows
    finally:
        ledger.close()


def _code_of(exp_dir: Path, name: str, launches: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Which recorded code (see provenance) the run's latest attempt ran, and where."""
    from expdeploy import worker

    state = worker.read_json(str(exp_dir / "runs" / name / "state.json")) or {}
    launch = state.get("launch")
    if not launch:
        return {}
    if launch not in launches:
        from expdeploy.provenance import read_code

        record = read_code(exp_dir, launch) or {}
        launches[launch] = {k: record.get(k) for k in ("commit", "branch", "dirty")}
    return {"launch": launch, **launches[launch], "host": state.get("host"),
            **({"gpu_models": state["gpu_models"]} if state.get("gpu_models") else {})}


def parse_where(text: str) -> Callable[[Row], bool]:
    """`lr<0.1`, `norm==batch`, `state!=failed`: one comparison with a parameter, metric or state."""
    match = _WHERE.match(text)
    if not match:
        raise BadInput(f"--where {text!r} is not NAME OP VALUE", key="--where",
                       hint="e.g. --where 'lr<0.1' or --where norm=batch (ops: < <= > >= = == !=)")
    name, op, raw = match.groups()
    wanted = _value(raw)

    def keep(row: Row) -> bool:
        have = row.state if name == "state" else row.params.get(name, row.metrics.get(name))
        if have is None:
            return False
        try:
            return bool(_OPS[op](have, wanted))
        except TypeError:  # a number against a word: only (in)equality means something
            return bool(_OPS[op](str(have), str(wanted))) if op in ("=", "==", "!=") else False

    return keep


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.strip("'\"")


def varying(rows: Sequence[Row]) -> list[str]:
    """Parameter names whose value differs between rows (the others are dropped from tables)."""
    names: list[str] = []
    for row in rows:
        names += [n for n in row.params if n not in names]
    return [n for n in names if len({json.dumps(r.params.get(n), sort_keys=True) for r in rows}) > 1]


def metric_names(rows: Iterable[Row]) -> list[str]:
    names: list[str] = []
    for row in rows:
        names += [n for n in row.metrics if n not in names]
    return names


def sort_rows(rows: Sequence[Row], metric: str | None, goal: str) -> list[Row]:
    if metric is None:
        return list(rows)
    def key(row: Row) -> tuple[int, float]:
        number = _number(row.metrics.get(metric))
        if number is None:
            return (1, 0.0)  # runs without the metric go last
        return (0, number if goal == "min" else -number)
    return sorted(rows, key=key)


@dataclass(frozen=True, slots=True)
class Group:
    params: Mapping[str, Any]
    count: int
    mean: Mapping[str, float]
    std: Mapping[str, float]


def aggregate(rows: Sequence[Row], over: Sequence[str]) -> list[Group]:
    """Mean and sample standard deviation of every numeric metric over the runs that differ only
    in the parameters `over` (e.g. seed); groups in order of first appearance."""
    groups: dict[str, list[Row]] = {}
    keys: dict[str, dict[str, Any]] = {}
    for row in rows:
        kept = {k: v for k, v in row.params.items() if k not in over}
        tag = json.dumps(kept, sort_keys=True)
        groups.setdefault(tag, []).append(row)
        keys[tag] = kept
    found = []
    for tag, members in groups.items():
        mean: dict[str, float] = {}
        std: dict[str, float] = {}
        for name in metric_names(members):
            values = [v for v in (_number(r.metrics.get(name)) for r in members) if v is not None]
            if not values:
                continue
            mean[name] = sum(values) / len(values)
            std[name] = (math.sqrt(sum((v - mean[name]) ** 2 for v in values) / (len(values) - 1))
                         if len(values) > 1 else 0.0)
        found.append(Group(keys[tag], len(members), mean, std))
    return found
