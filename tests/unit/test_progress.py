"""Progress lines for logs and pipes, ETA from finished runs, the closing summary."""

from __future__ import annotations

import io
from pathlib import Path

from expdeploy.progress import Progress


def record(name: str, state: str, **extra: object) -> dict[str, object]:
    return {"name": name, "state": state, "started": 100.0, "ended": 102.0, "step": "main", **extra}


def test_plain_lines_eta_and_summary(tmp_path: Path) -> None:
    out = io.StringIO()
    progress = Progress(tmp_path, total=4, slots=2, stream=out, live=False)
    assert progress.eta_seconds() is None
    progress.update(record("a", "running", gpus="1"))
    progress.update(record("a", "succeeded"))
    progress.update(record("b", "running"))
    progress.update(record("b", "failed", exit_code=3))
    assert progress.eta_seconds() == 2.0 * 2 / 2  # two runs left, 2 s each, two slots
    lines = out.getvalue().splitlines()
    assert lines == ["START a gpu=1", "DONE  a 2.0s", "START b",
                     f"FAIL  b exit=3 step=main log={tmp_path}/runs/b/main.log"]
    summary = progress.summary()
    assert summary.startswith("1 succeeded, 1 failed in ")
    assert f"failed: b exit=3 log={tmp_path}/runs/b/main.log" in summary


def test_live_view_renders_on_a_terminal(tmp_path: Path) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    progress = Progress(tmp_path, total=2, slots=1, stream=out)
    progress.update(record("a", "running", gpus="0"))
    progress.refresh()
    progress.update(record("a", "succeeded"))
    progress.close()
    text = out.getvalue()
    assert "DONE  a 2.0s" in text and "0/2" in text
    assert "[bold]" not in text and "[cyan]" not in text  # markup rendered, also after a line
