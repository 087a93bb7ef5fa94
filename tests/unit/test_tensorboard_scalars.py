"""TensorBoard event files written with tensorboard's own writer and read back: the last point by
step then wall time, the best per goal, TF2 tensor summaries, folders as TensorBoard runs, the
(step, value) series for curves, and a missing tensorboard reported once instead of failing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.compat.proto.tensor_pb2 import TensorProto
from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
from tensorboard.compat.proto.types_pb2 import DT_FLOAT, DT_STRING
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from expdeploy import metric_parsers
from expdeploy.results import run_metrics
from expdeploy.tensorboard_scalars import TensorBoardScalars, read_scalars, scalar_series

TBPoint = tuple[int, float, str, float]  # step, wall time, tag, value


def write_simple(folder: Path, points: list[TBPoint]) -> None:
    """Classic scalars (`simple_value`), as PyTorch's SummaryWriter writes them."""
    writer = EventFileWriter(str(folder))
    for step, wall, tag, value in points:
        writer.add_event(Event(step=step, wall_time=wall,
                               summary=Summary(value=[Summary.Value(tag=tag, simple_value=value)])))
    writer.close()


def write_tensors(folder: Path, points: list[TBPoint]) -> None:
    """TF2 scalars: a rank-0 tensor, the `scalars` plugin named on a tag's first value only."""
    writer = EventFileWriter(str(folder))
    described: set[str] = set()
    for step, wall, tag, value in points:
        entry = Summary.Value(tag=tag, tensor=TensorProto(dtype=DT_FLOAT, float_val=[value]))
        if tag not in described:
            entry.metadata.CopyFrom(SummaryMetadata(
                plugin_data=SummaryMetadata.PluginData(plugin_name="scalars")))
            described.add(tag)
        writer.add_event(Event(step=step, wall_time=wall, summary=Summary(value=[entry])))
    text = Summary.Value(tag="notes", tensor=TensorProto(
        dtype=DT_STRING, string_val=[b"not a scalar"], tensor_shape=TensorShapeProto()))
    text.metadata.plugin_data.plugin_name = "text"
    writer.add_event(Event(step=0, wall_time=1.0, summary=Summary(value=[text])))
    writer.close()


def test_last_is_by_step_then_wall_time_and_best_follows_the_goal(tmp_path: Path) -> None:
    # written out of order: a resumed job logs step 1 again, later, with the value that counts
    write_simple(tmp_path / "tb", [(0, 10.0, "val/acc", 0.5), (2, 12.0, "val/acc", 0.6),
                                   (1, 11.0, "val/acc", 0.9), (2, 13.0, "val/acc", 0.7),
                                   (0, 10.0, "loss", 2.0), (1, 11.0, "loss", 1.0)])
    points = read_scalars(tmp_path)
    assert [(p.step, p.wall_time) for p in points["val/acc"]] == [(0, 10), (1, 11), (2, 12), (2, 13)]
    final, best = run_metrics(tmp_path, "max", parsers=[TensorBoardScalars()])
    assert final == {"val/acc": pytest.approx(0.7), "loss": 1.0}
    assert best == {"val/acc": pytest.approx(0.9), "loss": 2.0}
    assert run_metrics(tmp_path, "min", parsers=[TensorBoardScalars()])[1]["val/acc"] == 0.5


def test_tf2_tensor_summaries_are_scalars_and_other_plugins_are_not(tmp_path: Path) -> None:
    write_tensors(tmp_path / "logs", [(0, 1.0, "epoch_loss", 3.0), (1, 2.0, "epoch_loss", 2.5),
                                      (2, 3.0, "epoch_loss", 2.75)])
    assert TensorBoardScalars().parse(tmp_path) == {"epoch_loss": [3.0, 2.5, 2.75]}


def test_a_tag_in_several_folders_is_named_by_folder(tmp_path: Path) -> None:
    write_tensors(tmp_path / "logs" / "train", [(0, 1.0, "epoch_loss", 1.0), (0, 1.0, "lr", 0.1)])
    write_tensors(tmp_path / "logs" / "validation", [(0, 1.0, "epoch_loss", 1.5)])
    assert TensorBoardScalars().parse(tmp_path) == {
        "train/epoch_loss": [1.0], "lr": [pytest.approx(0.1)], "validation/epoch_loss": [1.5]}


def test_series_are_step_value_pairs_named_as_the_parser_names_them(tmp_path: Path) -> None:
    # a resumed job writes steps 1 and 2 again, later: the curve follows the resumed values
    write_simple(tmp_path / "tb", [(0, 10.0, "val/acc", 0.5), (1, 11.0, "val/acc", 0.625),
                                   (2, 12.0, "val/acc", 0.75), (1, 13.0, "val/acc", 0.25),
                                   (2, 14.0, "val/acc", 0.375), (3, 15.0, "val/acc", 0.875)])
    write_tensors(tmp_path / "logs" / "train", [(0, 1.0, "epoch_loss", 2.0), (5, 2.0, "epoch_loss", 1.5)])
    write_tensors(tmp_path / "logs" / "validation", [(0, 1.0, "epoch_loss", 2.5)])
    series = scalar_series(tmp_path)
    assert series == {"val/acc": ((0, 0.5), (1, 0.25), (2, 0.375), (3, 0.875)),
                      "train/epoch_loss": ((0, 2.0), (5, 1.5)), "validation/epoch_loss": ((0, 2.5),)}
    assert set(series) == set(TensorBoardScalars().parse(tmp_path))
    assert scalar_series(tmp_path / "logs" / "nothing here") == {}


def test_without_tensorboard_event_files_are_skipped_with_one_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for run in ("a", "b"):
        write_simple(tmp_path / run, [(0, 1.0, "acc", 0.5)])
        (tmp_path / run / "summary.json").write_text('{"bleu": 27.3}')
    monkeypatch.setitem(sys.modules, "tensorboard.backend.event_processing.event_file_loader", None)
    monkeypatch.setattr(metric_parsers, "_warned", set())
    for run in ("a", "b"):
        assert run_metrics(tmp_path / run, parsers=[TensorBoardScalars()]) == ({"bleu": 27.3}, {})
        assert scalar_series(tmp_path / run) == {}, "the curves skip them too, under the same warning"
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 1 and "pip install 'expdeploy[tensorboard]'" in warnings[0]


def test_a_run_without_event_files_reads_nothing(tmp_path: Path) -> None:
    (tmp_path / "main.log").write_text("epoch 1\n")
    assert TensorBoardScalars().parse(tmp_path) == {}
