"""The owner lock: one manager runs a library's jobs at a time.

It is an `flock` on `<library>/jobs.lock`, apart from SQLite's own locks, so any process can
still read jobs.db. The kernel drops the lock when its holder dies, so a lock left by a
killed process is taken over safely; the pid in the file only names the holder in errors.
"""

from __future__ import annotations

import os
from pathlib import Path

from .._errors import LibraryLocked

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "jobs.lock"


class OwnerLock:
    """An exclusive, non-blocking lock on a library folder."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise `LibraryLocked` naming the holder's pid."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            pid = holder_pid(self.path)
            raise LibraryLocked(str(self.path.parent), pid, here=pid == os.getpid()) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Drop the lock; safe to call twice."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the descriptor releases the flock


def holder_pid(path: Path) -> int | None:
    """Return the pid written by the current holder, if readable."""
    try:
        text = path.read_text().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None
