"""A `.wandb` log written by the real wandb package offline, read back: config, summary and history as
W&B shows them, records longer than a block, a torn or damaged end, files that are no W&B log, and how
`results` ranks the log against W&B's summary file and summary.json."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from expdeploy.results import run_metrics, wandb_series
from expdeploy.wandb_records import BLOCK, HEADER, RunLog, read_run_log, records

LONG = 70_000  # longer than two blocks: a FIRST, a MIDDLE and a LAST chunk

WRITER = f"""
import wandb
run = wandb.init(config={{"lr": 0.1, "model": {{"depth": 4}}}})
wandb.config.update({{"epochs": 3}})
for step, loss in enumerate([0.9, 0.4, 0.6]):
    wandb.log({{"loss": loss, "val": {{"acc": step / 10}}, "note": "x" * {LONG} if step == 1 else "short"}})
wandb.summary["acc"] = 0.75
wandb.summary["scratch"] = 1
del wandb.summary["scratch"]
run.finish()
"""


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `.wandb` file of one offline run (about 2 s to write, so shared by the module)."""
    root = tmp_path_factory.mktemp("wandb")
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(root), "WANDB_SILENT": "true"}
    subprocess.run([sys.executable, "-c", WRITER], env=env, cwd=root, check=True, timeout=120)
    (log,) = root.glob("wandb/offline-run-*/run-*.wandb")
    return log


def cut(written: Path, folder: Path, size: int) -> Path:
    """A copy of the log that ends after `size` bytes, as a killed run's would."""
    path = folder / "run-cut.wandb"
    path.write_bytes(written.read_bytes()[:size])
    return path


def start_of_long_record(written: Path) -> int:
    """Where step 1's summary record, the first holding the long note, starts to hold it."""
    return written.read_bytes().index(b"x" * 1000)


def test_config_summary_and_history_are_what_wandb_shows(written: Path) -> None:
    log = read_run_log(written)
    assert log is not None
    assert log.config == {"lr": 0.1, "model": {"depth": 4}, "epochs": 3}
    assert log.summary == {"loss": 0.6, "val": {"acc": 0.2}, "note": "short", "acc": 0.75}, (
        "the updates applied in order: the last logged values, the explicit one, the removal; no _ keys"
    )
    assert [(row.step, row.values["loss"], row.values["val.acc"]) for row in log.history] == [
        (0, 0.9, 0.0),
        (1, 0.4, 0.1),
        (2, 0.6, 0.2),
    ]
    assert not any(key.startswith("_") for row in log.history for key in row.values)


def test_records_longer_than_a_block_are_reassembled(written: Path) -> None:
    with written.open("rb") as stream:
        assert stream.read(len(HEADER)) == HEADER
        assert max(map(len, records(stream))) > BLOCK
    log = read_run_log(written)
    assert log is not None and log.history[1].values["note"] == "x" * LONG


def test_a_torn_last_record_ends_the_log_quietly(written: Path, tmp_path: Path) -> None:
    middle = read_run_log(cut(written, tmp_path, start_of_long_record(written) + LONG // 2))
    assert middle is not None
    assert [row.step for row in middle.history] == [0], "reading stops inside the long record"
    assert middle.summary == {"loss": 0.9, "val": {"acc": 0.0}, "note": "short"}
    end = read_run_log(cut(written, tmp_path, written.stat().st_size - 3))
    assert end is not None and [row.step for row in end.history] == [0, 1, 2]
    assert read_run_log(cut(written, tmp_path, len(HEADER))) == RunLog()


def test_a_damaged_chunk_ends_the_log(written: Path, tmp_path: Path) -> None:
    data = bytearray(written.read_bytes())
    data[start_of_long_record(written) + 10] ^= 0xFF
    damaged = tmp_path / "run-damaged.wandb"
    damaged.write_bytes(bytes(data))
    log = read_run_log(damaged)
    assert log is not None and [row.step for row in log.history] == [0], "its checksum fails"


def test_a_file_that_is_no_wandb_log_reads_as_none(tmp_path: Path) -> None:
    (tmp_path / "notes.wandb").write_text("loss 0.1\n" * 1000)
    (tmp_path / "empty.wandb").write_bytes(b"")
    assert read_run_log(tmp_path / "notes.wandb") is None
    assert read_run_log(tmp_path / "empty.wandb") is None
    assert read_run_log(tmp_path / "missing.wandb") is None
    (tmp_path / "garbled.wandb").write_bytes(HEADER + os.urandom(5000))
    assert read_run_log(tmp_path / "garbled.wandb") == RunLog()


def test_results_read_the_log_of_an_offline_run(written: Path, tmp_path: Path) -> None:
    shutil.copytree(written.parent, tmp_path / "wandb" / written.parent.name)
    final, best = run_metrics(tmp_path)
    assert final == {"loss": 0.6, "val": {"acc": 0.2}, "note": "short", "acc": 0.75, "val.acc": 0.2}
    assert best == {"loss": 0.4, "val.acc": 0.0}, "over the history; text is no series"
    assert run_metrics(tmp_path, "max")[1] == {"loss": 0.9, "val.acc": 0.2}
    assert wandb_series(tmp_path) == {
        "loss": ((0, 0.9), (1, 0.4), (2, 0.6)),
        "val.acc": ((0, 0.0), (1, 0.1), (2, 0.2)),
    }


def test_summary_files_and_a_later_wandb_run_win_over_the_log(written: Path, tmp_path: Path) -> None:
    # An online run's folder is `run-...`: by name it sorts after `offline-run-...`, by date before.
    older = tmp_path / "wandb" / "run-20200101_000000-older"
    shutil.copytree(written.parent, older)
    (tmp_path / "wandb" / "latest-run").symlink_to(older.name)
    newer = tmp_path / "wandb" / "offline-run-20200102_000000-newer" / "files"
    newer.mkdir(parents=True)
    (newer / "wandb-summary.json").write_text(json.dumps({"acc": 0.5, "_runtime": 3}))
    final, best = run_metrics(tmp_path)
    assert (final["acc"], final["loss"], best["loss"]) == (0.5, 0.6, 0.4)
    (older / "files" / "wandb-summary.json").write_text(json.dumps({"loss": 0.3}))
    assert run_metrics(tmp_path)[0] == {"loss": 0.3, "acc": 0.5, "val.acc": 0.2}, (
        "W&B's summary file replaces its own log's summary"
    )
    (tmp_path / "summary.json").write_text(json.dumps({"acc": 0.25}))
    assert run_metrics(tmp_path)[0]["acc"] == 0.25


PROBE = """
import sys
from pathlib import Path
from expdeploy.results import run_metrics
run_metrics(Path(sys.argv[1]), parsers=[])
print("wandb" in sys.modules)
"""


def test_results_import_wandb_only_for_runs_with_a_log(written: Path, tmp_path: Path) -> None:
    (tmp_path / "wandb" / "offline-run-20200101_000000-x" / "files").mkdir(parents=True)

    def imports_wandb(run_dir: Path) -> str:
        done = subprocess.run(
            [sys.executable, "-c", PROBE, str(run_dir)], capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    assert imports_wandb(tmp_path) == "False"
    assert imports_wandb(written.parent.parent.parent) == "True"
