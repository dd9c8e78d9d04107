"""New jobs: validated, given an id and a row, committed, then queued."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from .. import _codec
from .._errors import SerializationError
from .._events import EventBus
from .._ids import new_job_id
from .._job import Job, ensure_dispatchable
from .._status import EventKind, JobStatus, Priority
from .._store.store import Store
from .emit import emit
from .entry import JobEntry
from .scheduler import Scheduler
from .settings import RunSettings
from .table import JobTable

__all__ = ("Dispatcher",)


class Dispatcher:
    """Turns job instances into queued entries whose rows are committed."""

    def __init__(self, store: Store, table: JobTable, scheduler: Scheduler, bus: EventBus, settings: RunSettings,
                 check_open: Callable[[], None], seq: int) -> None:
        self._store = store
        self._table = table
        self._scheduler = scheduler
        self._bus = bus
        self._settings = settings
        self._check_open = check_open
        self._seq = seq  # the highest dispatch number in jobs.db

    def prepare(self, job: Job, *, priority: int = Priority.NORMAL, initiated_by: str | None = None,
                context: dict[str, Any] | None = None, dedup_key: str | None = None,
                parent_id: str | None = None, spawn_key: str | None = None) -> tuple[JobEntry, bool]:
        """Validate and stage a new job's row; return its entry and True.

        A dedup hit returns the unfinished job with that key and False (nothing staged).
        """
        self._check_open()
        cls = ensure_dispatchable(job)
        priority = _check_priority(priority)
        if dedup_key is not None:
            existing = self._table.with_dedup_key(str(dedup_key))
            if existing is not None:
                return existing, False
        _codec.check_instance(job)
        blob = _codec.encode_state(job, self._settings.max_state_bytes)
        context_text = _context_json(context)
        if initiated_by is not None and not isinstance(initiated_by, str):
            raise TypeError(f"initiated_by must be a str, got {type(initiated_by).__name__}")
        now = time.time()
        self._seq += 1
        entry = JobEntry(id=new_job_id(), name=cls.NAME, version=cls.VERSION, status=JobStatus.QUEUED,
                         priority=priority, seq=self._seq, created_at=now, cls=cls, job=job,
                         parent_id=parent_id, spawn_key=spawn_key, initiated_by=initiated_by,
                         context=context, dedup_key=None if dedup_key is None else str(dedup_key))
        self._store.insert_job(entry.id, entry.name, entry.version, blob, priority, entry.seq, parent_id,
                                  spawn_key, initiated_by, context_text, entry.dedup_key, now)
        self._table.remember(entry)
        return entry, True

    async def commit_new(self, entries: list[JobEntry]) -> None:
        """Commit staged new jobs, then announce and queue them (forget them if the commit fails)."""
        try:
            await self._store.commit()
        except BaseException:
            for entry in entries:
                self._table.forget(entry)
            raise
        for entry in entries:
            emit(self._bus, EventKind.QUEUED, entry)
            if entry.status is JobStatus.QUEUED:
                self._scheduler.push(entry)
        self._scheduler.schedule()


def _check_priority(priority: Any) -> int:
    if isinstance(priority, str):
        try:
            return int(Priority[priority.upper()])
        except KeyError:
            raise ValueError(f"unknown priority {priority!r}; use one of {', '.join(p.name for p in Priority)}") from None
    if type(priority) is bool or not isinstance(priority, int):
        raise TypeError(f"priority must be a sj.Priority or an int, got {type(priority).__name__}")
    return int(priority)


def _context_json(context: Any) -> str | None:
    if context is None:
        return None
    if not isinstance(context, dict):
        raise TypeError(f"context must be a dict of JSON-able values, got {type(context).__name__}")
    try:
        return json.dumps(context)
    except (TypeError, ValueError) as e:
        raise SerializationError(f"context must be JSON-able: {e}") from None
