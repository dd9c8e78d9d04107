"""Pause, resume and cancel: requests with a reason, cascaded to children, saved before they show."""

from __future__ import annotations

import asyncio
import logging
import time

from .._errors import BrokenJob, InvalidTransition, JobNotFound, NotResumable, UnknownJob, VersionMismatch
from .._events import EventBus
from .._job import registry
from .._records import JobRecord
from .._status import EventKind, JobStatus, PauseReason, Request
from .._store.store import Store
from .emit import emit
from .entry import JobEntry, Outcome
from .loading import StoredJobs
from .run import CANCELLED_TEXT, JobRuns
from .scheduler import Scheduler
from .settings import RunSettings
from .table import JobTable

__all__ = ("Control",)

S = JobStatus
#: a run still going this long (or a grace period, if longer) after its task was cancelled is abandoned
ABANDON_AFTER_MIN_S = 1.0


class Control:
    """Carries out pause, resume and cancel for one manager's jobs."""

    def __init__(self, store: Store, table: JobTable, scheduler: Scheduler, runs: JobRuns, stored: StoredJobs,
                 bus: EventBus, settings: RunSettings) -> None:
        self._store = store
        self._table = table
        self._scheduler = scheduler
        self._runs = runs
        self._stored = stored
        self._bus = bus
        self._settings = settings

    # --- pause --------------------------------------------------------------------------------

    async def pause(self, job_id: str, reason: str) -> None:
        """Pause a queued or running job; returns once its state is saved and it is PAUSED."""
        entry = self._table.active(job_id, "pause")
        if entry.status is S.PAUSED:
            return
        if entry.cls is not None and not entry.cls.IS_RESUMABLE:
            raise NotResumable(f"job {entry.name} ({job_id}) is not resumable (IS_RESUMABLE = False); cancel it instead")
        await self._pause_entry(entry, reason)

    async def _pause_entry(self, entry: JobEntry, reason: str) -> None:
        children = self._table.children_of(entry.id)
        if entry.status is S.QUEUED:
            now = time.time()
            entry.pause_reason = reason
            entry.set_status(S.PAUSED)  # at once, so the scheduler cannot start it while the write commits
            emit(self._bus, EventKind.PAUSED, entry)
            self._store.mark_paused(entry.id, str(reason), now, entry.progress, entry.metrics)
            await self._store.commit()
        elif entry.status is S.RUNNING:
            await self.interrupt_and_wait(entry, Request.PAUSE, reason)
        await asyncio.gather(*(self._pause_entry(c, PauseReason.PARENT) for c in children
                               if c.status in (S.QUEUED, S.RUNNING)))

    async def interrupt_and_wait(self, entry: JobEntry, request: str, reason: str | None = None) -> None:
        """Ask a running job to stop at its next check; cancel its task after the grace period.

        A task still running another grace period (at least `ABANDON_AFTER_MIN_S`) after it was
        cancelled swallows cancellation: it is abandoned and the job recorded as the request says.
        """
        task = entry.task
        if entry.interrupt != Request.CANCEL:
            entry.interrupt = request
        if reason is not None and request == Request.PAUSE:
            entry.pause_reason = reason
        if task is not None:
            grace = self._settings.grace_period
            done, _ = await asyncio.wait({task}, timeout=grace)
            if not done:
                self._force_stop(entry, task, grace)
                bound = max(grace, ABANDON_AFTER_MIN_S)
                done, _ = await asyncio.wait({task}, timeout=bound)
                if not done:
                    self._runs.abandon(entry, task, bound)
        await self._runs.announced()

    # --- resume -------------------------------------------------------------------------------

    async def resume(self, job_id: str) -> None:
        """Resume a paused job from its saved state; it reports RUNNING once it runs again."""
        entry = self._table.active(job_id, "resume")
        if entry.status is not S.PAUSED:
            return
        cls = registry.get(entry.name)
        if not cls.IS_RESUMABLE:
            raise NotResumable(f"job {entry.name} ({job_id}) is not resumable (IS_RESUMABLE = False); it can only be cancelled")
        try:
            job = await self._stored.materialize(entry)
        except (VersionMismatch, BrokenJob) as e:
            self._table.set_aside(entry, e)
            raise
        if entry.status is not S.PAUSED:  # another resume (or a cancel) got there while we read
            return
        entry.job, entry.cls, entry.pause_reason = job, cls, None
        entry.reset_waiters()
        entry.set_status(S.QUEUED)  # at once: a second resume arriving now finds it queued
        emit(self._bus, EventKind.RESUMED, entry)  # events follow status changes in order
        self._store.mark_queued(entry.id, time.time())
        await self._store.commit()
        if entry.status is S.QUEUED:  # not paused or cancelled again while the write committed
            self._scheduler.push(entry)
            self._scheduler.schedule()
        for child in self._table.children_of(entry.id):
            if child.status is S.PAUSED and child.pause_reason == PauseReason.PARENT:
                await self.resume(child.id)

    async def resume_interrupted(self) -> list[JobEntry]:
        """Resume every job paused by a crash or by `close()`; return those that resumed."""
        resumed = []
        for entry in self._table.in_order():
            if entry.status is S.PAUSED and entry.pause_reason == PauseReason.INTERRUPTED:
                try:
                    await self.resume(entry.id)
                except (UnknownJob, VersionMismatch, BrokenJob, NotResumable) as e:
                    self._table.set_aside(entry, e)
                    continue
                resumed.append(entry)
        return resumed

    # --- cancel -------------------------------------------------------------------------------

    async def cancel(self, job_id: str) -> None:
        """Cancel a queued, running or paused job and its unfinished descendants; they are kept as CANCELLED.

        The job and every descendant that is not running are marked CANCELLED in one transaction
        (before any running one can save its own end), so jobs.db never shows the job cancelled
        while they wait to run. Running ones are then stopped together; if the process dies
        before one has stopped, the next open cancels it (`StoredJobs.load`).
        """
        entry = self._table.get(job_id)
        if entry is None:
            record = await self.record(job_id)
            if record.status is S.CANCELLED:
                return
            raise InvalidTransition(f"job {record.name} ({job_id}) is already {record.status.value}; only unfinished jobs can be cancelled")
        if entry.status.is_terminal:  # ending right now: its end is being written
            await self._runs.announced()
            return
        family = [entry, *self._unfinished_descendants(entry)]
        running = [e for e in family if e.status is S.RUNNING]
        for member in running:
            member.interrupt = Request.CANCEL  # first: a parent waiting for children must see this, not a cancelled child
        await self._cancel_idle([e for e in family if e.status in (S.QUEUED, S.PAUSED)])
        await asyncio.gather(*(self.interrupt_and_wait(e, Request.CANCEL) for e in running))

    async def _cancel_idle(self, entries: list[JobEntry]) -> None:
        """Mark queued and paused jobs CANCELLED in one transaction, then announce them."""
        if not entries:
            return
        outcome = Outcome(S.CANCELLED, error=CANCELLED_TEXT)
        # staged without an await in between: they commit together (and before any run that ends later)
        announcements = [self._runs.stage_end(e, outcome) for e in entries]
        await self._runs.commit_safely()
        for announce in announcements:
            announce()

    def _unfinished_descendants(self, entry: JobEntry) -> list[JobEntry]:
        """Children, grandchildren, ... of `entry` that are not finished, parents before their children."""
        found: list[JobEntry] = []
        seen = {entry.id}
        pending = [entry]
        while pending:
            for child in self._table.children_of(pending.pop(0).id):
                if child.id not in seen and not child.status.is_terminal:
                    seen.add(child.id)
                    found.append(child)
                    pending.append(child)
        return found

    async def record(self, job_id: str) -> JobRecord:
        """The stored record of any job of the library, or `JobNotFound`."""
        record = await self._store.job(str(job_id))
        if record is None:
            raise JobNotFound(f"no job with id {job_id!r} in library {str(self._store.path.parent)!r}")
        return record

    def _force_stop(self, entry: JobEntry, task: asyncio.Task[None], grace: float) -> None:
        """Cancel a run that did not reach `check_interrupted` within the grace period (once)."""
        if entry.task is not task or entry.forced:
            return  # it ended meanwhile, or another request stopped it already
        entry.forced = True
        if entry.ctx is not None:
            entry.ctx.lifecycle(logging.WARNING, "did not reach check_interrupted within %.1f s; stopping it", grace)
        task.cancel()
