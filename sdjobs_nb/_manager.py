"""`JobManager`: dispatches jobs, runs them on the running asyncio loop, and keeps jobs.db true."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import heapq
import json
import logging
import os
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from pathlib import Path
from typing import Any

from . import _codec
from ._context import JobContext
from ._entry import JobEntry, Outcome
from ._errors import (
    BrokenJob, ChildFailed, Critical, Interrupted, InvalidTransition, JobNotFound, LibraryError, LibraryLocked,
    ManagerClosed, NotResumable, ReadOnlyLibrary, SerializationError, UnknownJob, VersionMismatch,
)
from ._events import EventBus
from ._executors import BlockingRunner
from ._handle import JobHandle
from ._ids import new_job_id
from ._job import Job, ensure_dispatchable, registry
from ._progress import Progress
from ._records import JobEvent, JobRecord
from ._status import JobStatus, Priority
from ._store import store as st
from ._store.lock import OwnerLock
from ._store.store import Store, metrics_json, pack_progress, prepare_folder

__all__ = ("JobManager",)

log = logging.getLogger("sdjobs_nb")

S = JobStatus
TICK_S = 0.1               # snapshots reach subscribers and widgets at most 10 times a second
PROGRESS_SAVE_S = 2.0      # progress reaches jobs.db at most every 2 s per job
METRICS_SAVE_S = 1.0       # a checkpoint saves metrics too when they are older than this
INTERRUPTED = "interrupted"  # pause reason for a crash or close(); resume_interrupted() takes these
USER = "user"
PARENT = "parent"
SELF = "job"


class _Opener:
    """Makes `JobManager.open(...)` both awaitable and an async context manager."""

    def __init__(self, coro_factory: Any) -> None:
        self._factory = coro_factory
        self._manager: JobManager | None = None

    def __await__(self) -> Generator[Any, None, JobManager]:
        return self._factory().__await__()

    async def __aenter__(self) -> JobManager:
        self._manager = await self._factory()
        return self._manager

    async def __aexit__(self, *exc: Any) -> None:
        if self._manager is not None:
            await self._manager.close()


class JobManager:
    """Runs one library's jobs on the running event loop; open it with `JobManager.open(path)`."""

    def __init__(self, path: Path, store: Store, lock: OwnerLock | None, *, max_concurrent: int,
                 grace_period: float, executor: Any, file_log: bool, max_state_bytes: int) -> None:
        self.path = path
        self._store = store
        self._lock = lock
        self.read_only = lock is None
        self.max_concurrent = max_concurrent
        self.grace_period = grace_period
        self._runner = BlockingRunner(executor)
        self._log_dir = path / "logs" if file_log else None
        self._max_state_bytes = max_state_bytes
        self._entries: dict[str, JobEntry] = {}
        self._running: dict[str, JobEntry] = {}  # entries whose run task exists: the ticker's work list
        self._children: dict[str, set[str]] = {}  # parent id -> ids of its unfinished children
        self._dedup: dict[str, str] = {}
        self._heap: list[tuple[int, int, str]] = []
        self._slots_used = 0
        self._slot_waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = 0
        self._bus = EventBus()
        self._ticker: asyncio.Task[None] | None = None
        self._broken: dict[str, str] = {}
        self._closed = False
        self._closing = False
        self._closed_future: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- opening and closing ----------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, max_concurrent: int = 4, read_only: bool = False,
             resume: bool = False, durable: bool = False, grace_period: float = 5.0,
             executor: Any = None, file_log: bool | None = None,
             max_state_bytes: int = _codec.DEFAULT_MAX_STATE_BYTES) -> _Opener:
        """Open (creating if needed) the library at `path`; await it or use `async with`.

        `resume=True` also resumes jobs left paused by a crash or a previous `close()`.
        `durable=True` makes every commit survive a power cut (`synchronous=FULL`).
        """
        if type(max_concurrent) is not int or max_concurrent < 1:
            raise ValueError(f"max_concurrent must be an int >= 1, got {max_concurrent!r}")
        if grace_period < 0:
            raise ValueError(f"grace_period must be >= 0 seconds, got {grace_period!r}")
        if file_log is None:
            file_log = os.environ.get("SDJOBS_FILE_LOG", "") not in ("", "0", "false", "no")
        runner_check = BlockingRunner(executor)  # reject a bad executor before touching disk
        del runner_check
        options = dict(max_concurrent=max_concurrent, grace_period=grace_period, executor=executor,
                       file_log=file_log, max_state_bytes=max_state_bytes)

        async def _open() -> JobManager:
            folder = Path(os.fspath(path)).expanduser()
            live = None if read_only else await _live_owner(folder)
            if live is not None:  # a re-run `open` cell: the same manager, with the options given now
                await live._reconfigure(durable=durable, **options)
                if resume:
                    await live.resume_interrupted()
                return live
            prepare_folder(folder, read_only)
            lock = None if read_only else OwnerLock(folder)
            if lock is not None:
                lock.acquire()  # before touching jobs.db: only the owner creates or checks the schema
            try:
                store = await Store.open(folder, read_only=read_only, durable=durable)
            except BaseException:
                if lock is not None:
                    lock.release()
                raise
            try:
                manager = cls(folder, store, lock, **options)
                await manager._load()
            except BaseException:
                if lock is not None:
                    lock.release()
                await store.close()
                raise
            if lock is not None:
                _OWNERS[_owner_key(folder)] = manager
            if resume:
                await manager.resume_interrupted()
            return manager

        return _Opener(_open)

    async def _reconfigure(self, *, max_concurrent: int, grace_period: float, executor: Any, file_log: bool,
                           max_state_bytes: int, durable: bool) -> None:
        """Apply the options of a repeated `open` to this live manager (the newest cell wins)."""
        self.max_concurrent = max_concurrent
        self.grace_period = grace_period
        if executor is not self._runner.executor:
            self._runner = BlockingRunner(executor)
        self._log_dir = self.path / "logs" if file_log else None
        self._max_state_bytes = max_state_bytes
        if durable != self._store.durable:
            await self._store.set_durable(durable)
        self._schedule()  # more slots start queued jobs now

    def _abandon(self) -> None:
        """Release a library whose manager's event loop is closed: none of its jobs can run again."""
        self._closed = True
        self._bus.close()
        try:
            self._store.abandon()
        finally:
            self._release_ownership()

    def _release_ownership(self) -> None:
        if self._lock is None:
            return
        key = _owner_key(self.path)
        if _OWNERS.get(key) is self:
            del _OWNERS[key]
        self._lock.release()

    async def __aenter__(self) -> JobManager:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def _load(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._seq = await self._store.max_seq()
        if self.read_only:
            return
        registry.add_listener(self._on_registered)
        now = time.time()
        for record in await self._store.active_jobs():
            entry = _entry_from_record(record)
            self._remember(entry)
            if record.status is S.RUNNING:
                self._recover_running(entry, now)
        await self._store.commit()
        for job_id, name, version, blob in await self._store.queued_data():
            entry = self._entries.get(job_id)
            if entry is not None:
                self._enqueue_stored(entry, name, version, blob)
        self._schedule()

    def _enqueue_stored(self, entry: JobEntry, name: str, version: int, blob: bytes) -> None:
        """Re-create a queued job from its stored state and queue it, or set it aside as broken."""
        try:
            _check_stored_id(entry.id)
            entry.job = registry.create(name, version, blob)
        except (UnknownJob, VersionMismatch, BrokenJob) as e:
            self._set_aside(entry, e)
            return
        self._broken.pop(entry.id, None)
        entry.cls = type(entry.job)
        self._push(entry)

    def _recover_running(self, entry: JobEntry, now: float) -> None:
        """A job RUNNING in jobs.db at open was running when its process died."""
        cls = registry._classes.get(entry.name)
        if cls is not None and not cls.IS_RESUMABLE:
            entry.status = S.RUNNING
            self._stage_finish(entry, Outcome(S.FAILED, error="the process died while it ran and the job is not resumable"), now)
            self._forget(entry)
            return
        entry.status, entry.pause_reason = S.PAUSED, INTERRUPTED
        self._store.stage(st.SET_PAUSED, (INTERRUPTED, now, pack_progress(entry.progress), metrics_json(entry.metrics), now, entry.id), entry.id)

    async def close(self) -> None:
        """Pause and save running jobs (they resume later), keep queued ones, and release the library."""
        if self._closed:
            return
        if self._closing:  # a second caller waits for the first one's close to finish
            await asyncio.shield(self._closed_future)
            return
        self._closing = True
        self._closed_future = asyncio.get_running_loop().create_future()
        try:
            await self._close_now()
        finally:
            self._closed_future.set_result(None)

    async def _close_now(self) -> None:
        try:
            running = [e for e in self._running.values() if e.status is S.RUNNING and e.task]
            await asyncio.gather(*(self._interrupt_and_wait(e, "pause", INTERRUPTED) for e in running),
                                 return_exceptions=True)
            if self._ticker is not None:
                self._ticker.cancel()
                self._ticker = None
            self._flush_progress(time.time())
        finally:
            self._closed = True
            self._bus.close()
            try:
                await self._store.close()
            finally:
                self._release_ownership()

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self, writing: bool = True) -> None:
        if self._closed or self._closing:
            raise ManagerClosed(f"the manager of {str(self.path)!r} is closed; open the library again")
        if writing and self.read_only:
            raise ReadOnlyLibrary(
                f"library {str(self.path)!r} is open read-only; open it without read_only=True (after the "
                f"owning process closed it) to run or change jobs"
            )

    # --- dispatch ---------------------------------------------------------------------------

    async def dispatch(self, job: Job, *, priority: int = Priority.NORMAL, initiated_by: str | None = None,
                       context: dict[str, Any] | None = None, dedup_key: str | None = None):
        """Queue `job` and return its handle at once; the job runs in the background."""
        entry = self._prepare(job, priority=priority, initiated_by=initiated_by, context=context, dedup_key=dedup_key)
        if isinstance(entry, str):
            return await self._dispatch_twin(self._entries[entry])
        await self._commit_new([entry])
        return JobHandle(self, entry)

    async def _dispatch_twin(self, twin: JobEntry) -> JobHandle:
        """The unfinished job with the same dedup_key stands for this dispatch.

        If its kernel died or its library was closed, the user asked again for work that stopped
        through no wish of theirs (a notebook run again after a restart): carry it on from its
        last checkpoint. A job the user paused stays paused.
        """
        if twin.status is S.PAUSED and twin.pause_reason == INTERRUPTED:
            await self.resume(twin.id)
        return JobHandle(self, twin)

    async def dispatch_many(self, jobs: Sequence[Job], **options: Any) -> list:
        """Dispatch several jobs in one transaction; same options as `dispatch` (no dedup_key)."""
        entries = [self._prepare(job, **options) for job in jobs]
        await self._commit_new(entries)  # type: ignore[arg-type]
        return [JobHandle(self, e) for e in entries]  # type: ignore[arg-type]

    async def dispatch_by_name(self, name: str, data: dict[str, Any] | None = None, **options: Any):
        """Build a job of the registered `name` from a dict of fields, then `dispatch` it."""
        return await self.dispatch(registry.build(name, data or {}), **options)

    def _prepare(self, job: Job, *, priority: int = Priority.NORMAL, initiated_by: str | None = None,
                 context: dict[str, Any] | None = None, dedup_key: str | None = None,
                 parent_id: str | None = None, spawn_key: str | None = None) -> JobEntry | str:
        """Validate and stage a new job's row; return its entry (or an existing job's id for a dedup hit)."""
        self._check_open()
        cls = ensure_dispatchable(job)
        priority = _check_priority(priority)
        if dedup_key is not None:
            existing = self._dedup.get(str(dedup_key))
            if existing is not None:
                return existing
        _codec.check_instance(job)
        blob = _codec.encode_state(job, self._max_state_bytes)
        context_text = _context_json(context)
        if initiated_by is not None and not isinstance(initiated_by, str):
            raise TypeError(f"initiated_by must be a str, got {type(initiated_by).__name__}")
        now = time.time()
        self._seq += 1
        entry = JobEntry(id=new_job_id(), name=cls.NAME, version=cls.VERSION, status=S.QUEUED,
                         priority=priority, seq=self._seq, created_at=now, cls=cls, job=job,
                         parent_id=parent_id, spawn_key=spawn_key, initiated_by=initiated_by,
                         context=context, dedup_key=None if dedup_key is None else str(dedup_key))
        self._store.stage_new_job(entry.id, entry.name, entry.version, blob, priority, entry.seq, parent_id,
                                  spawn_key, initiated_by, context_text, entry.dedup_key, now)
        self._remember(entry)
        return entry

    async def _commit_new(self, entries: list[JobEntry]) -> None:
        try:
            await self._store.commit()
        except BaseException:
            for entry in entries:
                self._forget(entry)
            raise
        for entry in entries:
            self._emit("queued", entry)
            if entry.status is S.QUEUED:
                self._push(entry)
        self._schedule()

    def _remember(self, entry: JobEntry) -> None:
        self._entries[entry.id] = entry
        if entry.dedup_key is not None:
            self._dedup[entry.dedup_key] = entry.id
        if entry.parent_id is not None:
            self._children.setdefault(entry.parent_id, set()).add(entry.id)

    def _forget(self, entry: JobEntry) -> None:
        self._entries.pop(entry.id, None)
        if entry.dedup_key is not None and self._dedup.get(entry.dedup_key) == entry.id:
            del self._dedup[entry.dedup_key]
        siblings = self._children.get(entry.parent_id) if entry.parent_id else None
        if siblings is not None:
            siblings.discard(entry.id)
            if not siblings:
                del self._children[entry.parent_id]

    # --- scheduling -------------------------------------------------------------------------

    def _push(self, entry: JobEntry) -> None:
        heapq.heappush(self._heap, (-entry.priority, entry.seq, entry.id))

    def _schedule(self) -> None:
        """Start queued jobs (and wake waiting parents) while slots are free."""
        if self._closing:
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
            self._start(entry)

    def _pop_queued(self) -> JobEntry | None:
        while self._heap:
            _, _, job_id = heapq.heappop(self._heap)
            entry = self._entries.get(job_id)
            if entry is not None and entry.status is S.QUEUED and entry.task is None:
                return entry
        return None

    def _release_slot(self, entry: JobEntry) -> None:
        if entry.slot_held:
            entry.slot_held = False
            self._slots_used -= 1
            self._schedule()

    async def _acquire_slot(self, entry: JobEntry) -> None:
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

    def _start(self, entry: JobEntry) -> None:
        if entry.job is None:  # set aside as broken at load; never started
            return
        now = time.time()
        self._slots_used += 1
        entry.slot_held = True
        entry.interrupt, entry.forced = None, False
        entry.set_status(S.RUNNING)
        entry.started_at = entry.started_at or now
        entry.running_write = self._store.stage(st.SET_RUNNING, (now, now, entry.id), entry.id)
        entry.task = asyncio.get_running_loop().create_task(self._run(entry), name=f"sdjobs:{entry.name}:{entry.id}")
        self._running[entry.id] = entry
        self._emit("started", entry)
        self._ensure_ticker()

    async def _materialize(self, entry: JobEntry) -> Job:
        """Re-create a stored job from its saved state (raises UnknownJob, VersionMismatch, BrokenJob)."""
        _check_stored_id(entry.id)
        row = await self._store.job_data(entry.id)
        if row is None:
            raise JobNotFound(f"job {entry.id} vanished from {self._store.path}")
        name, version, blob = row
        job = registry.create(name, version, blob)
        self._broken.pop(entry.id, None)
        # metrics reach jobs.db at most once a second; a crash can leave them behind the exact
        # checkpoint count, which the resumed run carries on from
        saved = await self._store.checkpoint_count(entry.id)
        if saved > int(entry.metrics.get("checkpoints", 0)):
            entry.metrics = {**entry.metrics, "checkpoints": saved}
        return job

    def _on_registered(self, name: str) -> None:
        """A class was defined after open: queued jobs of that name set aside at load can run now."""
        waiting = [self._entries[i] for i in self._broken if i in self._entries and self._entries[i].name == name]
        if self._closing or self._closed or not waiting or self._loop is None or self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(lambda: self._loop.create_task(self._retry_set_aside(waiting)))

    async def _retry_set_aside(self, entries: list[JobEntry]) -> None:
        for entry in entries:
            if entry.status is not S.QUEUED or entry.job is not None or self._closing:
                continue
            row = await self._store.job_data(entry.id)
            if row is not None:
                self._enqueue_stored(entry, *row)
        self._schedule()

    def _set_aside(self, entry: JobEntry, error: Exception) -> None:
        self._broken[entry.id] = str(error)
        log.warning("job %s (%s) cannot be loaded and stays %s: %s", entry.id, entry.name, entry.status.value, error)

    # --- the run path -----------------------------------------------------------------------

    async def _run(self, entry: JobEntry) -> None:
        ctx = entry.ctx = JobContext(self, entry, self._log_dir)
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
            self._running.pop(entry.id, None)
            if not handed_over:
                ctx.close()
            self._release_slot(entry)  # the next job starts while this one's writes commit

    def _written(self, entry: JobEntry, ctx: JobContext, announce: Callable[[], None],
                 error: BaseException | None) -> None:
        """The end of a run is committed (announce it) or jobs.db refused it."""
        try:
            if error is None:
                announce()
            elif isinstance(error, LibraryError):
                self._unsaved_end(entry, ctx, error)
            else:
                self._unsaved_end(entry, ctx, LibraryError(f"the write was abandoned ({_describe(error)})"))
        finally:
            ctx.close()

    async def _ended_runs_announced(self) -> None:
        """Wait until runs that already ended are announced (their writes committed or refused)."""
        try:
            await self._store.commit()
        except LibraryError:
            pass  # each job's `_written` has dealt with it

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
            return Outcome(S.FAILED, error=_describe(e), traceback=traceback.format_exc())
        return Outcome(S.COMPLETED, result=result)

    def _stage_outcome(self, entry: JobEntry, ctx: JobContext, outcome: Outcome | str) -> Callable[[], None]:
        """Stage the writes for how the run ended; return what to announce once they commit."""
        if isinstance(outcome, Outcome):
            return self._stage_terminal(entry, ctx, outcome)
        if entry.interrupt == "cancel":
            return self._stage_terminal(entry, ctx, Outcome(S.CANCELLED, error=_cancel_text(entry)))
        if not entry.cls.IS_RESUMABLE:  # type: ignore[union-attr]
            error = "interrupted, and the job is not resumable (IS_RESUMABLE = False)"
            return self._stage_terminal(entry, ctx, Outcome(S.FAILED, error=error))
        return self._stage_paused(entry, ctx, keep_checkpoint=(outcome == "forced"))

    def _stage_paused(self, entry: JobEntry, ctx: JobContext, keep_checkpoint: bool) -> Callable[[], None]:
        """Stage the saved state; the status says PAUSED only after it commits (no resume race)."""
        now = time.time()
        progress = pack_progress(self._final_snapshot(entry, ctx, now))
        metrics = metrics_json(self._metrics(entry, ctx))
        reason = entry.pause_reason or SELF  # no request: the job raised Interrupted itself
        blob = None if keep_checkpoint else self._encode_or_none(entry, ctx)
        if blob is None:
            self._store.stage(st.SET_PAUSED, (reason, now, progress, metrics, now, entry.id), entry.id)
        else:
            self._store.stage(st.SET_PAUSED_WITH_DATA, (reason, now, progress, metrics, blob, now, entry.id), entry.id)

        def announce() -> None:
            entry.job = None  # a resume re-creates the job from what was saved
            entry.interrupt = None
            entry.set_status(S.PAUSED)
            ctx.lifecycle(logging.INFO, "paused (%s)%s", reason, " from its last checkpoint" if blob is None else "")
            self._emit("paused", entry)

        return announce

    def _unsaved_end(self, entry: JobEntry, ctx: JobContext, error: LibraryError) -> None:
        """The run ended but jobs.db refused to record it: keep it as a reopen would find it.

        jobs.db still says RUNNING, which the next open reads as PAUSED (interrupted); say the
        same in memory, so it can be resumed from its last checkpoint once writes work again,
        and tell waiters why instead of leaving them hanging.
        """
        ctx.lifecycle(logging.ERROR, "its end could not be saved: %s", error)
        entry.job, entry.interrupt = None, None
        entry.status, entry.pause_reason = S.PAUSED, INTERRUPTED  # not a transition: what jobs.db will mean
        for queue in entry._status_queues or ():
            queue.put_nowait(S.PAUSED)
        entry.fail_waiters(LibraryError(
            f"job {entry.name} ({entry.id}) ended but jobs.db could not record it ({error}); it is PAUSED "
            f"(interrupted) and resumes from its last checkpoint"
        ))
        self._emit("paused", entry, error=str(error))

    def _encode_or_none(self, entry: JobEntry, ctx: JobContext) -> bytes | None:
        try:
            return _codec.encode_state(entry.job, self._max_state_bytes)
        except SerializationError as e:
            ctx.lifecycle(logging.ERROR, "state could not be saved at pause (%s); it resumes from its last checkpoint", e)
            return None

    def _stage_terminal(self, entry: JobEntry, ctx: JobContext | None, outcome: Outcome) -> Callable[[], None]:
        now = time.time()
        if ctx is not None:
            self._final_snapshot(entry, ctx, now)
            entry.metrics = self._metrics(entry, ctx)
        self._stage_finish(entry, outcome, now)

        def announce() -> None:
            if ctx is not None:
                level = logging.INFO if outcome.status is S.COMPLETED else logging.WARNING
                ctx.lifecycle(level, "%s%s", outcome.status.value, f": {outcome.error}" if outcome.error else "")
                if outcome.traceback:
                    ctx.lifecycle(logging.WARNING, "%s", outcome.traceback)
            self._after_terminal(entry, outcome)

        return announce

    async def _finish_now(self, entry: JobEntry, outcome: Outcome) -> None:
        """Finish a job that is not running (cancel while queued or paused)."""
        announce = self._stage_terminal(entry, None, outcome)
        await self._commit_safely()
        announce()

    def _stage_finish(self, entry: JobEntry, outcome: Outcome, now: float) -> None:
        entry.set_status(outcome.status)
        entry.error = outcome.error
        result_blob = _result_blob(outcome.result) if outcome.status is S.COMPLETED else None
        progress_blob = pack_progress(entry.progress)
        metrics_text = metrics_json(entry.metrics)
        self._store.withdraw(entry.running_write)  # finished before RUNNING was even written: skip it
        entry.running_write = None
        self._store.stage(st.SET_FINISHED, (outcome.status.value, outcome.error, outcome.traceback, result_blob,
                                             progress_blob, metrics_text, now, entry.started_at, now, entry.id), entry.id)
        self._store.stage_history(_history_row(entry, outcome, now, metrics_text))

    def _after_terminal(self, entry: JobEntry, outcome: Outcome) -> None:
        entry.job = None
        entry.ctx = None
        self._forget(entry)
        self._broken.pop(entry.id, None)
        entry.settle(outcome)
        kind = outcome.status.value
        self._emit(kind, entry, error=outcome.error, result=_summary(outcome.result))

    async def _commit_safely(self) -> None:
        """Commit even if the surrounding task is being cancelled: these writes must land.

        Staged writes are sent whether or not anyone waits, so a cancelled waiter only needs to
        wait again before it lets the cancellation through.
        """
        try:
            await self._store.commit()
        except asyncio.CancelledError:
            await self._store.commit()
            raise

    def _final_snapshot(self, entry: JobEntry, ctx: JobContext, now: float) -> Progress | None:
        snap = ctx.take_snapshot_if_changed(time.monotonic())
        if snap is not None:
            entry.publish_progress(snap)
            self._emit("progress", entry)
        entry.progress_saved_at = now
        return entry.progress

    def _metrics(self, entry: JobEntry, ctx: JobContext) -> dict[str, Any]:
        metrics = ctx.get_metrics()
        entry.metrics = metrics
        return metrics

    # --- checkpoints, errors, progress --------------------------------------------------------

    async def _checkpoint(self, entry: JobEntry, ctx: JobContext) -> None:
        now = time.time()
        blob = _codec.encode_state(entry.job, self._max_state_bytes)
        progress = pack_progress(self._final_snapshot(entry, ctx, now))
        if now - entry.metrics_saved_at >= METRICS_SAVE_S:  # metrics change every call; save them now and then
            entry.metrics_saved_at = now
            self._store.stage(st.SET_DATA_METRICS, (blob, progress, metrics_json(self._metrics(entry, ctx)), now, entry.id), entry.id)
        else:
            self._store.stage(st.SET_DATA, (blob, progress, now, entry.id), entry.id)
        self._store.stage(st.UPSERT_CHECKPOINT, (entry.id, entry.version, blob, ctx.checkpoints, now), entry.id)
        await self._store.commit()

    def _record_non_critical(self, entry: JobEntry, message: str) -> None:
        self._store.stage(st.INSERT_ERROR, (entry.id, time.time(), message), entry.id)
        if entry.ctx is not None:
            entry.ctx.lifecycle(logging.WARNING, "non-critical error: %s", message)
        self._emit("non_critical_error", entry, error=message)

    def _ensure_ticker(self) -> None:
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick_forever(), name="sdjobs:ticker")

    async def _tick_forever(self) -> None:
        try:
            while self._running:
                await asyncio.sleep(TICK_S)
                self._tick(time.monotonic(), time.time())
        finally:
            if self._ticker is asyncio.current_task():
                self._ticker = None

    def _tick(self, mono: float, now: float) -> None:
        """Publish new snapshots to subscribers; save progress of jobs not saved for 2 s."""
        for entry in list(self._running.values()):
            ctx = entry.ctx
            if ctx is None or entry.status is not S.RUNNING:
                continue
            snap = ctx.take_snapshot_if_changed(mono)
            if snap is None:
                continue
            entry.publish_progress(snap)
            self._emit("progress", entry)
            if now - entry.progress_saved_at >= PROGRESS_SAVE_S:
                entry.progress_saved_at = now
                self._store.stage(st.SET_PROGRESS, (pack_progress(snap), metrics_json(ctx.get_metrics()), now, entry.id), entry.id)

    def _flush_progress(self, now: float) -> None:
        for entry in self._running.values():
            if entry.ctx is not None and entry.progress is not None:
                self._store.stage(st.SET_PROGRESS, (pack_progress(entry.progress), metrics_json(entry.metrics), now, entry.id), entry.id)

    async def _breathe(self) -> None:
        await asyncio.sleep(0)

    async def _run_blocking(self, fn: Any, args: tuple, kwargs: dict[str, Any]) -> Any:
        return await self._runner.run(fn, args, kwargs)

    # --- events -----------------------------------------------------------------------------

    def _emit(self, kind: str, entry: JobEntry, *, error: str | None = None, result: Any = None) -> None:
        if not self._bus.has_subscribers:
            return
        self._bus.publish(JobEvent(kind=kind, job_id=entry.id, name=entry.name, status=entry.status,
                                   progress=entry.progress, error=error, at=time.time(),
                                   parent_id=entry.parent_id, result=result))

    async def events(self) -> AsyncIterator[JobEvent]:
        """Yield every job's events as they happen; progress coalesces, state changes never drop."""
        async for event in self._bus.subscribe():
            yield event

    # --- control: pause, resume, cancel -----------------------------------------------------

    async def pause(self, job_id: str, *, reason: str = USER) -> None:
        """Pause a queued or running job; returns once its state is saved and it is PAUSED."""
        self._check_open()
        entry = self._active_entry(job_id, "pause")
        if entry.status is S.PAUSED:
            return
        if entry.cls is not None and not entry.cls.IS_RESUMABLE:
            raise NotResumable(f"job {entry.name} ({job_id}) is not resumable (IS_RESUMABLE = False); cancel it instead")
        await self._pause_entry(entry, reason)

    async def _pause_entry(self, entry: JobEntry, reason: str) -> None:
        children = self._child_entries(entry.id)
        if entry.status is S.QUEUED:
            now = time.time()
            entry.pause_reason = reason
            entry.set_status(S.PAUSED)  # at once, so the scheduler cannot start it while the write commits
            self._emit("paused", entry)
            self._store.stage(st.SET_PAUSED, (reason, now, pack_progress(entry.progress), metrics_json(entry.metrics), now, entry.id), entry.id)
            await self._store.commit()
        elif entry.status is S.RUNNING:
            await self._interrupt_and_wait(entry, "pause", reason)
        await asyncio.gather(*(self._pause_entry(c, PARENT) for c in children if c.status in (S.QUEUED, S.RUNNING)))

    async def _interrupt_and_wait(self, entry: JobEntry, request: str, reason: str | None = None) -> None:
        """Ask a running job to stop at its next check; cancel its task after the grace period."""
        task = entry.task
        if entry.interrupt != "cancel":
            entry.interrupt = request
        if reason is not None and request == "pause":
            entry.pause_reason = reason
        if task is not None:
            done, _ = await asyncio.wait({task}, timeout=self.grace_period)
            if not done:
                entry.forced = True
                if entry.ctx is not None:
                    entry.ctx.lifecycle(logging.WARNING, "did not reach check_interrupted within %.1f s; stopping it", self.grace_period)
                task.cancel()
                await asyncio.wait({task})
        await self._ended_runs_announced()

    async def resume(self, job_id: str) -> None:
        """Resume a paused job from its saved state; it reports RUNNING once it runs again."""
        self._check_open()
        entry = self._active_entry(job_id, "resume")
        if entry.status is not S.PAUSED:
            return
        cls = registry.get(entry.name)
        if not cls.IS_RESUMABLE:
            raise NotResumable(f"job {entry.name} ({job_id}) is not resumable (IS_RESUMABLE = False); it can only be cancelled")
        try:
            job = await self._materialize(entry)
        except (VersionMismatch, BrokenJob) as e:
            self._broken[entry.id] = str(e)
            raise
        if entry.status is not S.PAUSED:  # another resume (or a cancel) got there while we read
            return
        entry.job, entry.cls, entry.pause_reason = job, cls, None
        entry.reset_waiters()
        entry.set_status(S.QUEUED)  # at once: a second resume arriving now finds it queued
        self._emit("resumed", entry)  # events follow status changes in order
        self._store.stage(st.SET_QUEUED, (time.time(), entry.id), entry.id)
        await self._store.commit()
        if entry.status is S.QUEUED:  # not paused or cancelled again while the write committed
            self._push(entry)
            self._schedule()
        children = [c for c in self._child_entries(entry.id) if c.status is S.PAUSED and c.pause_reason == PARENT]
        for child in children:
            await self.resume(child.id)

    async def cancel(self, job_id: str) -> None:
        """Cancel a queued, running or paused job (and its unfinished children); it is kept as CANCELLED."""
        self._check_open()
        entry = self._entries.get(job_id)
        if entry is None:
            record = await self._record(job_id)
            if record.status is S.CANCELLED:
                return
            raise InvalidTransition(f"job {record.name} ({job_id}) is already {record.status.value}; only unfinished jobs can be cancelled")
        if entry.status is S.RUNNING:
            entry.interrupt = "cancel"  # first: a parent waiting for children must see this, not a cancelled child
        for child in self._child_entries(job_id):
            await self.cancel(child.id)
        if entry.status is S.RUNNING:
            await self._interrupt_and_wait(entry, "cancel")
        elif not entry.status.is_terminal:
            await self._finish_now(entry, Outcome(S.CANCELLED, error=_cancel_text(entry)))

    def _active_entry(self, job_id: str, action: str) -> JobEntry:
        entry = self._entries.get(job_id)
        if entry is not None:
            return entry
        raise InvalidTransition(f"cannot {action} job {job_id}: it is finished or not in this library")

    async def resume_interrupted(self) -> list:
        """Resume every job paused by a crash or by `close()`; user-paused jobs stay paused."""
        self._check_open()
        resumed = []
        for entry in sorted(self._entries.values(), key=lambda e: e.seq):
            if entry.status is S.PAUSED and entry.pause_reason == INTERRUPTED:
                try:
                    await self.resume(entry.id)
                except (UnknownJob, VersionMismatch, BrokenJob, NotResumable) as e:
                    self._set_aside(entry, e)
                    continue
                resumed.append(JobHandle(self, entry))
        return resumed

    # --- children ---------------------------------------------------------------------------

    def _child_entries(self, parent_id: str) -> list[JobEntry]:
        ids = self._children.get(parent_id, ())
        return [self._entries[i] for i in sorted(ids, key=lambda i: self._entries[i].seq) if i in self._entries]

    async def _spawn_children(self, parent: JobEntry, jobs: list[Job], call: int) -> list[str]:
        if parent.interrupt is not None or self._closing:
            # a pause, cancel or close already asked for: spawn nothing it would miss
            raise Interrupted(f"{parent.interrupt or 'close'} requested before children were spawned")
        existing = await self._store.spawn_keys(parent.id)
        ids: list[str] = []
        new: list[JobEntry] = []
        for index, job in enumerate(jobs):
            key = f"{call}:{index}"
            if key in existing:
                ids.append(existing[key])
                continue
            entry = self._prepare(job, priority=parent.priority, initiated_by=parent.initiated_by,
                                  parent_id=parent.id, spawn_key=key)
            new.append(entry)  # type: ignore[arg-type]
            ids.append(entry.id)  # type: ignore[union-attr]
        await self._commit_new(new)
        return ids

    async def _wait_for_children(self, parent: JobEntry, ids: list[str]) -> list[Any]:
        """Wait without holding a slot; a pause or cancel of the parent interrupts the wait."""
        for child_id in ids:
            child = self._entries.get(child_id)
            if child is not None and child.status is S.PAUSED and child.pause_reason == PARENT:
                await self.resume(child_id)  # paused on this parent's behalf (a crash cut the cascade short)
        self._release_slot(parent)
        try:
            outcomes = await self._wait_outcomes(parent, ids)
        except Interrupted:
            raise  # the parent stops now: it needs no slot back
        except asyncio.CancelledError:
            if not (parent.forced or parent.interrupt is not None):
                await self._acquire_slot(parent)  # its own code gave up waiting (a timeout) and goes on
            raise
        except BaseException:
            await self._acquire_slot(parent)  # it may catch ChildFailed and go on
            raise
        await self._acquire_slot(parent)
        return [outcome.result for _, outcome in outcomes]

    async def _wait_outcomes(self, parent: JobEntry, ids: list[str]) -> list[tuple[str, Outcome]]:
        """Wait for every child; raise `ChildFailed` as soon as one fails (siblings keep running)."""
        waits = {asyncio.ensure_future(self._outcome(i)): i for i in ids}
        try:
            while True:
                if parent.interrupt is not None:
                    raise Interrupted(f"{parent.interrupt} requested while waiting for children")
                for wait, child_id in waits.items():
                    if wait.done():
                        _raise_if_failed(child_id, *wait.result())
                pending = [w for w in waits if not w.done()]
                if not pending:
                    return [w.result() for w in waits]
                await asyncio.wait(pending, timeout=0.05, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _outcome(self, job_id: str) -> tuple[str, Outcome]:
        """Wait for a job's terminal outcome, from memory or from jobs.db."""
        entry = self._entries.get(job_id)
        if entry is not None:
            return entry.name, await asyncio.shield(entry.done_future())
        record = await self._record(job_id)
        if not record.status.is_terminal:
            raise JobNotFound(f"job {job_id} is {record.status.value} but not loaded; reopen the library")
        result = None
        if record.status is S.COMPLETED:
            blob = await self._store.result_blob(job_id)
            result = None if blob is None else _codec.unpack(blob)
        return record.name, Outcome(record.status, result, record.error, record.traceback)

    # --- looking at jobs --------------------------------------------------------------------

    async def _record(self, job_id: str) -> JobRecord:
        record = await self._store.job(str(job_id))
        if record is None:
            raise JobNotFound(f"no job with id {job_id!r} in library {str(self.path)!r}")
        return record

    def get(self, job_id: str):
        """Return a handle for any job of the library, finished ones included."""
        self._check_open(writing=False)
        entry = self._entries.get(str(job_id))
        if entry is not None:
            return JobHandle(self, entry)
        return JobHandle.for_record(self, str(job_id))

    async def record(self, job_id: str) -> JobRecord:
        """Return the stored record of a job (status, progress, metrics, error, ...)."""
        self._check_open(writing=False)
        return await self._record(job_id)

    async def saved_state(self, job_id: str) -> dict[str, Any]:
        """Return a job's newest saved state (what a resume starts from) as a dict of field values."""
        self._check_open(writing=False)
        row = await self._store.job_data(str(job_id))
        if row is None:
            raise JobNotFound(f"no job with id {job_id!r} in library {str(self.path)!r}")
        try:
            return _codec.decode_fields(row[2])
        except Exception as e:
            raise BrokenJob(f"stored state of job {job_id} is not readable ({e})") from e

    async def result(self, job_id: str) -> Any:
        """Return a finished job's result, or raise its error (`JobFailed`, `Cancelled`)."""
        name, outcome = await self._outcome(str(job_id))
        return outcome.unwrap(job_id, name)

    async def errors(self, job_id: str, limit: int = 1000) -> list[tuple[float, str]]:
        """Return a job's non-critical errors as (epoch seconds, message), oldest first."""
        return await self._store.errors(str(job_id), limit)

    def broken(self) -> dict[str, str]:
        """Return jobs that cannot be loaded (unknown name, other VERSION, corrupt state): id -> why."""
        return dict(self._broken)

    def handles(self, *, active_only: bool = True) -> list:
        """Return handles of the jobs in memory (queued, running, paused), oldest first."""
        entries = sorted(self._entries.values(), key=lambda e: e.seq)
        return [JobHandle(self, e) for e in entries if not active_only or not e.status.is_terminal]

    def submit(self, action: str, job_id: str) -> concurrent.futures.Future:
        """Ask for `pause`, `resume` or `cancel` from any thread (e.g. a widget click); never blocks.

        Returns a `concurrent.futures.Future` that holds the request's error, if any.
        """
        if action not in ("pause", "resume", "cancel"):
            raise ValueError(f"action must be 'pause', 'resume' or 'cancel', not {action!r}")
        if self._loop is None or self._loop.is_closed():
            raise ManagerClosed("the manager's event loop is not running")
        return asyncio.run_coroutine_threadsafe(getattr(self, action)(job_id), self._loop)

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop this manager runs jobs on."""
        return self._loop

    @property
    def store(self) -> Store:
        return self._store

    # --- notebook and analysis surfaces (optional extras, imported on use) ----------------------

    def jobs(self):
        """Return a DataFrame of unfinished jobs (queued, running, paused) with live progress."""
        from .frames import active_jobs_frame

        return active_jobs_frame(self)

    async def history(self, name: str | None = None, status: str | None = None, since: Any = None,
                      until: Any = None, limit: int | None = None):
        """Return a DataFrame with one row per finished job, newest first."""
        from .frames import history_frame

        return await history_frame(self, name=name, status=status, since=since, until=until, limit=limit)

    async def metrics(self, by: str = "name", since: Any = None):
        """Return a DataFrame of counts, failure rate, durations and throughput per job name."""
        from .frames import metrics_frame

        return await metrics_frame(self, by=by, since=since)

    async def plot_timeline(self, **filters: Any):
        """Return a matplotlib Figure: one bar per job over time, coloured by status."""
        from .frames import plot_timeline

        return await plot_timeline(self, **filters)

    async def plot_durations(self, **filters: Any):
        """Return a matplotlib Figure of duration distributions per job name."""
        from .frames import plot_durations

        return await plot_durations(self, **filters)

    def dashboard(self):
        """Return one live widget with a row per job of the library."""
        from .widgets import dashboard

        return dashboard(self)

    def load_extension(self, path: str | os.PathLike[str], extension_id: str, **limits: Any):
        """Load a WebAssembly module (.wasm or .wat) whose jobs run sandboxed.

        `limits` (memory_bytes, fuel, time_limit) are passed to `sdjobs_nb.extensions.load_extension`.
        """
        from .extensions import load_extension

        return load_extension(self, path, extension_id, **limits)

    async def dispatch_extension_job(self, extension_id: str, job_name: str, job_data: Any = None, **options: Any):
        """Dispatch job `job_name` of a loaded extension; it is named `extension_id:job_name`."""
        from .extensions import dispatch_extension_job

        return await dispatch_extension_job(self, extension_id, job_name, job_data, **options)


# --- one owner per library in this process ------------------------------------------------------

# The managers this process owns, by library folder: re-running an `open` cell in a notebook
# hands back the manager whose jobs and widgets are live, instead of refusing its own kernel.
_OWNERS: dict[str, JobManager] = {}


def _owner_key(folder: Path) -> str:
    return os.path.realpath(folder)


async def _live_owner(folder: Path) -> JobManager | None:
    """Return this process's open manager of `folder` on the running loop, if any.

    One being closed is waited for (the caller then opens afresh); one whose loop is closed is
    let go (nothing of it can run again); one on another live loop keeps the library.
    """
    owner = _OWNERS.get(_owner_key(folder))
    if owner is None:
        return None
    loop = asyncio.get_running_loop()
    if owner.loop is None or owner.loop.is_closed():
        owner._abandon()
        return None
    if owner.loop is not loop:
        raise LibraryLocked(str(folder), os.getpid(), here=True)
    if owner._closing:
        await owner.close()  # waits for the close in progress
        return None
    return owner


# --- helpers -----------------------------------------------------------------------------------


def _check_stored_id(job_id: str) -> None:
    """Ids are UUIDs written by this library; anything else was tampered with and never runs."""
    try:
        uuid.UUID(job_id)
    except (ValueError, TypeError, AttributeError):
        raise BrokenJob(f"job id {job_id!r:.80} is not a UUID; the record was altered outside sdjobs_nb and is left alone") from None


def _raise_if_failed(child_id: str, name: str, outcome: Outcome) -> None:
    if outcome.status is not S.COMPLETED:
        message = outcome.error or outcome.status.value
        raise ChildFailed(child_id, name, f"child {outcome.status.value}: {message}", outcome.traceback)


def _entry_from_record(record: JobRecord) -> JobEntry:
    return JobEntry(id=record.id, name=record.name, version=record.version, status=record.status,
                    priority=record.priority, seq=record.seq, created_at=record.created_at, cls=registry._classes.get(record.name),
                    parent_id=record.parent_id, spawn_key=record.spawn_key, initiated_by=record.initiated_by, context=record.context,
                    dedup_key=record.dedup_key, started_at=record.started_at, pause_reason=record.pause_reason,
                    progress=record.progress, metrics=record.metrics)


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


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _cancel_text(entry: JobEntry) -> str:
    return "cancelled by request"


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


def _history_row(entry: JobEntry, outcome: Outcome, now: float, metrics_text: str) -> tuple:
    """The job_history row of a finished job, in `HISTORY_COLUMNS` order."""
    p = entry.progress
    m = entry.metrics
    started = entry.started_at
    return (
        entry.id, entry.name, entry.version, outcome.status.value, entry.parent_id, entry.priority,
        entry.initiated_by, None if entry.context is None else json.dumps(entry.context),
        entry.created_at, started, now,
        None if started is None else now - started,  # duration_s
        None if started is None else started - entry.created_at,  # queue_wait_s
        *((p.kind, p.fraction, p.current, p.total, p.phase) if p is not None else _NO_PROGRESS),
        int(m.get("items", 0)), int(m.get("bytes", 0)), int(m.get("checkpoints", 0)),
        int(m.get("non_critical_errors", 0)), m.get("memory_mb"), outcome.error, metrics_text,
    )


_NO_PROGRESS = (None, None, None, None, None)
