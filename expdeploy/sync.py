"""`expdeploy env sync`: what goes to a target's hosts at the same absolute paths (code as git lists
it, environment, images, paths), how (rsync over its ssh, docker save | load), and what moved."""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from expdeploy import rsync
from expdeploy.errors import EXIT_BAD_INPUT, BadInput
from expdeploy.remote import RemoteError
from expdeploy.targets import SYNC_KINDS

if TYPE_CHECKING:
    from expdeploy.remote import SshShell
    from expdeploy.targets import Target

MANIFEST = ".expdeploy/synced-code"  # in the remote copy of the code: the files sync put there
MAX_PARALLEL_HOSTS = 8


class TargetUnreachable(RemoteError):
    """A host could not be reached or refused us before anything was sent."""

    exit_code = EXIT_BAD_INPUT


@dataclass(frozen=True, slots=True)
class Item:
    """One thing to sync: a path here and where it goes there, or a Docker image."""

    kind: str  # code, env, images, paths, docker
    local: str
    remote: str


@dataclass(frozen=True, slots=True)
class Transfer:
    kind: str
    local: str
    remote: str
    files: int = 0  # files sent (in a dry run: that would be)
    deleted: int = 0
    sent: int = 0  # bytes that went there (in a dry run: the size of what would go)
    total: int = 0  # size of everything the item covers
    changes: tuple[str, ...] = ()  # in a dry run: rsync's itemized lines
    skipped: str | None = None  # why nothing was sent


@dataclass(frozen=True, slots=True)
class HostSync:
    host: str
    label: str  # user@hostname:port
    transfers: tuple[Transfer, ...]

    @property
    def files(self) -> int:
        return sum(t.files for t in self.transfers)

    @property
    def bytes(self) -> int:
        return sum(t.sent for t in self.transfers)


@dataclass(frozen=True, slots=True)
class SyncReport:
    target: str
    dry_run: bool
    hosts: tuple[HostSync, ...]  # empty when the target is this machine
    commit: str | None  # `git rev-parse HEAD` of the code synced; None without code, git or commits
    warnings: tuple[str, ...] = ()

    @property
    def files(self) -> int:
        return sum(h.files for h in self.hosts)

    @property
    def bytes(self) -> int:
        return sum(h.bytes for h in self.hosts)


@dataclass(frozen=True, slots=True)
class SyncEvent:
    """Progress, for a bar or plain lines: an item starts, rsync ticks (bytes, percent), it is done."""

    host: str
    kind: str
    path: str
    phase: str  # "start", "tick", "done", "note"
    done: int = 0
    percent: int | None = None
    rate: str = ""
    message: str = ""

    def __str__(self) -> str:
        if self.phase == "note":
            return f"{self.host}: {self.message}"
        if self.phase == "tick":
            return f"{self.host} {self.kind}: {self.percent}% {human_bytes(self.done)} {self.rate}"
        return f"{self.host} {self.kind}: {self.message or self.path}"


Progress = Callable[[SyncEvent], None]


@dataclass(frozen=True, slots=True)
class CodeTree:
    root: str
    files: tuple[str, ...]  # relative: tracked and untracked-not-ignored, as git lists them
    commit: str | None
    git: bool


@dataclass(frozen=True, slots=True)
class SyncPlan:
    items: tuple[Item, ...]
    code: CodeTree | None
    warnings: tuple[str, ...]


def sync_target(target: Target, project_dir: Path, *, dry_run: bool = False,
                progress: Progress | None = None, kinds: Sequence[str] | None = None) -> SyncReport:
    """Send what the target's `sync` list names (or `kinds`) to each of its hosts, at the same
    paths (`path_map` aside), the hosts in parallel. Every host is reached before anything is sent:
    TargetUnreachable (exit 2) if one is not; BadInput for a missing or unrecognised environment or
    image. A target without hosts is this machine: nothing is sent, the report lists no hosts."""
    kinds = tuple(target.sync if kinds is None else kinds)
    unknown = [k for k in kinds if k not in SYNC_KINDS]
    if unknown:
        raise BadInput(f"unknown sync kind {unknown[0]!r}", hint=f"one of: {', '.join(SYNC_KINDS)}")
    if not target.hosts:
        return SyncReport(target.name, dry_run, (), _commit(project_dir) if "code" in kinds else None)
    plan = make_plan(target, project_dir, kinds)
    emit = _serialized(progress)
    for warning in plan.warnings:
        emit(SyncEvent(target.name, "", "", "note", message=f"warning: {warning}"))
    opened: list[SshShell] = []
    try:
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_HOSTS, len(target.hosts))) as pool:
            hosts = list(pool.map(lambda name: _connect(target, name, plan, dry_run, opened), target.hosts))
            done = tuple(pool.map(lambda host: _sync_host(host, plan, dry_run, emit), hosts))
    finally:
        for shell in opened:
            shell.close()
    return SyncReport(target.name, dry_run, done, plan.code.commit if plan.code else None, plan.warnings)


def plain_lines(write: Callable[[str], None], step: int = 10) -> Progress:
    """A progress callback writing a line when an item starts and ends and at every `step` percent."""
    reached: dict[tuple[str, str, str], int] = {}

    def on_event(event: SyncEvent) -> None:
        key = (event.host, event.kind, event.path)
        if event.phase == "tick":
            mark = (event.percent or 0) // step * step
            if mark <= reached.get(key, 0) or mark >= 100:
                return
            reached[key] = mark
        write(str(event))

    return on_event


def _serialized(progress: Progress | None) -> Progress:
    lock = threading.Lock()

    def emit(event: SyncEvent) -> None:
        if progress is not None:
            with lock:
                progress(event)

    return emit


# --- what to sync -----------------------------------------------------------------------------

def make_plan(target: Target, project_dir: Path, kinds: Sequence[str]) -> SyncPlan:
    """The items for `kinds`, checked here before any host is contacted."""
    items: list[Item] = []
    warnings: list[str] = []
    code = None
    if "code" in kinds:
        code = code_tree(project_dir)
        items.append(Item("code", code.root, target.workdir or target.remote_path(code.root)))
    if "env" in kinds:
        from expdeploy.environments import target_environment

        env = target_environment(target)
        items.append(Item("env", env.prefix, target.remote_path(env.prefix)))
        if items[-1].remote != env.prefix:
            kind = "venv" if env.kind == "venv" else "conda environment"
            warnings.append(f"environment {env.prefix} goes to {items[-1].remote} (path_map): a {kind} "
                            "refers to its own path (scripts, pyvenv.cfg, activation), so it may break "
                            "there; keep the same path where you can")
        if code is not None:
            warnings += _env_in_code(code, env.prefix)
    for kind, paths in (("images", target.images), ("paths", target.paths)):
        if kind in kinds:
            items += [_existing(target, kind, Path(p)) for p in _required(target, kind, paths)]
    if "docker" in kinds:
        for image in _required(target, "docker", target.docker_images):
            local_image_id(image)  # fails here, before any host, when the image is not here
            items.append(Item("docker", image, image))
    return SyncPlan(tuple(items), code, tuple(warnings))


def _required(target: Target, kind: str, values: tuple[str, ...]) -> tuple[str, ...]:
    if not values:
        key = {"images": "images", "paths": "paths", "docker": "docker_images"}[kind]
        raise BadInput(f"nothing to sync as {kind!r}: target {target.name!r} sets no `{key}`",
                       where=target.where, hint=f"add {key} = [...] to [targets.{target.name}]")
    return values


def _existing(target: Target, kind: str, path: Path) -> Item:
    if not os.path.lexists(path):
        raise BadInput(f"{kind}: {path} does not exist here", where=target.where,
                       key=f"targets.{target.name}.{kind}", hint="fix the path, or build or fetch it first")
    return Item(kind, str(path), target.remote_path(str(path)))


def _env_in_code(code: CodeTree, prefix: str) -> list[str]:
    inside = os.path.relpath(prefix, code.root)
    if inside.startswith("..") or not any(f.startswith(inside + "/") for f in code.files):
        return []
    return [f"environment {prefix} is inside the code and not git-ignored, so it is also sent as code: "
            f"add {inside}/ to .gitignore"]


def code_tree(project_dir: Path) -> CodeTree:
    """The project's files: git's list (`ls-files -co --exclude-standard`) from its top level, or,
    outside git, every file under `project_dir` except environments and experiments."""
    top = _git(project_dir, "rev-parse", "--show-toplevel")
    if top is None:
        root = project_dir.resolve()
        if root in (Path.home().resolve(), Path("/")):
            raise BadInput(f"{root} is not a git repository: refusing to sync all of it as code",
                           hint="run it from your project's directory, or `git init` the project")
        return CodeTree(str(root), tuple(_walk(root)), None, False)
    listed = _git(Path(top), "ls-files", "-z", "--cached", "--others", "--exclude-standard") or ""
    root = Path(top)
    # a submodule is listed as its directory: its files are not this repository's to send
    files = sorted({f for f in listed.split("\0")
                    if f and (not (root / f).is_dir() or (root / f).is_symlink())})
    return CodeTree(top, tuple(files), _git(root, "rev-parse", "--verify", "-q", "HEAD"), True)


def _walk(root: Path) -> Iterable[str]:
    from expdeploy.environments import kind_of

    for directory, subdirs, files in os.walk(root):
        here = Path(directory)
        # environments go by their own kind; experiments (a ledger) and caches are outputs, not code
        subdirs[:] = sorted(d for d in subdirs if kind_of(here / d) is None and d != "__pycache__"
                            and not (here / d / "ledger.sqlite").exists())
        for name in sorted(files):
            yield str((here / name).relative_to(root))
        for name in subdirs:
            if (here / name).is_symlink():
                yield str((here / name).relative_to(root))


def _git(directory: Path, *args: str, stdin: str | None = None) -> str | None:
    """git's stdout, without the final newline; None when git fails or is not installed."""
    try:
        done = subprocess.run(["git", "-C", str(directory), *args], input=stdin, capture_output=True,
                              text=True, check=False)
    except FileNotFoundError:
        return None
    return done.stdout.removesuffix("\n") if done.returncode == 0 else None


def _commit(project_dir: Path) -> str | None:
    return _git(project_dir, "rev-parse", "--verify", "-q", "HEAD")


def _ignored(root: str, paths: Sequence[str]) -> set[str]:
    """Which of `paths` git ignores here (they need not exist: patterns decide)."""
    if not paths:
        return set()
    out = _git(Path(root), "check-ignore", "-z", "--stdin", stdin="\0".join(paths) + "\0")
    return set((out or "").split("\0")) - {""}


# --- reaching the hosts ----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Host:
    name: str
    shell: SshShell
    synced_code: tuple[str, ...]  # the remote manifest: files an earlier sync put there


def _connect(target: Target, name: str, plan: SyncPlan, dry_run: bool, opened: list[SshShell]) -> _Host:
    """Reach one host, make (in a dry run: check) the directories, read what an earlier sync left."""
    from expdeploy.remote import SshShell

    try:
        shell = SshShell(target, name)
    except RemoteError as exc:
        raise TargetUnreachable(exc.message, hint=exc.hint) from None
    opened.append(shell)
    return _Host(name, shell, _prepare(shell, name, plan, dry_run))


def _prepare(shell: SshShell, name: str, plan: SyncPlan, dry_run: bool) -> tuple[str, ...]:
    """One round trip: check the directories can be written (and make them), read the manifest."""
    code = next((i for i in plan.items if i.kind == "code"), None)
    directories = [_directory_of(i) for i in plan.items if i.kind != "docker"]
    script = prepare_script(directories, f"{code.remote}/{MANIFEST}" if code else None, make=not dry_run)
    try:
        done = shell.run(script)
    except RemoteError as exc:
        raise TargetUnreachable(exc.message, hint=exc.hint) from None
    hint = (f"map it to a writable place with [targets.{shell.target.name}.path_map] "
            '"/local/prefix" = "/remote/prefix" (an environment may break when moved)')
    if done.code == 3:
        raise BadInput(f"{name}: cannot write {done.stdout.split(chr(0))[0]} there", hint=hint)
    if done.code:
        raise BadInput(f"{name}: cannot create directories there: {done.stderr.strip()[-300:]}", hint=hint)
    return tuple(f for f in done.stdout.split("\0") if f)


def prepare_script(directories: Sequence[str], manifest: str | None, *, make: bool) -> str:
    """sh: exit 3 listing (NUL-separated) the directories whose nearest existing ancestor is not
    writable; else make them when `make` (exit 4 if that fails); then print the manifest, if any."""
    body = ('blocked=; for p in "$@"; do q=$p; while [ ! -e "$q" ]; do q=$(dirname "$q"); done; '
            '[ -w "$q" ] || { printf "%s\\0" "$p"; blocked=1; }; done; [ -z "$blocked" ] || exit 3; ')
    if make:
        body += '[ $# -eq 0 ] || mkdir -p -- "$@" || exit 4; '
    if manifest:
        body += f"cat {shlex.quote(manifest)} 2>/dev/null; "
    return f"sh -c {shlex.quote(body + 'exit 0')} sh {shlex.join(directories)}"


def _directory_of(item: Item) -> str:
    """The remote directory an item needs: its own for a directory, its parent for a file."""
    return item.remote if os.path.isdir(item.local) and not os.path.islink(item.local) else \
        os.path.dirname(item.remote)


# --- sending ---------------------------------------------------------------------------------

def _sync_host(host: _Host, plan: SyncPlan, dry_run: bool, emit: Progress) -> HostSync:
    transfers = []
    for item in plan.items:
        emit(SyncEvent(host.name, item.kind, item.local, "start",
                       message=f"{'checking' if dry_run else 'sending'} {item.local}"
                       + (f" -> {item.remote}" if item.remote != item.local else "")))
        if item.kind == "docker":
            transfer = _docker(host, item, dry_run, emit)
        elif item.kind == "code":
            assert plan.code is not None
            transfer = _code(host, item, plan.code, dry_run, emit)
        else:
            transfer = _rsync(host, item, dry_run, emit, mirror=os.path.isdir(item.local))
        transfers.append(transfer)
        emit(SyncEvent(host.name, item.kind, item.local, "done", done=transfer.sent,
                       message=describe(transfer, dry_run)))
    return HostSync(host.name, host.shell.label, tuple(transfers))


def destination(shell: SshShell, path: str) -> str:
    """rsync's `host:path`, the alias bracketed when it holds a colon (IPv6)."""
    alias = f"[{shell.alias}]" if ":" in shell.alias else shell.alias
    return f"{alias}:{path}"


def _rsync(host: _Host, item: Item, dry_run: bool, emit: Progress, *, mirror: bool,
           extra: Sequence[str] = (), source: str | None = None) -> Transfer:
    """rsync one item; `mirror`: a directory made equal to ours (--delete inside it only)."""
    def tick(t: rsync.Tick) -> None:
        emit(SyncEvent(host.name, item.kind, item.local, "tick", done=t.done, percent=t.percent, rate=t.rate))

    src = source or (f"{item.local}/" if mirror else item.local)
    dest = destination(host.shell, f"{item.remote}/" if mirror or source else item.remote)
    argv = rsync.command([src], dest, ssh=host.shell.ssh_command(), dry_run=dry_run, progress=True,
                         extra=[*(["--delete"] if mirror else []), *extra])
    result = rsync.run(argv, on_tick=tick, keep_changes=dry_run, what=f"{host.name}: rsync of {item.local}")
    return Transfer(item.kind, item.local, item.remote, files=result.files, deleted=result.deleted,
                    sent=result.size if dry_run else result.sent, total=result.total, changes=result.changes)


def gone_files(code: CodeTree, synced_before: Iterable[str]) -> list[str]:
    """Files an earlier sync sent that are no longer here (and not git-ignored now): to delete there.
    Files sync never sent there (outputs, data) are never touched."""
    listed = set(code.files)
    candidates = [f for f in synced_before if f not in listed and not os.path.lexists(Path(code.root, f))]
    ignored = _ignored(code.root, candidates) if code.git else set()
    return [f for f in candidates if f not in ignored]


def _code(host: _Host, item: Item, code: CodeTree, dry_run: bool, emit: Progress) -> Transfer:
    names = [*code.files, *gone_files(code, host.synced_code)]
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", errors="surrogateescape") as listing:
        listing.write("".join(f"{name}\0" for name in names))
        listing.flush()
        extra = ["--files-from", listing.name, "--from0", "--delete-missing-args"]
        transfer = _rsync(host, item, dry_run, emit, mirror=False, extra=extra, source=f"{code.root}/")
    if not dry_run:
        kept = "\0".join(f for f in code.files if os.path.lexists(Path(code.root, f)))
        path = f"{item.remote}/{MANIFEST}"
        # a name per host: hosts that share a file system write the same list at once
        new = shlex.quote(f"{path}.{host.name}.new")
        wrote = host.shell.run(f"mkdir -p {shlex.quote(os.path.dirname(path))} && cat > {new} && "
                               f"mv {new} {shlex.quote(path)}", stdin=kept)
        if wrote.code:
            raise RemoteError(f"{host.name}: cannot record the synced files in {item.remote}/{MANIFEST}: "
                              f"{wrote.stderr.strip()[-200:]}")
    return transfer


# --- docker ----------------------------------------------------------------------------------

def docker_id_command(image: str) -> list[str]:
    return ["docker", "image", "inspect", "--format", "{{.Id}}", image]


def docker_size_command(image: str) -> list[str]:
    return ["docker", "image", "inspect", "--format", "{{.Size}}", image]


def docker_save_command(image: str) -> list[str]:
    return ["docker", "save", image]


def docker_load_command(ssh: Sequence[str], alias: str, env: dict[str, str] | None = None) -> list[str]:
    """ssh ... HOST 'docker load', the target's env exported first (as for every command there)."""
    from expdeploy.remote import env_prefix

    return [*ssh, alias, "sh -c " + shlex.quote(env_prefix(env or {}) + "docker load")]


def local_image_id(image: str) -> str:
    try:
        done = subprocess.run(docker_id_command(image), capture_output=True, text=True, timeout=60,
                              check=False)
    except FileNotFoundError:
        raise BadInput(f"cannot send Docker image {image!r}: `docker` is not installed here",
                       hint="install Docker, or drop \"docker\" from the target's sync list") from None
    if done.returncode:
        raise BadInput(f"Docker image {image!r} is not here: {done.stderr.strip()[-200:]}",
                       hint=f"docker pull {image} (or build it) first")
    return done.stdout.strip()


def _docker(host: _Host, item: Item, dry_run: bool, emit: Progress) -> Transfer:
    image = item.local
    mine = local_image_id(image)
    there = host.shell.run(shlex.join(docker_id_command(image)))
    if there.code == 0 and there.stdout.strip() == mine:
        return Transfer("docker", image, image, skipped=f"{host.name} has it already ({mine[:19]})")
    size_text = subprocess.run(docker_size_command(image), capture_output=True, text=True, check=False).stdout
    size = int(size_text.strip()) if size_text.strip().isdigit() else 0
    if dry_run:
        return Transfer("docker", image, image, files=1, sent=size, total=size)
    sent = _pipe(docker_save_command(image),
                 docker_load_command(host.shell.ssh_command(), host.shell.alias, dict(host.shell.target.env)),
                 lambda done: emit(SyncEvent(host.name, "docker", image, "tick", done=done,
                                             percent=min(99, done * 100 // size) if size else None)))
    after = host.shell.run(shlex.join(docker_id_command(image)))
    if after.stdout.strip() != mine:
        raise RemoteError(f"{host.name}: docker load did not give image {image} id {mine[:19]}",
                          hint="is docker there the same architecture and allowed to you?")
    return Transfer("docker", image, image, files=1, sent=sent, total=size)


def _pipe(producer: list[str], consumer: list[str], on_bytes: Callable[[int], None]) -> int:
    """producer | consumer through this process (counting bytes); RemoteError when either fails."""
    save = subprocess.Popen(producer, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    load = subprocess.Popen(consumer, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    assert save.stdout is not None and load.stdin is not None
    sent = 0
    try:
        while chunk := save.stdout.read(1 << 20):
            load.stdin.write(chunk)
            sent += len(chunk)
            on_bytes(sent)
    except BrokenPipeError:
        pass
    finally:
        load.stdin.close()
    load_err = load.stderr.read().decode(errors="replace") if load.stderr else ""
    save_err = save.stderr.read().decode(errors="replace") if save.stderr else ""
    if save.wait() or load.wait():
        why = (save_err or load_err).strip()[-300:]
        raise RemoteError(f"{shlex.join(producer)} | docker load failed: {why}",
                          hint="is docker installed and usable there?")
    return sent


# --- words -----------------------------------------------------------------------------------

def human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def describe(transfer: Transfer, dry_run: bool) -> str:
    """`12 files, 3.4 MB sent (200.0 MB in all), 1 deleted`, or why it was skipped."""
    if transfer.skipped:
        return f"skipped: {transfer.skipped}"
    verb = "to send" if dry_run else "sent"
    deleted = f", {transfer.deleted} {'to delete' if dry_run else 'deleted'}" if transfer.deleted else ""
    unit = "image" if transfer.kind == "docker" else "file"
    plural = "" if transfer.files == 1 else "s"
    return (f"{transfer.files} {unit}{plural}, {transfer.sent:,} bytes {verb} ({human_bytes(transfer.sent)}; "
            f"{human_bytes(transfer.total)} in all){deleted}")
