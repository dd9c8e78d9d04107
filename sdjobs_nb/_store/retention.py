"""Retention: deleting finished jobs that are old enough, a chunk per transaction (`Store.prune`).

A finished job is its job_history row, its jobs row and its job_errors rows (its saved state and
checkpoints were already dropped when it finished). Never removed: unfinished jobs, a finished
job whose jobs row says otherwise, a finished parent with unfinished children (a resumed parent
may still read them), and a finished child of an unfinished parent (the parent reads its result
and, when it resumes, finds it by its spawn key instead of spawning it again).

Chunks are walked oldest first by (finished_at, id), each in its own short transaction on the
store's thread, so jobs' group commits interleave with a large prune.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
import sqlite3
from collections.abc import Callable
from typing import Any

from .batch import in_transaction

__all__ = ("CHUNK", "check_retention", "prune_finished", "vacuum")

CHUNK = 500  # jobs per transaction (x 1 parameter: far below SQLite's variable limit)

Position = tuple[float, str]  # (finished_at, id) of a job_history row
START: Position = (-math.inf, "")

SELECT_KEEP_BOUNDARY = "SELECT finished_at, id FROM job_history ORDER BY finished_at DESC, id DESC LIMIT 1 OFFSET ?"
SELECT_CHUNK = """
SELECT h.finished_at, h.id,
       NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = h.id AND j.finished_at IS NULL)
       AND NOT EXISTS (SELECT 1 FROM jobs c WHERE c.parent_id = h.id AND c.finished_at IS NULL)
       AND NOT EXISTS (SELECT 1 FROM jobs p WHERE p.id = h.parent_id AND p.finished_at IS NULL)
FROM job_history h
WHERE h.finished_at >= ? AND h.finished_at <= ? AND (h.finished_at, h.id) > (?, ?) AND (h.finished_at, h.id) < (?, ?)
ORDER BY h.finished_at, h.id LIMIT ?
"""
DELETES = (
    "DELETE FROM job_history WHERE id IN ({})",
    "DELETE FROM jobs WHERE finished_at IS NOT NULL AND id IN ({})",
    "DELETE FROM job_errors WHERE job_id IN ({})",
    "DELETE FROM job_checkpoints WHERE job_id IN ({})",
)


def check_retention(older_than: Any, keep: Any, vacuum: Any = False) -> tuple[float | None, int | None]:
    """Check `prune`'s arguments; return (seconds, keep). Raises before anything is written."""
    if not isinstance(vacuum, bool):
        raise TypeError(f"vacuum must be True or False, got {vacuum!r}")
    if older_than is None and keep is None:
        raise ValueError("prune() needs older_than, keep or both; prune(older_than=0) removes every finished job")
    if isinstance(older_than, dt.timedelta):
        older_than = older_than.total_seconds()
    elif older_than is not None and (isinstance(older_than, bool) or not isinstance(older_than, numbers.Real)):
        raise TypeError(f"older_than must be a datetime.timedelta or a number of seconds, got {older_than!r}")
    if older_than is not None and not (older_than >= 0 and math.isfinite(older_than)):
        raise ValueError(f"older_than must be a finite age >= 0, got {older_than!r}")
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, numbers.Integral)):
        raise TypeError(f"keep must be an int (how many of the newest finished jobs to keep), got {keep!r}")
    if keep is not None and keep < 0:
        raise ValueError(f"keep must be >= 0, got {keep!r}")
    return (None if older_than is None else float(older_than)), (None if keep is None else int(keep))


async def prune_finished(submit: Callable[..., Any], before: float, keep: int | None) -> int:
    """Delete the finished jobs that finished before `before` and are not among the `keep` newest.

    `submit(fn, *args)` runs `fn(conn, *args)` on the store's thread; return how many were removed.
    """
    end: Position | None = (before, "")
    if keep:
        boundary = await submit(_keep_boundary, keep)
        end = None if boundary is None else min(end, boundary)  # None: no more than `keep` finished jobs
    removed, position = 0, START
    while end is not None and position is not None:
        position, count = await submit(_prune_chunk, position, end)
        removed += count
    return removed


def vacuum(conn: sqlite3.Connection) -> None:
    """Give the pages of deleted rows back to the file system (rewrites jobs.db)."""
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _keep_boundary(conn: sqlite3.Connection, keep: int) -> Position | None:
    """The position of the `keep`-th newest finished job (older ones may go), or None if there are fewer."""
    row = conn.execute(SELECT_KEEP_BOUNDARY, (keep - 1,)).fetchone()
    return None if row is None else (row[0], row[1])


def _prune_chunk(conn: sqlite3.Connection, after: Position, end: Position) -> tuple[Position | None, int]:
    """Delete the removable jobs among the next `CHUNK` after `after`; return where to go on (None: done)."""
    rows = in_transaction(conn, _delete_chunk, conn, after, end)
    removable = sum(1 for row in rows if row[2])
    return ((rows[-1][0], rows[-1][1]) if len(rows) == CHUNK else None), removable


def _delete_chunk(conn: sqlite3.Connection, after: Position, end: Position) -> list[tuple]:
    rows = conn.execute(SELECT_CHUNK, (after[0], end[0], *after, *end, CHUNK)).fetchall()
    ids = [job_id for _, job_id, removable in rows if removable]
    if ids:
        marks = ", ".join("?" * len(ids))
        for sql in DELETES:
            conn.execute(sql.format(marks), ids)
    return rows
