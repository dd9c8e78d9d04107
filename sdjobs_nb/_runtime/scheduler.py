"""Which queued job starts next: priority then first come, within `max_concurrent` slots."""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable

from .._status import JobStatus
from .entry import JobEntry
from .settings import RunSettings
from .table import JobTable

__all__ = ("Scheduler",)


class Scheduler:
    """Holds the queue and the slots; calls `start(entry)` for each job it lets run."""

    def __init__(self, table: JobTable, settings: RunSettings, max_concurrent: int) -> None:
        self.max_concurrent = max_concurrent
        self._table = table
        self._settings = settings
        self._start: Callable[[JobEntry], None] | None = None
        self._heap: list[tuple[int, int, str]] = []
        self._slots_used = 0
        # parents back from waiting for children, waiting for a slot again
        self._slot_waiters: list[tuple[int, int, asyncio.Future[None]]] = []

    def starts_with(self, start: Callable[[JobEntry], None]) -> None:
        """Set what starting a job means (the run's `start`)."""
        self._start = start

    def push(self, entry: JobEntry) -> None:
        heapq.heappush(self._heap, (-entry.priority, entry.seq, entry.id))

    def schedule(self) -> None:
        """Start queued jobs (and wake waiting parents) while slots are free."""
        if self._settings.closing:
            return
        while self._slots_used < self.max_concurrent:
            if self._slot_waiters:
                _, _, fut = heapq.heappop(self._slot_waiters)
                if not fut.done():
                    self._slots_used += 1
                    fut.set_result(None)
                continue
            entry = self._pop_queued()
            if entry is None:
                return
            if entry.job is None:  # set aside as broken at load: never started
                continue
            self.take_slot(entry)
            self._start(entry)  # type: ignore[misc]

    def _pop_queued(self) -> JobEntry | None:
        while self._heap:
            _, _, job_id = heapq.heappop(self._heap)
            entry = self._table.get(job_id)
            if entry is not None and entry.status is JobStatus.QUEUED and entry.task is None:
                return entry
        return None

    def take_slot(self, entry: JobEntry) -> None:
        self._slots_used += 1
        entry.slot_held = True

    def release_slot(self, entry: JobEntry) -> None:
        if entry.slot_held:
            entry.slot_held = False
            self._slots_used -= 1
            self.schedule()

    async def acquire_slot(self, entry: JobEntry) -> None:
        """Wait for a slot (a parent back from waiting for its children)."""
        if self._slots_used < self.max_concurrent and not self._slot_waiters:
            self._slots_used += 1
        else:
            fut = asyncio.get_running_loop().create_future()
            heapq.heappush(self._slot_waiters, (-entry.priority, entry.seq, fut))
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._slots_used -= 1
                raise
        entry.slot_held = True
