"""What a person sees while runs execute: a live rich view on a terminal, plain lines otherwise
(`START name gpu=1`, `DONE`, `FAIL exit=3 log=...`), and the closing summary."""

from __future__ import annotations

import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

# how sh (dash), bash and exec say a command is missing: `sh: 1: python: not found`
_NOT_FOUND = re.compile(r"(?:^|: )([^\s:]+): (?:command )?not found$")


class Progress:
    def __init__(self, exp_dir: Path, total: int, slots: int, stream: TextIO | None = None,
                 live: bool | None = None) -> None:
        self.exp_dir = exp_dir
        self.total = total
        self.slots = max(slots, 1)
        self.stream = stream or sys.stdout
        self.counts: Counter[str] = Counter()
        self.running: dict[str, dict[str, Any]] = {}
        self.durations: list[float] = []
        self.failed: list[dict[str, Any]] = []
        self.begin = time.monotonic()
        self._live: Any = None
        if live if live is not None else self.stream.isatty():
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(file=self.stream), auto_refresh=False, transient=True)
            self._live.start()
        self._drawn = 0.0

    def log_path(self, record: dict[str, Any]) -> Path:
        step = str(record.get("step") or "main")
        return self.exp_dir / "runs" / str(record["name"]) / f"{step}.log"

    def update(self, record: dict[str, Any]) -> None:
        name, state = record["name"], record["state"]
        if state == "running":
            if name not in self.running:
                gpus = f" gpu={record['gpus']}" if record.get("gpus") not in (None, "") else ""
                self._line(f"START {name}{gpus}")
            self.running[name] = record
            return
        self.running.pop(name, None)
        if state == "pending":  # queued in a scheduler; printed only when it comes back there
            if record.get("requeues"):
                self._line(f"REQUEUED {name} (time limit or preemption; requeue {record['requeues']})")
            return
        self.counts[state] += 1
        duration = (record.get("ended") or 0) - (record.get("started") or 0)
        if state == "succeeded":
            self.durations.append(duration)
            self._line(f"DONE  {name} {duration:.1f}s")
        elif state == "failed":
            self.failed.append(record)
            self._line(f"FAIL  {name} exit={record.get('exit_code')} step={record.get('step')} "
                       f"log={self.log_path(record)}")
        else:
            self._line(f"{state.upper():5} {name}")

    def retry(self, record: dict[str, Any], retries_left: int) -> None:
        """A failed attempt that is retried now: not counted as a failed run."""
        self.running.pop(record["name"], None)
        if record["state"] == "lost":
            why = record.get("why") or "its host is gone"
            self._line(f"LOST  {record['name']} ({why}); starting it again")
            return
        self._line(f"RETRY {record['name']} exit={record.get('exit_code')} "
                   f"({retries_left} retr{'y' if retries_left == 1 else 'ies'} left)")

    def note(self, text: str) -> None:
        self._line(text)

    def _line(self, text: str) -> None:
        if self._live is not None:
            from rich.text import Text

            # a Text, not markup=False: print options also apply to the live view redrawn below
            self._live.console.print(Text(text))
        else:
            self.stream.write(text + "\n")

    def eta_seconds(self) -> float | None:
        if not self.durations:
            return None
        left = self.total - sum(self.counts.values())
        return sum(self.durations) / len(self.durations) * left / self.slots

    def refresh(self) -> None:
        if self._live is None or time.monotonic() - self._drawn < 0.25:
            return
        from rich.table import Table

        now = time.time()
        table = Table(box=None, show_header=False, pad_edge=False)
        done = sum(self.counts.values())
        eta = self.eta_seconds()
        table.add_row(f"[bold]{done}/{self.total}[/] done  "
                      + "  ".join(f"{k}: {v}" for k, v in sorted(self.counts.items()))
                      + f"  running: {len(self.running)}"
                      + (f"  ETA {eta:.0f}s" if eta is not None else ""))
        for name, record in list(self.running.items())[:20]:
            gpus = record.get("gpus")
            table.add_row(f"  [cyan]{name}[/] {record.get('step') or ''}"
                          f"{' gpu=' + gpus if gpus else ''} {now - record['started']:.0f}s")
        self._live.update(table, refresh=True)
        self._drawn = time.monotonic()

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def summary(self) -> str:
        parts = [f"{self.counts.get(s, 0)} {s}" for s in ("succeeded", "failed", "cancelled")
                 if self.counts.get(s)]
        elapsed = time.monotonic() - self.begin
        lines = [f"{', '.join(parts) or 'nothing ran'} in {elapsed:.1f}s  ({self.exp_dir})"]
        for record in self.failed:
            lines.append(f"  failed: {record['name']} exit={record.get('exit_code')} "
                         f"log={self.log_path(record)}")
        missing = sorted({m for r in self.failed if (m := self._missing_program(r))})
        if missing:
            instead = "python3 or its full path" if "python" in missing else "its full path"
            lines.append(f"hint: {', '.join(missing)}: no such program where the runs execute (exit 127): "
                         f"write {instead}, or give the runs their environment (`env:`, an activated venv)")
        return "\n".join(lines)

    def _missing_program(self, record: dict[str, Any]) -> str | None:
        """The program the shell could not find, from the end of the step's log (exit 127)."""
        if record.get("exit_code") != 127:
            return None
        try:
            with open(self.log_path(record), "rb") as log:
                log.seek(max(0, log.seek(0, 2) - 2048))
                tail = log.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return None
        found = _NOT_FOUND.search(tail[-1]) if tail else None
        return found.group(1) if found else None
