"""`expdeploy results`: the table of an experiment's runs with their varying parameters, state,
duration and metrics, filtered, sorted and grouped, as a table, CSV, JSON or Markdown, or a plot."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from expdeploy.cli.common import OutputOpt
from expdeploy.errors import BadInput

if TYPE_CHECKING:
    from expdeploy.plots import CurveSpec, PlotSpec
    from expdeploy.results import Group, Row


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    markdown = "markdown"


ExpArg = Annotated[Path | None, typer.Argument(help="Experiment directory (default: the most recent "
                                                    "under --output).", show_default=False,
                                               metavar="EXP_DIR")]
MetricOpt = Annotated[str | None, typer.Option("--metric", help="Sort by this metric.", show_default=False)]
GoalOpt = Annotated[str | None, typer.Option(
    "--goal", help="min or max: which way --metric is better (default: a W&B sweep file's metric.goal, "
    "else min).", show_default=False)]
TagOpt = Annotated[list[str] | None, typer.Option("--tag", help="Only runs with this tag (repeatable).")]
WhereOpt = Annotated[list[str] | None, typer.Option(
    "--where", help="Only runs where NAME OP VALUE holds, e.g. 'lr<0.1' (repeatable).")]
GroupOpt = Annotated[str | None, typer.Option(
    "--group-by", help="Mean ± std over these parameters, e.g. seed (comma-separated).", show_default=False)]
FormatOpt = Annotated[Format, typer.Option("--format", help="table, csv, json or markdown.")]
PlotOpt = Annotated[str | None, typer.Option(
    "--plot", help="Draw y against x instead of the table, a series per hue, mean ± std over runs sharing "
                   "an x: x=PARAM_OR_METRIC,y=METRIC[,hue=PARAM].", show_default=False)]
CurvesOpt = Annotated[str | None, typer.Option(
    "--curves", help="Draw each run's learning curves (metrics.jsonl, else TensorBoard scalars) instead "
                     "of the table: METRIC[,METRIC...][,hue=PARAM].", show_default=False)]
OutOpt = Annotated[Path | None, typer.Option(
    "--out", help="Image for --plot/--curves, .png, .pdf or .svg (default: plot.png or curves.png).",
    show_default=False)]
SizeOpt = Annotated[str, typer.Option("--size", help="Image size in inches, WIDTHxHEIGHT, at 100 dpi.")]


def results_command(exp: ExpArg = None, output: OutputOpt = Path("experiments"), metric: MetricOpt = None,
                    goal: GoalOpt = None, tag: TagOpt = None, where: WhereOpt = None,
                    group_by: GroupOpt = None, fmt: FormatOpt = Format.table, plot: PlotOpt = None,
                    curves: CurvesOpt = None, out: OutOpt = None, size: SizeOpt = "8x5") -> None:
    """The runs of an experiment and what they measured: parameters that vary, state, duration, and
    each metric's final value (from metrics.jsonl, summary.json or W&B's summary). Works while the
    experiment runs.

    \b
    Examples:
      expdeploy results --metric val_acc --goal max
      expdeploy results --where 'lr<0.1' --tag ablation --format csv > runs.csv
      expdeploy results --group-by seed --format markdown
      expdeploy results --plot x=lr,y=val_acc,hue=norm --out lr.png
      expdeploy results --curves val_loss,train_loss --where seed=0 --size 10x6
    """
    from expdeploy.expdir import find_experiment
    from expdeploy.results import aggregate, collect, parse_where, sort_rows, varying

    if goal not in ("min", "max", None):
        raise BadInput(f"--goal {goal!r}", key="--goal", hint="min or max")
    drawing = _check_plot_options(plot, curves, out, size, group_by)
    exp_dir = find_experiment(output, exp)
    metric, goal = _fetch_and_default(exp_dir, metric, goal)
    rows = collect(exp_dir, goal)
    shown_params = varying(rows)
    for text in where or ():
        keep = parse_where(text)
        rows = [r for r in rows if keep(r)]
    if tag:
        rows = [r for r in rows if set(tag) & set(r.tags)]
    rows = sort_rows(rows, metric, goal)
    if drawing is not None:
        _draw(drawing, exp_dir, rows)
        return
    if group_by:
        over = [p.strip() for p in group_by.split(",") if p.strip()]
        unknown = [p for p in over if p not in shown_params]
        if unknown:
            raise BadInput(f"--group-by {', '.join(unknown)}: not a parameter that varies", key="--group-by",
                           hint=f"varying: {', '.join(shown_params) or 'none'}")
        _emit_groups(aggregate(rows, over), [p for p in shown_params if p not in over], fmt)
        return
    _emit_rows(rows, shown_params, fmt)


@dataclass(frozen=True, slots=True)
class _Drawing:
    spec: PlotSpec | CurveSpec
    out: Path
    size: tuple[float, float]


def _check_plot_options(plot: str | None, curves: str | None, out: Path | None, size: str,
                        group_by: str | None) -> _Drawing | None:
    """What to draw, checked before any run is read; None for a table."""
    if plot is None and curves is None:
        if out is not None:
            raise BadInput("only --plot and --curves write an image", key="--out",
                           hint="add --plot x=PARAM,y=METRIC or --curves METRIC")
        return None
    from expdeploy import plots

    if plot is not None and curves is not None:
        raise BadInput("not with --curves: one image at a time", key="--plot",
                       hint="run expdeploy results twice, with a different --out")
    if group_by:
        raise BadInput("only for tables, not with --plot or --curves", key="--group-by",
                       hint="--plot already shows mean ± std over the runs that share an x")
    spec: PlotSpec | CurveSpec
    if plot is not None:
        spec, default = plots.parse_plot(plot), "plot.png"
    else:
        spec, default = plots.parse_curves(curves or ""), "curves.png"
    return _Drawing(spec, plots.check_out(out or Path(default)), plots.parse_size(size))


def _draw(drawing: _Drawing, exp_dir: Path, rows: list[Row]) -> None:
    from expdeploy import plots
    from expdeploy.results import varying

    if not rows:
        raise BadInput("no run to draw", hint="--where and --tag left none; see `expdeploy results`")
    if isinstance(drawing.spec, plots.PlotSpec):
        found = plots.series(rows, drawing.spec)
        plots.save_series(found, drawing.spec, drawing.out, drawing.size)
        runs = sum(s.runs for s in found)
        what = f"{drawing.spec.y} against {drawing.spec.x}, {runs} runs in {len(found)} series"
    else:
        lines = plots.curves(exp_dir, rows, drawing.spec, varying(rows))  # labels: what differs among these
        plots.save_curves(lines, drawing.spec, drawing.out, drawing.size)
        runs = len({c.run for c in lines})
        what = f"{', '.join(drawing.spec.metrics)} of {runs} runs, {len(lines)} curves"
    typer.echo(f"wrote {drawing.out}: {what}")


def _fetch_and_default(exp_dir: Path, metric: str | None, goal: str | None) -> tuple[str | None, str]:
    """Bring a remote experiment's metric files here; the sweep's `metric:` when none is asked."""
    import sys

    from expdeploy.results_fetch import fetch_for

    meta, notes = fetch_for(exp_dir)
    for note in notes:
        sys.stderr.write(note + "\n")
    recorded = meta.get("metric") or {}
    if metric is None and recorded.get("name"):
        metric = str(recorded["name"])
        goal = goal or ("max" if recorded.get("goal") == "maximize" else "min")
    return metric, goal or "min"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def _emit_rows(rows: list[Row], params: list[str], fmt: Format) -> None:
    from expdeploy.results import metric_names

    metrics = metric_names(rows)
    if fmt is Format.json:
        typer.echo(json.dumps([{"run": r.name, "params": dict(r.params), "state": r.state,
                                "duration": r.duration, "metrics": dict(r.metrics), "best": dict(r.best),
                                "tags": list(r.tags), "code": dict(r.code)} for r in rows], indent=1))
        return
    header = ["run", *params, "state", "duration_s", *metrics]  # seconds, as JSON's `duration`
    body = [[r.name, *(r.params.get(p) for p in params), r.state,
             None if r.duration is None else round(r.duration, 3), *(r.metrics.get(m) for m in metrics)]
            for r in rows]
    _write(header, body, fmt)


def _emit_groups(groups: list[Group], params: list[str], fmt: Format) -> None:
    metrics: list[str] = []
    for group in groups:
        metrics += [m for m in group.mean if m not in metrics]
    if fmt is Format.json:
        typer.echo(json.dumps([{"params": dict(g.params), "count": g.count, "mean": dict(g.mean),
                                "std": dict(g.std)} for g in groups], indent=1))
        return
    if fmt is Format.csv:
        header = [*params, "count", *(f"{m}_{s}" for m in metrics for s in ("mean", "std"))]
        body = [[*(g.params.get(p) for p in params), g.count,
                 *(v for m in metrics for v in (g.mean.get(m), g.std.get(m)))] for g in groups]
    else:
        header = [*params, "count", *metrics]
        body = [[*(g.params.get(p) for p in params), g.count,
                 *(f"{g.mean[m]:.4g} ± {g.std[m]:.2g}" if m in g.mean else "" for m in metrics)]
                for g in groups]
    _write(header, body, fmt)


def _write(header: list[str], body: list[list[Any]], fmt: Format) -> None:
    if fmt is Format.csv:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        writer.writerows([[_cell(v) for v in row] for row in body])
        typer.echo(out.getvalue(), nl=False)
        return
    cells = [header, *[[_cell(v) for v in row] for row in body]]
    if fmt is Format.markdown:
        typer.echo("| " + " | ".join(header) + " |")
        typer.echo("|" + "---|" * len(header))
        for row in cells[1:]:
            typer.echo("| " + " | ".join(row) + " |")
        return
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for row in cells:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def register(app: typer.Typer) -> None:
    app.command("results")(results_command)
