"""Pictures of an experiment's results for `expdeploy results --plot` and `--curves`: a metric
against a parameter (mean ± std over runs sharing an x, a series per hue), and each run's curves
(from its metrics.jsonl, else its TensorBoard scalars)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expdeploy.errors import BadInput
from expdeploy.results import Row

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100  # fixed, so --size in inches gives a predictable image size in pixels
SUFFIXES = (".png", ".pdf", ".svg")
_LEGEND_MAX = 20  # beyond this a legend hides the plot instead of explaining it
_STYLES = ("-", "--", ":", "-.")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*[xX]\s*(\d+(?:\.\d+)?)\s*$")
_StepsAndValues = tuple[tuple[float, ...], tuple[float, ...]]


@dataclass(frozen=True, slots=True)
class PlotSpec:
    """`--plot x=lr,y=val_acc,hue=norm`."""

    x: str
    y: str
    hue: str | None = None


@dataclass(frozen=True, slots=True)
class CurveSpec:
    """`--curves val_loss,train_loss[,hue=norm]`."""

    metrics: tuple[str, ...]
    hue: str | None = None


@dataclass(frozen=True, slots=True)
class Point:
    """The runs of a series that share an x: mean and sample std of their y."""

    x: Any
    mean: float
    std: float
    count: int


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    points: tuple[Point, ...]
    runs: int


@dataclass(frozen=True, slots=True)
class Curve:
    """One metric of one run over its metrics.jsonl lines or its TensorBoard tag's points."""

    run: str
    label: str
    metric: str
    hue: str | None
    steps: tuple[float, ...]
    values: tuple[float, ...]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _pairs(text: str, flag: str, example: str) -> list[tuple[str | None, str]]:
    """`a=b,c` -> [("a", "b"), (None, "c")], refusing empty items."""
    found: list[tuple[str | None, str]] = []
    for item in text.split(","):
        key, eq, value = (part.strip() for part in item.partition("="))
        if not key or (eq and not value):
            raise BadInput(f"{text!r}: empty name or value in {item.strip()!r}", key=flag,
                           hint=example)
        found.append((key, value) if eq else (None, key))
    return found


def parse_plot(text: str) -> PlotSpec:
    """`x=lr,y=val_acc[,hue=norm]`: x a parameter or metric, y a metric, hue a parameter."""
    example = "e.g. --plot x=lr,y=val_acc,hue=norm (keys: x, y, hue)"
    given: dict[str, str] = {}
    for key, value in _pairs(text, "--plot", example):
        if key not in ("x", "y", "hue"):
            raise BadInput(f"{text!r}: {key or value!r} is not x=, y= or hue=", key="--plot",
                           hint=example)
        if key in given:
            raise BadInput(f"{text!r}: {key}= given twice", key="--plot", hint=example)
        given[key] = value
    missing = [k for k in ("x", "y") if k not in given]
    if missing:
        raise BadInput(f"{text!r}: no {' or '.join(f'{k}=' for k in missing)}", key="--plot",
                       hint=example)
    return PlotSpec(given["x"], given["y"], given.get("hue"))


def parse_curves(text: str) -> CurveSpec:
    """`val_loss[,train_loss][,hue=norm]`: metrics logged to metrics.jsonl or TensorBoard tags,
    optionally coloured by a parameter."""
    example = "e.g. --curves val_loss,train_loss or --curves val_loss,hue=norm"
    metrics: list[str] = []
    hue: str | None = None
    for key, value in _pairs(text, "--curves", example):
        if key is None:
            metrics += [value] if value not in metrics else []
        elif key == "hue" and hue is None:
            hue = value
        else:
            raise BadInput(f"{text!r}: {key}= is not a metric (only hue= may be given, once)",
                           key="--curves", hint=example)
    if not metrics:
        raise BadInput(f"{text!r}: no metric", key="--curves", hint=example)
    return CurveSpec(tuple(metrics), hue)


def parse_size(text: str) -> tuple[float, float]:
    """`8x5`: width and height in inches."""
    match = _SIZE.match(text)
    width, height = (float(match.group(1)), float(match.group(2))) if match else (0.0, 0.0)
    if not (0 < width <= 100 and 0 < height <= 100):
        raise BadInput(f"{text!r} is not WIDTHxHEIGHT in inches", key="--size",
                       hint=f"e.g. --size 8x5 ({8 * DPI}x{5 * DPI} pixels at {DPI} dpi)")
    return width, height


def check_out(path: Path) -> Path:
    if path.suffix.lower() not in SUFFIXES:
        raise BadInput(f"{str(path)!r}: unknown image type", key="--out",
                       hint=f"end it with {', '.join(SUFFIXES)}")
    return path


def _lookup(params: Mapping[str, Any], metrics: Mapping[str, Any], name: str) -> Any:
    return params[name] if name in params else metrics.get(name)


def _known(rows: Sequence[Row], name: str, what: str, flag: str) -> None:
    """Fail with the names there are when no row has `name`."""
    if any(name in r.params or name in r.metrics for r in rows):
        return
    params = sorted({p for r in rows for p in r.params})
    metrics = sorted({m for r in rows for m in r.metrics})
    raise BadInput(f"no run has {what} {name!r}", key=flag,
                   hint=f"parameters: {', '.join(params) or 'none'}; metrics: {', '.join(metrics) or 'none'}")


def _setting(name: str, value: Any) -> str:
    return f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def series(rows: Sequence[Row], spec: PlotSpec) -> list[Series]:
    """One series per hue value (in order of first appearance), its points sorted by x when every x
    is a number; runs without a numeric y or without an x are left out."""
    _known(rows, spec.x, "a parameter or metric", "--plot x")
    _known(rows, spec.y, "a metric", "--plot y")
    if spec.hue is not None:
        _known(rows, spec.hue, "a parameter", "--plot hue")
    by_hue: dict[str, dict[str, list[float]]] = {}
    xs: dict[str, Any] = {}
    for row in rows:
        x = _lookup(row.params, row.metrics, spec.x)
        y = _number(row.metrics.get(spec.y))
        if x is None or y is None:
            continue
        label = _setting(spec.hue, _lookup(row.params, row.metrics, spec.hue)) if spec.hue else spec.y
        tag = json.dumps(x, sort_keys=True)
        xs[tag] = x
        by_hue.setdefault(label, {}).setdefault(tag, []).append(y)
    if not by_hue:
        raise BadInput(f"no run has both {spec.x} and a numeric {spec.y}", key="--plot",
                       hint="see `expdeploy results` for what each run reported")
    numeric = all(_number(x) is not None for x in xs.values())
    found = []
    for label, groups in by_hue.items():
        points = [Point(xs[tag], *mean_std(ys), len(ys)) for tag, ys in groups.items()]
        if numeric:
            points.sort(key=lambda p: float(p.x))
        found.append(Series(label, tuple(points), sum(p.count for p in points)))
    return found


def wants_log_x(values: Sequence[Any]) -> bool:
    """Positive numbers spanning two decades or more (learning rates, batch sizes)."""
    numbers = [_number(v) for v in values]
    if not numbers or any(n is None or n <= 0 for n in numbers):
        return False
    positive = [n for n in numbers if n is not None]
    return max(positive) / min(positive) >= 100


def read_curve(path: Path, metric: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(steps, values) of a metric in a metrics.jsonl; the line index stands in for a missing step."""
    steps: list[float] = []
    values: list[float] = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return (), ()
    for index, line in enumerate(lines):
        try:
            record = json.loads(line)
        except ValueError:
            continue  # the last line may be half-written while the run goes on
        value = _number(record.get(metric)) if isinstance(record, dict) else None
        if value is None:
            continue
        step = _number(record.get("step"))
        steps.append(float(index) if step is None else step)
        values.append(value)
    return tuple(steps), tuple(values)


def _tensorboard_on() -> bool:
    """Whether the TensorBoard reader is registered: `EXPDEPLOY_BLOCK_PLUGINS=tensorboard` keeps the
    curves off event files as it keeps the table off them."""
    from expdeploy.metric_parsers import available_parsers
    from expdeploy.tensorboard_scalars import TensorBoardScalars

    return any(isinstance(p, TensorBoardScalars) for p in available_parsers().values())


def _points(points: Sequence[tuple[int, float]]) -> _StepsAndValues:
    return tuple(float(step) for step, _ in points), tuple(value for _, value in points)


def _run_curves(run_dir: Path, metrics: Sequence[str], tensorboard: bool) -> dict[str, _StepsAndValues]:
    """(steps, values) of each metric the run logged: from metrics.jsonl when it has the metric,
    else from the TensorBoard tag of that name, else from its W&B history (each source read
    once, only when needed)."""
    from expdeploy.results import wandb_series
    from expdeploy.tensorboard_scalars import scalar_series

    found: dict[str, _StepsAndValues] = {}
    tags: dict[str, tuple[tuple[int, float], ...]] | None = None
    history: dict[str, tuple[tuple[int, float], ...]] | None = None
    for metric in metrics:
        steps, values = read_curve(run_dir / "metrics.jsonl", metric)
        if not values and tensorboard:
            tags = scalar_series(run_dir) if tags is None else tags
            steps, values = _points(tags.get(metric, ()))
        if not values:
            history = wandb_series(run_dir) if history is None else history
            steps, values = _points(history.get(metric, ()))
        if values:
            found[metric] = (steps, values)
    return found


def curves(exp_dir: Path, rows: Sequence[Row], spec: CurveSpec, shown: Sequence[str]) -> list[Curve]:
    """Each metric of each run that logged it, labelled by the run's parameters in `shown`."""
    if spec.hue is not None:
        _known(rows, spec.hue, "a parameter", "--curves hue")
    tensorboard = _tensorboard_on()
    found = []
    for row in rows:
        label = " ".join(_setting(p, row.params.get(p)) for p in shown) or row.name
        hue = _setting(spec.hue, _lookup(row.params, row.metrics, spec.hue)) if spec.hue else None
        logged = _run_curves(exp_dir / "runs" / row.name, spec.metrics, tensorboard)
        found += [Curve(row.name, label, metric, hue, *line) for metric, line in logged.items()]
    if not found:
        where = "metrics.jsonl or TensorBoard" if tensorboard else "metrics.jsonl"
        raise BadInput(f"no run logged {', '.join(spec.metrics)} to {where}", key="--curves",
                       hint="curves come from expdeploy.log(step=..., NAME=...) lines"
                            + (" or TensorBoard scalar tags" if tensorboard else ""))
    return found


def _pyplot() -> None:
    """Matplotlib on its file-only backend, or the one-line error saying how to get it."""
    try:
        import matplotlib
    except ImportError:
        raise BadInput("plots need matplotlib, which is not installed",
                       hint="pip install 'expdeploy[plot]'") from None
    matplotlib.use("Agg")  # no display on clusters; also skips picking a GUI toolkit


def _palette(count: int) -> list[Any]:
    """The default colour cycle while it lasts; past ten, evenly spaced colours of one map, so that no
    two runs share a colour."""
    if count <= 10:
        return [f"C{i}" for i in range(count)]
    from matplotlib import colormaps

    spread = colormaps["turbo"]
    return [spread(i / (count - 1)) for i in range(count)]


def save_series(found: Sequence[Series], spec: PlotSpec, out: Path, size: tuple[float, float]) -> None:
    _pyplot()
    import matplotlib.pyplot as plt

    numeric = all(_number(p.x) is not None for s in found for p in s.points)
    fig, ax = plt.subplots(figsize=size, dpi=DPI)
    try:
        for colour, line in zip(_palette(len(found)), found, strict=True):
            xs = [p.x if numeric else str(p.x) for p in line.points]
            spread = [p.std for p in line.points] if any(p.count > 1 for p in line.points) else None
            ax.errorbar(xs, [p.mean for p in line.points], yerr=spread,
                        color=colour, marker="o", capsize=3, linestyle="-" if numeric else "none",
                        label=line.label)
        if numeric and wants_log_x([p.x for s in found for p in s.points]):
            ax.set_xscale("log")
        ax.set_xlabel(spec.x)
        ax.set_ylabel(spec.y)
        if spec.hue and len(found) <= _LEGEND_MAX:
            ax.legend(title=spec.hue)
        ax.grid(True, alpha=0.3)
        _save(fig, out)
    finally:
        plt.close(fig)


def save_curves(found: Sequence[Curve], spec: CurveSpec, out: Path, size: tuple[float, float]) -> None:
    """A colour per run (or per hue value), a line style per metric."""
    _pyplot()
    import matplotlib.pyplot as plt

    keys = list(dict.fromkeys(c.hue if c.hue is not None else c.run for c in found))
    colours = dict(zip(keys, _palette(len(keys)), strict=True))
    labelled: set[str] = set()
    fig, ax = plt.subplots(figsize=size, dpi=DPI)
    try:
        for curve in found:
            colour = colours[curve.hue if curve.hue is not None else curve.run]
            label = curve.hue if curve.hue is not None else curve.label
            if len(spec.metrics) > 1:
                label = f"{label} {curve.metric}"
            ax.plot(curve.steps, curve.values, color=colour,
                    linestyle=_STYLES[spec.metrics.index(curve.metric) % len(_STYLES)],
                    label=None if label in labelled else label)
            labelled.add(label)
        ax.set_xlabel("step")
        ax.set_ylabel(", ".join(spec.metrics))
        if len(labelled) <= _LEGEND_MAX:
            ax.legend(title=spec.hue, fontsize="small")
        ax.grid(True, alpha=0.3)
        _save(fig, out)
    finally:
        plt.close(fig)


def _save(fig: Figure, out: Path) -> None:
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        # not bbox_inches="tight": it would crop the image away from the size asked for
        fig.savefig(out, dpi=DPI, format=out.suffix.lower().lstrip("."))
    except OSError as error:
        raise BadInput(f"{str(out)!r}: {error.strerror or error}", key="--out") from None
