"""The progress ticker: snapshots reach subscribers 10 times a second, and jobs.db every 2 s per job."""

from __future__ import annotations

import asyncio
import time

from .._events import EventBus
from .._status import EventKind, JobStatus
from .._store.store import Store
from .emit import emit
from .entry import JobEntry

__all__ = ("ProgressTicker",)

TICK_S = 0.1               # snapshots reach subscribers and widgets at most 10 times a second
PROGRESS_SAVE_S = 2.0      # progress reaches jobs.db at most every 2 s per job


class ProgressTicker:
    """One task per manager that turns running jobs' reports into snapshots while any job runs."""

    def __init__(self, store: Store, bus: EventBus) -> None:
        self._store = store
        self._bus = bus
        self._running: dict[str, JobEntry] = {}  # entries whose run task exists
        self._task: asyncio.Task[None] | None = None

    def add(self, entry: JobEntry) -> None:
        self._running[entry.id] = entry
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._tick_forever(), name="sdjobs:ticker")

    def remove(self, entry: JobEntry) -> None:
        self._running.pop(entry.id, None)

    def running(self) -> list[JobEntry]:
        """Entries whose run task exists."""
        return list(self._running.values())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _tick_forever(self) -> None:
        try:
            while self._running:
                await asyncio.sleep(TICK_S)
                self.tick(time.monotonic(), time.time())
        finally:
            if self._task is asyncio.current_task():
                self._task = None

    def tick(self, mono: float, now: float) -> None:
        """Publish new snapshots to subscribers; save progress of jobs not saved for 2 s."""
        for entry in list(self._running.values()):
            ctx = entry.ctx
            if ctx is None or entry.status is not JobStatus.RUNNING:
                continue
            snap = ctx.take_snapshot_if_changed(mono)
            if snap is None:
                continue
            entry.publish_progress(snap)
            emit(self._bus, EventKind.PROGRESS, entry)
            if now - entry.progress_saved_at >= PROGRESS_SAVE_S:
                entry.progress_saved_at = now
                self._store.save_progress(entry.id, snap, ctx.get_metrics(), now)

    def flush(self, now: float) -> None:
        """Stage the newest progress of every running job (at close)."""
        for entry in self._running.values():
            if entry.ctx is not None and entry.progress is not None:
                self._store.save_progress(entry.id, entry.progress, entry.metrics, now)
