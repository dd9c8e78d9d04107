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
from .._status import EventKind, JobStatus, PauseReason, Request, check_transition
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
        self._abandoned: set[asyncio.Task[None]] = set()  # tasks of runs that would not stop (see `abandon`)

    # --- starting ---------------------------------------------------------------------------

    def start(self, entry: JobEntry) -> None:
        """Run a queued job that holds a slot (one that cannot even start is saved FAILED, its slot freed)."""
        now = time.time()
        entry.interrupt, entry.forced = None, False
        entry.set_status(S.RUNNING)
        entry.started_at = entry.started_at or now
        try:
            entry.running_write = self._store.mark_running(entry.id, now)
            self.ticker.add(entry)
            emit(self._bus, EventKind.STARTED, entry)
            entry.task = asyncio.get_running_loop().create_task(self._run(entry), name=f"sdjobs:{entry.name}:{entry.id}")
        except Exception as e:
            self._end_run(entry, None, _failed("could not start", e))

    async def _run(self, entry: JobEntry) -> None:
        try:
            ctx = entry.ctx = JobContext(self, entry, self._settings.log_dir)
            ctx.lifecycle(logging.INFO, "run started")
        except Exception as e:  # its stored metrics or its log file are unusable: it cannot run
            self._end_run(entry, None, _failed("could not start", e))
            return
        outcome, passing = await self._call_run(entry, ctx)
        if ctx.abandoned:  # recorded when it would not stop; nothing it did since counts
            ctx.lifecycle(logging.WARNING, "its abandoned task ended at last; how it ended is ignored")
        else:
            self._end_run(entry, ctx, outcome)
        if passing is not None:
            raise passing  # KeyboardInterrupt, SystemExit, a cancellation from outside: saved, and on its way

    async def _call_run(self, entry: JobEntry, ctx: JobContext) -> tuple[Outcome | str, Any]:
        """Run the job's coroutine; return how it ended (a str means: save as paused) and what to re-raise."""
        try:
            result = await entry.job.run(ctx)  # type: ignore[union-attr]
        except GeneratorExit:
            raise  # the coroutine is closed with its event loop: nothing can be saved now
        except BaseException as e:  # every way out of run() ends the job somewhere defined
            return self._classify(entry, ctx, e)
        return Outcome(S.COMPLETED, result=result), None

    def _classify(self, entry: JobEntry, ctx: JobContext, error: BaseException) -> tuple[Outcome | str, Any]:
        """How a run that raised `error` ended, and the error to re-raise once that is saved."""
        if entry.forced:  # stopped after its grace period: the request decides, whatever the stop made it raise
            if not _only(error, (asyncio.CancelledError, Interrupted)):
                ctx.lifecycle(logging.WARNING, "raised %s when it was stopped", describe(error))
            return "forced", None
        if _only(error, Interrupted):
            return "interrupted", None
        if isinstance(error, (KeyboardInterrupt, SystemExit)) or _cancelled_from_outside(error):
            # as a crash would leave it: paused (interrupted) from its last checkpoint
            entry.pause_reason = entry.pause_reason or PauseReason.INTERRUPTED
            return "forced", error
        message = (str(error) or "critical error") if isinstance(error, Critical) else describe(error)
        return Outcome(S.FAILED, error=message, traceback=_traceback(error)), None

    def abandon(self, entry: JobEntry, task: asyncio.Task[None], waited: float) -> None:
        """Record a run whose task did not end after it was cancelled as its request says, and free its slot.

        The task may go on; its context refuses every call from now on, so it can no longer
        change the job or jobs.db, and `_run` ignores how it ends.
        """
        ctx = entry.ctx
        if entry.task is not task or ctx is None or ctx.abandoned:
            return  # it ended meanwhile, or another request abandoned it already
        ctx.abandon(entry.interrupt or Request.PAUSE)
        self._abandoned.add(task)  # keep a reference: the loop holds tasks only weakly
        task.add_done_callback(self._abandoned.discard)
        note = f"its task was still running {waited:.1f} s after it was cancelled, and was abandoned"
        ctx.lifecycle(logging.ERROR, "%s (it catches asyncio.CancelledError?); the job is recorded without it, "
                      "and nothing the task does from now on counts", note)
        self._end_run(entry, ctx, "forced", note)

    def _end_run(self, entry: JobEntry, ctx: JobContext | None, outcome: Outcome | str,
                 note: str | None = None) -> None:
        """Stage how the run ended, announce it once that commits, and free its slot."""
        try:
            announce = self._stage_run_end(entry, ctx, outcome, note)
            # the task ends here; the job is announced when its writes commit (no wake-up per job)
            self._store.after_commit(functools.partial(self._written, entry, ctx, announce), key=entry.id)
        except Exception as e:  # the store is closed or broken: keep the job as a reopen would find it
            self._written(entry, ctx, announce=lambda: None, error=e)
        finally:
            entry.task = None
            self.ticker.remove(entry)
            self._scheduler.release_slot(entry)  # the next job starts while this one's writes commit

    def _stage_run_end(self, entry: JobEntry, ctx: JobContext | None, outcome: Outcome | str,
                       note: str | None) -> Callable[[], None]:
        """`_stage_outcome`, or FAILED saying why that could not be staged, or as a crash would leave it."""
        try:
            return self._stage_outcome(entry, ctx, outcome, note)  # type: ignore[arg-type]
        except Exception as e:
            log.exception("job %s (%s): how its run ended could not be staged", entry.name, entry.id)
            failed = _failed("its end could not be saved", e)
        try:
            return self._stage_terminal(entry, None, failed)
        except Exception as e:
            error = LibraryError(f"its end could not be staged ({describe(e)})")
            return functools.partial(self._unsaved_end, entry, ctx, error)

    # --- saving how a run ended ---------------------------------------------------------------

    def _written(self, entry: JobEntry, ctx: JobContext | None, announce: Callable[[], None],
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
            if ctx is not None:
                ctx.close()

    async def announced(self) -> None:
        """Wait until runs that already ended are announced (their writes committed or refused)."""
        try:
            await self._store.commit()
        except LibraryError:
            pass  # each job's `_written` has dealt with it

    def _stage_outcome(self, entry: JobEntry, ctx: JobContext | None, outcome: Outcome | str,
                       note: str | None = None) -> Callable[[], None]:
        """Stage the writes for how the run ended; return what to announce once they commit.

        A str outcome means the run stopped without finishing ("interrupted", or "forced": keep
        the last checkpoint); `note` says why when the run was abandoned.
        """
        if isinstance(outcome, Outcome):
            return self._stage_terminal(entry, ctx, outcome)
        also = f"; {note}" if note else ""
        if entry.interrupt == Request.CANCEL:
            return self._stage_terminal(entry, ctx, Outcome(S.CANCELLED, error=CANCELLED_TEXT + also))
        if not entry.cls.IS_RESUMABLE:  # type: ignore[union-attr]
            error = "interrupted, and the job is not resumable (IS_RESUMABLE = False)" + also
            return self._stage_terminal(entry, ctx, Outcome(S.FAILED, error=error))
        keep_checkpoint = outcome == "forced"
        return self._stage_paused(entry, ctx, keep_checkpoint, note)  # type: ignore[arg-type]

    def _stage_paused(self, entry: JobEntry, ctx: JobContext, keep_checkpoint: bool,
                      note: str | None = None) -> Callable[[], None]:
        """Stage the saved state; the status says PAUSED only after it commits (no resume race)."""
        now = time.time()
        self._last_words(entry, ctx, now)
        reason = entry.pause_reason or PauseReason.JOB  # no request: the job raised Interrupted itself
        blob = None if keep_checkpoint else self._encode_or_none(entry, ctx)
        self._store.mark_paused(entry.id, str(reason), now, entry.progress, entry.metrics, blob)

        def announce() -> None:
            entry.job = None  # a resume re-creates the job from what was saved
            entry.interrupt = None
            entry.set_status(S.PAUSED)
            ctx.lifecycle(logging.INFO, "paused (%s)%s", reason, " from its last checkpoint" if blob is None else "")
            emit(self._bus, EventKind.PAUSED, entry, error=note)

        return announce

    def _unsaved_end(self, entry: JobEntry, ctx: JobContext | None, error: LibraryError) -> None:
        """The run ended but jobs.db refused to record it: keep it as a reopen would find it.

        jobs.db still says RUNNING, which the next open reads as PAUSED (interrupted); say the
        same in memory, so it can be resumed from its last checkpoint once writes work again,
        and tell waiters why instead of leaving them hanging.
        """
        if ctx is not None:
            ctx.lifecycle(logging.ERROR, "its end could not be saved: %s", error)
        else:
            log.error("job %s (%s): its end could not be saved: %s", entry.name, entry.id, error)
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
        except Exception as e:  # any failure, not only SerializationError: the pause must still be saved
            text = str(e) if isinstance(e, SerializationError) else describe(e)
            ctx.lifecycle(logging.ERROR, "state could not be saved at pause (%s); it resumes from its last checkpoint",
                          text)
            return None

    def _last_words(self, entry: JobEntry, ctx: JobContext | None, now: float) -> None:
        """Take the run's last progress and metrics onto the entry (keep the previous ones if that fails)."""
        if ctx is None:
            return
        try:
            self.final_snapshot(entry, ctx, now)
            self._metrics(entry, ctx)
        except Exception as e:
            ctx.lifecycle(logging.WARNING, "its last progress or metrics could not be taken (%s)", describe(e))

    def _stage_terminal(self, entry: JobEntry, ctx: JobContext | None, outcome: Outcome) -> Callable[[], None]:
        now = time.time()
        self._last_words(entry, ctx, now)
        self.stage_finish(entry, outcome, now)

        def announce() -> None:
            if ctx is not None:
                level = logging.INFO if outcome.status is S.COMPLETED else logging.WARNING
                ctx.lifecycle(level, "%s%s", outcome.status.value, f": {outcome.error}" if outcome.error else "")
                if outcome.traceback:
                    ctx.lifecycle(logging.WARNING, "%s", outcome.traceback)
            self._after_terminal(entry, outcome)

        return announce

    def stage_end(self, entry: JobEntry, outcome: Outcome) -> Callable[[], None]:
        """Stage the end of a job that is not running; return what to call once it commits.

        For writes that must share one transaction (a cancel cascade): stage them all, commit once.
        """
        return self._stage_terminal(entry, None, outcome)

    def stage_finish(self, entry: JobEntry, outcome: Outcome, now: float) -> None:
        """Stage a job's terminal jobs row and its job_history row; then (nothing left to fail) set its status."""
        check_transition(entry.id, entry.status, outcome.status)
        self._store.finish(FinishedJob(
            id=entry.id, name=entry.name, version=entry.version, status=outcome.status, priority=entry.priority,
            created_at=entry.created_at, finished_at=now, started_at=entry.started_at, error=outcome.error,
            traceback=outcome.traceback, parent_id=entry.parent_id, initiated_by=entry.initiated_by,
            result=_result_blob(outcome.result) if outcome.status is S.COMPLETED else None,
            context=entry.context, progress=entry.progress, metrics=entry.metrics,
        ))
        self._store.withdraw(entry.running_write)  # finished before RUNNING was even written: skip it
        entry.running_write = None
        entry.set_status(outcome.status)
        entry.error = outcome.error

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
        await self._store.commit(key=entry.id)  # refused writes of this job raise here, others' do not

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
    except Exception as e:  # any failure, not only SerializationError: the job must still finish
        log.info("result not stored (%s); wait() in this process still returns it", describe(e))
        return None


def _failed(what: str, error: BaseException) -> Outcome:
    return Outcome(S.FAILED, error=f"{what}: {describe(error)}", traceback=_traceback(error))


def _traceback(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))


def _only(error: BaseException, kinds: type[BaseException] | tuple[type[BaseException], ...]) -> bool:
    """True if `error` is one of `kinds`, or a group (a TaskGroup's) holding nothing else."""
    if isinstance(error, kinds):
        return True
    return isinstance(error, BaseExceptionGroup) and error.split(kinds)[1] is None


def _cancelled_from_outside(error: BaseException) -> bool:
    """A cancellation of the run's task by someone else (the loop shutting down), not one the job raised."""
    task = asyncio.current_task()
    return isinstance(error, asyncio.CancelledError) and task is not None and task.cancelling() > 0


def _summary(result: Any) -> Any:
    if result is None or isinstance(result, (bool, int, float)):
        return result
    try:
        text = repr(result)
    except Exception:  # a result nested too deep to print, or a broken __repr__: still announce the job
        return f"<{type(result).__name__}>"
    return text if len(text) <= 200 else text[:197] + "..."
