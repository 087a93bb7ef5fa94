"""The experiment index on the controller side: a SQLite ledger of runs and attempts.

Only controllers (and `status`) write it; they fold the compute side's files (manifest,
claims, state.json) into it, so a controller that died can be restarted and reconcile.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expdeploy import worker

LEDGER = "ledger.sqlite"
STATES = ("pending", "running", "succeeded", "failed", "cancelled", "lost")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, seq INTEGER, name TEXT NOT NULL, tags TEXT, params TEXT,
    state TEXT NOT NULL DEFAULT 'pending', attempt INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER, step TEXT, started REAL, ended REAL, host TEXT, gpus TEXT, pid INTEGER,
    job TEXT
);
CREATE TABLE IF NOT EXISTS attempts (
    run_id TEXT NOT NULL, attempt INTEGER NOT NULL, state TEXT NOT NULL, exit_code INTEGER,
    started REAL, ended REAL, host TEXT, gpus TEXT, pid INTEGER, job TEXT,
    PRIMARY KEY (run_id, attempt)
);
CREATE INDEX IF NOT EXISTS runs_state ON runs (state);
"""


@dataclass(frozen=True, slots=True)
class RunRow:
    run_id: str
    name: str
    tags: tuple[str, ...]
    state: str
    attempt: int
    exit_code: int | None
    step: str | None
    started: float | None
    ended: float | None
    host: str | None
    gpus: str | None
    pid: int | None
    job: str | None  # the scheduler's id (Slurm array task "123_4")


class Ledger:
    """One experiment's SQLite ledger (WAL, so `status` reads while a controller writes)."""

    def __init__(self, exp_dir: Path) -> None:
        self.exp_dir = exp_dir
        self.db = sqlite3.connect(exp_dir / LEDGER, timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        for table in ("runs", "attempts"):  # ledgers written before job ids were recorded
            columns = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
            if "job" not in columns:
                self.db.execute(f"ALTER TABLE {table} ADD COLUMN job TEXT")

    def close(self) -> None:
        self.db.close()

    def set_meta(self, values: Mapping[str, Any]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                            [(k, json.dumps(v)) for k, v in values.items()])

    def meta(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.db.execute("SELECT key, value FROM meta")}

    def add_runs(self, plans: Iterable[Mapping[str, Any]]) -> None:
        """Insert new runs as pending; refresh name, tags and params of known ones."""
        base = self.db.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM runs").fetchone()[0]
        rows = [(p["run_id"], base + i, p["name"], ",".join(p.get("tags") or ()),
                 json.dumps(p["params"])) for i, p in enumerate(plans)]
        with self.transaction():
            self.db.executemany(
                "INSERT INTO runs (run_id, seq, name, tags, params) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (run_id) DO UPDATE SET name = excluded.name, tags = excluded.tags, "
                "params = excluded.params", rows)

    def transaction(self) -> _Transaction:
        return _Transaction(self.db)

    def record(self, states: Iterable[Mapping[str, Any]], lost: bool = False) -> None:
        """Fold state.json records (as the worker writes them) into runs and attempts."""
        rows = []
        for s in states:
            state = "lost" if lost else s["state"]
            rows.append((state, s.get("attempt", 0), s.get("exit_code"), s.get("step"),
                         s.get("started"), s.get("ended"), s.get("host"), s.get("gpus"),
                         s.get("pid"), s.get("job"), s["run_id"]))
        with self.transaction():
            self.db.executemany(
                "UPDATE runs SET state=?, attempt=?, exit_code=?, step=?, started=?, ended=?, "
                "host=?, gpus=?, pid=?, job=COALESCE(?, job) WHERE run_id=?", rows)
            self.db.executemany(
                "INSERT OR REPLACE INTO attempts (state, attempt, exit_code, started, ended, host, "
                "gpus, pid, job, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [r[:3] + r[4:] for r in rows])

    def remove(self, run_ids: Iterable[str]) -> None:
        """Forget runs (`clean`): they count as new when the experiment runs again."""
        ids = [(r,) for r in run_ids]
        with self.transaction():
            self.db.executemany("DELETE FROM attempts WHERE run_id=?", ids)
            self.db.executemany("DELETE FROM runs WHERE run_id=?", ids)

    def rows(self) -> Iterator[RunRow]:
        query = ("SELECT run_id, name, tags, state, attempt, exit_code, step, started, ended, "
                 "host, gpus, pid, job FROM runs ORDER BY seq")
        for r in self.db.execute(query):
            yield RunRow(r[0], r[1], tuple(t for t in (r[2] or "").split(",") if t), *r[3:])

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        counts.update(dict(self.db.execute("SELECT state, COUNT(*) FROM runs GROUP BY state")))
        return counts

    def reconcile(self, heartbeat_timeout: float = 120.0) -> dict[str, int]:
        """Fold state files of runs the ledger does not know as final; mark vanished ones lost."""
        # lost runs too: files brought back from a host that answers again may say how they ended
        open_runs = list(self.db.execute(
            "SELECT run_id, name, state FROM runs WHERE state NOT IN ('succeeded', 'failed', 'cancelled')"))
        final, lost = [], []
        for run_id, name, known in open_runs:
            run_dir = os.path.join(self.exp_dir, "runs", name)
            status, last, record = worker.attempt_status(run_dir, heartbeat_timeout)
            if status == "new" or record.get("run_id", run_id) != run_id or (known == status == "lost"):
                continue
            if status == "lost":
                lost.append({**record, "run_id": run_id, "attempt": last, "state": "lost"})
            elif record.get("attempt") == last:  # final, or running by a live owner
                final.append(record)
        self.record(final)
        self.record(lost, lost=True)
        return {"folded": len(final), "lost": len(lost)}


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if kind else "COMMIT")
