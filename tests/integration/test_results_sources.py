"""Metric sources beyond expdeploy's own files, over a real experiment: runs write TensorBoard event
files and print `test BLEU = ...` to their logs, a third-party metric-parser plugin (installed as a
distribution with an entry point) reads the BLEU lines, and `expdeploy results` shows both; the
notebook API loads the same runs and turns them into a DataFrame with numeric columns."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Project

import expdeploy
from expdeploy.errors import BadInput
from expdeploy.results import Row

pytestmark = pytest.mark.integration

TRAIN = """
import os, sys, time
import expdeploy
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.event_file_writer import EventFileWriter

lr, depth = float(sys.argv[1]), int(sys.argv[2])
writer = EventFileWriter(os.path.join(os.environ["EXPDEPLOY_RUN_DIR"], "tb", "version_0"))
for step, (acc, loss) in enumerate([(0.5, 1.0), (0.875, 0.75), (0.625 + depth / 16, 0.5)]):
    values = [Summary.Value(tag="val/acc", simple_value=acc), Summary.Value(tag="loss", simple_value=loss)]
    writer.add_event(Event(step=step, wall_time=time.time(), summary=Summary(value=values)))
writer.close()
print("test BLEU = 30.0")
print(f"test BLEU = {20 + depth + lr}", flush=True)
expdeploy.log(step=2, loss=0.25)  # written for metrics: wins over the TensorBoard tag of that name
"""

PLUGIN = '''
"""A third-party metric parser: five lines."""
from expdeploy.metric_parsers import RegexParser
from expdeploy.plugins import hookimpl


@hookimpl
def expdeploy_register_metric_parsers(register):
    register(RegexParser("bleu", r"test BLEU = (?P<bleu>[0-9.]+)"))
'''


def install_plugin(site: Path) -> None:
    """What pip leaves in site-packages for a package declaring `bleu = "bleu_metrics"` in its
    `[project.entry-points.expdeploy]`."""
    (site / "bleu_metrics.py").write_text(textwrap.dedent(PLUGIN).lstrip())
    info = site / "bleu_metrics-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bleu-metrics\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[expdeploy]\nbleu = bleu_metrics\n")


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    project = Project(tmp_path_factory.mktemp("sources"))
    site = project.root / "site"
    site.mkdir()
    install_plugin(site)
    project.env["PYTHONPATH"] = str(site)
    project.write("train.py", TRAIN)
    project.write("grid.yml", """
        name: src
        command: python train.py {lr} {depth}
        grid:
          lr: [0.1, 0.2]
          depth: [2, 4]
    """)
    project.use_this_python()
    done = project.run("run", "grid.yml", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    yield project
    project.stop_all()


def test_the_plugin_is_listed_with_its_hook(measured: Project) -> None:
    done = measured.run("plugins", "--format", "json")
    assert done.returncode == 0, done.stderr
    bleu = next(p for p in json.loads(done.stdout)["plugins"] if p["name"] == "bleu")
    assert (bleu["distribution"], bleu["builtin"]) == ("bleu-metrics", False)
    assert bleu["hooks"] == ["expdeploy_register_metric_parsers"]


def test_results_show_tensorboard_scalars_and_parsed_bleu(measured: Project) -> None:
    done = measured.run("results", str(measured.exp("src")), "--format", "json", "--goal", "max")
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr
    runs = {r["run"]: r for r in json.loads(done.stdout)}
    assert len(runs) == 4
    run = runs["lr=0.2,depth=4"]
    assert run["metrics"] == {"val/acc": 0.875, "loss": 0.25, "bleu": pytest.approx(24.2)}
    assert run["best"] == {"val/acc": 0.875, "loss": 0.25, "bleu": 30.0}
    assert runs["lr=0.1,depth=2"]["metrics"]["val/acc"] == 0.75, "the last step, not the best"
    table = measured.run("results", str(measured.exp("src")), "--metric", "bleu", "--goal", "max").stdout
    header, first = table.splitlines()[:2]
    assert {"val/acc", "bleu", "loss"} <= set(header.split())
    assert first.startswith("lr=0.2,depth=4")


def test_without_the_plugin_bleu_is_absent_and_tensorboard_stays(measured: Project) -> None:
    done = measured.run("results", str(measured.exp("src")), "--format", "json")
    measured.env.pop("PYTHONPATH")
    try:
        bare = measured.run("results", str(measured.exp("src")), "--format", "json")
    finally:
        measured.env["PYTHONPATH"] = str(measured.root / "site")
    assert bare.returncode == 0, bare.stderr
    with_plugin, without = json.loads(done.stdout)[0]["metrics"], json.loads(bare.stdout)[0]["metrics"]
    assert "bleu" in with_plugin and "bleu" not in without
    assert without["val/acc"] == with_plugin["val/acc"]


NOTEBOOK = """
import json, sys
import expdeploy
frame = expdeploy.load(sys.argv[1], goal="max").to_pandas()
print(json.dumps({"columns": list(frame.columns), "dtypes": {c: str(t) for c, t in frame.dtypes.items()},
                  "rows": frame.drop(columns="tags").to_dict("records")}))
"""


def test_notebook_load_to_pandas_has_params_and_metrics_as_numeric_columns(measured: Project) -> None:
    # a fresh interpreter, as a notebook's kernel is, with the plugin installed
    done = subprocess.run([sys.executable, "-c", NOTEBOOK, str(measured.exp("src"))], env=measured.env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["columns"] == ["run", "state", "duration", "tags", "lr", "depth", "loss", "bleu", "val/acc"]
    for column in ("duration", "lr", "val/acc", "loss", "bleu"):
        assert data["dtypes"][column] == "float64", column
    assert data["dtypes"]["depth"] == "int64"
    row = next(r for r in data["rows"] if r["run"] == "lr=0.2,depth=4")
    assert row["state"] == "succeeded" and row["duration"] > 0
    assert (row["lr"], row["depth"], row["val/acc"], row["bleu"]) == (0.2, 4, 0.875, pytest.approx(24.2))


def test_load_in_process_is_a_sequence_of_rows(measured: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = expdeploy.load(measured.exp("src"))
    assert len(runs) == 4 and isinstance(runs[1:], expdeploy.Runs) and len(runs[1:]) == 3
    first: Any = runs[0]
    assert first.params == {"lr": 0.1, "depth": 2} and first.metrics["val/acc"] == 0.75
    assert first.best["loss"] == 0.25 and first.state == "succeeded"
    assert repr(runs) == f"<Runs: 4 runs of {measured.exp('src')}>"
    with pytest.raises(BadInput, match="not an experiment directory"):
        expdeploy.load(measured.root)
    clash = expdeploy.Runs([Row("a", {"lr": 0.1}, "succeeded", 1.0, {"lr": 5, "acc": 1.0})])
    assert list(clash.to_pandas().columns) == ["run", "state", "duration", "tags", "lr", "metrics.lr", "acc"]
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"pip install 'expdeploy\[pandas\]'"):
        runs.to_pandas()
