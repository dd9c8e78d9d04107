"""What goes into jobs.db's columns, next to the schema: value encodings and built rows.

The store's named operations (store.py) build their short parameter tuples next to their
statements; the long row of a finished job's job_history entry is built here, in the order of
`schema.HISTORY_COLUMNS` (checked when this module is imported). Encodings shared by writes
and reads (progress blobs, metrics and context JSON) live here too.
"""

from __future__ import annotations

import json
import logging
import operator
from collections.abc import Iterable
from math import isfinite
from typing import Any

from .._codec import pack, unpack
from .._progress import Progress
from .._records import FinishedJob, JobRecord
from .._status import JobStatus
from .schema import HISTORY_COLUMNS, JOB_COLUMNS

__all__ = (
    "RECORD_COLUMNS", "history_row", "metrics_json", "pack_progress", "record_from_row", "unpack_progress",
)

log = logging.getLogger("sdjobs_nb.store")

# --- values ---------------------------------------------------------------------------------


def from_json_text(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):  # a damaged column must not make the job unreadable
        log.warning("ignoring a jobs.db column that is not JSON: %.80r", text)
        return None


def pack_progress(progress: Progress | None) -> bytes | None:
    return None if progress is None else pack(progress.to_plain())


def unpack_progress(blob: bytes | None) -> Progress | None:
    if blob is None:
        return None
    try:
        return Progress.from_plain(unpack(blob))
    except Exception:  # a corrupt progress blob must not make the job unreadable
        return None


_METRIC_KEYS = ("elapsed_seconds", "memory_mb", "items", "bytes", "checkpoints", "non_critical_errors")
_metric_values = operator.itemgetter(*_METRIC_KEYS)


def metrics_json(metrics: dict[str, Any]) -> str:
    """The JSON text of a job's metrics column (the same text `json.dumps` gives).

    A finishing job writes its metrics twice (jobs and job_history): the usual six numbers are
    formatted directly, about 4x cheaper than `json.dumps`; anything else goes to `json.dumps`.
    """
    if len(metrics) == 6:
        try:
            elapsed, memory, items, nbytes, checkpoints, errors = _metric_values(metrics)
        except KeyError:
            return json.dumps(metrics)
        if (type(elapsed) is float and isfinite(elapsed)
                and (memory is None or (type(memory) is float and isfinite(memory)))
                and type(items) is int and type(nbytes) is int and type(checkpoints) is int and type(errors) is int):
            return (f'{{"elapsed_seconds": {elapsed!r}, "memory_mb": {"null" if memory is None else repr(memory)}, '
                    f'"items": {items}, "bytes": {nbytes}, "checkpoints": {checkpoints}, '
                    f'"non_critical_errors": {errors}}}')
    return json.dumps(metrics)


# --- jobs: the record read back -------------------------------------------------------------

RECORD_COLUMNS = tuple(c for c in JOB_COLUMNS if c not in ("data", "result"))


def record_from_row(row: Iterable[Any]) -> JobRecord:
    """A `JobRecord` from a row of `RECORD_COLUMNS`."""
    r = dict(zip(RECORD_COLUMNS, row))
    return JobRecord(
        id=r["id"], name=r["name"], version=r["version"], status=JobStatus(r["status"]),
        priority=r["priority"], parent_id=r["parent_id"], initiated_by=r["initiated_by"],
        context=from_json_text(r["context"]), dedup_key=r["dedup_key"], pause_reason=r["pause_reason"],
        error=r["error"], traceback=r["traceback"], progress=unpack_progress(r["progress"]),
        metrics=from_json_text(r["metrics"]) or {}, created_at=r["created_at"], started_at=r["started_at"],
        paused_at=r["paused_at"], finished_at=r["finished_at"], seq=r["seq"], spawn_key=r["spawn_key"],
    )


# --- job_history: a finished job's row ------------------------------------------------------

# the columns `history_row` writes, in its order; must be `HISTORY_COLUMNS` (checked below)
_HISTORY_ROW_ORDER = (
    "id", "name", "version", "status", "parent_id", "priority", "initiated_by", "context",
    "created_at", "started_at", "finished_at", "duration_s", "queue_wait_s",
    "progress_kind", "progress_fraction", "progress_current", "progress_total", "progress_phase",
    "items", "bytes", "checkpoints", "non_critical_errors", "memory_mb", "error", "metrics",
)
if _HISTORY_ROW_ORDER != HISTORY_COLUMNS:  # pragma: no cover - a schema edit without this builder's
    raise ImportError(f"rows.history_row writes {_HISTORY_ROW_ORDER}, but job_history has {HISTORY_COLUMNS}")

_NO_PROGRESS = (None, None, None, None, None)


def history_row(job: FinishedJob, metrics_text: str) -> tuple:
    """The job_history row of a finished job, in `HISTORY_COLUMNS` order.

    `metrics_text` is `metrics_json(job.metrics)`, made once for both of the job's rows.
    """
    p = job.progress
    m = job.metrics
    started = job.started_at
    now = job.finished_at
    return (
        job.id, job.name, job.version, job.status.value, job.parent_id, job.priority,
        job.initiated_by, None if job.context is None else json.dumps(job.context),
        job.created_at, started, now,
        None if started is None else now - started,  # duration_s
        None if started is None else started - job.created_at,  # queue_wait_s
        *((p.kind, p.fraction, p.current, p.total, p.phase) if p is not None else _NO_PROGRESS),
        int(m.get("items", 0)), int(m.get("bytes", 0)), int(m.get("checkpoints", 0)),
        int(m.get("non_critical_errors", 0)), m.get("memory_mb"), job.error, metrics_text,
    )
