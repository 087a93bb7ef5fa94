"""Fixtures for tests that run the real `expdeploy` CLI as a separate process."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


class Project:
    """A temporary project directory: write specs, run expdeploy in it, read what it wrote."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[subprocess.Popen[str]] = []
        self.env = {**os.environ, "EXPDEPLOY_LOCK_DIR": str(root / ".locks"), "PYTHONUNBUFFERED": "1"}

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    def cmd(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "expdeploy", *args]

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.cmd(*args), cwd=self.root, env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def start(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(self.cmd(*args), cwd=self.root, env=self.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        """After a failed test: stop controllers gracefully (they cancel their runs), then kill."""
        for proc in self.started:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.communicate(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.communicate()

    def use_this_python(self) -> None:
        """`python` in the runs is the interpreter running the tests (it has expdeploy, wandb)."""
        self.env["PATH"] = f"{Path(sys.executable).parent}:{os.environ['PATH']}"

    def exp(self, name: str) -> Path:
        return self.root / "experiments" / name

    def states(self, name: str) -> dict[str, str]:
        """Run name -> state, from the ledger."""
        db = sqlite3.connect(self.exp(name) / "ledger.sqlite")
        try:
            return dict(db.execute("SELECT name, state FROM runs"))
        finally:
            db.close()

    def state_files(self, name: str) -> dict[str, dict[str, Any]]:
        out = {}
        for path in (self.exp(name) / "runs").glob("*/state.json"):
            try:
                out[path.parent.name] = json.loads(path.read_text())
            except ValueError:  # replaced while reading is impossible (rename), but be safe
                continue
        return out


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    proj = Project(tmp_path)
    yield proj
    proj.stop_all()


def ssh_lab(shared: Path, name: str, slots: int, ssh_config: Path) -> Project:
    """A project at one absolute path here and (once synced) on hosts h1 and h2, which see their
    own copies of `shared` (tests/services/hosts.py), with target `lab`: `slots` CPU slots each."""
    root = shared / name
    root.mkdir()
    project = Project(root)
    project.write("expdeploy.toml", f'[targets.lab]\nbackend = "ssh"\nhosts = ["h1", "h2"]\n'
                                    f'slots = {slots}\nssh_config = "{ssh_config}"\n')
    return project


def wait_until(condition: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    """Wait for an observable event (files, process table); fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def processes_with(marker: str) -> list[int]:
    """Pids whose command line contains `marker` (the real process table)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmdline and str(os.getpid()) != entry.name:
                found.append(int(entry.name))
    return found
