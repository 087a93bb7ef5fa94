"""Recording and restoring the code of runs with real git: a run made from a dirty tree restores
byte for byte into a worktree; --snapshot keeps queued runs on the code of submit time;
--require-clean refuses; `rerun` runs one run again; what is recorded about the environment."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Project, wait_until

pytestmark = pytest.mark.integration

SHOW = """
import os, sys
print("data:", open("data.txt").read().strip(), "x:", sys.argv[1])
"""
GRID = """
    name: repro
    command: python show.py {x}
    grid:
      x: [1, 2]
"""


def git(project: Project, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=project.root, check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture
def repo(project: Project) -> Project:
    git(project, "init", "-q")
    git(project, "config", "user.email", "t@example.org")
    git(project, "config", "user.name", "t")
    project.write(".gitignore", "experiments/\n*.ckpt\n.locks/\n")
    project.write("show.py", SHOW)
    project.write("data.txt", "one\n")
    project.write("grid.yml", GRID)
    project.use_this_python()
    git(project, "add", "-A")
    git(project, "commit", "-qm", "first")
    return project


def tree(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file below `root` but git's own and the outputs: its bytes (a link: its target) and mode."""
    found = {}
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        is_folder = path.is_dir() and not path.is_symlink()
        if relative.parts[0] in (".git", "experiments", ".locks") or is_folder:
            continue
        if path.is_symlink():
            found[str(relative)] = (os.readlink(path).encode(), 0)
        else:
            found[str(relative)] = (path.read_bytes(), stat.S_IMODE(path.lstat().st_mode))
    return found


def test_restore_of_a_run_from_a_dirty_tree_is_byte_for_byte(repo: Project, tmp_path: Path) -> None:
    blob = bytes(range(256)) * 40
    (repo.root / "weights.bin").write_bytes(blob)
    (repo.root / "tool.sh").write_text("echo tool\n")
    (repo.root / "gone.txt").write_text("tracked, then deleted\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "second")
    # the dirty tree the runs see: edited text, an edited binary, a deletion, a mode change,
    # staged and unstaged changes, untracked files (one nested), and an ignored file
    (repo.root / "data.txt").write_text("edited, not committed\n")
    (repo.root / "weights.bin").write_bytes(blob[::-1] + b"\x00\xff")
    (repo.root / "gone.txt").unlink()
    (repo.root / "tool.sh").chmod(0o755)
    (repo.root / "staged.py").write_text("STAGED = 1\n")
    git(repo, "add", "staged.py")
    (repo.root / "notes" / "deep").mkdir(parents=True)
    (repo.root / "notes" / "deep" / "idea.md").write_text("untracked, not ignored\n")
    (repo.root / "data").symlink_to(tmp_path / "datasets")  # an untracked link to an absolute path
    (repo.root / "model.ckpt").write_bytes(b"ignored output")
    (repo.root / ".env").write_text("WANDB_API_KEY=secret\n")  # untracked, not ignored: a secret
    expected = {k: v for k, v in tree(repo.root).items() if k not in ("model.ckpt", ".env")}

    done = repo.run("run", "grid.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning: uncommitted changes" in done.stderr and "not kept, secrets: .env" in done.stderr
    (record,) = (repo.exp("repro") / "provenance").glob("*/code.json")
    assert json.loads(record.read_text())["secrets_not_kept"] == [".env"]
    kept = b"".join(p.read_bytes() for p in repo.exp("repro").rglob("*") if p.is_file())
    assert b"WANDB_API_KEY" not in kept
    # the project moves on: new commits and edits after the run
    (repo.root / "data.txt").write_text("later\n")
    (repo.root / "notes" / "deep" / "idea.md").write_text("changed later\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "later")

    into = tmp_path / "restored"
    restored = repo.run("restore", "x=1", "--into", str(into))
    assert restored.returncode == 0, restored.stderr
    got = tree(into)
    assert got == expected
    assert "model.ckpt" not in got and "gone.txt" not in got and ".env" not in got
    assert f"cd {into}" in restored.stdout and "python show.py 1" in restored.stdout
    # the printed command reruns it from the restored code, as a new attempt in the experiment
    rerun = subprocess.run(repo.cmd("rerun", "x=1", "--exp", str(repo.exp("repro")), "--here"), cwd=into,
                           env=repo.env, capture_output=True, text=True, timeout=60)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    log = (repo.exp("repro") / "runs" / "x=1" / "main.log").read_text().splitlines()
    assert log == ["data: edited, not committed x: 1"] * 2
    assert repo.state_files("repro")["x=1"]["attempt"] == 2


def test_snapshot_keeps_queued_runs_on_the_code_of_submit_time(repo: Project) -> None:
    for snapshot in (True, False):
        repo.write("data.txt", "at submit\n")
        gate = repo.root / f"go-{snapshot}"
        repo.write("show.py", f"""
            import os, sys, time
            if sys.argv[1] == "1":  # the first run holds the only slot until the test says go
                open("{repo.root}/started-{snapshot}", "w").close()
                while not os.path.exists("{gate}"):
                    time.sleep(0.02)
            print("data:", open("data.txt").read().strip(), "x:", sys.argv[1])
        """)
        git(repo, "commit", "-qam", f"submit {snapshot}")
        name = f"snap{snapshot}"
        proc = repo.start("run", "grid.yml", "--jobs", "1", "--name", name,
                          *(["--snapshot"] if snapshot else []))
        wait_until(lambda s=snapshot: (repo.root / f"started-{s}").exists(), 60, what="the first run")
        repo.write("data.txt", "edited while queued\n")  # x=2 waits in the queue meanwhile
        gate.touch()
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        seen = (repo.exp(name) / "runs" / "x=2" / "main.log").read_text().strip()
        assert seen == ("data: at submit x: 2" if snapshot else "data: edited while queued x: 2")
        if snapshot:
            (copy,) = (repo.exp(name) / "snapshots").iterdir()
            assert (copy / "data.txt").read_text() == "at submit\n"
            assert not (copy / "experiments").exists()  # outputs are not code
            manifest = (repo.exp(name) / "manifest.jsonl").read_text().splitlines()
            plans = [json.loads(line) for line in manifest]
            assert {p["cwd"] for p in plans} == {str(copy)}
            # a later launch of other code leaves the plans of runs it does not start alone
            again = repo.run("run", "grid.yml", "--name", name, "--snapshot", "--retry-failed")
            assert again.returncode == 0, again.stderr
            assert (repo.exp(name) / "manifest.jsonl").read_text().splitlines() == manifest
            assert len(list((repo.exp(name) / "snapshots").iterdir())) == 2


def test_require_clean_refuses_a_dirty_tree_and_starts_nothing(repo: Project) -> None:
    repo.write("data.txt", "dirty\n")
    done = repo.run("run", "grid.yml", "--require-clean")
    assert done.returncode == 2
    assert done.stderr.startswith("error: --require-clean: uncommitted changes in ")
    assert "data.txt" in done.stderr and "Traceback" not in done.stderr
    assert not repo.exp("repro").exists()
    git(repo, "commit", "-qam", "clean")
    clean = repo.run("run", "grid.yml", "--require-clean")
    assert clean.returncode == 0, clean.stderr
    assert "warning" not in clean.stderr


def test_what_a_launch_records(repo: Project) -> None:
    head = git(repo, "rev-parse", "HEAD").strip()
    branch = git(repo, "symbolic-ref", "--short", "HEAD").strip()
    repo.write("untracked.py", "X = 1\n")
    (repo.root / "env" / "lib").mkdir(parents=True)  # a venv git does not ignore: not code
    repo.write("env/pyvenv.cfg", "home = /usr/bin\n")
    repo.write("env/lib/site.py", "")
    done = repo.run("run", "grid.yml", "x=1,2,3")
    assert done.returncode == 0, done.stderr
    exp = repo.exp("repro")
    states = repo.state_files("repro")
    (launch,) = {s["launch"] for s in states.values()}
    record = exp / "provenance" / launch
    code = json.loads((record / "code.json").read_text())
    assert (code["commit"], code["branch"], code["dirty"]) == (head, branch, True)
    assert code["untracked"] == ["untracked.py"] and code["overrides"] == ["x=1,2,3"]
    assert (record / "spec.yml").read_bytes() == (repo.root / "grid.yml").read_bytes()
    assert not (record / "tracked.patch").exists()  # nothing tracked changed
    (env,) = json.loads((record / "environment.json").read_text())["environments"]
    python = env["python"]
    assert python["version"] == ".".join(map(str, sys.version_info[:3]))
    assert any(p.startswith("expdeploy-") for p in python["packages"])
    assert len(python["packages_sha256"]) == 64
    assert {s["host"] for s in states.values()} == {os.uname().nodename}
    shown = json.loads(repo.run("results", str(exp), "--format", "json").stdout)
    assert {r["run"]: r["code"] for r in shown}["x=1"] == {
        "launch": launch, "commit": head, "branch": branch, "dirty": True, "host": os.uname().nodename}
    # the same code launched again is the same record, logged as a second launch
    again = repo.run("run", "grid.yml", "x=1,2,3", "--retry-failed")
    assert again.returncode == 0
    assert [json.loads(line)["launch"] for line in (exp / "provenance" / "launches.jsonl").read_text()
            .splitlines()] == [launch, launch]


def test_rerun_runs_only_that_run_as_its_next_attempt(repo: Project) -> None:
    assert repo.run("run", "grid.yml").returncode == 0
    done = repo.run("rerun", "x=2")
    assert done.returncode == 0, done.stderr
    states = repo.state_files("repro")
    assert (states["x=1"]["attempt"], states["x=2"]["attempt"]) == (1, 2)
    assert "note: the code" not in done.stderr  # unchanged since the launch
    repo.write("data.txt", "changed\n")
    changed = repo.run("rerun", "x=2")
    assert changed.returncode == 0
    assert "note: the code in" in changed.stderr and "expdeploy restore x=2" in changed.stderr
    missing = repo.run("rerun", "x=9")
    assert missing.returncode == 2 and "no run 'x=9'" in missing.stderr
