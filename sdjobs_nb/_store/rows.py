"""What goes into jobs.db's columns, next to the schema: value encodings and built rows.

The store's named operations (store.py) build their short parameter tuples next to their
statements; the long row of a finished job's job_history entry is built here, in the order of
`schema.HISTORY_COLUMNS` (checked when this module is imported). Encodings shared by writes
and reads (progress blobs, metrics and context JSON) live here too.
"""

from __future__ import annotations

import dataclasses
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
    "RECORD_COLUMNS", "check_storable_int", "check_storable_key", "history_row", "metrics_json", "pack_progress",
    "record_from_row", "storable_job", "storable_text", "unpack_progress",
)

log = logging.getLogger("sdjobs_nb.store")

# --- values ---------------------------------------------------------------------------------


def from_json_text(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError, RecursionError):  # damaged, or nested too deep: keep the job readable
        log.warning("ignoring a jobs.db column that is not JSON: %.80r", text)
        return None


def storable_text(text: str | None) -> str | None:
    """`text` as SQLite can store it: what strict UTF-8 cannot encode becomes a visible escape.

    Python's sqlite3 binds str as strict UTF-8, so one lone surrogate (a file name from
    `os.listdir` that was not UTF-8: 'r\\udce9sum.txt') would fail the whole group transaction.
    Messages keep the original bytes readable ('r\\xe9sum.txt'); valid text is returned as is
    (`isascii` is the cheap first test: this runs for every finishing job).
    """
    if text is None or text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _escaped(text)
    return text


def _escaped(text: str) -> str:
    try:  # undecodable file-name bytes (surrogateescape) shown as the bytes they were
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # other lone surrogates, e.g. from bad JSON: show their code point
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def check_storable_key(value: str | None, what: str) -> None:
    """Refuse an identity value (a dedup key, a job name) that SQLite cannot store as text.

    Escaping it would make two keys one, or a key differ from itself after a reopen; the caller
    must choose the text.
    """
    if value is None or value.isascii():
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"{what} {value!r} cannot be stored: {value[e.start:e.end]!r} at position {e.start} is not valid "
            f"Unicode text (a lone surrogate, e.g. from a file name that is not UTF-8); pass text that encodes "
            f"to UTF-8, e.g. with os.fsencode(name).decode('utf-8', 'backslashreplace')"
        ) from None


def check_storable_int(value: int, what: str) -> None:
    """Refuse an int that SQLite cannot store (it has 64-bit integers), before it is staged."""
    if not -(2**63) <= value < 2**63:
        raise ValueError(f"{what} {value} is too large to store: jobs.db holds integers from -2**63 to 2**63 - 1")


def storable_job(job: FinishedJob) -> FinishedJob:
    """`job` with its free text made storable (`storable_text`); the same object when it already is."""
    error, traceback, initiated_by = job.error, job.traceback, job.initiated_by
    if ((error is None or error.isascii()) and (traceback is None or traceback.isascii())
            and (initiated_by is None or initiated_by.isascii())):
        return job
    return dataclasses.replace(job, error=storable_text(error), traceback=storable_text(traceback),
                               initiated_by=storable_text(initiated_by))


def pack_progress(progress: Progress | None) -> bytes | None:
    if progress is None:
        return None
    plain = progress.to_plain()
    try:
        return pack(plain)
    except UnicodeEncodeError:  # a phase, message or data holding a file name that is not UTF-8
        return pack(_storable_plain(plain))


def _storable_plain(value: Any) -> Any:
    """Plain data with every str made storable (`storable_text`), keys included."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {_storable_plain(k): _storable_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_storable_plain(v) for v in value]
    return value


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
        *((p.kind, p.fraction, p.current, p.total, storable_text(p.phase)) if p is not None else _NO_PROGRESS),
        int(m.get("items", 0)), int(m.get("bytes", 0)), int(m.get("checkpoints", 0)),
        int(m.get("non_critical_errors", 0)), m.get("memory_mb"), job.error, metrics_text,
    )
