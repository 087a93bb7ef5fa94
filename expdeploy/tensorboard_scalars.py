"""Scalars of the TensorBoard event files anywhere under a run directory, read with tensorboard's
own loader (imported only where such files exist): the built-in metric parser and the curves' series."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expdeploy.metric_parsers import MetricParser, MetricValue, warn_once
from expdeploy.plugins import hookimpl

EVENT_FILES = "events.out.tfevents.*"
SCALARS_PLUGIN = "scalars"
INSTALL_HINT = "pip install 'expdeploy[tensorboard]'"


@dataclass(frozen=True, slots=True)
class Scalar:
    step: int
    wall_time: float
    value: float


def event_files(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.rglob(EVENT_FILES) if p.is_file())


def read_scalars(run_dir: Path) -> dict[str, list[Scalar]]:
    """Each scalar tag's points ordered by step, then wall time: classic `simple_value` summaries
    and TF2 tensor summaries alike. Raises ImportError when there are event files but no
    tensorboard to read them.

    Tags keep their names (`val/acc`). Event files in several folders are TensorBoard runs: a tag
    found in more than one of them is named by its folder below their common one, as TensorBoard
    shows it (Keras: `train/epoch_loss`, `validation/epoch_loss`)."""
    files = event_files(run_dir)
    if not files:
        return {}
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    by_folder: dict[Path, dict[str, list[Scalar]]] = {}
    plugins: dict[Path, dict[str, str]] = {}
    for path in files:
        points = by_folder.setdefault(path.parent, {})
        try:
            for event in EventFileLoader(str(path)).Load():
                _add_scalars(event, plugins.setdefault(path.parent, {}), points)
        except Exception as exc:  # a damaged file from some writer must not stop the other runs' results
            warn_once(f"tensorboard:{path}", f"skipped the rest of {path}: {type(exc).__name__}: {exc}")
    return _named(by_folder)


def _add_scalars(event: Any, plugin_of: dict[str, str], points: dict[str, list[Scalar]]) -> None:
    if event.WhichOneof("what") != "summary":
        return
    for value in event.summary.value:
        number = _scalar_value(value, plugin_of)
        if number is not None:
            points.setdefault(value.tag, []).append(Scalar(int(event.step), float(event.wall_time), number))


def _scalar_value(value: Any, plugin_of: dict[str, str]) -> float | None:
    from tensorboard.util import tensor_util

    plugin = value.metadata.plugin_data.plugin_name
    if plugin:  # TF2 writers describe a tag on its first value only
        plugin_of.setdefault(value.tag, plugin)
    if plugin_of.get(value.tag) != SCALARS_PLUGIN or value.WhichOneof("value") != "tensor":
        return None
    array = tensor_util.make_ndarray(value.tensor)
    if array.size != 1 or array.dtype.kind not in "iuf":
        return None
    return float(array.reshape(()).item())


def _named(by_folder: Mapping[Path, Mapping[str, list[Scalar]]]) -> dict[str, list[Scalar]]:
    folders_of: dict[str, list[Path]] = {}
    for folder, tags in by_folder.items():
        for tag in tags:
            folders_of.setdefault(tag, []).append(folder)
    named: dict[str, list[Scalar]] = {}
    for folder, tags in by_folder.items():
        for tag, points in tags.items():
            name = tag
            if len(folders_of[tag]) > 1:
                below = folder.relative_to(os.path.commonpath(folders_of[tag])).as_posix()
                name = tag if below == "." else f"{below}/{tag}"
            named[name] = sorted(points, key=lambda p: (p.step, p.wall_time))
    return named


def _scalars_or_warn(run_dir: Path) -> dict[str, list[Scalar]]:
    """`read_scalars`, or nothing when tensorboard is missing: warned once for the parser and the
    curves together, since both read every run."""
    try:
        return read_scalars(run_dir)
    except ImportError:
        warn_once("tensorboard-missing", "TensorBoard event files in the runs are skipped: tensorboard "
                  f"is not installed ({INSTALL_HINT})")
        return {}


def scalar_series(run_dir: Path) -> dict[str, tuple[tuple[int, float], ...]]:
    """Each scalar tag's (step, value) points in step order, tags named as the parser names them. A
    step written more than once (a resumed job) keeps its last write, so that a curve does not
    double back on itself."""
    return {tag: tuple({p.step: p.value for p in points}.items())
            for tag, points in _scalars_or_warn(run_dir).items()}


class TensorBoardScalars:
    """Every scalar tag of the run's event files as a series: its last point is the final value."""

    name = "tensorboard"

    def parse(self, run_dir: Path) -> dict[str, MetricValue]:
        return {tag: [p.value for p in points] for tag, points in _scalars_or_warn(run_dir).items()}


@hookimpl(trylast=True)
def expdeploy_register_metric_parsers(register: Callable[[MetricParser], None]) -> None:
    register(TensorBoardScalars())
