"""Bringing back the code a run used: a git worktree at its launch's commit with the recorded diff
applied and the untracked files put back (or a copy of its snapshot outside git)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expdeploy import worker
from expdeploy.errors import BadInput
from expdeploy.provenance import PATCH, PROVENANCE, SNAPSHOTS, UNTRACKED, read_code


@dataclass(frozen=True, slots=True)
class Restored:
    into: Path
    cwd: Path  # where in `into` the runs worked
    commit: str | None
    patched: int  # tracked files the diff changed
    untracked: int
    submodules: tuple[str, ...] = ()  # recorded commits of submodules, not checked out here


def launch_of(exp_dir: Path, plan: dict[str, Any]) -> str:
    """The launch a run's latest attempt ran (its state.json), else the one its plan names."""
    state = worker.read_json(os.path.join(worker.run_dir_of(str(exp_dir), plan), "state.json")) or {}
    launch = state.get("launch") or plan.get("launch")
    if not launch:
        raise BadInput(f"run {plan['name']} has no recorded code", key="RUN",
                       hint="its experiment was launched by an expdeploy older than code recording")
    return str(launch)


def read_launch(exp_dir: Path, launch: str) -> dict[str, Any]:
    record = read_code(exp_dir, launch)
    if record is None:
        raise BadInput(f"{exp_dir / PROVENANCE / launch / 'code.json'} is missing or unreadable", key="RUN",
                       hint="the experiment's provenance/ directory was removed or is incomplete")
    return record


def restore(exp_dir: Path, launch: str, into: Path) -> Restored:
    """Rebuild the launch's code in `into`, which must not exist yet (or be empty)."""
    record = read_launch(exp_dir, launch)
    if into.exists() and (not into.is_dir() or any(into.iterdir())):
        raise BadInput(f"{into} already exists and is not empty", key="--into",
                       hint="pass a new directory with --into")
    directory = exp_dir / PROVENANCE / launch
    root = Path(record["root"])
    inside = Path(record["cwd"]).relative_to(root) if Path(record["cwd"]).is_relative_to(root) else Path()
    commit = record.get("commit")
    if record.get("git") and commit:
        _worktree(root, commit, into)
        try:
            if (directory / PATCH).exists():  # --index: files that were staged are tracked again
                _git(into, "apply", "--index", "--whitespace=nowarn", str(directory / PATCH))
            count = _untar(directory / UNTRACKED, into)
        except BadInput:
            subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(into)],
                           capture_output=True, check=False)
            raise
        return Restored(into, into / inside, commit, len(record.get("changed") or ()), count,
                        tuple(record.get("submodules") or ()))
    if record.get("git"):  # a repository without a commit: every file is in the tar
        into.mkdir(parents=True, exist_ok=True)
        return Restored(into, into / inside, None, 0, _untar(directory / UNTRACKED, into))
    snapshot = exp_dir / SNAPSHOTS / launch
    if not snapshot.is_dir():
        raise BadInput(f"{root} was not a git repository and the launch had no --snapshot: its code "
                       "was not recorded", key="RUN", hint="launch with --snapshot outside git")
    into.parent.mkdir(parents=True, exist_ok=True)
    if into.exists():
        into.rmdir()
    shutil.copytree(snapshot, into, symlinks=True)
    return Restored(into, into / inside, None, 0, 0)


def _worktree(root: Path, commit: str, into: Path) -> None:
    if not (root / ".git").exists():
        raise BadInput(f"the run's repository {root} is gone", key="RUN",
                       hint="clone it back to that path, then restore again")
    if subprocess.run(["git", "-C", str(root), "cat-file", "-e", f"{commit}^{{commit}}"],
                      capture_output=True, check=False).returncode != 0:
        raise BadInput(f"commit {commit[:12]} is not in {root}", key="RUN",
                       hint="fetch it (e.g. `git fetch --all`); rebased or amended commits can be found "
                            "with `git reflog`")
    into.parent.mkdir(parents=True, exist_ok=True)
    if into.exists():
        into.rmdir()
    _git(root, "worktree", "add", "--detach", str(into.absolute()), commit)


def _git(where: Path, *args: str) -> None:
    done = subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["failed"])[-1]
        raise BadInput(f"git {args[0]} in {where}: {last}", key="RUN",
                       hint="the recorded code does not apply to that commit any more")


def _untar(path: Path, into: Path) -> int:
    """The untracked files back in place; symlinks as they were (also to absolute paths, like a
    link to a data directory), but no member may land outside `into`."""
    if not path.exists():
        return 0
    with tarfile.open(path) as tar:
        members = tar.getmembers()
        for member in members:
            name = Path(member.name)
            if name.is_absolute() or ".." in name.parts or not (member.isreg() or member.issym()):
                raise BadInput(f"{path}: member {member.name!r} is not a plain file below the tree",
                               key="RUN", hint="the experiment's provenance/ was altered; restore refuses it")
        for member in members:
            target = into / member.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.parent.resolve().is_relative_to(into.resolve()):  # through a symlinked folder
                raise BadInput(f"{path}: member {member.name!r} would land outside {into}", key="RUN",
                               hint="the experiment's provenance/ was altered; restore refuses it")
            if member.issym():
                target.unlink(missing_ok=True)
                os.symlink(member.linkname, target)
                continue
            source = tar.extractfile(member)
            assert source is not None
            with source, open(target, "wb") as out:
                shutil.copyfileobj(source, out)
            os.chmod(target, member.mode & 0o777)
    return len(members)
