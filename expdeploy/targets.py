"""Named targets: where `run --target NAME` goes (a Slurm login node or SSH hosts), read from
`expdeploy.toml` in the project and `~/.config/expdeploy/targets.toml`, the project file winning.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from expdeploy.errors import BadInput, ExpdeployError, Location

PROJECT_FILE = "expdeploy.toml"
BACKENDS = ("slurm", "ssh")
SYNC_KINDS = ("code", "env", "images", "docker", "paths")
GPU_OPTIONS = ("gres", "gpus-per-task")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DOCKER_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$")
# The sync kinds a setting asks for, when the target does not list `sync` itself.
_KIND_OF_SETTING = {"environment": "env", "images": "images", "docker_images": "docker", "paths": "paths"}


@dataclass(frozen=True, slots=True)
class SlurmSettings:
    """What a Slurm target adds to every generated sbatch script."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    sbatch: tuple[str, ...] = ()  # extra `#SBATCH` options, e.g. "--exclusive"
    setup: tuple[str, ...] = ()  # shell lines before the runs: module load, activation
    header: str | None = None  # the user's own sbatch header file (its #SBATCH lines are kept)
    gpu_option: str = "gres"  # how `gpus: N` is asked for: "gres" (--gres=gpu:N) or "gpus-per-task"


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    backend: str  # "slurm" or "ssh"
    hosts: tuple[str, ...] = ()  # ssh aliases or host names; empty: this machine
    user: str | None = None
    port: int | None = None
    identity_file: str | None = None
    ssh_config: str | None = None  # an ssh_config file read instead of ~/.ssh/config (ssh -F)
    workdir: str | None = None  # remote working directory; default: the same path as here
    sync: tuple[str, ...] = ("code",)
    gpus: int | None = None  # per host (ssh backend)
    slots: int | None = None  # per CPU-only host (ssh backend)
    env: Mapping[str, str] = field(default_factory=dict)  # set for every command there
    accept_unknown_host_keys: bool = False  # the explicit opt-out of host key checking
    python: str | None = None  # the interpreter that runs the shipped worker there (python3)
    slurm: SlurmSettings = field(default_factory=SlurmSettings)
    environment: str | None = None  # venv or conda prefix to sync; default: the active one
    images: tuple[str, ...] = ()  # Singularity images (.sif) to sync
    docker_images: tuple[str, ...] = ()  # Docker images sent with docker save | docker load
    paths: tuple[str, ...] = ()  # more files or directories to sync
    path_map: Mapping[str, str] = field(default_factory=dict)  # local prefix -> remote prefix
    wrap: Mapping[str, Any] | None = None  # replaces layers of the spec's `env:` for runs there
    wrap_where: Location | None = None
    where: Location | None = None  # the file and line that defined it

    @property
    def remote(self) -> bool:
        return bool(self.hosts)

    def remote_path(self, local: str) -> str:
        """Where `local` lives on the hosts: the same path, unless a `path_map` prefix (the longest
        that matches whole path components) replaces its start."""
        matches = [p for p in self.path_map if local == p or local.startswith(p.rstrip("/") + "/")]
        if not matches:
            return local
        prefix = max(matches, key=len)
        return self.path_map[prefix].rstrip("/") + local[len(prefix.rstrip("/")):] or "/"


TARGET_KEYS = ("backend", "host", "hosts", "user", "port", "identity_file", "ssh_config", "workdir",
               "sync", "gpus", "slots", "env", "accept_unknown_host_keys", "python", "slurm",
               "environment", "images", "docker_images", "paths", "path_map", "wrap")
SLURM_KEYS = tuple(f.name for f in fields(SlurmSettings))


def user_targets_file() -> Path:
    """`$XDG_CONFIG_HOME/expdeploy/targets.toml`, else `~/.config/expdeploy/targets.toml`."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".config"  # the XDG spec ignores relative
    return root / "expdeploy" / "targets.toml"


def load_targets(project_dir: Path, user_file: Path | None = None) -> dict[str, Target]:
    """Every target by name: the user file's, then the project's `expdeploy.toml` replacing same names."""
    found: dict[str, Target] = {}
    for path in (user_file or user_targets_file(), project_dir / PROJECT_FILE):
        if path.is_file():
            found.update(read_targets_file(path, only_targets=path.name != PROJECT_FILE))
    return found


def get_target(name: str, project_dir: Path, user_file: Path | None = None) -> Target:
    """The target called `name`; BadInput listing the known names when there is none."""
    targets = load_targets(project_dir, user_file)
    if name in targets:
        return targets[name]
    files = f"{project_dir / PROJECT_FILE} or {user_file or user_targets_file()}"
    if not targets:
        hint = f"define it as [targets.{name}] in {files}"
    else:
        import difflib  # only on this error path

        close = difflib.get_close_matches(name, list(targets), n=1)
        known = f"known targets: {', '.join(sorted(targets))}"
        hint = f"did you mean `{close[0]}`? {known}" if close else known
    raise BadInput(f"no target named {name!r}", hint=hint)


def read_targets_file(path: Path, *, only_targets: bool = True) -> dict[str, Target]:
    """The `[targets.*]` tables of one TOML file; other top-level tables are an error when
    `only_targets` (the user's targets.toml), and belong to other readers in expdeploy.toml."""
    text = _read_text(path)
    data = _parse_toml(text, path)
    reader = _Reader(path, _key_lines(text))
    if only_targets:
        reader.check_keys(data, ("targets",), ())
    tables = data.get("targets", {})
    if not isinstance(tables, dict):
        raise reader.fail(("targets",), f"expected a table, got {_type_name(tables)}",
                          hint="write each target as [targets.NAME]")
    return {name: reader.target(name, value) for name, value in tables.items()}


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read: {exc}", where=Location(str(path))) from None


def _parse_toml(text: str, path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # tomli became tomllib; not a declared dependency, as only Python 3.10 needs it
        try:
            import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            raise ExpdeployError("reading targets needs `tomli` on Python 3.10",
                                 hint="pip install tomli, or use Python >= 3.11") from None

    try:
        data: dict[str, Any] = tomllib.loads(text)
        return data
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        at = re.search(r"\s*\(at line (\d+), column \d+\)", message)
        line = int(at.group(1)) if at else None
        if at:
            message = message[: at.start()] + message[at.end():]
        elif "(at end of document)" in message:
            message = message.replace(" (at end of document)", "")
            line = text.count("\n") + 1
        raise BadInput(f"not valid TOML: {message}", where=Location(str(path), line),
                       hint="see https://toml.io for the syntax") from None


class _Reader:
    """Turns one file's target tables into Targets; every failure names file:line and key."""

    def __init__(self, path: Path, lines: Mapping[tuple[str, ...], int]) -> None:
        self.path = path
        self.lines = lines

    def at(self, keys: tuple[str, ...]) -> Location:
        for end in range(len(keys), 0, -1):  # the key's own line, else its table's
            if keys[:end] in self.lines:
                return Location(str(self.path), self.lines[keys[:end]])
        return Location(str(self.path))

    def fail(self, keys: tuple[str, ...], message: str, hint: str | None = None) -> BadInput:
        return BadInput(message, where=self.at(keys), key=".".join(keys) or None, hint=hint)

    def check_keys(self, table: Mapping[str, Any], allowed: tuple[str, ...], keys: tuple[str, ...]) -> None:
        for key in table:
            if key not in allowed:
                import difflib  # only on this error path

                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean `{close[0]}`?" if close else f"allowed here: {', '.join(allowed)}"
                raise self.fail((*keys, key), "unknown key", hint=hint)

    def target(self, name: str, table: Any) -> Target:
        keys = ("targets", name)
        if not isinstance(table, dict):
            raise self.fail(keys, f"expected a table, got {_type_name(table)}",
                            hint=f"write it as [targets.{name}] with backend = \"ssh\" or \"slurm\"")
        if not _NAME.match(name):
            raise self.fail(keys, f"{name!r} is not a usable target name",
                            hint="use letters, digits, _, . and -, starting with a letter or digit")
        self.check_keys(table, TARGET_KEYS, keys)
        get = _Getter(self, table, keys)
        backend = get.required_choice("backend", BACKENDS)
        hosts = self.hosts(get, table, keys, backend)
        gpus, slots = get.integer("gpus", minimum=0), get.integer("slots", minimum=1)
        if gpus is not None and slots is not None:
            raise self.fail((*keys, "slots"), "set either `gpus` (GPU hosts) or `slots` (CPU-only hosts)")
        images = get.paths("images")
        for image in images:
            if not image.endswith(".sif"):
                raise self.fail((*keys, "images"), f"expected .sif files, got {image!r}",
                                hint="images are Singularity/Apptainer images; Docker images go in "
                                "docker_images")
        docker_images = get.strings("docker_images") or ()
        for image in docker_images:
            if not _DOCKER_IMAGE.match(image):
                raise self.fail((*keys, "docker_images"), f"{image!r} is not a Docker image name",
                                hint="write it as docker does: name[:tag], e.g. \"pytorch/pytorch:2.3\"")
        return Target(
            name=name, backend=backend, hosts=hosts, user=get.string("user"),
            port=get.integer("port", minimum=1, maximum=65535),
            identity_file=get.path("identity_file"), ssh_config=get.path("ssh_config"),
            workdir=get.absolute("workdir"), sync=self.sync(get, table, keys),
            gpus=gpus, slots=slots, env=self.env(table.get("env"), (*keys, "env")),
            accept_unknown_host_keys=get.boolean("accept_unknown_host_keys"),
            python=get.string("python"),
            slurm=self.slurm(table.get("slurm"), (*keys, "slurm")),
            environment=get.local_path("environment"), images=images, docker_images=docker_images,
            paths=get.paths("paths"), path_map=self.path_map(table.get("path_map"), (*keys, "path_map")),
            wrap=self.wrap(table.get("wrap"), (*keys, "wrap")),
            wrap_where=self.at((*keys, "wrap")) if "wrap" in table else None,
            where=self.at(keys),
        )

    def sync(self, get: _Getter, table: Mapping[str, Any], keys: tuple[str, ...]) -> tuple[str, ...]:
        """The `sync` list; by default the code and whatever the target's settings name."""
        sync = get.strings("sync", SYNC_KINDS)
        if sync is None:
            return ("code", *(kind for key, kind in _KIND_OF_SETTING.items() if table.get(key)))
        for key, kind in _KIND_OF_SETTING.items():
            if kind in sync and kind != "env" and not table.get(key):
                raise self.fail((*keys, "sync"), f"lists {kind!r} but `{key}` is not set",
                                hint=f"add {key} = [...] to [targets.{keys[-1]}], or drop {kind!r}")
        return sync

    def wrap(self, table: Any, keys: tuple[str, ...]) -> dict[str, Any] | None:
        """The target's own environment layers, checked like a spec's `env:` when a run uses them."""
        if table is None:
            return None
        if not isinstance(table, dict) or not table:
            raise self.fail(keys, f"expected a table of environment keys, got {_type_name(table)}",
                            hint='e.g. [targets.NAME.wrap] singularity = "/work/me/img.sif", nv = true')
        return dict(table)

    def path_map(self, table: Any, keys: tuple[str, ...]) -> dict[str, str]:
        if table is None:
            return {}
        if not isinstance(table, dict):
            raise self.fail(keys, f"expected a table, got {_type_name(table)}",
                            hint='write it as [targets.NAME.path_map] with "/local/prefix" = '
                            '"/remote/prefix"')
        mapped: dict[str, str] = {}
        for local, remote in table.items():
            here = os.path.expanduser(local)
            if not here.startswith("/"):
                raise self.fail((*keys, local), f"expected an absolute local path, got {local!r}")
            if not isinstance(remote, str) or not remote.startswith("/"):
                raise self.fail((*keys, local), f"expected an absolute remote path, got {remote!r}",
                                hint=f'"{local}" = "/where/it/goes/there"')
            mapped[os.path.normpath(here)] = os.path.normpath(remote)
        return mapped

    def hosts(self, get: _Getter, table: Mapping[str, Any], keys: tuple[str, ...],
              backend: str) -> tuple[str, ...]:
        if "host" in table and "hosts" in table:
            raise self.fail((*keys, "hosts"), "set either `host` or `hosts`, not both")
        host = get.string("host")
        hosts = (host,) if host else get.strings("hosts") or ()
        if "hosts" in table and not hosts:
            raise self.fail((*keys, "hosts"), "is empty", hint="omit it to run on this machine")
        if backend == "slurm" and len(hosts) > 1:
            raise self.fail((*keys, "hosts"), "a slurm target has one login node",
                            hint="use `host = \"login-node\"`")
        return hosts

    def env(self, table: Any, keys: tuple[str, ...]) -> dict[str, str]:
        if table is None:
            return {}
        if not isinstance(table, dict):
            raise self.fail(keys, f"expected a table, got {_type_name(table)}")
        for name, value in table.items():
            if not _ENV_NAME.match(name):
                raise self.fail((*keys, name), f"{name!r} is not a valid environment variable name")
            if not isinstance(value, str):
                raise self.fail((*keys, name), f"expected a string, got {_type_name(value)}",
                                hint=f"quote it: {name} = \"{value}\"")
        return dict(table)

    def slurm(self, table: Any, keys: tuple[str, ...]) -> SlurmSettings:
        if table is None:
            return SlurmSettings()
        if not isinstance(table, dict):
            raise self.fail(keys, f"expected a table, got {_type_name(table)}")
        self.check_keys(table, SLURM_KEYS, keys)
        get = _Getter(self, table, keys)
        return SlurmSettings(
            partition=get.string("partition"), account=get.string("account"), qos=get.string("qos"),
            constraint=get.string("constraint"), sbatch=get.strings("sbatch") or (),
            setup=get.strings("setup") or (), header=get.path("header"),
            gpu_option=get.choice("gpu_option", GPU_OPTIONS) or "gres",
        )


class _Getter:
    """Typed values from one table; a missing key is None."""

    def __init__(self, reader: _Reader, table: Mapping[str, Any], keys: tuple[str, ...]) -> None:
        self.reader, self.table, self.keys = reader, table, keys

    def _typed(self, key: str, check: Callable[[Any], bool], wanted: str) -> Any:
        value = self.table.get(key)
        if value is not None and not check(value):
            raise self.reader.fail((*self.keys, key), f"expected {wanted}, got {_type_name(value)}")
        return value

    def string(self, key: str) -> str | None:
        value: str | None = self._typed(key, lambda v: isinstance(v, str) and bool(v.strip()),
                                        "a non-empty string")
        return value

    def boolean(self, key: str) -> bool:
        return bool(self._typed(key, lambda v: isinstance(v, bool), "true or false"))

    def integer(self, key: str, *, minimum: int, maximum: int | None = None) -> int | None:
        value: int | None = self._typed(key, lambda v: isinstance(v, int) and not isinstance(v, bool),
                                        "an integer")
        if value is not None and (value < minimum or (maximum is not None and value > maximum)):
            bounds = f"between {minimum} and {maximum}" if maximum else f">= {minimum}"
            raise self.reader.fail((*self.keys, key), f"expected an integer {bounds}, got {value}")
        return value

    def strings(self, key: str, allowed: tuple[str, ...] = ()) -> tuple[str, ...] | None:
        value = self._typed(key, lambda v: isinstance(v, list) and all(isinstance(i, str) for i in v),
                            "a list of strings")
        for item in value or ():
            self._check_choice(key, item, allowed)
        return None if value is None else tuple(value)

    def choice(self, key: str, allowed: tuple[str, ...]) -> str | None:
        value = self.string(key)
        if value is not None:
            self._check_choice(key, value, allowed)
        return value

    def required_choice(self, key: str, allowed: tuple[str, ...]) -> str:
        value = self.choice(key, allowed)
        if value is None:
            raise self.reader.fail(self.keys, f"`{key}` is missing",
                                   hint=f"add {key} = \"{allowed[0]}\" (one of: {', '.join(allowed)})")
        return value

    def _check_choice(self, key: str, value: str, allowed: tuple[str, ...]) -> None:
        if allowed and value not in allowed:
            import difflib  # only on this error path

            close = difflib.get_close_matches(value, allowed, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"one of: {', '.join(allowed)}"
            raise self.reader.fail((*self.keys, key), f"unknown {key} {value!r}", hint=hint)

    def path(self, key: str) -> str | None:
        """A local file path: `~` expanded, relative to the directory of the file naming it."""
        value = self.string(key)
        if value is None:
            return None
        return str(self.reader.path.parent / Path(value).expanduser())

    def local_path(self, key: str) -> str | None:
        """A local path to sync: as `path` reads it, normalized (it names the remote path too)."""
        value = self.path(key)
        return None if value is None else os.path.normpath(value)

    def paths(self, key: str) -> tuple[str, ...]:
        """A list of local paths, each as `local_path` reads one."""
        value = self.strings(key)
        if value is not None and not all(item.strip() for item in value):
            raise self.reader.fail((*self.keys, key), "expected non-empty paths, got an empty string")
        base = self.reader.path.parent
        return tuple(os.path.normpath(base / Path(item).expanduser()) for item in value or ())

    def absolute(self, key: str) -> str | None:
        value = self.string(key)
        if value is not None and not value.startswith("/"):
            raise self.reader.fail((*self.keys, key), f"expected an absolute path, got {value!r}",
                                   hint="the remote home directory is not known here: write it out")
        return value


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    names = {dict: "a table", list: "a list", str: "a string", int: "an integer", float: "a number"}
    return next((name for kind, name in names.items() if isinstance(value, kind)), type(value).__name__)


# Line numbers: tomllib keeps none, so the text is scanned for table headers and `key =` lines.
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Full dotted key path -> the line (1-based) of its `[table]` header or `key =` line."""
    found: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    in_string = False
    for number, line in enumerate(text.splitlines(), 1):
        if in_string:
            in_string = _toggles_multiline(line) != in_string
            continue
        stripped = line.lstrip()
        if stripped.startswith("["):
            header = _dotted_key(stripped, 2 if stripped.startswith("[[") else 1)
            if header and stripped[header[1]:].lstrip().startswith("]"):
                table = header[0]
                _record(found, table, number)
            continue
        key = _dotted_key(stripped, 0)
        if key and stripped[key[1]:].lstrip().startswith("="):
            _record(found, (*table, *key[0]), number)
            in_string = _toggles_multiline(stripped[key[1]:])
    return found


def _record(found: dict[tuple[str, ...], int], keys: tuple[str, ...], line: int) -> None:
    """The first line that names a key, or a key below it (`[a.b]` and `a.b.c = 1` define `a.b`)."""
    for end in range(1, len(keys) + 1):
        found.setdefault(keys[:end], line)


def _toggles_multiline(text: str) -> bool:
    return (text.count('"""') + text.count("'''")) % 2 == 1


def _dotted_key(text: str, pos: int) -> tuple[tuple[str, ...], int] | None:
    """A TOML dotted key starting at `pos`: its parts and the position after it."""
    parts: list[str] = []
    while True:
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] in "\"'":
            end = _closing_quote(text, pos)
            if end < 0:
                return None
            raw = text[pos + 1:end]
            parts.append(raw.encode().decode("unicode_escape") if text[pos] == '"' and "\\" in raw else raw)
            pos = end + 1
        else:
            bare = _BARE_KEY.match(text, pos)
            if not bare:
                return None
            parts.append(bare.group())
            pos = bare.end()
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        if pos < len(text) and text[pos] == ".":
            pos += 1
            continue
        return tuple(parts), pos


def _closing_quote(text: str, start: int) -> int:
    quote, pos = text[start], start + 1
    while pos < len(text):
        if quote == '"' and text[pos] == "\\":
            pos += 2
            continue
        if text[pos] == quote:
            return pos
        pos += 1
    return -1
