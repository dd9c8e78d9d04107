"""The owner lock: one manager runs a library's jobs at a time.

It is an `flock` on `<library>/jobs.lock`, apart from SQLite's own locks, so any process can
still read jobs.db. The kernel drops the lock when its holder dies, so a lock left by a
killed process is taken over safely; the pid in the file only names the holder in errors.
The holder also writes which jobs.db it uses (device and inode) and empties the file when it
lets go, so the next owner can tell a jobs.db of unknown history (`history_unknown`): copied
while in use (the copy's jobs.lock names another file), or with no jobs.lock at all.
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
        self._left: str | None = None  # what the previous holder left in the file (None: no file)

    def acquire(self) -> None:
        """Take the lock or raise `LibraryLocked` naming the holder's pid."""
        existed = self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        # read before locking: between the lock and the pid, a refused opener finds no pid to name
        left = os.pread(fd, 256, 0) if existed else None
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
        self._left = None if left is None else left.decode("ascii", "replace")

    def note_file(self, db: Path) -> None:
        """Write which jobs.db this owner uses (its device and inode) under its pid."""
        if self._fd is not None:
            st = os.stat(db)
            os.pwrite(self._fd, f"{os.getpid()}\n{st.st_dev} {st.st_ino}\n".encode(), 0)

    def history_unknown(self, db: Path) -> bool:
        """Whether `db` may not be a file SQLite kept consistent: check it before writing to it.

        False after a clean release (an empty file), and after the death of an owner that used
        this very file (SQLite's WAL recovers it); True with no lock file, or one naming another
        file or none (the folder was copied, or jobs.db replaced, while a manager used it).
        """
        left = (self._left or "").split()
        if self._left is not None and not left:
            return False
        if len(left) == 3:
            try:
                st = os.stat(db)
            except OSError:
                return True
            return [str(st.st_dev), str(st.st_ino)] != left[1:]
        return True

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
        text = path.read_text().split()
        return int(text[0]) if text else None  # the pid, on the first line
    except (OSError, ValueError):
        return None
