"""Cross-process slot locks: flock on a file per GPU slot under the user's runtime directory,
so two expdeploy processes on one machine never hand out the same GPU slot at once (no server)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def lock_dir() -> Path:
    base = os.environ.get("EXPDEPLOY_LOCK_DIR") or os.environ.get("XDG_RUNTIME_DIR")
    path = Path(base) / "expdeploy" if base else Path(f"/tmp/expdeploy-{os.getuid()}")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


class SlotLock:
    """An exclusive, non-blocking lock held while a run uses the slot; released on close or exit."""

    def __init__(self, name: str) -> None:
        self.path = lock_dir() / f"{name}.lock"
        self.fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None
