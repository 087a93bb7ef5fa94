"""mlrunner params.yaml files against mlrunner 0.5.9 itself: names, parameters and commands
(`run --dry-run`), resuming at the failed step, and its own `Examiner` on expdeploy's runs."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Project

from helpers import REPO

pytest_plugins: list[str] = []
pytest.importorskip("mlrunner")
MLRUNNER = Path(sys.executable).parent / "run"  # mlrunner's own CLI, installed with the test extra
TIME = re.compile(r"\d{8}\.\d{6}")  # `{_time}`: each tool's own launch

# What of mlrunner 0.5.9's reading this file exercises: YAML 1.1 typing, scalars as one value, `_cmd` as
# one name, template order, {p}/[p] of text/int/float/bool, line joining, reserved placeholders,
# resource workers, aliases over the document's own values, defaults, and its dedup rule.
TYPES = """\
template:
  a: >
    echo A {x} [y] [flag] {flag2} {_name} {_time}
    --out {_output}/sub {q} "{x}" {lr}
  b: |
    echo B {x}
    echo second line
  c: >-
    echo C {x} {{x}} [f-v] '{"k": {x}}'
default:
  x: 1
  y: "hello world"
  flag: False
  flag2: True
  q: "it's"
  lr: 0.0001
  f-v: 3.0e-4
alias:
  model:
    small: {x: 1, y: s}
    big: {x: 2, y: "b c"}
resource: [0, "1,2"]
---
_title: t1
_cmd: [b, a]
lr: [0.0001, 100000000, 1e-5, 3.0e-4, "0.5", yes]
flag: [True, False]
---
_cmd: c
model: [small, big]
y: [ignored]
long_param-name: ./rel/dir/x
some_key_name: 1.5
---
_cmd: [c]
lr: 0.0001
flag: True
---
none: [null]
lst: [[1, 2]]
_cmd: b
"""


def mlrunner(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MLRUNNER), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def param_files(output: Path) -> dict[str, dict[str, Any]]:
    """Run directory name -> its `param` file, as mlrunner's Examiner loads it."""
    return {p.parent.name: yaml.load(p.read_text(), Loader=yaml.FullLoader) for p in output.glob("*/param")}


def argv(line: str, root: Path) -> list[str]:
    """A command line as words, with the output root and launch time of either tool made alike."""
    return [TIME.sub("<time>", word.replace(str(root), "<runs>")) for word in shlex.split(line)]


@pytest.mark.parametrize(
    ("spec", "title"),
    [
        ("types", None),
        ("types", "t1"),
        ("tests/fixtures/mlrunner/params.yaml", None),  # simtony/runner's own example
    ],
)
def test_names_params_and_commands_are_mlrunners(project: Project, spec: str, title: str | None) -> None:
    text = TYPES if spec == "types" else (REPO / spec).read_text()
    project.write("params.yaml", text)
    choose = ["-t", title] if title else []
    done = mlrunner(project.root, "-y", "params.yaml", "-o", str(project.root / "ml"), "--dry-run", *choose)
    assert done.returncode == 0, done.stdout + done.stderr
    theirs = param_files(project.root / "ml")
    planned = project.run("plan", "params.yaml", "--format", "json", *(["--title", title] if title else []))
    assert planned.returncode == 0, planned.stderr
    ours = {run["name"]: run for run in json.loads(planned.stdout)["runs"]}
    assert sorted(ours) == sorted(theirs)
    runs_root = Path(json.loads(planned.stdout)["exp_dir"]) / "runs"
    template = list(next(d for d in yaml.safe_load_all(text) if d)["template"])
    for name, param in theirs.items():
        run = ours[name]
        assert run["params"] == {k: v for k, v in param.items() if not k.startswith("_")}, name
        # commands in template order; mlrunner's lines are `CUDA_VISIBLE_DEVICES=G <command> > LOG 2>&1`
        assert sorted(run["commands"]) == sorted(param["_scripts"]), name
        assert list(run["commands"]) == [t for t in template if t in run["commands"]]
        for step, line in param["_scripts"].items():
            assert argv(run["commands"][step], runs_root) == argv(line, project.root / "ml")[1:-3], (
                name,
                step,
            )


EXAMINED = """\
template:
  train: echo train {lr} {seed}
  test: echo acc {acc_base}{seed}
default: {seed: 0, acc_base: 5}
alias: {size: {s: {acc_base: 7}, l: {acc_base: 9}}}
resource: [0, 1]
---
lr: [0.1, 0.01]
seed: [1, 2]
---
_cmd: test
size: [s, l]
"""


def examine(output: Path) -> tuple[Any, dict[str, Any]]:
    """mlrunner's own Examiner on `output`, with a callback reading a metric from the test logs."""
    from mlrunner.examine import Examiner, latest_log  # type: ignore[import-untyped]

    def accuracy(path: Path, experiment: Any, caches: dict[str, Any]) -> None:
        log = latest_log("test", path)
        if log is not None:
            experiment.metric["acc"] = float(log.read_text().split()[1])

    examiner = Examiner()
    examiner.add(accuracy)
    examiner.exam(output=str(output))
    return examiner.table(), examiner.experiments


def test_mlrunners_examiner_reads_expdeploys_runs_as_its_own(project: Project) -> None:
    pandas = pytest.importorskip("pandas")
    project.write("params.yaml", EXAMINED)
    ran = project.run("run", "params.yaml")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    done = mlrunner(project.root, "-y", "params.yaml", "-o", "ml")
    assert done.returncode == 0, done.stdout + done.stderr

    runs = project.exp("params") / "runs"
    table, experiments = examine(runs)
    their_table, theirs = examine(project.root / "ml")
    assert len(table) == 6 and sorted(experiments) == sorted(theirs)
    assert sorted(table.columns) == ["acc", "acc_base", "lr", "seed"]
    by_name = {name: (e.param, e.metric) for name, e in experiments.items()}
    assert by_name["Lr_0.01-Seed_2"][1] == {"acc": 52.0}
    assert by_name["Size_l"][0]["acc_base"] == 9 and by_name["Size_l"][1] == {"acc": 90.0}
    for name, (param, metric) in by_name.items():
        mine = {k: v for k, v in param.items() if k not in ("_output", "_scripts", "_time")}
        assert mine == {
            k: v for k, v in theirs[name].param.items() if k not in ("_output", "_scripts", "_time")
        }, name
        assert metric == theirs[name].metric, name
        assert (param["_output"], sorted(param["_scripts"])) == (
            str(runs / name),
            sorted(theirs[name].param["_scripts"]),
        )
        assert TIME.fullmatch(param["_time"])
    ordered = sorted(table.columns)
    pandas.testing.assert_frame_equal(
        table[ordered].sort_values(ordered).reset_index(drop=True),
        their_table[ordered].sort_values(ordered).reset_index(drop=True),
    )
    # expdeploy's own name for a step's log is the same file
    run_dir = runs / "Size_s"
    named = next(run_dir.glob("log.test.*"))
    assert named.samefile(run_dir / "test.log") and named.read_text() == "acc 70\n"


# `first` holds {_time}, new at every launch: mlrunner skips a finished step by its name
RESUMED = """\
template:
  first: sh -c 'echo ran >> count.txt' {_time}
  second: test -e ready && echo second done
resource: [0]
---
x: [1]
"""


def test_a_resumed_run_skips_the_steps_that_finished_as_mlrunner_does(project: Project) -> None:
    project.write("params.yaml", RESUMED)
    theirs = project.root / "theirs"
    theirs.mkdir()
    (theirs / "params.yaml").write_text(RESUMED)

    assert project.run("run", "params.yaml").returncode == 1
    assert mlrunner(theirs, "-y", "params.yaml").returncode == 0  # mlrunner exits 0 after a failure
    assert yaml.safe_load((theirs / "output" / "X_1" / "stat").read_text()) == {
        "first": "finished",
        "second": "failed",
    }
    # the failure is fixed; both tools run the run again
    for where in (project.root, theirs):
        (where / "ready").touch()
    retried = project.run("run", "params.yaml", "--retry-failed")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert mlrunner(theirs, "-y", "params.yaml").returncode == 0

    # each ran `first` once and `second` twice, finishing it the second time
    assert (project.root / "count.txt").read_text() == (theirs / "count.txt").read_text() == "ran\n"
    assert yaml.safe_load((theirs / "output" / "X_1" / "stat").read_text()) == {
        "first": "finished",
        "second": "finished",
    }
    run_dir = project.exp("params") / "runs" / "X_1"
    state = json.loads((run_dir / "state.json").read_text())
    assert state["state"] == "succeeded" and state["steps"]["first"].get("skipped") is True
    from mlrunner.examine import latest_log

    for where in (run_dir, theirs / "output" / "X_1"):
        last = latest_log("second", where)
        assert last is not None and last.read_text() == "second done\n"
