"""The manager's in-memory view of one job that is queued, running or paused."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .._errors import Cancelled, JobFailed
from .._events import LatestSlot
from .._progress import Progress
from .._status import JobStatus, check_transition

if TYPE_CHECKING:
    from .context import JobContext
    from .._job import Job


class Outcome:
    """How a job ended: its terminal status, and its result or error."""

    __slots__ = ("status", "result", "error", "traceback")

    def __init__(self, status: JobStatus, result: Any = None, error: str | None = None, traceback: str | None = None):
        self.status, self.result, self.error, self.traceback = status, result, error, traceback

    def unwrap(self, job_id: str, name: str) -> Any:
        """Return the result of a completed job; raise `Cancelled` or `JobFailed` otherwise."""
        if self.status is JobStatus.COMPLETED:
            return self.result
        if self.status is JobStatus.CANCELLED:
            raise Cancelled(f"job {name} ({job_id}) was cancelled")
        raise JobFailed(job_id, name, self.error or "failed", self.traceback)


class JobEntry:
    """Live state of one job; the manager owns it, handles only read it."""

    __slots__ = (
        "id", "name", "version", "cls", "status", "priority", "seq", "parent_id", "spawn_key",
        "initiated_by", "context", "dedup_key", "created_at", "started_at", "pause_reason",
        "job", "task", "ctx", "interrupt", "forced", "progress", "metrics", "error",
        "slot_held", "metrics_saved_at", "running_write", "_done", "_status_queues", "_progress_slots", "progress_saved_at",
        "__weakref__",
    )

    def __init__(self, *, id: str, name: str, version: int, status: JobStatus, priority: int, seq: int,
                 created_at: float, cls: Any = None, job: Job | None = None, parent_id: str | None = None,
                 spawn_key: str | None = None, initiated_by: str | None = None, context: Any = None,
                 dedup_key: str | None = None, started_at: float | None = None,
                 pause_reason: str | None = None, progress: Progress | None = None,
                 metrics: dict[str, Any] | None = None) -> None:
        self.id, self.name, self.version, self.cls, self.job = id, name, version, cls, job
        self.status, self.priority, self.seq = status, priority, seq
        self.parent_id, self.spawn_key = parent_id, spawn_key
        self.initiated_by, self.context, self.dedup_key = initiated_by, context, dedup_key
        self.created_at, self.started_at, self.pause_reason = created_at, started_at, pause_reason
        self.task: asyncio.Task[None] | None = None
        self.ctx: JobContext | None = None
        self.interrupt: str | None = None  # "pause" | "cancel" while a request is pending
        self.forced = False
        self.progress = progress
        self.metrics: dict[str, Any] = metrics or {}
        self.error: str | None = None
        self.slot_held = False
        self.progress_saved_at = 0.0
        self.metrics_saved_at = 0.0
        self.running_write: tuple[int, int] | None = None  # token of a staged RUNNING write
        self._done: asyncio.Future[Outcome] | None = None
        self._status_queues: list[asyncio.Queue[JobStatus]] | None = None
        self._progress_slots: list[LatestSlot[Progress]] | None = None

    def set_status(self, new: JobStatus) -> None:
        """Move to `new` (checked against the transition table) and tell status subscribers."""
        check_transition(self.id, self.status, new)
        self.status = new
        self.tell_status(new)
        if new.is_terminal:
            for slot in self._progress_slots or ():
                slot.close()

    def tell_status(self, status: JobStatus) -> None:
        """Tell status subscribers `status` without a transition (what jobs.db will mean after a reopen)."""
        for q in self._status_queues or ():
            q.put_nowait(status)

    def publish_progress(self, progress: Progress) -> None:
        self.progress = progress
        for slot in self._progress_slots or ():
            slot.put(progress)

    def done_future(self) -> asyncio.Future[Outcome]:
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
        return self._done

    def settle(self, outcome: Outcome) -> None:
        """Resolve waiters with the terminal outcome."""
        fut = self.done_future()
        if not fut.done():
            fut.set_result(outcome)

    def fail_waiters(self, error: BaseException) -> None:
        """Wake waiters with an error while the job stays unfinished."""
        fut = self.done_future()
        if not fut.done():
            fut.set_exception(error)
            fut.exception()  # retrieved: nobody may be waiting

    def reset_waiters(self) -> None:
        """Give a resumed job a fresh future if the last one ended in an error."""
        if self._done is not None and self._done.done() and self._done.exception() is not None:
            self._done = None

    def watch_status(self) -> asyncio.Queue[JobStatus]:
        q: asyncio.Queue[JobStatus] = asyncio.Queue()
        if self._status_queues is None:
            self._status_queues = []
        self._status_queues.append(q)
        return q

    def unwatch_status(self, q: asyncio.Queue[JobStatus]) -> None:
        if self._status_queues and q in self._status_queues:
            self._status_queues.remove(q)

    def watch_progress(self) -> LatestSlot[Progress]:
        slot: LatestSlot[Progress] = LatestSlot()
        if self._progress_slots is None:
            self._progress_slots = []
        self._progress_slots.append(slot)
        if self.progress is not None:
            slot.put(self.progress)
        if self.status.is_terminal:
            slot.close()
        return slot

    def unwatch_progress(self, slot: LatestSlot[Progress]) -> None:
        if self._progress_slots and slot in self._progress_slots:
            self._progress_slots.remove(slot)
