"""The plot specs, the points a plot draws (mean ± std over runs sharing an x) on known numbers, the
log-axis rule, reading curves from a metrics.jsonl or else TensorBoard, and that the CLI starts
without matplotlib or tensorboard."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from expdeploy.errors import BadInput
from expdeploy.plots import (
    CurveSpec,
    PlotSpec,
    Point,
    curves,
    mean_std,
    parse_curves,
    parse_plot,
    parse_size,
    read_curve,
    series,
    wants_log_x,
)
from expdeploy.results import Row


def row(name: str, metrics: dict[str, Any], **params: Any) -> Row:
    return Row(name, params, "succeeded", 1.0, metrics)


def test_plot_spec_keys_and_hints() -> None:
    assert parse_plot("x=lr,y=val_acc") == PlotSpec("lr", "val_acc")
    assert parse_plot(" x = lr , y=acc, hue=norm ") == PlotSpec("lr", "acc", "norm")
    for text, message in (("y=acc", "no x="), ("x=lr", "no y="), ("", "empty name"), ("hue=n", "no x= or y="),
                          ("x=lr,y=acc,z=1", "'z' is not"), ("x=lr,y=acc,norm", "'norm' is not"),
                          ("x=lr,x=wd,y=acc", "x= given twice"), ("x=,y=acc", "empty name or value")):
        with pytest.raises(BadInput, match=message) as raised:
            parse_plot(text)
        assert raised.value.key == "--plot" and raised.value.hint and "x=lr" in raised.value.hint


def test_curve_spec_and_size() -> None:
    assert parse_curves("val_loss,train_loss") == CurveSpec(("val_loss", "train_loss"))
    assert parse_curves("loss,hue=norm,loss") == CurveSpec(("loss",), "norm")
    for text in ("hue=norm", "loss,x=step", "loss,hue=a,hue=b", "loss,,acc"):
        with pytest.raises(BadInput):
            parse_curves(text)
    assert parse_size("8x5") == (8.0, 5.0) and parse_size("6.5X4") == (6.5, 4.0)
    for text in ("8", "8x", "0x5", "x5", "8x5x2", "-1x4", "1000x4"):
        with pytest.raises(BadInput, match="WIDTHxHEIGHT"):
            parse_size(text)


def test_points_are_mean_and_sample_std_of_runs_sharing_an_x() -> None:
    rows = [row("a", {"acc": 0.5}, lr=0.1, seed=0, norm="batch"),
            row("b", {"acc": 0.7}, lr=0.1, seed=1, norm="batch"),
            row("c", {"acc": 0.9}, lr=0.01, seed=0, norm="batch"),
            row("d", {"acc": 0.2}, lr=0.1, seed=0, norm="layer"),
            row("e", {"loss": 3.0}, lr=1.0, seed=0, norm="layer"),  # no acc: left out
            row("f", {"acc": 0.4}, lr=0.001, seed=0, norm="layer")]
    batch, layer = series(rows, PlotSpec("lr", "acc", "norm"))
    assert batch.label == "norm=batch" and batch.runs == 3
    assert [p.x for p in batch.points] == [0.01, 0.1], "sorted by x"
    assert batch.points[0] == Point(0.01, 0.9, 0.0, 1)
    assert batch.points[1].mean == pytest.approx(0.6) and batch.points[1].count == 2
    assert batch.points[1].std == pytest.approx(0.1414214, rel=1e-6)  # sample std of 0.5, 0.7
    assert layer.label == "norm=layer" and [p.x for p in layer.points] == [0.001, 0.1]
    (only,) = series(rows, PlotSpec("norm", "acc"))
    assert only.label == "acc" and [p.x for p in only.points] == ["batch", "layer"], "words keep their order"
    assert only.points[0].mean == pytest.approx(0.7) and only.points[0].std == pytest.approx(0.2)
    assert mean_std([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]) == pytest.approx((5.0, 2.1380899))


def test_unknown_names_list_what_there_is() -> None:
    rows = [row("a", {"acc": 0.5}, lr=0.1)]
    with pytest.raises(BadInput, match="no run has a metric 'val_acc'") as raised:
        series(rows, PlotSpec("lr", "val_acc"))
    assert raised.value.hint == "parameters: lr; metrics: acc"
    with pytest.raises(BadInput, match="numeric acc"):
        series([row("a", {"acc": "n/a"}, lr=0.1)], PlotSpec("lr", "acc"))


def test_log_x_when_positive_numbers_span_two_decades() -> None:
    assert wants_log_x([1e-4, 1e-3, 1e-1])
    assert wants_log_x([1, 100])
    assert not wants_log_x([1, 99])
    assert not wants_log_x([0, 1e-3, 1e-1]) and not wants_log_x([-1, 100])
    assert not wants_log_x(["a", "b"]) and not wants_log_x([])


def test_curve_steps_fall_back_to_line_index_and_skip_partial_lines(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 10, "loss": 1.0}\n{"acc": 0.3}\n{"loss": 0.5}\n[1]\n'
                    '{"step": 30, "loss": true}\n{"step": 40, "loss": 0.2}\n{"step": 50, "lo')
    assert read_curve(path, "loss") == ((10.0, 2.0, 40.0), (1.0, 0.5, 0.2))
    assert read_curve(path, "acc") == ((1.0,), (0.3,))
    assert read_curve(tmp_path / "absent.jsonl", "loss") == ((), ())


def test_curves_are_labelled_by_the_parameters_shown(tmp_path: Path) -> None:
    for name, losses in (("a", [3, 2]), ("b", [5]), ("c", [])):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "metrics.jsonl").write_text(
            "".join(f'{{"step": {i}, "loss": {v}}}\n' for i, v in enumerate(losses)))
    rows = [row("a", {}, lr=0.1, seed=0, norm="batch"), row("b", {}, lr=1e-4, seed=1, norm="layer"),
            row("c", {}, lr=0.1, seed=2, norm="batch")]
    found = curves(tmp_path, rows, CurveSpec(("loss", "acc"), "norm"), ["lr", "seed"])
    assert [(c.run, c.label, c.hue, c.values) for c in found] == [
        ("a", "lr=0.1 seed=0", "norm=batch", (3.0, 2.0)), ("b", "lr=0.0001 seed=1", "norm=layer", (5.0,))]
    assert curves(tmp_path, rows[:1], CurveSpec(("loss",)), [])[0].label == "a", "nothing varies: the name"
    with pytest.raises(BadInput, match="no run logged acc"):
        curves(tmp_path, rows, CurveSpec(("acc",)), [])


def test_curves_fall_back_to_tensorboard_and_metrics_jsonl_wins(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    for name, jsonl in (("a", '{"step": 0, "loss": 9.0}\n'), ("b", "")):
        writer = EventFileWriter(str(tmp_path / "runs" / name / "tb"))
        for step, (acc, loss) in enumerate([(0.5, 2.0), (0.75, 1.0)]):
            values = [Summary.Value(tag="val/acc", simple_value=acc),
                      Summary.Value(tag="loss", simple_value=loss)]
            writer.add_event(Event(step=step * 10, wall_time=1.0 + step, summary=Summary(value=values)))
        writer.close()
        (tmp_path / "runs" / name / "metrics.jsonl").write_text(jsonl)
    rows = [row("a", {}, lr=0.1), row("b", {}, lr=0.2)]
    found = curves(tmp_path, rows, CurveSpec(("val/acc", "loss")), ["lr"])
    assert [(c.run, c.metric, c.steps, c.values) for c in found] == [
        ("a", "val/acc", (0.0, 10.0), (0.5, 0.75)), ("a", "loss", (0.0,), (9.0,)),
        ("b", "val/acc", (0.0, 10.0), (0.5, 0.75)), ("b", "loss", (0.0, 10.0), (2.0, 1.0))]
    with pytest.raises(BadInput, match=r"no run logged acc to metrics\.jsonl or TensorBoard"):
        curves(tmp_path, rows, CurveSpec(("acc",)), [])


def test_cli_starts_without_importing_matplotlib_or_tensorboard() -> None:
    check = ("import sys, expdeploy.cli, expdeploy.plots, expdeploy.tensorboard_scalars; "
             "print(sorted({'matplotlib', 'tensorboard'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr
