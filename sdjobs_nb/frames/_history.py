"""History, metrics and active jobs of a library as pandas DataFrames."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .._errors import ManagerClosed
from .._query import (
    ACTIVE_STATUSES, METRIC_GROUPS, TERMINAL_STATUSES, HistoryColumns, HistoryQuery, MetricsRow, history_query,
    to_epoch,
)
from .._records import JobRecord
from .._status import JobStatus
from . import _deps

if TYPE_CHECKING:
    import pandas as pd

    from .._manager import JobManager

__all__ = ("history_frame", "metrics_frame", "active_jobs_frame", "build_history", "build_metrics", "check_open")


# field -> how its values become a column
_KINDS = {
    "id": "strings", "name": "strings", "version": "ints", "status": "status", "parent_id": "strings",
    "priority": "ints", "initiated_by": "strings", "context": "json_objects", "created_at": "times",
    "started_at": "times", "finished_at": "times", "duration_s": "floats", "queue_wait_s": "floats",
    "progress_fraction": "floats", "progress_current": "floats", "progress_total": "floats",
    "progress_kind": "strings", "progress_phase": "strings", "items": "ints", "bytes": "ints",
    "checkpoints": "ints", "non_critical_errors": "ints", "memory_mb": "floats", "error": "strings",
}


async def history_frame(manager: JobManager, *, name: Any = None, status: Any = None, since: Any = None,
                        until: Any = None, limit: Any = None) -> pd.DataFrame:
    """Return one row per finished job, newest first (see `JobManager.history`).

    Filters: `name` and `status` take one value or a list; `since` (inclusive) and `until`
    (exclusive) select on `finished_at` and take a datetime or pandas Timestamp (naive ones
    are local time, as `datetime.timestamp()` reads them), an ISO 8601 string, epoch seconds,
    a timedelta or a string such as "2h" (that long ago); `limit` keeps the newest rows and
    reads only those, through the finished_at index. Bad values raise ValueError.

    Columns: text in pandas' own text dtype ("str" from pandas 3); `status` categorical over
    completed/failed/cancelled; `created_at`, `started_at`, `finished_at` UTC datetimes,
    truncated to the microsecond so that `since=df.finished_at[i]` includes row i and
    `until=` excludes it; durations in float seconds; counters int64; `context` the dict
    given at dispatch (or None). Ties in `finished_at` keep the later-written row first.
    The frame is read and built on the read thread: the event loop and the writes stay free.
    """
    _deps.pandas()
    check_open(manager)
    query = history_query(name, status, since, until, limit)
    return await manager.queries.history(query, build_history)


def build_history(columns: HistoryColumns) -> pd.DataFrame:
    """Build the typed history DataFrame from the columns of a history read."""
    pd = _deps.pandas()
    from ._build import ColumnBuilder

    builder = ColumnBuilder(columns)
    data = {field: _column(builder, field, kind) for field, kind in _KINDS.items()}
    return pd.DataFrame(data, copy=False)


def _column(builder: Any, field: str, kind: str) -> Any:
    if kind == "status":
        return builder.categories(field, TERMINAL_STATUSES)
    return getattr(builder, kind)(field)


async def metrics_frame(manager: JobManager, *, by: str = "name", since: Any = None) -> pd.DataFrame:
    """Return counts, failure rate, durations and throughput per `by` value (see `JobManager.metrics`).

    One row per value of `by` (name, status, version, priority, initiated_by or parent_id),
    which is the index; `since` selects on finished_at like `history`. `failure_rate` is
    failed / count; duration statistics use the jobs that started (median and p95 by linear
    interpolation, as pandas' `quantile`); `items_per_s` is the items of all jobs over the
    seconds they ran; `queue_wait_mean_s` is the mean wait from dispatch to start.
    Aggregation runs in SQL; only the durations needed for the quantiles leave SQLite.
    """
    _deps.pandas()
    check_open(manager)
    if by not in METRIC_GROUPS:
        raise ValueError(f"metrics can be grouped by {', '.join(METRIC_GROUPS)}; not {by!r}")
    query = HistoryQuery(since=to_epoch(since, "since"))
    return await manager.queries.metrics(by, query, lambda rows: build_metrics(rows, by))


METRIC_COLUMNS = (
    "count", "completed", "failed", "cancelled", "failure_rate", "duration_mean_s",
    "duration_median_s", "duration_p95_s", "duration_max_s", "items_per_s", "queue_wait_mean_s",
)


def build_metrics(rows: list[MetricsRow], by: str) -> pd.DataFrame:
    """Build the metrics DataFrame (one row per group, indexed by `by`) from the rows of a metrics read."""
    import numpy as np

    pd = _deps.pandas()
    values = [_metric_values(row, np) for row in rows]
    columns = {c: np.array([v[i] for v in values], dtype=np.int64 if i < 4 else np.float64)
               for i, c in enumerate(METRIC_COLUMNS)}
    return pd.DataFrame(columns, index=pd.Index([row.key for row in rows], name=by), copy=False)


def _metric_values(row: MetricsRow, np: Any) -> tuple:
    median, p95 = row.duration_median_s, row.duration_p95_s
    if median is None and row.durations:
        durations = np.array(row.durations.split(","), dtype=np.float64)
        median, p95 = np.percentile(durations, [50, 95])
    busy = row.busy_s or 0.0
    return (
        row.count, row.completed, row.failed, row.cancelled, row.failed / row.count,
        _nan(row.duration_mean_s), _nan(median), _nan(p95), _nan(row.duration_max_s),
        row.items / busy if busy > 0 else math.nan, _nan(row.queue_wait_mean_s),
    )


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def active_jobs_frame(manager: JobManager) -> pd.DataFrame:
    """Return the queued, running and paused jobs, oldest first (see `JobManager.jobs`).

    The owner's view is live: status, progress and metrics come from its handles (updated up
    to 10 times a second), the rest from jobs.db. A read-only view has no running jobs of its
    own, so it reads everything from jobs.db: progress as of the owner's last save (at most
    ~2 s old while a job runs). Either way this is a small indexed read that does not await,
    which keeps `jobs()` usable as the last line of a cell.
    """
    pd = _deps.pandas()
    check_open(manager)
    records = manager.queries.active_records()
    live = {h.id: h for h in manager.handles()}
    rows = [_active_row(r, live.get(r.id)) for r in records if manager.read_only or r.id in live]
    return _active_frame(pd, [r for r in rows if r is not None])


ACTIVE_FIELDS = (
    "id", "name", "version", "status", "parent_id", "priority", "initiated_by", "context",
    "created_at", "started_at", "paused_at", "pause_reason", "progress_fraction", "progress_current",
    "progress_total", "progress_kind", "progress_phase", "progress_message", "rate", "eta_s",
    "items", "bytes", "checkpoints", "non_critical_errors", "elapsed_s", "memory_mb",
)
_ACTIVE_KINDS = dict.fromkeys(ACTIVE_FIELDS, "floats") | dict.fromkeys(
    ("id", "name", "parent_id", "initiated_by", "pause_reason", "progress_kind", "progress_phase",
     "progress_message"), "strings"
) | dict.fromkeys(("version", "priority", "items", "bytes", "checkpoints", "non_critical_errors"), "ints") | {
    "status": "status", "context": "objects", "created_at": "times", "started_at": "times", "paused_at": "times",
}


def _active_row(record: JobRecord, handle: Any) -> tuple | None:
    status = handle.current_status if handle is not None else record.status
    if status.is_terminal:  # finished a moment ago; history() has it
        return None
    p = handle.current_progress if handle is not None else record.progress
    metrics = handle.metrics if handle is not None else record.metrics
    paused = status is JobStatus.PAUSED
    values = {
        "id": record.id, "name": record.name, "version": record.version,
        "status": ACTIVE_STATUSES.index(status.value), "parent_id": record.parent_id,
        "priority": record.priority, "initiated_by": record.initiated_by, "context": record.context,
        "created_at": record.created_at, "started_at": record.started_at,
        "paused_at": record.paused_at if paused else None, "pause_reason": record.pause_reason if paused else None,
        "progress_fraction": p and p.fraction, "progress_current": p and p.current, "progress_total": p and p.total,
        "progress_kind": p and p.kind, "progress_phase": p and p.phase, "progress_message": p and p.message,
        "rate": p and p.rate, "eta_s": p and p.eta_seconds,
        "items": metrics.get("items", 0), "bytes": metrics.get("bytes", 0),
        "checkpoints": metrics.get("checkpoints", 0), "non_critical_errors": metrics.get("non_critical_errors", 0),
        "elapsed_s": metrics.get("elapsed_seconds"), "memory_mb": metrics.get("memory_mb"),
    }
    return tuple(values[f] for f in ACTIVE_FIELDS)


def _active_frame(pd: Any, rows: list[tuple]) -> pd.DataFrame:
    from ._build import ColumnBuilder

    builder = ColumnBuilder(HistoryColumns.of_rows(ACTIVE_FIELDS, rows))
    data = {}
    for field, kind in _ACTIVE_KINDS.items():
        if kind == "status":
            data[field] = builder.categories(field, ACTIVE_STATUSES)
        else:
            data[field] = getattr(builder, kind)(field)
    return pd.DataFrame(data, copy=False)


def check_open(manager: JobManager) -> None:
    if manager.closed:
        raise ManagerClosed(f"the manager of {str(manager.path)!r} is closed; open the library again")
