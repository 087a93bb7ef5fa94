"""Bringing an SSH experiment's run files home when no controller follows them (a resumed
`run`, `status`): runs keep going on their hosts after the controller or its laptop is gone,
so their state is there. Each run takes the copy of its newest attempt, from whichever host."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from expdeploy import worker
from expdeploy.errors import ExpdeployError

if TYPE_CHECKING:
    from expdeploy.remote import Shell
    from expdeploy.targets import Target


def gather(target: Target, exp: str, local_exp: Path, shells: dict[str, Shell] | None = None) -> list[str]:
    """Copy into `local_exp` the run directories whose newest state is on a host; notes for
    hosts that could not be asked."""
    from expdeploy.remote import shell_for

    if not any(local_exp.glob("runs/*/claim.*")):
        return []  # nothing was ever started: nothing to bring back
    notes: list[str] = []
    best: dict[str, tuple[tuple[int, int], str]] = {}  # run name -> (rank, host alias); "" is here
    for path in (local_exp / "runs").glob("*/state.json"):
        best[path.parent.name] = (worker.attempt_rank(worker.read_json(str(path))), "")
    with tempfile.TemporaryDirectory(prefix="expdeploy-gather-") as scratch:
        opened = {alias: (shells or {}).get(alias) or shell_for(target, alias) for alias in target.hosts}
        for alias, shell in opened.items():
            copy = Path(scratch) / alias
            try:
                shell.pull(exp, copy, includes=["/runs/*/state.json"])
            except ExpdeployError as error:
                notes.append(f"warning: {alias}: could not read its runs' states ({error})")
                continue
            for path in (copy / "runs").glob("*/state.json"):
                found = worker.attempt_rank(worker.read_json(str(path)))
                if found > best.get(path.parent.name, ((0, -1), ""))[0]:
                    best[path.parent.name] = (found, alias)
        for alias, shell in opened.items():
            names = [name for name, (_, where) in best.items() if where == alias]
            if names:
                try:
                    shell.pull(exp, local_exp, includes=[f"/runs/{rsync_literal(n)}/**" for n in names])
                except ExpdeployError as error:
                    notes.append(f"warning: {alias}: could not bring back {len(names)} run(s) ({error})")
            shell.close()
    return notes


def rsync_literal(path: str) -> str:
    """A literal path in an rsync filter pattern (run names may hold [, * or ?)."""
    return "".join(f"\\{c}" if c in "[]*?\\" else c for c in path)
