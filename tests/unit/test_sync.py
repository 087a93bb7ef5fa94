"""env sync and env check without hosts: what is planned (git's file list, environments by their
layout, path_map), how rsync's output is read, the Docker commands, and the environment probe."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from expdeploy import rsync
from expdeploy.envcheck import (
    Facts,
    compare,
    package_differences,
    parse_probe,
    probe,
    probe_command,
    srun_command,
)
from expdeploy.environments import detect, target_environment
from expdeploy.errors import BadInput
from expdeploy.remote import LocalShell
from expdeploy.sync import (
    SyncEvent,
    Transfer,
    code_tree,
    describe,
    docker_id_command,
    docker_load_command,
    docker_save_command,
    gone_files,
    make_plan,
    plain_lines,
    sync_target,
)
from expdeploy.targets import SlurmSettings, Target

# Recorded from rsync 3.5.0 (`-a -i --stats --no-h --info=progress2 --no-inc-recursive --delete`):
# a re-sync after one file of three changed in place and one was removed.
RECORDED = (
    "*deleting   lib/old.bin\n>f..t...... lib/blob2.bin\n"
    "\r            700   0%    0.00kB/s    0:00:00  "
    "\r         300000  33%  285.43MB/s    0:00:00 (xfr#1, to-chk=1/5)"
    "\r         300000  33%  142.72MB/s    0:00:00 (xfr#1, to-chk=0/5)\n"
    "\nNumber of files: 5 (reg: 3, dir: 2)\nNumber of created files: 0\nNumber of deleted files: 1 (reg: 1)\n"
    "Number of regular files transferred: 1\nTotal file size: 900000 bytes\n"
    "Total transferred file size: 300000 bytes\nLiteral data: 700 bytes\nMatched data: 299300 bytes\n"
    "File list size: 0\nFile list generation time: 0.001 seconds\nFile list transfer time: 0.000 seconds\n"
    "Total bytes sent: 2588\nTotal bytes received: 2627\n\n"
    "sent 2588 bytes  received 2627 bytes  10430.00 bytes/sec\ntotal size is 900000  speedup is 172.58\n"
)
# What rsync itemizes for a dry run of new files, and for attribute-only changes (not listed).
ITEMIZED = ("cd+++++++++ src/\n<f+++++++++ src/model.py\n.d..t...... lib/\n"
            "cL+++++++++ bin/python -> /usr/bin/python3\n")


def git(directory: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(directory), *args], check=True, capture_output=True)


def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "src").mkdir(parents=True)
    git(root, "init", "-q")
    (root / ".gitignore").write_text("experiments/\n*.log\n")
    (root / "src" / "a.py").write_text("a")
    (root / "b.py").write_text("b")
    (root / "x.log").write_text("ignored")
    (root / "experiments").mkdir()
    (root / "experiments" / "out.txt").write_text("ignored")
    return root


# --- rsync's output ---------------------------------------------------------------------------

def test_recorded_output_is_read_into_numbers() -> None:
    lines = list(rsync.pieces(iter([RECORDED[:40], RECORDED[40:200], RECORDED[200:]])))
    ticks = [t for t in map(rsync.parse_tick, lines) if t]
    assert ticks == [rsync.Tick(700, 0, "0.00kB/s"), rsync.Tick(300000, 33, "285.43MB/s"),
                     rsync.Tick(300000, 33, "142.72MB/s")]
    changes = [c for c in map(rsync.parse_change, lines) if c]
    assert changes == ["*deleting   lib/old.bin", ">f..t...... lib/blob2.bin"]
    result = rsync.parse_stats(lines, changes)
    assert result == rsync.RsyncResult(files=1, deleted=1, size=300000, sent=2588, total=900000,
                                       changes=tuple(changes))
    listed = [c for c in map(rsync.parse_change, ITEMIZED.splitlines()) if c]
    assert listed == ["cd+++++++++ src/", "<f+++++++++ src/model.py",
                      "cL+++++++++ bin/python -> /usr/bin/python3"]


def test_rsync_command_over_ssh() -> None:
    argv = rsync.command(["/p/env/"], "h1:/p/env/", ssh=["ssh", "-F", "/my config"], dry_run=False,
                         progress=True, extra=["--delete"])
    assert argv[:5] == list(rsync.BASE)
    assert argv[argv.index("--rsh") + 1] == "ssh -F '/my config'"
    assert "--info=progress2" in argv and argv[-3:] == ["--delete", "/p/env/", "h1:/p/env/"]
    dry = rsync.command(["a"], "h:b", ssh=None, dry_run=True, progress=True)
    assert "--dry-run" in dry and "--info=progress2" not in dry and "--rsh" not in dry


def test_rsync_run_reports_ticks_and_failures(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_bytes(os.urandom(300_000))
    ticks: list[rsync.Tick] = []
    result = rsync.run(rsync.command([f"{tmp_path}/src/"], f"{tmp_path}/dst/", ssh=None, dry_run=False,
                                     progress=True), on_tick=ticks.append)
    assert (result.files, result.total) == (1, 300_000) and ticks[-1].percent == 100
    with pytest.raises(Exception, match=r"rsync failed \(23\)"):
        rsync.run(rsync.command([f"{tmp_path}/missing/"], f"{tmp_path}/dst/", ssh=None, dry_run=False,
                                progress=False))


# --- what to sync -----------------------------------------------------------------------------

def test_code_is_what_git_lists_with_the_commit(tmp_path: Path) -> None:
    root = project(tmp_path)
    tree = code_tree(root / "src")  # from a subdirectory: the top level
    assert (tree.root, tree.files, tree.commit, tree.git) == (str(root), (".gitignore", "b.py", "src/a.py"),
                                                              None, True)
    git(root, "add", "-A")
    git(root, "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-qm", "x")
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert code_tree(root).commit == head


def test_outside_git_every_file_but_environments(tmp_path: Path) -> None:
    (tmp_path / "plain" / "env" / "conda-meta").mkdir(parents=True)
    (tmp_path / "plain" / "env" / "bin").mkdir()
    (tmp_path / "plain" / "env" / "bin" / "python").symlink_to(sys.executable)
    (tmp_path / "plain" / "run.py").write_text("")
    tree = code_tree(tmp_path / "plain")
    assert (tree.files, tree.commit, tree.git) == (("run.py",), None, False)


def test_gone_files_are_only_what_sync_sent_and_git_does_not_ignore(tmp_path: Path) -> None:
    root = project(tmp_path)
    tree = code_tree(root)
    before = ("b.py", "src/a.py", "removed.py", "experiments/old.txt", "y.log", "x.log")
    # removed.py: sent before, gone now. experiments/, *.log: ignored now. x.log: still here.
    assert gone_files(tree, before) == ["removed.py"]


def test_plan_items_and_path_map_warning(tmp_path: Path) -> None:
    root = project(tmp_path)
    env = root / "venv"
    env.mkdir()
    (env / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (root / "app.sif").write_bytes(b"sif")
    target = Target(name="t", backend="ssh", hosts=("h",), environment=str(env),
                    images=(str(root / "app.sif"),), path_map={str(env): "/scratch/venv"},
                    workdir="/work/proj")
    plan = make_plan(target, root, ("code", "env", "images"))
    assert [(i.kind, i.remote) for i in plan.items] == [
        ("code", "/work/proj"), ("env", "/scratch/venv"), ("images", str(root / "app.sif"))]
    warnings = " ".join(plan.warnings)
    assert "goes to /scratch/venv (path_map)" in warnings and "may break" in warnings
    assert "is inside the code and not git-ignored" in warnings  # venv/ is listed by git
    with pytest.raises(BadInput, match="does not exist here"):
        make_plan(Target(name="t", backend="ssh", images=(str(root / "no.sif"),)), root, ("images",))
    with pytest.raises(BadInput, match="sets no `docker_images`"):
        make_plan(target, root, ("docker",))


def test_environments_by_layout(tmp_path: Path) -> None:
    conda = tmp_path / "conda"
    (conda / "conda-meta").mkdir(parents=True)
    (conda / "bin").mkdir()
    (conda / "bin" / "python").symlink_to("/nonexistent/python3")  # a link is enough: it may point elsewhere
    (conda / "etc" / "conda" / "activate.d").mkdir(parents=True)
    found = detect(str(conda))
    assert (found.kind, found.prefix, found.activate_scripts, found.python) == (
        "conda", str(conda), True, f"{conda}/bin/python")
    (tmp_path / "meta-only" / "conda-meta").mkdir(parents=True)
    for bad in ("meta-only", "missing"):
        with pytest.raises(BadInput) as caught:
            detect(str(tmp_path / bad))
        assert caught.value.hint is not None and "venv" in caught.value.hint


def test_active_environment_is_the_default(tmp_path: Path) -> None:
    venv = tmp_path / "v"
    venv.mkdir()
    (venv / "pyvenv.cfg").write_text("")
    target = Target(name="t", backend="ssh")
    assert target_environment(target, {"VIRTUAL_ENV": str(venv), "CONDA_PREFIX": "/x"}).kind == "venv"
    with pytest.raises(BadInput, match="none is active"):
        target_environment(target, {})
    with pytest.raises(BadInput) as caught:
        target_environment(target, {"CONDA_PREFIX": str(tmp_path)})
    assert str(caught.value).startswith("$CONDA_PREFIX: ")


def test_a_target_without_hosts_syncs_nothing(tmp_path: Path) -> None:
    events: list[SyncEvent] = []
    report = sync_target(Target(name="here", backend="ssh"), project(tmp_path), progress=events.append)
    assert (report.hosts, report.files, report.bytes, report.commit, events) == ((), 0, 0, None, [])
    with pytest.raises(BadInput, match="unknown sync kind 'nope'"):
        sync_target(Target(name="here", backend="ssh"), tmp_path, kinds=("nope",))


def test_plain_lines_at_start_every_ten_percent_and_done() -> None:
    lines: list[str] = []
    on_event = plain_lines(lines.append)
    on_event(SyncEvent("h1", "env", "/e", "start", message="sending /e"))
    for percent in (1, 5, 12, 13, 38, 100):
        on_event(SyncEvent("h1", "env", "/e", "tick", done=percent * 1000, percent=percent, rate="1MB/s"))
    on_event(SyncEvent("h1", "env", "/e", "done", message="3 files"))
    assert lines == ["h1 env: sending /e", "h1 env: 12% 12.0 kB 1MB/s", "h1 env: 38% 38.0 kB 1MB/s",
                     "h1 env: 3 files"]


def test_describe_a_transfer() -> None:
    sent = Transfer("env", "/e", "/e", files=2, deleted=1, sent=1234, total=5_000_000)
    assert describe(sent, False) == "2 files, 1,234 bytes sent (1.2 kB; 5.0 MB in all), 1 deleted"
    assert describe(sent, True) == "2 files, 1,234 bytes to send (1.2 kB; 5.0 MB in all), 1 to delete"
    assert describe(Transfer("docker", "i", "i", skipped="h1 has it"), False) == "skipped: h1 has it"


# --- docker -----------------------------------------------------------------------------------

def test_docker_commands() -> None:
    assert docker_id_command("pytorch/pytorch:2.3") == ["docker", "image", "inspect", "--format", "{{.Id}}",
                                                        "pytorch/pytorch:2.3"]
    assert docker_save_command("app:1") == ["docker", "save", "app:1"]
    load = docker_load_command(["ssh", "-F", "cfg", "-o", "BatchMode=yes"], "gpu1",
                               {"DOCKER_HOST": "unix:///x y"})
    assert load[:6] == ["ssh", "-F", "cfg", "-o", "BatchMode=yes", "gpu1"]
    assert shlex.split(load[6]) == ["sh", "-c", "export DOCKER_HOST='unix:///x y'; docker load"]


# --- env check --------------------------------------------------------------------------------

def test_probe_runs_the_interpreter_here() -> None:
    facts = probe(LocalShell(), "this machine", sys.executable)
    assert facts.problem is None and facts.python == sys.version.split()[0]
    assert facts.packages is not None and any(p.startswith("pytest==") for p in facts.packages)
    assert facts.gpus == "none" or facts.gpus.isdigit()
    missing = probe(LocalShell(), "there", "/no/such/python")
    assert missing.python is None and missing.problem is not None and "is not there" in missing.problem


def test_parse_probe_and_compare() -> None:
    facts = '@@facts {"python": "3.11.7", "packages": ["a==1", "b==2"], "sha256": "x"}\n@@gpus 0\n'
    here = parse_probe("this machine", "/e/bin/python", facts, "")
    assert here == Facts("this machine", "3.11.7", ("a==1", "b==2"), "x", "none")
    there = Facts("h1", "3.11.2", ("a==1", "b==3", "c==1"), "y", "2")
    assert compare(here, here) == []
    assert compare(here, there) == ["python 3.11.2 there, 3.11.7 here",
                                    "packages differ: b 2 here, 3 there; c==1 only there",
                                    "gpus 2 there, none here"]
    failed = parse_probe("h1", "/e/bin/python", "@@failed\n@@gpus 1\n", "Traceback\nImportError: x\n")
    assert failed.problem == "/e/bin/python failed: ImportError: x" and failed.gpus == "1"
    assert compare(here, failed) == [failed.problem]


def test_package_differences_are_shortened() -> None:
    theirs = [f"p{i}==1" for i in range(12)]
    assert package_differences([], theirs).endswith("; and 4 more")


def test_srun_command_carries_the_slurm_settings() -> None:
    target = Target(name="c", backend="slurm", slurm=SlurmSettings(partition="gpu", qos="hi"))
    argv = shlex.split(srun_command(target, probe_command("/e/bin/python")))
    assert argv[:6] == ["srun", "--nodes=1", "--ntasks=1", "--time=5", "--partition=gpu", "--qos=hi"]
    assert argv[6:8] == ["sh", "-c"] and "/e/bin/python -I -c" in argv[8]
