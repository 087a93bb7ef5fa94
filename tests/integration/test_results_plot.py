"""`expdeploy results --plot` and `--curves` over a real experiment: the images are read back with
PIL (exact pixel size, the series' colours present), filters reach the plot, runs that log only to
TensorBoard get curves too, bad specs are one line and exit 2, and a missing matplotlib says which
extra to install."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Project

pytestmark = pytest.mark.integration

PIL = pytest.importorskip("PIL.Image")

TRAIN = """
import sys
import expdeploy
lr, seed, norm = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
bonus = 0.2 if norm == "layer" else 0.0
for step in range(5):
    expdeploy.log(step=step, loss=1 / (step + 1) + lr + 0.1 * seed + bonus)
expdeploy.summary(acc=0.5 + bonus + lr + 0.05 * seed)
"""

TRAIN_TB = """
import os, sys, time
from tensorboard.compat.proto.event_pb2 import Event
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.summary.writer.event_file_writer import EventFileWriter

lr = float(sys.argv[1])
writer = EventFileWriter(os.path.join(os.environ["EXPDEPLOY_RUN_DIR"], "tb", "version_0"))
for step in range(4):
    values = [Summary.Value(tag="val/acc", simple_value=0.5 + lr * step)]
    writer.add_event(Event(step=step * 100, wall_time=time.time(), summary=Summary(value=values)))
writer.close()
"""

# matplotlib's default colour cycle: C0, C1, ... as RGB
CYCLE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
         (227, 119, 194), (127, 127, 127)]


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """One experiment for every test here: lr spans two decades, two seeds, a hue parameter."""
    project = Project(tmp_path_factory.mktemp("plots"))
    project.write("train.py", TRAIN)
    project.write("grid.yml", """
        name: pl
        command: python train.py {lr} {seed} {norm}
        grid:
          lr: [0.001, 0.01, 0.1]
          seed: [0, 1]
          norm: [batch, layer]
    """)
    project.use_this_python()
    done = project.run("run", "grid.yml", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    # a run still writing: its last line is cut mid-record
    with open(project.exp("pl") / "runs" / "lr=0.1,seed=0,norm=batch" / "metrics.jsonl", "a") as out:
        out.write('{"step": 5, "lo')
    yield project
    project.stop_all()


@pytest.fixture(scope="module")
def tensorboard_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """Three runs that write TensorBoard scalars and nothing to metrics.jsonl."""
    pytest.importorskip("tensorboard")
    project = Project(tmp_path_factory.mktemp("plots-tb"))
    project.write("train.py", TRAIN_TB)
    project.write("grid.yml", """
        name: tb
        command: python train.py {lr}
        grid:
          lr: [0.05, 0.1, 0.15]
    """)
    project.use_this_python()
    done = project.run("run", "grid.yml", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    yield project
    project.stop_all()


def results(project: Project, *args: str, exp: str = "pl") -> subprocess.CompletedProcess[str]:
    return project.run("results", str(project.exp(exp)), *args)


def colours(path: Path) -> dict[tuple[int, int, int], int]:
    """Pixel count of each colour in the image."""
    with PIL.open(path) as image:
        rgb = image.convert("RGB")
        counts = rgb.getcolors(maxcolors=rgb.width * rgb.height)
    return {colour: count for count, colour in counts}


def assert_image(path: Path, size: tuple[int, int], series: int) -> None:
    with PIL.open(path) as image:
        assert image.format == "PNG" and image.size == size
    found = colours(path)
    assert len(found) > 20, "more than a blank canvas"
    assert found.get((255, 255, 255), 0) < size[0] * size[1] * 0.97
    for colour in CYCLE[:series]:
        assert found.get(colour, 0) > 30, f"series colour {colour} drawn"
    assert CYCLE[series] not in found, "no more series than asked for"


def test_plot_is_one_series_per_hue_at_the_size_asked(measured: Project) -> None:
    done = results(measured, "--plot", "x=lr,y=acc,hue=norm", "--out", "p.png", "--size", "6x4")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "wrote p.png: acc against lr, 12 runs in 2 series"
    assert_image(measured.root / "p.png", (600, 400), series=2)


def test_plot_defaults_filters_and_other_formats(measured: Project) -> None:
    done = results(measured, "--plot", "x=lr,y=acc", "--where", "norm=batch", "--where", "lr>0.001")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "wrote plot.png: acc against lr, 4 runs in 1 series"
    assert_image(measured.root / "plot.png", (800, 500), series=1)
    svg = results(measured, "--plot", "x=norm,y=acc,hue=seed", "--out", "sub/n.svg")
    assert svg.returncode == 0, svg.stderr
    assert (measured.root / "sub" / "n.svg").read_text().lstrip().startswith("<?xml")


def test_curves_one_line_per_run(measured: Project) -> None:
    done = results(measured, "--curves", "loss", "--where", "seed=0", "--where", "lr!=0.01",
                   "--out", "c.png", "--size", "6x4")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "wrote c.png: loss of 4 runs, 4 curves"
    assert_image(measured.root / "c.png", (600, 400), series=4)
    default = results(measured, "--curves", "loss,hue=norm")
    assert default.returncode == 0, default.stderr
    assert default.stdout.strip() == "wrote curves.png: loss of 12 runs, 12 curves"
    assert_image(measured.root / "curves.png", (800, 500), series=2)


def test_curves_from_tensorboard_scalars(tensorboard_only: Project) -> None:
    runs = tensorboard_only.exp("tb") / "runs"
    assert not any((run / "metrics.jsonl").exists() and (run / "metrics.jsonl").read_text().strip()
                   for run in runs.iterdir()), "only TensorBoard has the curves"
    done = results(tensorboard_only, "--curves", "val/acc", "--out", "c.png", "--size", "6x4", exp="tb")
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr
    assert done.stdout.strip() == "wrote c.png: val/acc of 3 runs, 3 curves"
    assert_image(tensorboard_only.root / "c.png", (600, 400), series=3)


def test_curves_of_a_metric_nowhere_are_one_line_and_exit_2(tensorboard_only: Project) -> None:
    done = results(tensorboard_only, "--curves", "val/los", exp="tb")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        "error: --curves: no run logged val/los to metrics.jsonl or TensorBoard",
        "hint: curves come from expdeploy.log(step=..., NAME=...) lines or TensorBoard scalar tags"]
    tensorboard_only.env["EXPDEPLOY_BLOCK_PLUGINS"] = "tensorboard"
    try:
        blocked = results(tensorboard_only, "--curves", "val/acc", exp="tb")
    finally:
        tensorboard_only.env.pop("EXPDEPLOY_BLOCK_PLUGINS")
    assert blocked.returncode == 2, blocked.stdout + blocked.stderr
    assert blocked.stderr.splitlines()[0] == "error: --curves: no run logged val/acc to metrics.jsonl"


@pytest.mark.parametrize(("args", "message"), [
    (["--plot", "x=lr"], "no y="),
    (["--plot", "x=lr,y=acc,colour=norm"], "'colour' is not x=, y= or hue="),
    (["--plot", "x=nope,y=acc"], "--plot x: no run has a parameter or metric 'nope'"),
    (["--plot", "x=lr,y=acc", "--curves", "loss"], "--plot: not with --curves"),
    (["--plot", "x=lr,y=acc", "--where", "lr>5"], "no run to draw"),
    (["--plot", "x=lr,y=acc", "--size", "6by4"], "--size: '6by4' is not WIDTHxHEIGHT"),
    (["--plot", "x=lr,y=acc", "--out", "p.gif"], "unknown image type"),
    (["--plot", "x=lr,y=acc", "--group-by", "seed"], "--group-by: only for tables"),
    (["--curves", "hue=norm"], "no metric"),
    (["--curves", "nope"], "no run logged nope"),
    (["--out", "p.png"], "--out: only --plot and --curves write an image"),
])
def test_bad_plot_options_are_one_line_and_exit_2(measured: Project, args: list[str], message: str) -> None:
    done = results(measured, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert lines[0].startswith("error: ") and message in lines[0], done.stderr
    assert len(lines) <= 2 and "Traceback" not in done.stderr  # the error and its hint


def test_without_matplotlib_says_which_extra(measured: Project) -> None:
    hide = ("import sys; sys.modules['matplotlib'] = None; sys.argv[0] = 'expdeploy'; "
            "from expdeploy.cli import main; main()")
    done = subprocess.run([sys.executable, "-c", hide, "results", str(measured.exp("pl")), "--plot",
                           "x=lr,y=acc", "--out", "never.png"], cwd=measured.root, env=measured.env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == ["error: plots need matplotlib, which is not installed",
                                        "hint: pip install 'expdeploy[plot]'"]
    assert not (measured.root / "never.png").exists()
