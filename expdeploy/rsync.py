"""One rsync run over a target's ssh, read as it goes: itemized changes, `--info=progress2` ticks
and the `--stats` block, all as plain numbers (`--no-human-readable`)."""

from __future__ import annotations

import re
import shlex
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from expdeploy.remote import RemoteError

BASE = ("rsync", "--archive", "--itemize-changes", "--stats", "--no-human-readable")
VANISHED = 24  # "some files vanished before they could be transferred": written to while read, not an error
_TICK = re.compile(r"^\s*(\d+)\s+(\d+)%\s+(\S+)\s+\d+:\d\d:\d\d")
_CHANGE = re.compile(r"^(\*deleting|[<>ch.][fdLDS][ .+?a-zA-Z]{9}) (.+)$")
_STATS = {
    "Number of regular files transferred": "files",
    "Total file size": "total",
    "Total transferred file size": "size",
    "Total bytes sent": "sent",
}


@dataclass(frozen=True, slots=True)
class Tick:
    """One `--info=progress2` line: bytes done so far in this run, percent of all, current rate."""

    done: int
    percent: int
    rate: str


@dataclass(frozen=True, slots=True)
class RsyncResult:
    files: int  # regular files sent (would be, in a dry run)
    deleted: int
    size: int  # the size of those files ("Total transferred file size"); the delta sent is smaller
    sent: int  # bytes that went to the other side ("Total bytes sent"), protocol included
    total: int  # size of every file the run covered ("Total file size")
    changes: tuple[str, ...]  # itemized lines (`>f+++++++++ path`, `*deleting path`), if kept


def command(sources: Sequence[str], dest: str, *, ssh: Sequence[str] | None, dry_run: bool,
            progress: bool, extra: Sequence[str] = ()) -> list[str]:
    """The rsync argv: archive mode, itemized, with stats; over `ssh` when given."""
    argv = [*BASE, *(["--dry-run"] if dry_run else [])]
    if progress and not dry_run:  # the whole file list first, so that the percentage means something
        argv += ["--info=progress2", "--no-inc-recursive"]
    if ssh:
        argv += ["--rsh", shlex.join(ssh)]
    return [*argv, *extra, *sources, dest]


def parse_tick(text: str) -> Tick | None:
    found = _TICK.match(text)
    return Tick(int(found.group(1)), int(found.group(2)), found.group(3)) if found else None


def parse_change(line: str) -> str | None:
    """The itemized line if `line` reports a creation, transfer or deletion (not attribute-only)."""
    found = _CHANGE.match(line)
    if not found or found.group(1).startswith("."):
        return None
    return line


def parse_stats(lines: Sequence[str], changes: Sequence[str]) -> RsyncResult:
    values = dict.fromkeys(_STATS.values(), 0)
    for line in lines:
        name, _, rest = line.partition(":")
        if name in _STATS and rest.split():
            values[_STATS[name]] = int(rest.split()[0])
    deleted = sum(1 for c in changes if c.startswith("*deleting"))  # --delete-missing-args is not counted
    return RsyncResult(files=values["files"], deleted=deleted, size=values["size"], sent=values["sent"],
                       total=values["total"], changes=tuple(changes))


def pieces(chunks: Iterator[str]) -> Iterator[str]:
    """Lines of rsync's output, split at newlines and at the carriage returns of progress ticks."""
    pending = ""
    for chunk in chunks:
        pending += chunk
        *done, pending = re.split(r"[\r\n]", pending)
        yield from (p for p in done if p)
    if pending:
        yield pending


def run(argv: list[str], *, on_tick: Callable[[Tick], None] | None = None, keep_changes: bool = True,
        what: str = "rsync") -> RsyncResult:
    """Run rsync, reporting ticks as they come; RemoteError when it fails."""
    changes: list[str] = []
    rest: list[str] = []
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors,
                                    bufsize=0)  # unbuffered: read() returns what is there, ticks arrive live
        except FileNotFoundError:
            hint = "install rsync here and on the target (Debian: apt install rsync)"
            raise RemoteError("`rsync` is not installed here", hint=hint) from None
        for piece in pieces(_decoded(proc)):
            tick = parse_tick(piece)
            if tick is not None:
                if on_tick:
                    on_tick(tick)
            elif (change := parse_change(piece)) is not None:
                if keep_changes or change.startswith("*deleting"):
                    changes.append(change)
            else:
                rest.append(piece)
        code = proc.wait()
        errors.seek(0)
        message = errors.read().decode(errors="replace").strip()
    if code not in (0, VANISHED):
        last = " ".join(message.splitlines()[-3:])[-400:] or f"exit status {code}"
        raise RemoteError(f"{what} failed ({code}): {last}",
                          hint="is rsync installed there, the disk not full, the path writable?")
    return parse_stats(rest, changes)


def _decoded(proc: subprocess.Popen[bytes]) -> Iterator[str]:
    import codecs

    assert proc.stdout is not None
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while chunk := proc.stdout.read(65536):
        yield decoder.decode(chunk)
    yield decoder.decode(b"", final=True)
