"""Jobs found in jobs.db at open: re-created from their saved state, or set aside as broken.

A stored row is checked before the runtime uses it: a value of the wrong type (a priority
stored as text, ...) sets that one job aside (`manager.broken()`), and metrics that are not
finite numbers are repaired, so one damaged row never makes the library unopenable.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from typing import Any

from .._errors import BrokenJob, JobNotFound, SdjobsError, UnknownJob, VersionMismatch
from .._job import Job, registry
from .._records import JobRecord
from .._status import JobStatus, PauseReason, Priority
from .._store.store import Store
from .entry import JobEntry, Outcome
from .run import JobRuns, describe
from .scheduler import Scheduler
from .settings import RunSettings
from .table import JobTable

__all__ = ("StoredJobs", "check_stored_id", "repaired_metrics")

log = logging.getLogger("sdjobs_nb")

S = JobStatus
CUT_CASCADE_TEXT = "cancelled with its parent (the process stopped before the cancel reached this job)"


class StoredJobs:
    """Loads a library's unfinished jobs, and re-creates a stored job when it runs again."""

    def __init__(self, store: Store, table: JobTable, scheduler: Scheduler, runs: JobRuns,
                 settings: RunSettings) -> None:
        self._store = store
        self._table = table
        self._scheduler = scheduler
        self._runs = runs
        self._settings = settings
        self._loop: asyncio.AbstractEventLoop | None = None
        self._damaged: dict[str, str] = {}  # id -> why its row cannot be used (never runs)

    async def load(self) -> None:
        """Take over the library's unfinished jobs: running ones died with their process."""
        self._loop = asyncio.get_running_loop()
        registry.add_listener(self._on_registered)
        now = time.time()
        for record in await self._store.active_jobs():
            entry = self._entry_from_record(record)
            self._table.remember(entry)
            if record.status is S.RUNNING:
                self._recover_running(entry, now)
        await self._finish_cut_cascades(now)
        await self._store.commit()
        for job_id, name, version, blob in await self._store.queued_data():
            entry = self._table.get(job_id)
            if entry is not None:
                self._enqueue_stored(entry, name, version, blob)
        self._scheduler.schedule()

    def _entry_from_record(self, record: JobRecord) -> JobEntry:
        """The entry of a stored row; a row with values of the wrong type is remembered as damaged."""
        problem = row_problem(record)
        entry = _new_entry(record, problem is None)
        if problem is not None:
            self._damaged[entry.id] = (f"job {record.name!r:.80} ({record.id!r:.80}) has a damaged row in "
                                       f"{self._store.path}: {problem}; it was altered outside sdjobs_nb and is left alone "
                                       f"(cancel it, or put the value back)")
            self._table.set_aside(entry, BrokenJob(self._damaged[entry.id]))
        return entry

    def _enqueue_stored(self, entry: JobEntry, name: str, version: int, blob: bytes) -> None:
        """Re-create a queued job from its stored state and queue it, or set it aside as broken."""
        try:
            self._check_usable(entry)
            entry.job = recreate(name, version, blob)
        except (UnknownJob, VersionMismatch, BrokenJob) as e:
            self._table.set_aside(entry, e)
            return
        self._table.mended(entry.id)
        entry.cls = type(entry.job)
        self._scheduler.push(entry)

    def _check_usable(self, entry: JobEntry) -> None:
        """Raise `BrokenJob` for a job whose row cannot be used (a tampered id or value)."""
        check_stored_id(entry.id)
        why = self._damaged.get(entry.id)
        if why is not None:
            raise BrokenJob(why)

    def _recover_running(self, entry: JobEntry, now: float) -> None:
        """A job RUNNING in jobs.db at open was running when its process died."""
        cls = registry.find(entry.name)
        if cls is not None and not cls.IS_RESUMABLE:
            entry.status = S.RUNNING
            error = "the process died while it ran and the job is not resumable"
            self._runs.stage_finish(entry, Outcome(S.FAILED, error=error), now)
            self._table.forget(entry)
            return
        entry.status, entry.pause_reason = S.PAUSED, PauseReason.INTERRUPTED
        self._store.mark_paused(entry.id, str(PauseReason.INTERRUPTED), now, entry.progress, entry.metrics)

    async def _finish_cut_cascades(self, now: float) -> None:
        """Cancel the unfinished descendants of a cancelled parent (a crash stopped its cancel midway).

        `cancel()` writes the parent and its idle descendants in one transaction, but a running
        child's end is written when it stops: a process killed before that leaves it RUNNING
        under a CANCELLED parent. It must not run again, so its cancel is finished here.
        """
        for parent_id in {e.parent_id for e in self._table.in_order()
                          if e.parent_id is not None and self._table.get(e.parent_id) is None}:
            if await self._stored_status(parent_id) is S.CANCELLED:
                for child in self._table.children_of(parent_id):
                    self._cancel_at_load(child, now)

    async def _stored_status(self, job_id: Any) -> JobStatus | None:
        try:
            record = await self._store.job(job_id)
        except (ValueError, TypeError):  # a damaged finished row: nothing to finish for it
            return None
        return None if record is None else record.status

    def _cancel_at_load(self, entry: JobEntry, now: float) -> None:
        for child in self._table.children_of(entry.id):
            self._cancel_at_load(child, now)
        if not entry.status.is_terminal:
            self._runs.stage_finish(entry, Outcome(S.CANCELLED, error=CUT_CASCADE_TEXT), now)
            self._table.forget(entry)

    async def materialize(self, entry: JobEntry) -> Job:
        """Re-create a stored job from its saved state (raises UnknownJob, VersionMismatch, BrokenJob)."""
        self._check_usable(entry)
        row = await self._store.job_data(entry.id)
        if row is None:
            raise JobNotFound(f"job {entry.id} vanished from {self._store.path}")
        name, version, blob = row
        job = recreate(name, version, blob)
        self._table.mended(entry.id)
        # metrics reach jobs.db at most once a second; a crash can leave them behind the exact
        # checkpoint count, which the resumed run carries on from
        saved = await self._store.checkpoint_count(entry.id)
        if saved > int(entry.metrics.get("checkpoints", 0)):
            entry.metrics = {**entry.metrics, "checkpoints": saved}
        return job

    def _on_registered(self, name: str) -> None:
        """A class was defined after open: queued jobs of that name set aside at load can run now."""
        waiting = self._table.broken_named(name)
        loop = self._loop
        if self._settings.closing or not waiting or loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(lambda: loop.create_task(self._retry_set_aside(waiting)))

    async def _retry_set_aside(self, entries: list[JobEntry]) -> None:
        for entry in entries:
            if entry.status is not S.QUEUED or entry.job is not None or self._settings.closing:
                continue
            row = await self._store.job_data(entry.id)
            if row is not None:
                self._enqueue_stored(entry, *row)
        self._scheduler.schedule()


def check_stored_id(job_id: str) -> None:
    """Ids are UUIDs written by this library; anything else was tampered with and never runs."""
    try:
        uuid.UUID(job_id)
    except (ValueError, TypeError, AttributeError):
        raise BrokenJob(f"job id {job_id!r:.80} is not a UUID; the record was altered outside sdjobs_nb and is left alone") from None


def recreate(name: str, version: int, blob: bytes) -> Job:
    """`registry.create`, with any failure of a stored job's data (or of its `migrate`) as `BrokenJob`."""
    try:
        return registry.create(name, version, blob)
    except (UnknownJob, VersionMismatch, BrokenJob):
        raise
    except Exception as e:  # a user's `migrate`, or a value no check foresaw: that job only
        if isinstance(e, SdjobsError):
            raise BrokenJob(f"stored job {name!r:.80} cannot be re-created: {e}") from e
        raise BrokenJob(f"stored job {name!r:.80} cannot be re-created ({describe(e)}); the record was kept") from e


# --- checking a stored row ---------------------------------------------------------------------

_INTEGERS = ("version", "priority", "seq")
_TEXTS = ("id", "name")
_OPTIONAL_TEXTS = ("parent_id", "spawn_key", "initiated_by", "dedup_key", "pause_reason")


def row_problem(record: JobRecord) -> str | None:
    """What makes a stored row unusable by the runtime (a value of the wrong type), or None."""
    for field in _INTEGERS:
        value = getattr(record, field)
        if type(value) is not int:
            return f"its {field} is {value!r:.40}, not an integer"
    for field in _TEXTS:
        if type(getattr(record, field)) is not str:
            return f"its {field} is {getattr(record, field)!r:.40}, not text"
    for field in _OPTIONAL_TEXTS:
        value = getattr(record, field)
        if value is not None and type(value) is not str:
            return f"its {field} is {value!r:.40}, not text"
    if not _is_time(record.created_at) or not (record.started_at is None or _is_time(record.started_at)):
        return f"its created_at/started_at ({record.created_at!r:.40}, {record.started_at!r:.40}) are not times"
    return None


def _is_time(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


#: metrics the runtime counts on: whole counts, and amounts (seconds, megabytes)
_COUNTS = ("items", "bytes", "checkpoints", "non_critical_errors")
_AMOUNTS = ("elapsed_seconds", "memory_mb")
_MAX_COUNT = 2**63  # what SQLite's INTEGER holds


def repaired_metrics(job_id: str, metrics: Any) -> dict[str, Any]:
    """A stored job's metrics with only the values the runtime can count on; drops (and logs) the rest.

    Metrics are informative (the counts start again from what is kept), so a bad value costs
    that value, not the job.
    """
    if not isinstance(metrics, dict):
        log.warning("job %s: stored metrics %.80r are not a JSON object; starting them afresh", job_id, metrics)
        return {}
    kept = {key: _metric(key, value) for key, value in metrics.items()}
    dropped = [key for key, value in kept.items() if value is _BAD]
    if dropped:
        log.warning("job %s: dropped stored metrics that are not finite numbers: %s", job_id,
                    ", ".join(f"{k!s:.40}={metrics[k]!r:.40}" for k in dropped))
    return {key: value for key, value in kept.items() if value is not _BAD}


_BAD = object()


def _metric(key: Any, value: Any) -> Any:
    if key in _COUNTS:
        if type(value) is int and 0 <= value < _MAX_COUNT:
            return value
        if type(value) is float and math.isfinite(value) and value.is_integer() and 0 <= value < _MAX_COUNT:
            return int(value)
    elif key in _AMOUNTS:
        if key == "memory_mb" and value is None:
            return None
        if type(value) is int and 0 <= value < _MAX_COUNT:
            return float(value)
        if type(value) is float and math.isfinite(value) and value >= 0:
            return value
    return _BAD


def _new_entry(record: JobRecord, usable: bool) -> JobEntry:
    """The in-memory entry of a stored row; a damaged row's unusable values are replaced by harmless ones."""
    if usable:
        priority, seq, created_at, started_at = record.priority, record.seq, record.created_at, record.started_at
    else:  # set aside: never runs, but it is listed, can be cancelled, and sorts somewhere
        priority = record.priority if type(record.priority) is int else int(Priority.NORMAL)
        seq = record.seq if type(record.seq) is int else 0
        created_at = record.created_at if _is_time(record.created_at) else 0.0
        started_at = record.started_at if _is_time(record.started_at) else None
    return JobEntry(id=record.id, name=record.name, version=record.version, status=record.status,
                    priority=priority, seq=seq, created_at=created_at,
                    cls=registry.find(record.name), parent_id=record.parent_id,
                    spawn_key=record.spawn_key, initiated_by=record.initiated_by, context=record.context,
                    dedup_key=record.dedup_key, started_at=started_at, pause_reason=record.pause_reason,
                    progress=record.progress, metrics=repaired_metrics(record.id, record.metrics))
