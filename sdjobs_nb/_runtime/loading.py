"""Jobs found in jobs.db at open: re-created from their saved state, or set aside as broken."""

from __future__ import annotations

import asyncio
import time
import uuid

from .._errors import BrokenJob, JobNotFound, UnknownJob, VersionMismatch
from .._job import Job, registry
from .._records import JobRecord
from .._status import JobStatus, PauseReason
from .._store.store import Store
from .entry import JobEntry, Outcome
from .run import JobRuns
from .scheduler import Scheduler
from .settings import RunSettings
from .table import JobTable

__all__ = ("StoredJobs", "check_stored_id")

S = JobStatus


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

    async def load(self) -> None:
        """Take over the library's unfinished jobs: running ones died with their process."""
        self._loop = asyncio.get_running_loop()
        registry.add_listener(self._on_registered)
        now = time.time()
        for record in await self._store.active_jobs():
            entry = _entry_from_record(record)
            self._table.remember(entry)
            if record.status is S.RUNNING:
                self._recover_running(entry, now)
        await self._store.commit()
        for job_id, name, version, blob in await self._store.queued_data():
            entry = self._table.get(job_id)
            if entry is not None:
                self._enqueue_stored(entry, name, version, blob)
        self._scheduler.schedule()

    def _enqueue_stored(self, entry: JobEntry, name: str, version: int, blob: bytes) -> None:
        """Re-create a queued job from its stored state and queue it, or set it aside as broken."""
        try:
            check_stored_id(entry.id)
            entry.job = registry.create(name, version, blob)
        except (UnknownJob, VersionMismatch, BrokenJob) as e:
            self._table.set_aside(entry, e)
            return
        self._table.mended(entry.id)
        entry.cls = type(entry.job)
        self._scheduler.push(entry)

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

    async def materialize(self, entry: JobEntry) -> Job:
        """Re-create a stored job from its saved state (raises UnknownJob, VersionMismatch, BrokenJob)."""
        check_stored_id(entry.id)
        row = await self._store.job_data(entry.id)
        if row is None:
            raise JobNotFound(f"job {entry.id} vanished from {self._store.path}")
        name, version, blob = row
        job = registry.create(name, version, blob)
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


def _entry_from_record(record: JobRecord) -> JobEntry:
    return JobEntry(id=record.id, name=record.name, version=record.version, status=record.status,
                    priority=record.priority, seq=record.seq, created_at=record.created_at,
                    cls=registry.find(record.name), parent_id=record.parent_id, spawn_key=record.spawn_key,
                    initiated_by=record.initiated_by, context=record.context, dedup_key=record.dedup_key,
                    started_at=record.started_at, pause_reason=record.pause_reason, progress=record.progress,
                    metrics=record.metrics)
