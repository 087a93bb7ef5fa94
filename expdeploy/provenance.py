"""What code each launch ran: git commit, branch and dirty flag, the binary diff of tracked changes
and the untracked files, kept in `<exp>/provenance/<id>/` with the spec, overrides, Python and host,
and `--snapshot` copies of the code in `<exp>/snapshots/<id>/`. Each run plan names its launch; the
worker writes it into the attempt's state.json."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expdeploy import worker
from expdeploy.errors import BadInput

if TYPE_CHECKING:
    from expdeploy.wrapping import EnvSpec

PROVENANCE = "provenance"
SNAPSHOTS = "snapshots"
PATCH = "tracked.patch"
UNTRACKED = "untracked.tar"
COMMAND_LINE = "command_line.sh"  # the Hydra multirun line of a launch that had no spec file
MAX_UNTRACKED_FILE = 20 * 2**20  # bigger untracked files are data, not code: named, not kept
MAX_UNTRACKED_TOTAL = 200 * 2**20
# untracked files that hold secrets, not code: never copied into the experiment (names only)
SECRET_NAMES = re.compile(r"(^|/)(\.env(\.[^/]*)?|\.netrc|\.pgpass|id_(rsa|dsa|ecdsa|ed25519)[^/]*|"
                          r"[^/]*\.(pem|key|p12|pfx)|(secrets?|credentials?)(\.[^/]*)?|"
                          r"client_secret[^/]*\.json)$", re.IGNORECASE)
# the patch must not depend on the user's git config (colour, external diff tools, prefixes)
DIFF = ("diff", "--binary", "--no-color", "--no-ext-diff", "--no-textconv", "--src-prefix=a/",
        "--dst-prefix=b/", "--submodule=short", "--no-renames")


@dataclass(frozen=True, slots=True)
class CodeState:
    """The project's code as it is now."""

    root: Path  # git's top level, or the project directory outside git
    git: bool
    commit: str | None
    branch: str | None  # None: a detached HEAD
    changed: tuple[str, ...]  # tracked paths that differ from the commit (staged or not)
    untracked: tuple[str, ...]  # not ignored, not tracked
    too_big: tuple[str, ...] = ()  # untracked files over the size limits, not kept
    secret: tuple[str, ...] = ()  # untracked files that look like secrets, not kept
    submodules: tuple[str, ...] = ()  # `git submodule status` lines: their commits, not their diffs

    @property
    def dirty(self) -> bool:
        return bool(self.changed or self.untracked or self.too_big or self.secret)

    def describe(self) -> str:
        parts = [f"{len(self.changed)} changed"] if self.changed else []
        untracked = len(self.untracked) + len(self.too_big) + len(self.secret)
        parts += [f"{untracked} untracked"] if untracked else []
        return ", ".join(parts) or "clean"


@dataclass(frozen=True, slots=True)
class Launch:
    """One `run` of an experiment's code: where its record is, and the copy runs use, if any."""

    id: str
    directory: Path
    code: CodeState
    snapshot: Path | None = None  # the snapshot's directory that stands for the project's cwd


def _git(root: Path, *args: str) -> bytes | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, check=False)
    except FileNotFoundError:
        return None
    return done.stdout if done.returncode == 0 else None


def _paths(out: bytes | None) -> list[str]:
    return [p for p in (out or b"").decode("utf-8", "surrogateescape").split("\0") if p]


def _inside(path: Path, parents: Sequence[Path]) -> bool:
    return any(path == p or p in path.parents for p in parents)


def code_state(project_dir: Path, exclude: Sequence[Path] = ()) -> CodeState:
    """Read the state of the code under `project_dir`; files under `exclude` (the experiments
    directory) are outputs, never code."""
    top = _git(project_dir, "rev-parse", "--show-toplevel")
    if top is None:
        return CodeState(project_dir.resolve(), False, None, None, (), ())
    root = Path(top.decode().strip())
    # outputs below the code, not a directory the code itself lies in (a restored worktree)
    skip = [p.resolve() for p in exclude if not _inside(root.resolve(), [p.resolve()])]
    commit = (_git(root, "rev-parse", "--verify", "-q", "HEAD") or b"").decode().strip() or None
    branch = (_git(root, "symbolic-ref", "-q", "--short", "HEAD") or b"").decode().strip() or None
    changed = _paths(_git(root, "diff", "--no-ext-diff", "--name-only", "-z", "HEAD")) if commit else [
        n for n in _paths(_git(root, "ls-files", "-z", "--cached")) if (root / n).exists()]
    # outputs inside the repository are not even listed (a big experiments tree is slow to walk)
    outputs = [f":(exclude,top){p.relative_to(root.resolve())}" for p in skip if _inside(p, [root.resolve()])]
    kept: list[str] = []
    too_big: list[str] = []
    secret: list[str] = []
    total = 0
    in_env = _environment_finder(root)
    for name in _paths(_git(root, "ls-files", "-z", "--others", "--exclude-standard", "--", ":/", *outputs)):
        path = root / name
        try:
            if _inside(path.resolve(), skip) or (path.is_dir() and not path.is_symlink()) or in_env(name):
                continue
            size = path.lstat().st_size
        except OSError:  # gone since git listed it (an editor's swap file)
            continue
        if SECRET_NAMES.search(name):
            secret.append(name)
        elif size > MAX_UNTRACKED_FILE or total + size > MAX_UNTRACKED_TOTAL:
            too_big.append(name)
        else:
            total += size
            kept.append(name)
    submodules = (_git(root, "submodule", "status", "--recursive") or b"").decode(errors="replace")
    return CodeState(root, True, commit, branch, tuple(changed), tuple(kept), tuple(too_big), tuple(secret),
                     tuple(line.strip() for line in submodules.splitlines() if line.strip()))


def _environment_finder(root: Path) -> Callable[[str], bool]:
    """Is a path (relative to `root`) inside a venv or conda env? Environments travel by
    reference (`env:`, `env sync`), not as code, even when git does not ignore them."""
    from expdeploy.environments import kind_of

    known: dict[str, bool] = {}

    def is_env(folder: str) -> bool:
        if folder not in known:
            known[folder] = kind_of(root / folder) is not None
        return known[folder]

    def inside(name: str) -> bool:
        parts = name.split("/")[:-1]
        return any(is_env("/".join(parts[: i + 1])) for i in range(len(parts)))

    return inside


def check_clean(code: CodeState) -> None:
    """`--require-clean`: refuse a dirty tree, or code that git does not track at all."""
    if not code.git:
        raise BadInput(f"{code.root} is not a git repository: its code cannot be recorded",
                       key="--require-clean",
                       hint="`git init` and commit the project, or drop --require-clean")
    if code.dirty:
        names = [*code.changed, *code.untracked, *code.too_big, *code.secret]
        shown = ", ".join(names[:3]) + (f" (+{len(names) - 3})" if len(names) > 3 else "")
        raise BadInput(f"uncommitted changes in {code.root}: {shown}", key="--require-clean",
                       hint="commit them (or add outputs to .gitignore), or drop --require-clean")


def warning(code: CodeState, exp_dir: Path) -> str | None:
    """The line `run` prints when the code it records is not one commit."""
    if not code.git:
        return (f"{code.root} is not a git repository: the code is not recorded "
                f"(--snapshot keeps a copy in {exp_dir / SNAPSHOTS})")
    if not code.dirty:
        return None
    big = f"; not kept, too big: {', '.join(code.too_big[:3])}" if code.too_big else ""
    big += f"; not kept, secrets: {', '.join(code.secret[:3])}" if code.secret else ""
    return (f"uncommitted changes ({code.describe()}): the diff and untracked files are kept in "
            f"{exp_dir / PROVENANCE}{big} (--require-clean refuses)")


def _patch(code: CodeState) -> bytes:
    if not code.commit or not code.changed:
        return b""
    return _git(code.root, *DIFF, "HEAD") or b""


def _tar(root: Path, names: Sequence[str]) -> bytes:
    """The files as a tar (modes and symlinks kept); file times zeroed so equal code, equal bytes."""
    import tarfile  # only for trees with untracked files

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(names):
            try:
                info = tar.gettarinfo(str(root / name), arcname=name)
            except OSError:  # gone since it was listed
                continue
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if info.isreg():
                with open(root / name, "rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    return buffer.getvalue()


def record_launch(exp_dir: Path, cwd: Path, code: CodeState, spec: Path, overrides: Sequence[str],
                  environment: Mapping[str, Any], snapshot: bool = False,
                  load: Mapping[str, Any] | None = None,
                  command_line: Sequence[str] | None = None) -> Launch:
    """Keep what this launch runs in the experiment directory (once per distinct code, spec and
    overrides), make its snapshot when asked, and log the launch. `load` holds the options the spec
    was read with (`--name`, `--command`, ...), for `rerun`. A Hydra multirun line given instead
    of a spec file is `command_line` (kept as command_line.sh; `spec` is not read then)."""
    untracked = _tar(code.root, code.untracked if code.commit else [*code.changed, *code.untracked])
    patch = _patch(code)
    spec_bytes = (shlex.join(command_line) + "\n").encode() if command_line is not None else spec.read_bytes()
    key = json.dumps([code.commit, list(overrides), str(cwd), environment, load], sort_keys=True,
                     default=str).encode()
    digest = hashlib.sha256()
    for part in (key, patch, untracked, spec_bytes):
        digest.update(hashlib.sha256(part).digest())
    launch_id = digest.hexdigest()[:12]
    directory = exp_dir / PROVENANCE / launch_id
    if not (directory / "code.json").exists():
        directory.mkdir(parents=True, exist_ok=True)
        if patch:
            (directory / PATCH).write_bytes(patch)
        if untracked and (code.untracked or not code.commit):
            (directory / UNTRACKED).write_bytes(untracked)
        spec_name = COMMAND_LINE if command_line is not None else f"spec{spec.suffix}"
        (directory / spec_name).write_bytes(spec_bytes)
        (directory / "environment.json").write_text(json.dumps(environment, indent=1))
        worker.write_json_atomic(str(directory / "code.json"), {
            "git": code.git, "root": str(code.root), "commit": code.commit, "branch": code.branch,
            "dirty": code.dirty, "changed": list(code.changed), "untracked": list(code.untracked),
            "not_kept": list(code.too_big), "secrets_not_kept": list(code.secret),
            "submodules": list(code.submodules), "cwd": str(cwd),
            "spec": str(spec.resolve()) if command_line is None else None,
            **({"command_line": list(command_line)} if command_line is not None else {}),
            "overrides": list(overrides), "load": dict(load or {})}, indent=1)
    made = _snapshot(exp_dir, launch_id, code, cwd) if snapshot else None
    log_launch(exp_dir, launch_id, snapshot=made is not None)
    return Launch(launch_id, directory, code, made)


def log_launch(exp_dir: Path, launch_id: str, snapshot: bool) -> None:
    """One line per launch in provenance/launches.jsonl: when, where, and the command line."""
    with open(exp_dir / PROVENANCE / "launches.jsonl", "a") as log:
        log.write(json.dumps({"launch": launch_id, "time": time.time(), "host": os.uname().nodename,
                              "argv": sys.argv[1:], "snapshot": snapshot}) + "\n")


def same_code(launch_dir: Path, code: CodeState) -> bool:
    """Is `code` what the launch recorded (commit, diff and untracked files)?"""
    record = worker.read_json(str(launch_dir / "code.json")) or {}
    patch = launch_dir / PATCH
    return (record.get("commit") == code.commit and record.get("untracked") == list(code.untracked)
            and (patch.read_bytes() if patch.exists() else b"") == _patch(code)
            and ((launch_dir / UNTRACKED).read_bytes() if (launch_dir / UNTRACKED).exists() else b"")
            == (_tar(code.root, code.untracked) if code.untracked else b""))


def read_code(exp_dir: Path, launch: str) -> dict[str, Any] | None:
    """A launch's code.json (what record_launch wrote), or None when it is missing or unreadable."""
    try:
        record = worker.read_json(str(exp_dir / PROVENANCE / launch / "code.json"))
    except OSError:  # unreadable: as good as missing
        return None
    return record if isinstance(record, dict) else None


def launch_cwd(exp_dir: Path, launch: str, record: Mapping[str, Any]) -> Path:
    """Where the launch's runs worked: the same place in its snapshot when it made one, else
    the directory it was launched from."""
    snapshot = exp_dir / SNAPSHOTS / launch
    if snapshot.is_dir() and Path(record["cwd"]).is_relative_to(record["root"]):
        return _in_snapshot(snapshot, Path(record["cwd"]), Path(record["root"]))
    return Path(record["cwd"])


def _in_snapshot(snapshot: Path, cwd: Path, root: Path) -> Path:
    return snapshot / cwd.relative_to(root)


def snapshot_launch(exp_dir: Path, cwd: Path) -> Launch | None:
    """When `cwd` lies in one of this experiment's snapshots (a rerun), the launch it came from."""
    base = (exp_dir / SNAPSHOTS).resolve()
    here = cwd.resolve()
    if base not in here.parents:
        return None
    launch_id = here.relative_to(base).parts[0]
    record = read_code(exp_dir, launch_id)
    if not record:
        return None
    code = CodeState(Path(record["root"]), record["git"], record["commit"], record["branch"],
                     tuple(record["changed"]), tuple(record["untracked"]), tuple(record["not_kept"]),
                     tuple(record.get("secrets_not_kept") or ()), tuple(record.get("submodules") or ()))
    return Launch(launch_id, exp_dir / PROVENANCE / launch_id, code, here)


def _snapshot(exp_dir: Path, launch_id: str, code: CodeState, cwd: Path) -> Path:
    """Copy the code as it is now (git's files, or the project's outside git) into the experiment;
    runs then work in the copy, so edits made while they wait in a queue do not reach them."""
    from expdeploy.sync import code_tree

    target = exp_dir / SNAPSHOTS / launch_id
    if not target.exists():
        tree = code_tree(cwd)
        root = Path(tree.root)
        output = exp_dir.parent.resolve()
        skip = [*([] if _inside(root.resolve(), [output]) else [output]),
                *((root / n).resolve() for n in (*code.too_big, *code.secret))]
        partial = target.with_name(f".{launch_id}.{os.getpid()}")
        in_env = _environment_finder(root)
        for name in tree.files:
            source = root / name
            if SECRET_NAMES.search(name) or _inside(source.resolve(), skip) or in_env(name):
                continue
            copy = partial / name
            copy.parent.mkdir(parents=True, exist_ok=True)
            try:
                if source.is_symlink():
                    os.symlink(os.readlink(source), copy)
                else:
                    shutil.copy2(source, copy)
            except FileNotFoundError:  # deleted (a tracked file removed), or gone since listed
                continue
        partial.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(partial, target)
        except OSError:  # another `run` of the same code made it first: theirs is the same copy
            if not target.is_dir():
                raise
            shutil.rmtree(partial, ignore_errors=True)
    return _in_snapshot(target, cwd.resolve(), code.root)


def environment_info(envs: Sequence[EnvSpec | None], here: bool) -> dict[str, Any]:
    """The environments the runs use: per distinct `env:`, its Python (version, packages and their
    hash) when that Python is on this machine (`here`) and outside a container, and image ids."""
    info: dict[str, Any] = {"host": os.uname().nodename, "environments": []}
    seen: set[str] = set()
    for env in envs:
        table = dict(env.table) if env is not None else {}
        key = json.dumps(table, sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        entry: dict[str, Any] = {"env": table}
        python = _python_of(env) if here else None
        if python:
            entry["python"] = _python_info(python)
        if env is not None and env.container and here:
            image = str(table.get(env.container, ""))
            runtime = str(table.get("runtime") or env.container)
            entry["image_id"] = _image_id(runtime, image)
        info["environments"].append(entry)
    return info


def _python_of(env: EnvSpec | None) -> str | None:
    """The interpreter `python` names in the runs, or None when it is inside a container."""
    if env is not None and env.container:
        return None
    if env is None or env.python is None:
        return shutil.which("python") or shutil.which("python3")
    value = str(env.table[env.python])
    return value if env.python == "python" else os.path.join(value, "bin", "python")


_PYTHON_INFO = "import json, sys; print(json.dumps([sys.executable, sys.version.split()[0], sys.path]))"


def _python_info(python: str) -> dict[str, Any]:
    """Its version and installed distributions, read from the `*.dist-info` names on its path
    (parsing every package's metadata would cost a second on a large env; names suffice)."""
    if (os.path.dirname(os.path.abspath(python)) == os.path.dirname(os.path.abspath(sys.executable))
            and os.path.realpath(python) == os.path.realpath(sys.executable)):
        # the runs use this very interpreter (its venv's bin/): no need to start another
        executable, version, path = sys.executable, sys.version.split()[0], sys.path[1:]
    else:
        try:
            done = subprocess.run([python, "-c", _PYTHON_INFO], capture_output=True, text=True, timeout=30,
                                  check=False)
            executable, version, path = json.loads(done.stdout)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return {"interpreter": python, "error": "could not be asked for its version and packages"}
    packages: set[str] = set()
    for entry in path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        packages.update(n.rsplit(".", 1)[0] for n in names if n.endswith((".dist-info", ".egg-info")))
    listing = sorted(packages)
    return {"interpreter": executable, "version": version, "packages": listing,
            "packages_sha256": hashlib.sha256("\n".join(listing).encode()).hexdigest()}


def _image_id(runtime: str, image: str) -> str | None:
    if runtime in ("singularity", "apptainer"):
        try:
            stat = os.stat(image)
        except OSError:
            return None
        return f"size={stat.st_size} mtime={int(stat.st_mtime)}"
    try:
        done = subprocess.run([runtime, "image", "inspect", "--format", "{{.Id}}", image],
                              capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None
