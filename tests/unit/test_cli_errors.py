"""Bad input: one red line with file:line and key, a hint, exit status 2, no traceback, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

CASES = [
    # (file text, expected "file:line", words in the message)
    ("command: run {lr}\ngrid: {lr: [1, 2]\n", ":3", "not valid YAML"),
    ("command: run {lr}\ngrdi: {lr: [1]}\n", ":2", "grdi: unknown key"),
    ("command: run {lr}\ngrid: [1, 2]\n", ":2", "grid: expected a mapping"),
    ("command: 3\ngrid: {lr: [1]}\n", ":1", "command: expected a non-empty string"),
    ("command: run {lr} {nope}\ngrid: {lr: [1]}\n", ":1", "placeholder {nope} has no value"),
    ("command: run {a}\nzip:\n  a: [1, 2]\n  b: [1]\n", ":2", "unequal lengths (a has 2, b has 1)"),
    ("command: run {a}\ngrid: {}\n", ":2", "an empty grid"),
    ("command: run {a}\ngrid:\n  a: []\n", ":3", "grid.a: has no values"),
    ("name: ../escape\ncommand: run {a}\ngrid: {a: [1]}\n", ":1", "would leave its parent"),
    ("name: ..\ncommand: run {a}\ngrid: {a: [1]}\n", ":1", "outside its parent"),
    ("command: run {a}\nrun_name: '{a}'\ngrid:\n  a: [x, '../../etc']\n", ":4", "path separator"),
    ("grid: {a: [1]}\n", ":1", "no command to run"),
    ("command: run\nsteps: {a: run}\n", ":2", "both `command` and `steps`"),
    ("command: run {a}\nresources: {gpus: -1}\ngrid: {a: [1]}\n", ":2", "resources.gpus"),
    ("command: run {a}\nresources: {time: soon}\ngrid: {a: [1]}\n", ":2", "resources.time"),
    ("command: run {a}\ngrid: {a: [1]}\nexclude: {a: 1}\n", ":3", "exclude: expected a list"),
    ("command: run {args}\ngrid: {args: [1]}\n", ":2", "reserved placeholder name"),
    ("command: run {a}\nsubgrids:\n  - tags: [x]\n    gird: {a: [1]}\n", ":4", "subgrids[0].gird"),
    ("- just\n- a list\n", "", "cannot tell which kind"),
]


@pytest.mark.parametrize(("text", "where", "message"), CASES)
def test_bad_spec_is_one_line_exit_2_nothing_written(
    cli: Callable[..., Any], tmp_path: Path, text: str, where: str, message: str
) -> None:
    spec = tmp_path / "bad.yml"
    spec.write_text(text)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = cli("plan", str(spec))
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"error: {spec}{where}")
    assert message in lines[0]
    assert len(lines) <= 2 and (len(lines) == 1 or lines[1].startswith("hint: "))
    assert "Traceback" not in result.output + result.stderr
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_bad_override_is_exit_2(cli: Callable[..., Any], tmp_path: Path) -> None:
    spec = tmp_path / "ok.yml"
    spec.write_text("command: run {lr}\ngrid: {lr: [1]}\n")
    result = cli("plan", str(spec), "lr=range(a)")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: command line: lr=range(a): range()")


def test_missing_file_and_unknown_format(cli: Callable[..., Any], tmp_path: Path) -> None:
    result = cli("plan", str(tmp_path / "nope.yml"))
    assert result.exit_code == 2 and "no such file" in result.stderr
    spec = tmp_path / "ok.yml"
    spec.write_text("command: run\n")
    result = cli("plan", str(spec), "--spec-format", "nope")
    assert result.exit_code == 2 and "unknown spec format 'nope'" in result.stderr
    assert "native" in result.stderr


def test_json_format_reports_errors_as_json(cli: Callable[..., Any], tmp_path: Path) -> None:
    spec = tmp_path / "bad.yml"
    spec.write_text("command: run {x}\ngrid: {lr: [1]}\n")
    result = cli("plan", str(spec), "--format", "json")
    assert result.exit_code == 2
    error = json.loads(result.stderr)
    assert error["line"] == 1 and error["file"] == str(spec) and error["exit_code"] == 2
    assert "placeholder {x}" in error["error"]


def test_real_process_prints_no_traceback_unless_debug(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yml"
    spec.write_text("command: run {lr}\ngrid: {lr: []}\n")
    cmd = [sys.executable, "-m", "expdeploy"]
    plain = subprocess.run([*cmd, "plan", str(spec)], capture_output=True, text=True)
    assert plain.returncode == 2
    assert plain.stderr.splitlines()[0] == f"error: {spec}:2: grid.lr: has no values (an empty grid axis)"
    assert "Traceback" not in plain.stderr
    debug = subprocess.run([*cmd, "--debug", "plan", str(spec)], capture_output=True, text=True)
    assert "Traceback" in debug.stderr and "SpecError" in debug.stderr


RUN_FLAG_CASES = [
    # (extra arguments to `run`, key in the message, words in the message)
    (["--agents", "2"], "--agents", "not --backend local"),
    (["--backend", "slurm", "--agents", "0"], "--agents", "at least 1"),
    (["--backend", "slurm", "--agents", "2", "--tag", "x"], "--agents", "without --tag"),
    (["--backend", "slurm", "--signal", "TERM@60"], "--signal", "USR1@SECONDS"),
    (["--backend", "slurm", "--max-concurrent", "0"], "--max-concurrent", "at least 1"),
    (["--backend", "slurm", "--steps", "main"], "--steps", "not available with --backend slurm"),
    (["--backend", "nope"], "--backend", "unknown backend 'nope'"),
    (["--target", "nowhere"], "", "nowhere"),
    (["--target", "here", "--backend", "local"], "--backend", "is a slurm target"),
]


@pytest.mark.parametrize(("args", "key", "message"), RUN_FLAG_CASES)
def test_bad_run_flags_are_exit_2_and_nothing_written(cli: Callable[..., Any], tmp_path: Path,
                                                     args: list[str], key: str, message: str) -> None:
    spec = tmp_path / "ok.yml"
    spec.write_text("command: run {x}\ngrid: {x: [1, 2]}\n")
    (tmp_path / "expdeploy.toml").write_text('[targets.here]\nbackend = "slurm"\n')
    result = cli("run", str(spec), *args)
    assert result.exit_code == 2, result.output
    line = result.stderr.strip().splitlines()[0]
    assert line.startswith("error: ") and key in line and message in line, line
    assert "Traceback" not in result.output + result.stderr
    assert not (tmp_path / "experiments").exists(), "nothing written"


def test_an_override_of_a_key_the_spec_lacks_shows_the_line_corrected(
        cli: Callable[..., Any], tmp_path: Path) -> None:
    spec = tmp_path / "g.yml"
    spec.write_text("command: run {lr} [new]\ndefaults: {new: null}\ngrid: {lr: [1]}\n")
    result = cli("plan", str(spec), "lr=0.1,0.2", "width=8,16", "--show", "1")
    assert result.exit_code == 2
    assert "no parameter named 'width'" in result.stderr
    assert f"expdeploy plan {spec} lr=0.1,0.2 +width=8,16 --show 1" in result.stderr
    again = cli("plan", str(spec), "+lr=0.5")
    assert again.exit_code == 2 and f"expdeploy plan {spec} lr=0.5" in again.stderr


def test_the_corrected_line_in_a_real_process(tmp_path: Path) -> None:
    spec = tmp_path / "g.yml"
    spec.write_text("command: run {lr}\ngrid: {lr: [1]}\n")
    done = subprocess.run([sys.executable, "-m", "expdeploy", "run", str(spec), "seed=range(0,3)",
                           "--dry-run"], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"expdeploy run {spec} '+seed=range(0,3)' --dry-run" in done.stderr
    assert not (tmp_path / "experiments").exists()
