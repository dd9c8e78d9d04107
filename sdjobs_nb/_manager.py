"""`JobManager`: the facade of one library: open and close it, dispatch, control and look up its jobs.

The work happens in the runtime (`_runtime/`): a scheduler, the runs, stored jobs, control,
dispatch and children, over the store (`_store/`). See docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import time
from collections.abc import AsyncIterator, Generator, Sequence
from pathlib import Path
from typing import Any

from . import _codec
from ._errors import BrokenJob, JobNotFound, LibraryLocked, ManagerClosed, ReadOnlyLibrary
from ._executors import BlockingRunner
from ._handle import JobHandle
from ._job import Job, registry
from ._records import JobEvent, JobRecord
from ._runtime.runtime import Runtime
from ._runtime.settings import RunSettings
from ._status import JobStatus, PauseReason, Priority, Request
from ._store.lock import OwnerLock
from ._store.store import Store, library_error, prepare_folder

__all__ = ("JobManager",)

S = JobStatus


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

    def __init__(self, path: Path, store: Store, lock: OwnerLock | None, *, seq: int, max_concurrent: int,
                 grace_period: float, executor: Any, file_log: bool, max_state_bytes: int) -> None:
        self.path = path
        self._store = store
        self._lock = lock
        self.read_only = lock is None
        settings = RunSettings(grace_period=grace_period, max_state_bytes=max_state_bytes,
                               log_dir=path / "logs" if file_log else None, blocking=BlockingRunner(executor))
        self._rt = Runtime(store, settings, max_concurrent=max_concurrent, check_open=self._check_open, seq=seq)
        self._closed = False
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
        Opened again on the loop of the manager that owns it, it returns that live manager with
        the options given now.
        """
        if type(max_concurrent) is not int or max_concurrent < 1:
            raise ValueError(f"max_concurrent must be an int >= 1, got {max_concurrent!r}")
        if grace_period < 0:
            raise ValueError(f"grace_period must be >= 0 seconds, got {grace_period!r}")
        if file_log is None:
            file_log = os.environ.get("SDJOBS_FILE_LOG", "") not in ("", "0", "false", "no")
        BlockingRunner(executor)  # reject a bad executor before touching disk
        options = dict(max_concurrent=max_concurrent, grace_period=grace_period, executor=executor,
                       file_log=file_log, max_state_bytes=max_state_bytes)
        folder = Path(os.fspath(path)).expanduser()
        return _Opener(lambda: _open_library(cls, folder, read_only=read_only, resume=resume, durable=durable,
                                             options=options))

    async def _reconfigure(self, *, max_concurrent: int, grace_period: float, executor: Any, file_log: bool,
                           max_state_bytes: int, durable: bool) -> None:
        """Apply the options of a repeated `open` to this live manager (the newest cell wins)."""
        settings = self._rt.settings
        self._rt.scheduler.max_concurrent = max_concurrent
        settings.grace_period = grace_period
        if executor is not settings.blocking.executor:
            settings.blocking = BlockingRunner(executor)
        settings.log_dir = self.path / "logs" if file_log else None
        settings.max_state_bytes = max_state_bytes
        if durable != self._store.durable:
            await self._store.set_durable(durable)
        self._rt.scheduler.schedule()  # more slots start queued jobs now

    async def __aenter__(self) -> JobManager:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def _load(self) -> None:
        self._loop = asyncio.get_running_loop()
        if not self.read_only:
            await self._rt.stored.load()

    async def close(self) -> None:
        """Pause and save running jobs (they resume later), keep queued ones, and release the library."""
        if self._closed:
            return
        if self._rt.settings.closing:  # a second caller waits for the first one's close to finish
            await asyncio.shield(self._closed_future)  # type: ignore[arg-type]
            return
        self._rt.settings.closing = True
        self._closed_future = asyncio.get_running_loop().create_future()
        try:
            await self._close_now()
        finally:
            self._closed_future.set_result(None)

    async def _close_now(self) -> None:
        rt = self._rt
        try:
            running = [e for e in rt.runs.ticker.running() if e.status is S.RUNNING and e.task]
            await asyncio.gather(*(rt.control.interrupt_and_wait(e, Request.PAUSE, PauseReason.INTERRUPTED)
                                   for e in running), return_exceptions=True)
            rt.runs.ticker.stop()
            rt.runs.ticker.flush(time.time())
            await rt.runs.announced()  # runs that ended just before the close are announced first
        finally:
            self._closed = True
            self._release_waiters()
            rt.bus.close()
            try:
                await self._store.close()
            finally:
                self._release_ownership()

    def _release_waiters(self) -> None:
        """Wake every `wait()` on a job left unfinished: nothing runs it in this manager any more."""
        for entry in self._rt.table.in_order():
            if not entry.status.is_terminal:
                entry.fail_waiters(_closed_while_waiting(self.path, entry))

    def _abandon(self) -> None:
        """Release a library whose manager's event loop is closed: none of its jobs can run again."""
        self._closed = True
        self._rt.settings.closing = True
        self._rt.bus.close()
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

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def max_concurrent(self) -> int:
        """How many jobs run at once (a parent waiting for its children does not count)."""
        return self._rt.scheduler.max_concurrent

    @max_concurrent.setter
    def max_concurrent(self, value: int) -> None:
        if type(value) is not int or value < 1:
            raise ValueError(f"max_concurrent must be an int >= 1, got {value!r}")
        self._rt.scheduler.max_concurrent = value
        self._rt.scheduler.schedule()  # more slots start queued jobs now

    @property
    def grace_period(self) -> float:
        """Seconds a pause or cancel waits for a job's `check_interrupted()` before stopping it."""
        return self._rt.settings.grace_period

    def _check_open(self, writing: bool = True) -> None:
        if self._closed or self._rt.settings.closing:
            raise ManagerClosed(f"the manager of {str(self.path)!r} is closed; open the library again")
        if writing and self.read_only:
            raise ReadOnlyLibrary(
                f"library {str(self.path)!r} is open read-only; open it without read_only=True (after the "
                f"owning process closed it) to run or change jobs"
            )

    # --- dispatch ---------------------------------------------------------------------------

    async def dispatch(self, job: Job, *, priority: int = Priority.NORMAL, initiated_by: str | None = None,
                       context: dict[str, Any] | None = None, dedup_key: str | None = None) -> JobHandle:
        """Queue `job` and return its handle at once; the job runs in the background.

        With a `dedup_key` that an unfinished job already has, return that job instead; if its
        process died or its library was closed while it ran, it carries on from its checkpoint.
        """
        entry, created = self._rt.dispatcher.prepare(job, priority=priority, initiated_by=initiated_by,
                                                     context=context, dedup_key=dedup_key)
        if created:
            await self._rt.dispatcher.commit_new([entry])
        elif entry.status is S.PAUSED and entry.pause_reason == PauseReason.INTERRUPTED:
            await self.resume(entry.id)  # asked for again after a restart: a user's pause stays
        return JobHandle(self, entry)

    async def dispatch_many(self, jobs: Sequence[Job], **options: Any) -> list[JobHandle]:
        """Dispatch several jobs in one transaction; same options as `dispatch` (no dedup_key)."""
        entries = [self._rt.dispatcher.prepare(job, **options)[0] for job in jobs]
        await self._rt.dispatcher.commit_new(entries)
        return [JobHandle(self, e) for e in entries]

    async def dispatch_by_name(self, name: str, data: dict[str, Any] | None = None, **options: Any) -> JobHandle:
        """Build a job of the registered `name` from a dict of fields, then `dispatch` it."""
        return await self.dispatch(registry.build(name, data or {}), **options)

    # --- control ------------------------------------------------------------------------------

    async def pause(self, job_id: str, *, reason: str = PauseReason.USER) -> None:
        """Pause a queued or running job; returns once its state is saved and it is PAUSED."""
        self._check_open()
        await self._rt.control.pause(job_id, reason)

    async def resume(self, job_id: str) -> None:
        """Resume a paused job from its saved state; it reports RUNNING once it runs again."""
        self._check_open()
        await self._rt.control.resume(job_id)

    async def cancel(self, job_id: str) -> None:
        """Cancel a queued, running or paused job (and its unfinished children); it is kept as CANCELLED."""
        self._check_open()
        await self._rt.control.cancel(job_id)

    async def resume_interrupted(self) -> list[JobHandle]:
        """Resume every job paused by a crash or by `close()`; user-paused jobs stay paused."""
        self._check_open()
        return [JobHandle(self, e) for e in await self._rt.control.resume_interrupted()]

    async def prune(self, older_than: Any = None, keep: int | None = None, *, vacuum: bool = False) -> int:
        """Delete finished jobs (record, history row, errors) older than `older_than` and not among the `keep` newest.

        `older_than` is a `datetime.timedelta` or seconds since the job finished; give it, `keep`
        or both. Unfinished jobs are never removed, nor finished ones that an unfinished parent or
        child may still read. Returns how many jobs were removed. Freed space is reused by new
        jobs; `vacuum=True` also shrinks jobs.db (a full rewrite of the file).
        """
        self._check_open()
        return await self._store.prune(older_than, keep, vacuum=vacuum)

    def submit(self, action: str, job_id: str) -> concurrent.futures.Future:
        """Ask for `pause`, `resume` or `cancel` from any thread (e.g. a widget click); never blocks.

        Returns a `concurrent.futures.Future` that holds the request's error, if any.
        """
        if action not in ("pause", "resume", "cancel"):
            raise ValueError(f"action must be 'pause', 'resume' or 'cancel', not {action!r}")
        if self._loop is None or self._loop.is_closed():
            raise ManagerClosed("the manager's event loop is not running")
        return asyncio.run_coroutine_threadsafe(getattr(self, action)(job_id), self._loop)

    async def events(self) -> AsyncIterator[JobEvent]:
        """Yield every job's events as they happen; progress coalesces, state changes never drop."""
        async for event in self._rt.bus.subscribe():
            yield event

    async def backup(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write a consistent copy of the library to the folder `path`; return the copy's jobs.db path.

        The way to copy a live library (a plain copy of jobs.db can be torn): jobs go on while it
        copies, and the copy is checked before it is kept. It opens as a library with
        `JobManager.open(path)`. A library already at `path` is replaced only with `overwrite=True`.
        """
        self._check_open(writing=False)
        return await self._store.backup(Path(os.fspath(path)).expanduser(), overwrite=overwrite)

    # --- looking at jobs --------------------------------------------------------------------

    def get(self, job_id: str) -> JobHandle:
        """Return a handle for any job of the library, finished ones included."""
        self._check_open(writing=False)
        entry = self._rt.table.get(str(job_id))
        if entry is not None:
            return JobHandle(self, entry)
        return JobHandle.for_record(self, str(job_id))

    async def record(self, job_id: str) -> JobRecord:
        """Return the stored record of a job (status, progress, metrics, error, ...)."""
        self._check_open(writing=False)
        return await self._rt.control.record(job_id)

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
        self._check_open(writing=False)
        name, outcome = await self._rt.children.outcome(str(job_id))
        return outcome.unwrap(job_id, name)

    async def errors(self, job_id: str, limit: int = 1000) -> list[tuple[float, str]]:
        """Return a job's non-critical errors as (epoch seconds, message), oldest first."""
        return await self._store.errors(str(job_id), limit)

    def broken(self) -> dict[str, str]:
        """Return jobs that cannot be loaded (unknown name, other VERSION, corrupt state): id -> why."""
        return self._rt.table.broken()

    def handles(self, *, active_only: bool = True) -> list[JobHandle]:
        """Return handles of the jobs in memory (queued, running, paused), oldest first."""
        return [JobHandle(self, e) for e in self._rt.table.in_order() if not active_only or not e.status.is_terminal]

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop this manager runs jobs on."""
        return self._loop

    @property
    def store(self) -> Store:
        return self._store

    @property
    def queries(self):
        """Read-only queries over jobs.db for DataFrames, the CLI and widgets (a `Queries`)."""
        from ._store.queries import Queries

        return Queries(self._store)

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


def _closed_while_waiting(path: Path, entry: Any) -> ManagerClosed:
    """What `wait()` raises for a job that the manager's `close()` left unfinished."""
    if entry.status is S.QUEUED:
        where = "it stays QUEUED and runs when the library is opened again"
    elif entry.status is S.PAUSED and entry.pause_reason != PauseReason.INTERRUPTED:
        where = f"it stays PAUSED ({entry.pause_reason}); open the library again and resume it"
    else:  # paused by this close (or left running in jobs.db, which the next open reads the same way)
        where = "it is saved PAUSED (interrupted) and carries on when the library is opened with resume=True"
    return ManagerClosed(f"the manager of {str(path)!r} was closed before job {entry.name} ({entry.id}) finished: "
                         f"{where}; then wait for it with manager.get({entry.id!r}).wait()")


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
    if owner._rt.settings.closing:
        await owner.close()  # waits for the close in progress
        return None
    return owner


async def _open_library(cls: type[JobManager], folder: Path, *, read_only: bool, resume: bool, durable: bool,
                        options: dict[str, Any]) -> JobManager:
    live = None if read_only else await _live_owner(folder)
    if live is not None:  # a re-run `open` cell: the same manager, with the options given now
        await live._reconfigure(durable=durable, **options)
        if resume:
            await live.resume_interrupted()
        return live
    live = await _open_new(cls, folder, read_only=read_only, durable=durable, options=options)
    if resume:
        try:
            await live.resume_interrupted()
        except BaseException:
            await live.close()  # nobody holds this manager: it must not keep the library locked
            raise
    return live


async def _open_new(cls: type[JobManager], folder: Path, *, read_only: bool, durable: bool,
                    options: dict[str, Any]) -> JobManager:
    db = prepare_folder(folder, read_only)
    lock = None if read_only else OwnerLock(folder)
    if lock is not None:
        lock.acquire()  # before touching jobs.db: only the owner creates or checks the schema
    try:
        # a jobs.db of unknown history may be a torn copy: check it before writing to it
        store = await Store.open(folder, read_only=read_only, durable=durable,
                                 check=lock is not None and lock.history_unknown(db))
        if lock is not None:
            lock.note_file(db)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    try:
        manager = cls(folder, store, lock, seq=await store.max_seq(), **options)
        await manager._load()
    except BaseException as e:
        await _let_go(store, lock)
        shown = library_error(e, store.path)  # SQLite refusing to read jobs.db: say what to do
        if shown is e:
            raise
        raise shown from e
    if lock is not None:
        _OWNERS[_owner_key(folder)] = manager
    return manager


async def _let_go(store: Store, lock: OwnerLock | None) -> None:
    """Close the store (and its thread) and release the lock of a library whose open failed."""
    try:
        await store.close()
    except Exception:  # noqa: BLE001 - the open's own error is the one to report
        pass
    finally:
        if lock is not None:
            lock.release()
