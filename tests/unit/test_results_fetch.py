"""Replacing a run's fetched metric copies: a newer attempt's files replace an older attempt's,
and the run's own state.json is never touched."""

from __future__ import annotations

import json
from pathlib import Path

from expdeploy.results_fetch import _replace_copies


def test_a_newer_attempt_drops_the_older_attempts_copies(tmp_path: Path) -> None:
    here, source = tmp_path / "here", tmp_path / "source"
    (here / "tb").mkdir(parents=True)
    source.mkdir()
    (here / "state.json").write_text('{"attempt": 1, "state": "succeeded"}')
    _replace_copies_from(here, {"summary.json": '{"acc": 1}', "tb/events.out.tfevents.1": "x"}, attempt=1)
    (source / "metrics.jsonl").write_text('{"loss": 2}\n')
    (source / "state.json").write_text('{"attempt": 2, "state": "running"}')
    _replace_copies(source, here, attempt=2)
    assert sorted(p.name for p in here.rglob("*") if p.is_file()) == [
        ".fetched.json", "metrics.jsonl", "state.json"]
    assert json.loads((here / "state.json").read_text())["attempt"] == 1
    # the same attempt again only adds what is new
    (source / "summary.json").write_text('{"acc": 2}')
    _replace_copies(source, here, attempt=2)
    assert (here / "summary.json").read_text() == '{"acc": 2}' and (here / "metrics.jsonl").exists()


def _replace_copies_from(here: Path, files: dict[str, str], attempt: int) -> None:
    first = here.parent / f"first-{attempt}"
    for name, text in files.items():
        (first / name).parent.mkdir(parents=True, exist_ok=True)
        (first / name).write_text(text)
    _replace_copies(first, here, attempt)
