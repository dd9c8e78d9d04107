"""A consistent copy of a live jobs.db, made with SQLite's online backup API off the event loop.

A plain file copy of jobs.db taken while its owner writes can be torn: pages from before and
after a checkpoint, which SQLite then calls malformed. The backup API copies the pages of one
read transaction instead. jobs.db is in WAL mode, so that read transaction never stops the
owner's writes; the copy is made in one step, because a step-by-step backup starts over each
time another connection writes between two steps (a busy library would never finish).

The copy is written next to its destination, checked with `PRAGMA integrity_check`, flushed
to disk and only then renamed into place: a destination holds the old library or the checked
new one, never half of one.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

from .._errors import LibraryError
from .._query import DB_NAME
from .lock import OwnerLock

__all__ = ("backup_library",)


async def backup_library(source_uri: str, source: Path, folder: Path, overwrite: bool) -> Path:
    """Copy the jobs.db at `source` (read through `source_uri`) to `folder/jobs.db`; return that path.

    Runs in a thread; a cancelled wait does not stop a copy already under way (it finishes, and
    its destination holds the complete, checked copy).
    """
    target = _target(source, folder, overwrite)
    return await asyncio.to_thread(_copy_locked, source_uri, target, overwrite)


def _target(source: Path, folder: Path, overwrite: bool) -> Path:
    if folder.exists() and not folder.is_dir():
        raise LibraryError(f"backup destination {str(folder)!r} is a file; give a folder (the copy is its {DB_NAME})")
    target = folder / DB_NAME
    if os.path.realpath(target) == os.path.realpath(source):
        raise LibraryError(f"backup destination {str(folder)!r} is the library itself; give another folder")
    if target.exists() and not overwrite:
        raise LibraryError(f"{str(folder)!r} already holds a library ({DB_NAME}); pass overwrite=True "
                           f"(`--overwrite`) to replace it, or give another folder")
    return target


def _copy_locked(source_uri: str, target: Path, overwrite: bool) -> Path:
    """Copy while holding the destination's owner lock: no manager runs jobs on it meanwhile."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LibraryError(f"cannot create backup folder {str(target.parent)!r}: {e.strerror or e}") from e
    lock = OwnerLock(target.parent)
    lock.acquire()  # LibraryLocked while a manager owns the destination library
    try:
        if target.exists() and not overwrite:  # made since the first look
            raise LibraryError(f"{str(target.parent)!r} already holds a library ({DB_NAME}); pass overwrite=True")
        _copy(source_uri, target)
    finally:
        lock.release()
    return target


def _copy(source_uri: str, target: Path) -> None:
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        _write_checked_copy(source_uri, partial)
        _fsync(partial)
        for stale in (f"{target}-wal", f"{target}-shm", f"{target}-journal"):
            # a replaced library's WAL would be replayed onto the new file and damage it
            Path(stale).unlink(missing_ok=True)
        os.replace(partial, target)
        _fsync(target.parent)
    finally:
        for leftover in (partial, Path(f"{partial}-journal")):
            leftover.unlink(missing_ok=True)


def _write_checked_copy(source_uri: str, partial: Path) -> None:
    try:
        source = sqlite3.connect(source_uri, uri=True)
        try:
            copy = sqlite3.connect(partial)
            try:
                source.backup(copy)  # pages=-1: one step, one read transaction, never restarted
                problems = [row[0] for row in copy.execute("PRAGMA integrity_check(3)").fetchall()]
            finally:
                copy.close()
        finally:
            source.close()
    except sqlite3.Error as e:
        raise LibraryError(f"could not back up the library ({e}); nothing was written at the destination") from e
    if problems != ["ok"]:
        raise LibraryError(
            f"the copy failed SQLite's integrity_check ({'; '.join(problems)}): the library itself is damaged; "
            f"nothing was written at the destination. Run `sqlite3 jobs.db .recover` on it to salvage its rows"
        )


def _fsync(path: Path) -> None:
    """Flush a file (or a folder's entries) to disk, so the copy survives a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
