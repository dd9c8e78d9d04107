"""`Queries`: the read interface that frontends use (`JobManager.queries`), never the store itself.

DataFrames (`sdjobs_nb.frames`), the `sdjobs` command and the widgets read a library through
these methods; the values they take and return (`HistoryQuery`, `HistoryColumns`,
`MetricsRow`, `JobRecord`) live in the base layer (`sdjobs_nb._query`, `sdjobs_nb._records`).
Every method reads committed rows only and never writes. The bulk reads (`history`,
`metrics`, `durations`) run off the event loop in one read transaction; the others are small
indexed reads that do not await, so they work in a notebook cell's last line and in sync code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from .._query import HistoryColumns, HistoryQuery, MetricsRow
from .._records import JobRecord
from . import analytics
from .store import Store

__all__ = ("Queries",)

T = TypeVar("T")


class Queries:
    """Read-only queries over one library's jobs.db (owner and read-only views alike)."""

    __slots__ = ("_store",)

    def __init__(self, store: Store) -> None:
        self._store = store

    async def history(self, query: HistoryQuery, build: Callable[[HistoryColumns], T]) -> T:
        """Read the finished jobs `query` selects and return `build(columns)`.

        Both the read and `build` run on the read thread (an owner's own connection, so
        running jobs' commits never wait for it); `build` turns the columns into what the
        caller wants (a DataFrame, a list of dicts) without holding up the event loop.
        """
        return await analytics.history(self._store, query, build)

    async def metrics(self, by: str, query: HistoryQuery, build: Callable[[list[MetricsRow]], T]) -> T:
        """Aggregate the rows `query` selects per value of `by` (one of `METRIC_GROUPS`); return `build(rows)`.

        Raises ValueError for another `by`. Runs on the read thread, like `history`.
        """
        return await analytics.metrics(self._store, by, query, build)

    async def durations(self, query: HistoryQuery) -> dict[str, str]:
        """Return {job name: its durations in seconds, comma-separated}, names in order.

        Only rows `query` selects that have a duration count; `query.limit` is not used.
        """
        return await analytics.durations(self._store, query)

    async def active_jobs(self) -> list[JobRecord]:
        """Read the queued, running and paused jobs, oldest first (on the store's thread)."""
        return await self._store.active_jobs()

    def active_records(self) -> list[JobRecord]:
        """Read the queued, running and paused jobs, oldest first, without awaiting."""
        return analytics.active_records(self._store)

    def find_job_ids(self, prefix: str, limit: int = 2) -> list[str]:
        """Return up to `limit` job ids that start with `prefix`, in order (a full id matches itself)."""
        return analytics.find_job_ids(self._store, prefix, limit)

    def children_records(self, parent_id: str) -> list[JobRecord]:
        """Read the children of a job, in spawn order, without awaiting."""
        return analytics.children_records(self._store, parent_id)

    def record_now(self, job_id: str) -> JobRecord | None:
        """Read one job's record without awaiting (a sub-millisecond read), or None if there is none."""
        return self._store.job_sync(job_id)
