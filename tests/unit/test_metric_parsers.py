"""Metric parsers: RegexParser over step logs (series, files in the order written, groups, text),
how parsed values merge under what a run wrote itself, a failing parser reported once, and an
in-process plugin's parser registered ahead of the built-in ones."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from expdeploy import metric_parsers
from expdeploy.metric_parsers import MetricValue, RegexParser, available_parsers
from expdeploy.plugins import get_plugin_manager, hookimpl
from expdeploy.results import run_metrics

BLEU = RegexParser("bleu", r"test BLEU = (?P<bleu>[0-9.]+)")


def test_every_match_is_a_point_and_the_last_written_file_comes_last(tmp_path: Path) -> None:
    (tmp_path / "eval.log").write_text("test BLEU = 27.3\nnoise\ntest BLEU = 28.0\n")
    (tmp_path / "train.log").write_text("epoch 1\ntest BLEU = 12.5\n")
    (tmp_path / "notes.txt").write_text("test BLEU = 99\n")  # not a step log
    os.utime(tmp_path / "train.log", (100, 100))  # train ran before eval
    os.utime(tmp_path / "eval.log", (200, 200))
    assert BLEU.parse(tmp_path) == {"bleu": [12.5, 27.3, 28.0]}
    final, best = run_metrics(tmp_path, "min", parsers=[BLEU])
    assert final == {"bleu": 28.0} and best == {"bleu": 12.5}


def test_several_groups_an_unnamed_group_and_text(tmp_path: Path) -> None:
    (tmp_path / "main.log").write_text("epoch 1 loss 0.5 acc 0.7\nepoch 2 loss 0.25 acc 0.8\n"
                                       "status: diverged\nwer 0.31\n")
    pairs = RegexParser("pairs", r"^epoch \d+ loss (?P<loss>\S+) acc (?P<acc>\S+)$")
    assert pairs.parse(tmp_path) == {"loss": [0.5, 0.25], "acc": [0.7, 0.8]}
    assert RegexParser("wer", r"wer (\S+)").parse(tmp_path) == {"wer": [0.31]}
    assert RegexParser("status", r"status: (?P<status>\w+)").parse(tmp_path) == {"status": "diverged"}
    assert RegexParser("none", r"BLEU (\d+)").parse(tmp_path) == {}


def test_files_written_for_metrics_win_over_parsed_values(tmp_path: Path) -> None:
    (tmp_path / "main.log").write_text("test BLEU = 20\ntest BLEU = 25\n")
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 0, "bleu": 30.0}) + "\n")
    final, best = run_metrics(tmp_path, "max", parsers=[BLEU])
    assert final == {"bleu": 30.0} and best == {"bleu": 30.0}
    (tmp_path / "summary.json").write_text('{"bleu": 31.0}')
    assert run_metrics(tmp_path, "max", parsers=[BLEU])[0] == {"bleu": 31.0}


class _Fixed:
    def __init__(self, name: str, values: Mapping[str, MetricValue]) -> None:
        self.name = name
        self.values = values

    def parse(self, run_dir: Path) -> Mapping[str, MetricValue]:
        return self.values


class _Broken:
    name = "broken"

    def parse(self, run_dir: Path) -> Mapping[str, MetricValue]:
        raise RuntimeError("no such format")


def test_the_first_parser_wins_and_a_failing_one_warns_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(metric_parsers, "_warned", set())
    parsers = [_Broken(), _Fixed("mine", {"acc": 0.9, "note": "ok"}), _Fixed("other", {"acc": [0.1, 0.2]})]
    for _ in range(3):
        assert run_metrics(tmp_path, "max", parsers=parsers) == ({"acc": 0.9, "note": "ok"}, {})
    warnings = capsys.readouterr().err.splitlines()
    assert warnings == [f"warning: metric parser 'broken' failed on {tmp_path}: RuntimeError: no such format"]


class _BleuPlugin:
    @hookimpl
    def expdeploy_register_metric_parsers(self, register: Any) -> None:
        register(BLEU)
        register(_Fixed("tensorboard", {"from": "the plugin"}))


@pytest.fixture
def bleu_plugin() -> Iterator[None]:
    manager = get_plugin_manager()
    plugin = _BleuPlugin()
    manager.register(plugin, name="test-bleu")
    available_parsers.cache_clear()
    try:
        yield
    finally:
        manager.unregister(plugin)
        available_parsers.cache_clear()


def test_builtin_tensorboard_parser_is_registered() -> None:
    assert type(available_parsers()["tensorboard"]).__name__ == "TensorBoardScalars"


def test_a_plugin_parser_is_used_and_replaces_a_builtin_of_its_name(tmp_path: Path,
                                                                    bleu_plugin: None) -> None:
    names = list(available_parsers())
    assert names.index("bleu") < names.index("tensorboard"), "plugins register before built-ins"
    assert isinstance(available_parsers()["tensorboard"], _Fixed)
    (tmp_path / "main.log").write_text("test BLEU = 27.3\n")
    assert run_metrics(tmp_path)[0] == {"bleu": 27.3, "from": "the plugin"}
