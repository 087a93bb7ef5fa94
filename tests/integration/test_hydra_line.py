"""Hydra's own command line and Hydra configs as experiments, against real Hydra: each run's own
`.hydra/overrides.yaml` (written by Hydra in the run) is compared with the jobs of Hydra's own
`-m` multirun of the same line; errors are one line; `plan` writes nothing; `rerun` works."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess

import pytest
import yaml
from conftest import Project

from helpers import REPO

pytestmark = pytest.mark.integration
pytest.importorskip("hydra")

FIXTURES = REPO / "tests" / "fixtures" / "hydra"
# pat-coady/pytorch-sandbox's multirun_train.sh: six two-valued axes, 64 runs
SANDBOX = [
    "data.num_workers=4",
    "trainer.max_epochs=20",
    "model.l1_chan=4,8",
    "model.l2_chan=8,16",
    "model.l3_chan=16,32",
    "model.optimizer_params.lr=0.02,0.1",
    "model.optimizer_params.momentum=0.8,0.9",
    "model.optimizer_params.nesterov=0,1",
]
RUN_DIR = "hydra.run.dir=${oc.env:EXPDEPLOY_RUN_DIR}/hydra"

OverrideSets = set[tuple[str, ...]]


@pytest.fixture
def trainer(project: Project) -> Project:
    shutil.copytree(FIXTURES / "trainer", project.root, dirs_exist_ok=True)
    project.use_this_python()  # `python3` in the line and in the runs has hydra-core
    return project


def hydra_own(project: Project, *words: str) -> OverrideSets:
    """The jobs of Hydra's own multirun of `words`, each as its sorted override strings."""
    sweep = project.root.parent / f"own-{len(list(project.root.parent.glob('own-*')))}"
    done = subprocess.run(
        [*words, f"hydra.sweep.dir={sweep}"],
        cwd=project.root,
        env=project.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return {tuple(sorted(yaml.safe_load(path.read_text()))) for path in sweep.glob("*/.hydra/overrides.yaml")}


def ran(project: Project, name: str) -> dict[str, list[str]]:
    """Run name -> the overrides Hydra recorded inside that run's own output directory."""
    return {
        path.parent.parent.parent.name: yaml.safe_load(path.read_text())
        for path in (project.exp(name) / "runs").glob("*/hydra/.hydra/overrides.yaml")
    }


def planned(project: Project, script: str, *args: str) -> OverrideSets:
    """The override words of every run `expdeploy plan --format json ARGS` shows (its commands)."""
    done = project.run("plan", "--format", "json", *args)
    assert done.returncode == 0, done.stderr
    sets = set()
    for run in json.loads(done.stdout)["runs"]:
        words = shlex.split(run["commands"]["main"])
        assert words[-1] == RUN_DIR
        words = words[words.index(script) + 1 : -1]
        for flag in ("--config-name", "--config-path"):
            if flag in words:
                del words[words.index(flag) : words.index(flag) + 2]
        sets.add(tuple(sorted(words)))
    return sets


def test_the_64_run_sandbox_line_runs_each_point_in_its_own_hydra_directory(trainer: Project) -> None:
    done = trainer.run("run", "--", "python3", "train.py", "-m", *SANDBOX, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "expanding the sweep with Hydra: python3 train.py -m data.num_workers=4" in done.stderr
    assert "64 succeeded" in done.stdout
    assert set(trainer.states("train").values()) == {"succeeded"}
    recorded = ran(trainer, "train")
    assert len(recorded) == 64
    manifest = [
        json.loads(line) for line in (trainer.exp("train") / "manifest.jsonl").read_text().splitlines()
    ]
    for plan in manifest:  # each run's Hydra saw exactly its own point, and wrote where it belongs
        command = shlex.split(dict(plan["steps"])["main"])
        assert command[:2] == ["python3", "train.py"] and "-m" not in command and command[-1] == RUN_DIR
        assert recorded[plan["name"]] == command[2:-1]
        assert plan["params"]["model.l1_chan"] in (4, 8) and plan["params"]["data.num_workers"] == 4
        run_dir = trainer.exp("train") / "runs" / plan["name"]
        params = plan["params"]
        assert (run_dir / "hydra" / "done.txt").read_text() == (
            f"{params['model.l1_chan']} {params['model.optimizer_params.lr']}\n"
        )
    assert not (trainer.root / "outputs").exists() and not (trainer.root / "multirun").exists()
    own = hydra_own(trainer, "python3", "train.py", "-m", *SANDBOX)
    assert {tuple(sorted(words)) for words in recorded.values()} == own
    assert len(own) == 64


def test_plan_shows_the_runs_and_writes_nothing(trainer: Project) -> None:
    before = sorted(p.relative_to(trainer.root) for p in trainer.root.rglob("*"))
    shown = json.loads(
        trainer.run("plan", "--format", "json", "--", "python3", "train.py", "-m", *SANDBOX).stdout
    )
    assert shown["count"] == len(shown["runs"]) == 64 and shown["format"] == "hydra"
    assert len({run["run_id"] for run in shown["runs"]}) == 64
    assert shown["runs"][0]["commands"]["main"] == (
        "python3 train.py data.num_workers=4 trainer.max_epochs=20 model.l1_chan=4 model.l2_chan=8 "
        "model.l3_chan=16 model.optimizer_params.lr=0.02 model.optimizer_params.momentum=0.8 "
        "model.optimizer_params.nesterov=0 'hydra.run.dir=${oc.env:EXPDEPLOY_RUN_DIR}/hydra'"
    )
    done = trainer.run(
        "plan", "--", "python3", "train.py", "-m", "model.l1_chan=4,8", "--config-name", "config"
    )
    assert done.returncode == 0, done.stderr
    assert "Runs        2" in done.stdout and "(command line, hydra)" in done.stdout
    assert "python3 train.py --config-name config model.l1_chan=8 'hydra.run.dir=" in done.stdout
    assert sorted(p.relative_to(trainer.root) for p in trainer.root.rglob("*")) == before


def test_a_hydra_line_takes_its_resources_from_the_command_line(trainer: Project) -> None:
    done = trainer.run("plan", "--resources", "gpus=1,time=1h", "--", "python3", "train.py", "-m",
                       "model.l1_chan=4,8")
    assert done.returncode == 0, done.stderr
    assert "Resources   gpus=1 time=1h" in done.stdout and "GPU-hours   2.00" in done.stdout
    assert "warning" not in done.stderr, "the parameters are in the commands: none is an orphan"


@pytest.mark.parametrize(
    "line",
    [
        ["db=glob(*)", "model.l1_chan=range(0,3)", 'name="a,b"'],
        # the config's own hydra.sweeper.params, the command line's value winning for model.l1_chan
        ["--config-name", "swept", "model.l1_chan=16", "+new=1,2"],
    ],
    ids=["glob-range-quoted", "sweeper-params"],
)
def test_sweep_syntax_expands_as_hydra_expands_it(trainer: Project, line: list[str]) -> None:
    ours = planned(trainer, "train.py", "--", "python3", "train.py", "-m", *line)
    assert ours == hydra_own(trainer, "python3", "train.py", "-m", *line)
    assert len(ours) > 1


def test_added_deleted_and_quoted_overrides_reach_the_program_as_one_point(trainer: Project) -> None:
    line = ["python3", "train.py", "-m", "db=glob(*,exclude=b*)", "+new=1,2", "~trainer", 'name="a,b"']
    done = trainer.run("run", "--", *line)
    assert done.returncode == 0, done.stdout + done.stderr
    recorded = ran(trainer, "train")
    assert sorted(recorded) == [
        "db=mysql,new=1",
        "db=mysql,new=2",
        "db=postgresql,new=1",
        "db=postgresql,new=2",
    ]
    assert recorded["db=mysql,new=2"] == ["db=mysql", "+new=2", "~trainer=null", 'name="a,b"']
    config = yaml.safe_load(
        (trainer.exp("train") / "runs" / "db=mysql,new=2" / "hydra" / ".hydra" / "config.yaml").read_text()
    )
    assert (config["new"], config["name"], config["db"]["driver"]) == (2, "a,b", "mysql")
    assert "trainer" not in config
    assert {tuple(sorted(words)) for words in recorded.values()} == hydra_own(trainer, *line)


def test_bad_lines_are_one_error_and_start_nothing(trainer: Project) -> None:
    trainer.write("plain.py", "import sys\nprint('not hydra', sys.argv[1:])\n")
    cases = {
        ("python3", "plain.py", "-m", "a=1,2"): "did not start a Hydra multirun",
        ("python3", "train.py", "-m", "model.l9_chan=1,2"): "Could not override 'model.l9_chan'.",
        ("python3", "missing.py", "-m", "a=1,2"): "can't open file",
        ("no-such-program", "-m", "a=1,2"): "cannot start 'no-such-program'",
    }
    for words, message in cases.items():
        done = trainer.run("run", "--", *words)
        assert done.returncode == 2, (words, done.stdout, done.stderr)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and message in errors[0], done.stderr
        assert "hint: " in done.stderr and "Traceback" not in done.stderr
        assert not (trainer.root / "experiments").exists()
    typo = trainer.run("run", "--", "python3", "train.py", "-m", "model.l9_chan=1,2")
    assert "hint: To append to your config use +model.l9_chan=1" in typo.stderr


def test_a_hydra_config_with_sweeper_params_is_a_spec(project: Project) -> None:
    shutil.copytree(FIXTURES / "basic_sweep", project.root, dirs_exist_ok=True)
    project.use_this_python()
    missing = project.run("run", "conf/config.yaml")
    assert (
        missing.returncode == 2
        and "error: conf/config.yaml: --command: a Hydra config needs" in missing.stderr
    )
    done = project.run("run", "conf/config.yaml", "--command", "python3 my_app.py")
    assert done.returncode == 0, done.stdout + done.stderr
    recorded = ran(project, "my_app")  # named after the app: `config` is every Hydra app's config
    assert sorted(recorded) == ["db=mysql,x=10", "db=mysql,x=5", "db=postgresql,x=10", "db=postgresql,x=5"]
    assert {tuple(sorted(words)) for words in recorded.values()} == hydra_own(
        project, "python3", "my_app.py", "-m"
    )
    log = (project.exp("my_app") / "runs" / "db=mysql,x=10" / "main.log").read_text()
    assert "driver=mysql timeout=5 x=10" in log
    # overrides after the config are Hydra's, merged with its sweeper params as `-m` merges them
    narrowed = planned(project, "my_app.py", "conf/config.yaml", "--command", "python3 my_app.py", "db=mysql")
    assert narrowed == hydra_own(project, "python3", "my_app.py", "-m", "db=mysql") and len(narrowed) == 2


def test_a_hydra_configs_runs_read_the_config_beside_their_copy_of_the_app(project: Project) -> None:
    shutil.copytree(FIXTURES / "basic_sweep", project.root, dirs_exist_ok=True)
    project.use_this_python()
    done = project.run("run", "conf/config.yaml", "--command", "python3 my_app.py", "--snapshot", "db=mysql")
    assert done.returncode == 0, done.stdout + done.stderr
    (snapshot,) = (project.exp("my_app") / "snapshots").iterdir()
    scripts = [p.read_text() for p in (project.exp("my_app") / "runs").glob("*/commands.sh")]
    assert len(scripts) == 2
    for script in scripts:  # the runs work in the snapshot: the config is read beside its copy
        assert f"cd {snapshot}" in script and "--config-path conf " in script


def test_rerun_of_a_hydra_line_run(trainer: Project) -> None:
    line = ["python3", "train.py", "-m", "model.l1_chan=4,8"]
    assert trainer.run("run", "--", *line).returncode == 0
    again = trainer.run("rerun", "model.l1_chan=8")
    assert again.returncode == 0, again.stdout + again.stderr
    states = trainer.state_files("train")
    assert (states["model.l1_chan=4"]["attempt"], states["model.l1_chan=8"]["attempt"]) == (1, 2)
    assert ran(trainer, "train")["model.l1_chan=8"] == ["model.l1_chan=8"]
    for record in (trainer.exp("train") / "provenance").glob("*/code.json"):  # the line, not a file
        assert json.loads(record.read_text())["command_line"] == line
        assert (record.parent / "command_line.sh").read_text() == "python3 train.py -m model.l1_chan=4,8\n"


def test_a_program_that_never_reaches_hydra_is_stopped(project: Project) -> None:
    project.write("busy.py", "import time\nprint('training...', flush=True)\ntime.sleep(600)\n")
    project.use_this_python()
    project.env["EXPDEPLOY_HYDRA_START_TIMEOUT"] = "2"
    done = project.run("plan", "--", "python3", "busy.py", "-m", "a=1,2", timeout=60)
    assert done.returncode == 2 and "did not reach a Hydra multirun in 2 s" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
