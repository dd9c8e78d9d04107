"""History, metrics and active jobs of a library as pandas DataFrames."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .._errors import ManagerClosed
from .._status import JobStatus
from .._store import analytics
from .._store.analytics import TERMINAL_STATUSES, HistoryColumns, MetricsRow
from . import _deps
from ._query import history_query, to_epoch

if TYPE_CHECKING:
    import pandas as pd

    from .._manager import JobManager

__all__ = ("history_frame", "metrics_frame", "active_jobs_frame", "HISTORY_DTYPES")

ACTIVE_STATUSES = ("queued", "running", "paused")

# field -> how its values become a column
_KINDS = {
    "id": "str", "name": "str", "version": "int", "status": "status", "parent_id": "str",
    "priority": "int", "initiated_by": "str", "context": "json", "created_at": "time",
    "started_at": "time", "finished_at": "time", "duration_s": "float", "queue_wait_s": "float",
    "progress_fraction": "float", "progress_current": "float", "progress_total": "float",
    "progress_kind": "str", "progress_phase": "str", "items": "int", "bytes": "int",
    "checkpoints": "int", "non_critical_errors": "int", "memory_mb": "float", "error": "str",
}


async def history_frame(manager: JobManager, *, name: Any = None, status: Any = None, since: Any = None,
                        until: Any = None, limit: Any = None) -> pd.DataFrame:
    """Return one row per finished job, newest first (see `JobManager.history`)."""
    _deps.pandas()
    _check_open(manager)
    query = history_query(name, status, since, until, limit)
    return await analytics.history(manager.store, query, build_history)


def build_history(columns: HistoryColumns) -> pd.DataFrame:
    """Build the typed history DataFrame from analytics columns."""
    pd = _deps.pandas()
    data = {field: _column(columns, field, kind) for field, kind in _KINDS.items()}
    return pd.DataFrame(data, copy=False)


def _column(columns: HistoryColumns, field: str, kind: str) -> Any:
    from . import _build as b

    n = columns.length
    values = columns.values(field)
    if kind == "str":
        return b.strings(values, n)
    if kind == "int":
        return b.ints(values, n)
    if kind == "float":
        return b.floats(values, n)
    if kind == "time":
        return b.times(b.floats(values, n))
    if kind == "status":
        return b.categories(values, n, TERMINAL_STATUSES)
    return b.json_objects(values, n)


async def metrics_frame(manager: JobManager, *, by: str = "name", since: Any = None) -> pd.DataFrame:
    """Return counts, failure rate, durations and throughput per `by` value (see `JobManager.metrics`)."""
    _deps.pandas()
    _check_open(manager)
    if by not in analytics.METRIC_GROUPS:
        raise ValueError(f"metrics can be grouped by {', '.join(analytics.METRIC_GROUPS)}; not {by!r}")
    query = analytics.HistoryQuery(since=to_epoch(since, "since"))
    return await analytics.metrics(manager.store, by, query, lambda rows: build_metrics(rows, by))


METRIC_COLUMNS = (
    "count", "completed", "failed", "cancelled", "failure_rate", "duration_mean_s",
    "duration_median_s", "duration_p95_s", "duration_max_s", "items_per_s", "queue_wait_mean_s",
)


def build_metrics(rows: list[MetricsRow], by: str) -> pd.DataFrame:
    """Build the metrics DataFrame (one row per group, indexed by `by`) from analytics rows."""
    import numpy as np

    pd = _deps.pandas()
    records = [_metric_values(row, np) for row in rows]
    index = pd.Index([row.key for row in rows], name=by)
    frame = pd.DataFrame.from_records(records, columns=METRIC_COLUMNS, index=index) if records else \
        pd.DataFrame({c: [] for c in METRIC_COLUMNS}, index=index)
    return frame.astype({c: "int64" for c in METRIC_COLUMNS[:4]} | {c: "float64" for c in METRIC_COLUMNS[4:]})


def _metric_values(row: MetricsRow, np: Any) -> tuple:
    durations = np.array(row.durations.split(","), dtype=np.float64) if row.durations else np.empty(0)
    median, p95 = np.percentile(durations, [50, 95]) if durations.size else (math.nan, math.nan)
    busy = row.busy_s or 0.0
    return (
        row.count, row.completed, row.failed, row.cancelled, row.failed / row.count,
        _nan(row.duration_mean_s), median, p95, _nan(row.duration_max_s),
        row.items / busy if busy > 0 else math.nan, _nan(row.queue_wait_mean_s),
    )


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def active_jobs_frame(manager: JobManager) -> pd.DataFrame:
    """Return the queued, running and paused jobs with their progress (see `JobManager.jobs`)."""
    pd = _deps.pandas()
    _check_open(manager)
    records = {r.id: r for r in analytics.active_records(manager.store)}
    live = {h.id: h for h in manager.handles()}
    ids = list(live) if not manager.read_only else list(records)
    rows = [_active_row(records.get(i), live.get(i)) for i in ids]
    return _active_frame(pd, [r for r in rows if r is not None])


ACTIVE_FIELDS = (
    "id", "name", "version", "status", "parent_id", "priority", "initiated_by", "context",
    "created_at", "started_at", "paused_at", "pause_reason", "progress_fraction", "progress_current",
    "progress_total", "progress_kind", "progress_phase", "progress_message", "rate", "eta_s",
    "items", "bytes", "checkpoints", "non_critical_errors", "elapsed_s", "memory_mb",
)


def _active_row(record: Any, handle: Any) -> dict[str, Any] | None:
    if record is None:
        return None
    status = handle.current_status if handle is not None else record.status
    if JobStatus(status).is_terminal:
        return None
    progress = handle.current_progress if handle is not None else record.progress
    metrics = handle.metrics if handle is not None else record.metrics
    p = progress
    return {
        "id": record.id, "name": record.name, "version": record.version, "status": JobStatus(status).value,
        "parent_id": record.parent_id, "priority": record.priority, "initiated_by": record.initiated_by,
        "context": record.context, "created_at": record.created_at, "started_at": record.started_at,
        "paused_at": record.paused_at if status is JobStatus.PAUSED else None,
        "pause_reason": record.pause_reason if status is JobStatus.PAUSED else None,
        "progress_fraction": p and p.fraction, "progress_current": p and p.current,
        "progress_total": p and p.total, "progress_kind": p and p.kind, "progress_phase": p and p.phase,
        "progress_message": p and p.message, "rate": p and p.rate, "eta_s": p and p.eta_seconds,
        "items": metrics.get("items", 0), "bytes": metrics.get("bytes", 0),
        "checkpoints": metrics.get("checkpoints", 0), "non_critical_errors": metrics.get("non_critical_errors", 0),
        "elapsed_s": metrics.get("elapsed_seconds"), "memory_mb": metrics.get("memory_mb"),
    }


def _active_frame(pd: Any, rows: list[dict[str, Any]]) -> pd.DataFrame:
    import numpy as np

    from . import _build as b

    n = len(rows)

    def col(field: str) -> list[Any]:
        return [r[field] for r in rows]

    data: dict[str, Any] = {}
    for field in ACTIVE_FIELDS:
        values = col(field)
        if field == "status":
            data[field] = pd.Categorical(values, categories=ACTIVE_STATUSES)
        elif field in ("created_at", "started_at", "paused_at"):
            data[field] = b.times(b.floats(values, n))
        elif field in ("version", "priority", "items", "bytes", "checkpoints", "non_critical_errors"):
            data[field] = np.array(values, dtype=np.int64)
        elif field == "context":
            data[field] = b.json_objects((None for _ in values), n) if False else _objects(values, np)
        elif field in ("id", "name", "parent_id", "initiated_by", "pause_reason", "progress_kind",
                       "progress_phase", "progress_message"):
            data[field] = b.strings(values, n)
        else:
            data[field] = b.floats(values, n)
    return pd.DataFrame(data, copy=False)


def _objects(values: list[Any], np: Any) -> Any:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _check_open(manager: JobManager) -> None:
    if manager.closed:
        raise ManagerClosed(f"the manager of {str(manager.path)!r} is closed; open the library again")
