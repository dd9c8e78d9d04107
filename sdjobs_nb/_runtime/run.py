"""One job's run: call `run(ctx)`, classify how it ended, and save that (jobs row and history row).

`JobRuns` is the `RunHost` every `JobContext` talks to: checkpoints, non-critical errors,
blocking work and children all come through here.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import traceback
from collections.abc import Callable
from typing import Any

from .. import _codec
from .._errors import Critical, Interrupted, LibraryError, SerializationError
from .._events import EventBus
from .._job import Job
from .._records import FinishedJob
from .._status import EventKind, JobStatus, PauseReason, Request
from .._store.store import Store
from .context import JobContext
from .emit import emit
from .entry import JobEntry, Outcome
from .progress import ProgressTicker
from .scheduler import Scheduler
from .settings import RunSettings
from .table import JobTable

__all__ = ("JobRuns", "describe")

log = logging.getLogger("sdjobs_nb")

S = JobStatus
METRICS_SAVE_S = 1.0  # a checkpoint saves metrics too when they are older than this
CANCELLED_TEXT = "cancelled by request"


class JobRuns:
    """Starts runs, saves how they end, and serves their contexts."""

    def __init__(self, store: Store, table: JobTable, scheduler: Scheduler, bus: EventBus,
                 settings: RunSettings) -> None:
        self._store = store
        self._table = table
        self._scheduler = scheduler
        self._bus = bus
        self._settings = settings
        self.ticker = ProgressTicker(store, bus)
        self.children: Any = None  # the `Children` of this runtime, set once it exists

    # --- starting ---------------------------------------------------------------------------

    def start(self, entry: JobEntry) -> None:
        """Run a queued job that holds a slot."""
        now = time.time()
        entry.interrupt, entry.forced = None, False
        entry.set_status(S.RUNNING)
        entry.started_at = entry.started_at or now
        entry.running_write = self._store.mark_running(entry.id, now)
        entry.task = asyncio.get_running_loop().create_task(self._run(entry), name=f"sdjobs:{entry.name}:{entry.id}")
        self.ticker.add(entry)
        emit(self._bus, EventKind.STARTED, entry)

    async def _run(self, entry: JobEntry) -> None:
        ctx = entry.ctx = JobContext(self, entry, self._settings.log_dir)
        handed_over = False
        try:
            ctx.lifecycle(logging.INFO, "run started")
            outcome = await self._call_run(entry, ctx)
            announce = self._stage_outcome(entry, ctx, outcome)
            # the task ends here; the job is announced when its writes commit (no wake-up per job)
            self._store.after_commit(functools.partial(self._written, entry, ctx, announce))
            handed_over = True
        finally:
            entry.task = None
            self.ticker.remove(entry)
            if not handed_over:
                ctx.close()
            self._scheduler.release_slot(entry)  # the next job starts while this one's writes commit

    async def _call_run(self, entry: JobEntry, ctx: JobContext) -> Outcome | str:
        """Run the job's coroutine and classify how it ended (a str means: save as paused)."""
        try:
            result = await entry.job.run(ctx)  # type: ignore[union-attr]
        except Interrupted:
            return "interrupted"
        except asyncio.CancelledError:
            if entry.forced:
                return "forced"
            raise
        except Critical as e:
            return Outcome(S.FAILED, error=str(e) or "critical error", traceback=traceback.format_exc())
        except Exception as e:
            return Outcome(S.FAILED, error=describe(e), traceback=traceback.format_exc())
        return Outcome(S.COMPLETED, result=result)

    # --- saving how a run ended ---------------------------------------------------------------

    def _written(self, entry: JobEntry, ctx: JobContext, announce: Callable[[], None],
                 error: BaseException | None) -> None:
        """The end of a run is committed (announce it) or jobs.db refused it."""
        try:
            if error is None:
                announce()
            elif isinstance(error, LibraryError):
                self._unsaved_end(entry, ctx, error)
            else:
                self._unsaved_end(entry, ctx, LibraryError(f"the write was abandoned ({describe(error)})"))
        finally:
            ctx.close()

    async def announced(self) -> None:
        """Wait until runs that already ended are announced (their writes committed or refused)."""
        try:
            await self._store.commit()
        except LibraryError:
            pass  # each job's `_written` has dealt with it

    def _stage_outcome(self, entry: JobEntry, ctx: JobContext, outcome: Outcome | str) -> Callable[[], None]:
        """Stage the writes for how the run ended; return what to announce once they commit."""
        if isinstance(outcome, Outcome):
            return self._stage_terminal(entry, ctx, outcome)
        if entry.interrupt == Request.CANCEL:
            return self._stage_terminal(entry, ctx, Outcome(S.CANCELLED, error=CANCELLED_TEXT))
        if not entry.cls.IS_RESUMABLE:  # type: ignore[union-attr]
            error = "interrupted, and the job is not resumable (IS_RESUMABLE = False)"
            return self._stage_terminal(entry, ctx, Outcome(S.FAILED, error=error))
        return self._stage_paused(entry, ctx, keep_checkpoint=(outcome == "forced"))

    def _stage_paused(self, entry: JobEntry, ctx: JobContext, keep_checkpoint: bool) -> Callable[[], None]:
        """Stage the saved state; the status says PAUSED only after it commits (no resume race)."""
        now = time.time()
        progress = self.final_snapshot(entry, ctx, now)
        metrics = self._metrics(entry, ctx)
        reason = entry.pause_reason or PauseReason.JOB  # no request: the job raised Interrupted itself
        blob = None if keep_checkpoint else self._encode_or_none(entry, ctx)
        self._store.mark_paused(entry.id, str(reason), now, progress, metrics, blob)

        def announce() -> None:
            entry.job = None  # a resume re-creates the job from what was saved
            entry.interrupt = None
            entry.set_status(S.PAUSED)
            ctx.lifecycle(logging.INFO, "paused (%s)%s", reason, " from its last checkpoint" if blob is None else "")
            emit(self._bus, EventKind.PAUSED, entry)

        return announce

    def _unsaved_end(self, entry: JobEntry, ctx: JobContext, error: LibraryError) -> None:
        """The run ended but jobs.db refused to record it: keep it as a reopen would find it.

        jobs.db still says RUNNING, which the next open reads as PAUSED (interrupted); say the
        same in memory, so it can be resumed from its last checkpoint once writes work again,
        and tell waiters why instead of leaving them hanging.
        """
        ctx.lifecycle(logging.ERROR, "its end could not be saved: %s", error)
        entry.job, entry.interrupt = None, None
        entry.status, entry.pause_reason = S.PAUSED, PauseReason.INTERRUPTED  # not a transition
        entry.tell_status(S.PAUSED)
        entry.fail_waiters(LibraryError(
            f"job {entry.name} ({entry.id}) ended but jobs.db could not record it ({error}); it is PAUSED "
            f"(interrupted) and resumes from its last checkpoint"
        ))
        emit(self._bus, EventKind.PAUSED, entry, error=str(error))

    def _encode_or_none(self, entry: JobEntry, ctx: JobContext) -> bytes | None:
        try:
            return _codec.encode_state(entry.job, self._settings.max_state_bytes)
        except SerializationError as e:
            ctx.lifecycle(logging.ERROR, "state could not be saved at pause (%s); it resumes from its last checkpoint", e)
            return None

    def _stage_terminal(self, entry: JobEntry, ctx: JobContext | None, outcome: Outcome) -> Callable[[], None]:
        now = time.time()
        if ctx is not None:
            self.final_snapshot(entry, ctx, now)
            entry.metrics = self._metrics(entry, ctx)
        self.stage_finish(entry, outcome, now)

        def announce() -> None:
            if ctx is not None:
                level = logging.INFO if outcome.status is S.COMPLETED else logging.WARNING
                ctx.lifecycle(level, "%s%s", outcome.status.value, f": {outcome.error}" if outcome.error else "")
                if outcome.traceback:
                    ctx.lifecycle(logging.WARNING, "%s", outcome.traceback)
            self._after_terminal(entry, outcome)

        return announce

    async def finish_now(self, entry: JobEntry, outcome: Outcome) -> None:
        """Finish a job that is not running (cancel while queued or paused)."""
        announce = self._stage_terminal(entry, None, outcome)
        await self.commit_safely()
        announce()

    def stage_finish(self, entry: JobEntry, outcome: Outcome, now: float) -> None:
        """Stage a job's terminal jobs row and its job_history row."""
        entry.set_status(outcome.status)
        entry.error = outcome.error
        self._store.withdraw(entry.running_write)  # finished before RUNNING was even written: skip it
        entry.running_write = None
        self._store.finish(FinishedJob(
            id=entry.id, name=entry.name, version=entry.version, status=outcome.status, priority=entry.priority,
            created_at=entry.created_at, finished_at=now, started_at=entry.started_at, error=outcome.error,
            traceback=outcome.traceback, parent_id=entry.parent_id, initiated_by=entry.initiated_by,
            result=_result_blob(outcome.result) if outcome.status is S.COMPLETED else None,
            context=entry.context, progress=entry.progress, metrics=entry.metrics,
        ))

    def _after_terminal(self, entry: JobEntry, outcome: Outcome) -> None:
        entry.job = None
        entry.ctx = None
        self._table.forget(entry)
        entry.settle(outcome)
        emit(self._bus, EventKind(outcome.status.value), entry, error=outcome.error, result=_summary(outcome.result))

    async def commit_safely(self) -> None:
        """Commit even if the surrounding task is being cancelled: these writes must land.

        Staged writes are sent whether or not anyone waits, so a cancelled waiter only needs to
        wait again before it lets the cancellation through.
        """
        try:
            await self._store.commit()
        except asyncio.CancelledError:
            await self._store.commit()
            raise

    def final_snapshot(self, entry: JobEntry, ctx: JobContext, now: float) -> Any:
        """Publish the last reported progress now (not at the next tick); return the newest snapshot."""
        snap = ctx.take_snapshot_if_changed(time.monotonic())
        if snap is not None:
            entry.publish_progress(snap)
            emit(self._bus, EventKind.PROGRESS, entry)
        entry.progress_saved_at = now
        return entry.progress

    def _metrics(self, entry: JobEntry, ctx: JobContext) -> dict[str, Any]:
        metrics = ctx.get_metrics()
        entry.metrics = metrics
        return metrics

    # --- the RunHost protocol (what JobContext asks for) ---------------------------------------

    async def checkpoint(self, entry: JobEntry, ctx: JobContext) -> None:
        now = time.time()
        blob = _codec.encode_state(entry.job, self._settings.max_state_bytes)
        progress = self.final_snapshot(entry, ctx, now)
        metrics = None
        if now - entry.metrics_saved_at >= METRICS_SAVE_S:  # metrics change every call; save them now and then
            entry.metrics_saved_at = now
            metrics = self._metrics(entry, ctx)
        self._store.save_checkpoint(entry.id, entry.version, blob, progress, ctx.checkpoints, now, metrics)
        await self._store.commit()

    def record_non_critical(self, entry: JobEntry, message: str) -> None:
        self._store.record_error(entry.id, time.time(), message)
        if entry.ctx is not None:
            entry.ctx.lifecycle(logging.WARNING, "non-critical error: %s", message)
        emit(self._bus, EventKind.NON_CRITICAL_ERROR, entry, error=message)

    async def breathe(self) -> None:
        await asyncio.sleep(0)

    async def run_blocking(self, fn: Any, args: tuple, kwargs: dict[str, Any]) -> Any:
        return await self._settings.blocking.run(fn, args, kwargs)

    async def spawn_children(self, parent: JobEntry, jobs: list[Job], call: int) -> list[str]:
        return await self.children.spawn(parent, jobs, call)

    async def wait_for_children(self, parent: JobEntry, ids: list[str]) -> list[Any]:
        return await self.children.wait(parent, ids)


# --- helpers -----------------------------------------------------------------------------------


def describe(error: BaseException) -> str:
    """`Type: message` of an exception (just the type when it has no message)."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _result_blob(result: Any) -> bytes | None:
    try:
        return _codec.encode_value(result, "the job's result")
    except SerializationError as e:
        log.info("result not stored (%s); wait() in this process still returns it", e)
        return None


def _summary(result: Any) -> Any:
    if result is None or isinstance(result, (bool, int, float)):
        return result
    text = repr(result)
    return text if len(text) <= 200 else text[:197] + "..."
