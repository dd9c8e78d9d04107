"""The only code that runs SQL: opening jobs.db, staging writes, reading records.

Writes are named operations (`insert_job`, `mark_running`, `mark_paused`, `finish`,
`save_checkpoint`, ...). Each stages its statements for the next group commit (batch.py): all
that is staged while a commit is in flight goes to the database thread (dbthread.py) in one
hop and is written in one transaction. `commit()` / `after_commit()` wait for that.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .._errors import InvalidTransition, JobNotFound, LibraryError, ReadOnlyLibrary, SchemaTooNew
from .._progress import Progress
from .._query import DB_NAME  # one name for the file, shared with the CLI
from .._records import FinishedJob, JobRecord
from .._status import TERMINAL, JobStatus, check_transition
from . import retention
from .backup import backup_library
from .batch import Op, WriteBatcher, apply_ops
from .dbthread import DbThread
from .reader import BulkReader
from .rows import (
    RECORD_COLUMNS, check_storable_int, check_storable_key, history_row, metrics_json, pack_progress,
    record_from_row, storable_job, storable_text, unpack_progress,
)
from .schema import CREATE, HISTORY_COLUMNS, OBSOLETE, SCHEMA_VERSION

__all__ = (
    "DB_NAME", "Store", "metrics_json", "pack_progress", "prepare_folder", "read_only_uri", "record_from_row",
    "unpack_progress",
)


Token = tuple[int, int]  # a staged statement, for `Store.withdraw`

# --- statements -----------------------------------------------------------------------------
# The write statements, staged only by `Store`'s named operations (the store's own tests
# stage them through `Store.stage` to prove the named operations write the same rows; bench W4's
# fixture bulk-writes history rows with `stage_history`).

INSERT_NEW_JOB = (
    "INSERT INTO jobs (id, name, version, status, data, metrics, priority, seq, parent_id, spawn_key, "
    "initiated_by, context, dedup_key, created_at, updated_at) "
    "VALUES (?, ?, ?, 'queued', ?, '{}', ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_HISTORY = (
    f"INSERT OR REPLACE INTO job_history ({', '.join(HISTORY_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(HISTORY_COLUMNS))})"
)
SET_RUNNING = "UPDATE jobs SET status='running', started_at=coalesce(started_at, ?), pause_reason=NULL, updated_at=? WHERE id=?"
SET_QUEUED = "UPDATE jobs SET status='queued', pause_reason=NULL, paused_at=NULL, updated_at=? WHERE id=?"
SET_PAUSED = "UPDATE jobs SET status='paused', pause_reason=?, paused_at=?, progress=?, metrics=?, updated_at=? WHERE id=?"
SET_PAUSED_WITH_DATA = (
    "UPDATE jobs SET status='paused', pause_reason=?, paused_at=?, progress=?, metrics=?, data=?, updated_at=? WHERE id=?"
)
# a finished job never resumes: its saved state goes in the same transaction (`data` is NOT NULL
# in the schema, so it becomes an empty blob), and so does its checkpoint row (DROP_CHECKPOINT)
SET_FINISHED = (
    "UPDATE jobs SET status=?, error=?, traceback=?, result=?, progress=?, metrics=?, finished_at=?, "
    "started_at=coalesce(started_at, ?), pause_reason=NULL, data=X'', updated_at=? WHERE id=?"
)
DROP_CHECKPOINT = "DELETE FROM job_checkpoints WHERE job_id=?"
SET_PROGRESS = "UPDATE jobs SET progress=?, metrics=?, updated_at=? WHERE id=?"
SET_DATA = "UPDATE jobs SET data=?, progress=?, updated_at=? WHERE id=?"
SET_DATA_METRICS = "UPDATE jobs SET data=?, progress=?, metrics=?, updated_at=? WHERE id=?"
UPSERT_CHECKPOINT = (
    "INSERT INTO job_checkpoints (job_id, version, data, count, created_at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT(job_id) DO UPDATE SET version=excluded.version, data=excluded.data, "
    "count=excluded.count, created_at=excluded.created_at"
)
INSERT_ERROR = "INSERT INTO job_errors (job_id, at, message) VALUES (?, ?, ?)"
MAX_STORED_ERRORS = 1000  # non-critical error messages kept per job; later ones are only counted
ERRORS_NOT_STORED = (f"(later non-critical errors of this job are counted in its metrics but not stored: "
                     f"the first {MAX_STORED_ERRORS} are kept)")

SELECT_RECORD = f"SELECT {', '.join(RECORD_COLUMNS)} FROM jobs"
SELECT_JOB = f"{SELECT_RECORD} WHERE id=?"
SELECT_ACTIVE = f"{SELECT_RECORD} WHERE finished_at IS NULL AND status IN ('queued', 'running', 'paused') ORDER BY seq"
SELECT_DATA = "SELECT name, version, data, status FROM jobs WHERE id=?"
SELECT_QUEUED_DATA = "SELECT id, name, version, data FROM jobs WHERE finished_at IS NULL AND status='queued' ORDER BY seq"
SELECT_RESULT = "SELECT result FROM jobs WHERE id=?"
SELECT_ERRORS = "SELECT at, message FROM job_errors WHERE job_id=? ORDER BY at LIMIT ?"
SELECT_ERROR_COUNT = "SELECT count(*) FROM job_errors WHERE job_id=?"
SELECT_MAX_SEQ = "SELECT coalesce(max(seq), 0) FROM jobs WHERE typeof(seq) = 'integer'"  # not a damaged row's text


def read_only_uri(db_path: Path, *, immutable: bool = False) -> str:
    """A `file:` URI that opens jobs.db read-only; escapes '?', '#' and '%' in folder names."""
    return db_path.resolve().as_uri() + ("?mode=ro&immutable=1" if immutable else "?mode=ro")


def prepare_folder(folder: Path, read_only: bool) -> Path:
    if folder.exists() and not folder.is_dir():
        raise LibraryError(f"library path {str(folder)!r} is a file; a library is a folder (give a folder path)")
    db = folder / DB_NAME
    if read_only:
        if not db.exists():
            raise LibraryError(f"no library at {str(folder)!r}: {DB_NAME} does not exist")
        return db
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LibraryError(f"cannot create library folder {str(folder)!r}: {e.strerror or e}") from e
    if not os.access(folder, os.W_OK):
        raise LibraryError(f"library folder {str(folder)!r} is not writable; fix its permissions or open read_only=True")
    return db


class Store:
    """One library's jobs.db: named, group-committed writes and record reads, on the store's thread."""

    def __init__(self, db: DbThread, path: Path, read_only: bool, durable: bool = False) -> None:
        self._db = db
        self.path = path
        self.read_only = read_only
        self.durable = durable
        self._writer = WriteBatcher(self._submit)
        self._sync_reader: sqlite3.Connection | None = None
        # owners read big results on a second connection so commits never queue behind them
        self._bulk_reader = None if read_only else BulkReader(read_only_uri(path))
        self._errors_stored: dict[str, int] = {}  # job id -> its job_errors rows, for the cap
        self.closed = False

    @classmethod
    async def open(cls, folder: Path, *, read_only: bool = False, durable: bool = False, check: bool = False) -> Store:
        """Open (and for writers create or check) the library's jobs.db.

        `check=True` (writers) first runs SQLite's `quick_check`, for a jobs.db of unknown history
        (a copy, maybe torn); a damaged file raises `LibraryError` and is not written to.
        """
        db_path = prepare_folder(folder, read_only)
        if not read_only:
            db = await _connect(db_path, str(db_path), read_only=False, durable=durable, check=check)
            return cls(db, db_path, False, durable)
        try:
            db = await _connect(db_path, read_only_uri(db_path), read_only=True, durable=False)
        except LibraryError:
            # a folder we cannot write: SQLite cannot make the WAL index there, so read the file as is
            db = await _connect(db_path, read_only_uri(db_path, immutable=True), read_only=True, durable=False)
        return cls(db, db_path, True)

    async def set_durable(self, durable: bool) -> None:
        """Make commits from now on survive a power cut (`synchronous=FULL`), or not (`NORMAL`)."""
        await self.commit()  # what was staged keeps the setting it was staged under
        await self._db.submit(_execute, f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
        self.durable = durable

    def abandon(self) -> None:
        """Let go of jobs.db without the event loop this store ran on (it is closed).

        Nothing staged can be committed any more; the store's thread closes the connection
        and ends, and the next owner finds the library as a crash would have left it.
        """
        if self.closed:
            return
        self.closed = True
        self._db.stop()
        if self._sync_reader is not None:
            self._sync_reader.close()

    async def close(self) -> None:
        """Commit what is staged and close the connection; safe to call twice."""
        if self.closed:
            return
        self.closed = True
        try:
            await self._writer.drain()
            if not self.read_only:
                await self._db.submit(_execute, "PRAGMA optimize")
        finally:
            if self._sync_reader is not None:
                self._sync_reader.close()
            if self._bulk_reader is not None:
                await self._bulk_reader.close()
            await self._db.close()

    # --- group commit -------------------------------------------------------------------------

    def _submit(self, ops: list[Op]) -> asyncio.Future[None]:
        """Hand a batch to the store's thread as one call; return a future for its end."""
        return self._db.submit(apply_ops, ops)

    def _writable(self) -> WriteBatcher:
        if self.read_only:
            raise ReadOnlyLibrary(f"library {str(self.path.parent)!r} is open read-only; open it without read_only to change jobs")
        return self._writer

    def withdraw(self, token: Token | None) -> bool:
        """Drop a staged statement (`mark_running`'s token) if it has not been sent yet."""
        return token is not None and self._writer.withdraw(token)

    def commit(self, key: str | None = None) -> asyncio.Future[None]:
        """Return a future that is done when everything staged so far is on disk (await it).

        With `key` (a job id) it fails only if the transaction failed as a whole or jobs.db
        refused that job's writes; without, only if the transaction failed as a whole.
        """
        return self._writer.commit(key)

    def after_commit(self, callback: Any, key: str | None = None) -> None:
        """Call `callback(None)` once everything staged so far is on disk, or `callback(error)`.

        `key` as for `commit`: pass the job id whenever the callback is about one job.
        """
        self._writer.after_commit(callback, key)

    # --- writes: named operations, each staged for the next group commit ----------------------

    def insert_job(self, job_id: str, name: str, version: int, data: bytes, priority: int, seq: int,
                   parent_id: str | None, spawn_key: str | None, initiated_by: str | None,
                   context: str | None, dedup_key: str | None, now: float) -> None:
        """Stage the row of a newly dispatched (queued) job; `context` is its JSON text.

        Raises ValueError, staging nothing, if `name` or `dedup_key` is not storable text or
        `priority` not a storable integer: a dispatch is refused rather than its row dropped.
        """
        writer = self._writable()
        check_storable_key(name, "job name")
        check_storable_key(dedup_key, "dedup_key")
        check_storable_int(priority, "priority")
        writer.stage(INSERT_NEW_JOB, (job_id, name, version, data, priority, seq, parent_id, spawn_key,
                                      storable_text(initiated_by), context, dedup_key, now, now), job_id)

    def mark_running(self, job_id: str, now: float) -> Token:
        """Stage RUNNING (`started_at` is kept from an earlier run); return a token for `withdraw`."""
        return self._writable().stage(SET_RUNNING, (now, now, job_id), job_id)

    def mark_queued(self, job_id: str, now: float) -> None:
        """Stage QUEUED (a resumed job), clearing its pause; no transition check (see `requeue`)."""
        self._writable().stage(SET_QUEUED, (now, job_id), job_id)

    def mark_paused(self, job_id: str, reason: str, now: float, progress: Progress | None,
                    metrics: dict[str, Any], data: bytes | None = None) -> None:
        """Stage PAUSED with its reason, last progress and metrics, and the saved state `data` if given."""
        writer = self._writable()
        reason = storable_text(reason)
        if data is None:
            writer.stage(SET_PAUSED, (reason, now, pack_progress(progress), metrics_json(metrics), now, job_id), job_id)
        else:
            writer.stage(SET_PAUSED_WITH_DATA,
                         (reason, now, pack_progress(progress), metrics_json(metrics), data, now, job_id), job_id)

    def finish(self, job: FinishedJob) -> None:
        """Stage a finished job's jobs row update and its job_history row (they commit together).

        Its saved state and checkpoint are dropped in the same transaction: it never resumes.
        """
        writer = self._writable()
        if job.status not in TERMINAL:
            raise ValueError(f"finish() takes a finished job; job {job.id} is {job.status.value}")
        job = storable_job(job)
        metrics_text = metrics_json(job.metrics)
        now = job.finished_at
        writer.stage(SET_FINISHED, (job.status.value, job.error, job.traceback, job.result, pack_progress(job.progress),
                                    metrics_text, now, job.started_at, now, job.id), job.id)
        writer.stage(INSERT_HISTORY, history_row(job, metrics_text), job.id)
        writer.stage(DROP_CHECKPOINT, (job.id,), job.id)
        self._errors_stored.pop(job.id, None)

    def save_checkpoint(self, job_id: str, version: int, data: bytes, progress: Progress | None, count: int,
                        now: float, metrics: dict[str, Any] | None = None) -> None:
        """Stage a checkpoint: the job's state and progress (and metrics if given), and its checkpoint row."""
        writer = self._writable()
        if metrics is None:
            writer.stage(SET_DATA, (data, pack_progress(progress), now, job_id), job_id)
        else:
            writer.stage(SET_DATA_METRICS, (data, pack_progress(progress), metrics_json(metrics), now, job_id), job_id)
        writer.stage(UPSERT_CHECKPOINT, (job_id, version, data, count, now), job_id)

    def save_progress(self, job_id: str, progress: Progress | None, metrics: dict[str, Any], now: float) -> None:
        """Stage a running job's progress and metrics."""
        self._writable().stage(SET_PROGRESS, (pack_progress(progress), metrics_json(metrics), now, job_id), job_id)

    def record_error(self, job_id: str, at: float, message: str) -> None:
        """Stage one non-critical error of a job; past `MAX_STORED_ERRORS` of a job, stage nothing."""
        writer = self._writable()
        stored = self._errors_stored.get(job_id)
        if stored is None:
            stored = self._stored_errors(job_id)
        if stored > MAX_STORED_ERRORS:
            return
        self._errors_stored[job_id] = stored + 1
        text = ERRORS_NOT_STORED if stored == MAX_STORED_ERRORS else storable_text(message)
        writer.stage(INSERT_ERROR, (job_id, at, text), job_id)

    def _stored_errors(self, job_id: str) -> int:
        """How many errors earlier runs of the job stored (read once per job and store)."""
        try:
            return self._read_now(SELECT_ERROR_COUNT, (job_id,))[0]
        except sqlite3.Error:  # the cap is a guard against growth; never fail a job's report for it
            return 0

    async def requeue(self, job_ids: str | Iterable[str], now: float) -> None:
        """Queue paused jobs again and commit (what `sdjobs resume` does without running them).

        Every job must be paused (`InvalidTransition` otherwise) and exist (`JobNotFound`); all
        are checked before anything is staged, so a refused requeue writes nothing.
        """
        self._writable()
        ids = [job_ids] if isinstance(job_ids, str) else list(job_ids)
        await self.commit()  # the statuses read below include what this store staged
        statuses = await self._db.submit(_statuses, ids)
        for job_id in ids:
            status = statuses.get(job_id)
            if status is None:
                raise JobNotFound(f"no job with id {job_id!r} in library {str(self.path.parent)!r}")
            try:
                check_transition(job_id, JobStatus(status), JobStatus.QUEUED)
            except InvalidTransition as e:
                raise InvalidTransition(f"{e}; only a paused job can be queued again") from None
        for job_id in ids:
            self.mark_queued(job_id, now)
        await self.commit()

    async def prune(self, older_than: Any = None, keep: Any = None, *, vacuum: bool = False) -> int:
        """Delete the finished jobs older than `older_than` and not among the `keep` newest; return how many.

        `older_than` is a `datetime.timedelta` or seconds since the job finished; both are
        checked before anything is written. A job's rows go from every table in one
        transaction; `retention` says which finished jobs are never removed. Deleting rows
        leaves free pages that new jobs reuse; `vacuum=True` also shrinks jobs.db (a full
        rewrite: other writes wait for it).
        """
        self._writable()
        older_than_s, keep = retention.check_retention(older_than, keep, vacuum)
        await self.commit()  # jobs that finished a moment ago are in job_history when it is read
        before = math.inf if older_than_s is None else time.time() - older_than_s
        removed = await retention.prune_finished(self._db.submit, before, keep)
        if vacuum:
            await self._db.submit(retention.vacuum)
        return removed

    # --- old interface, removed once callers use the named operations -------------------------

    def stage(self, sql: str, params: Iterable[Any], job_id: str) -> Token:
        """Stage one statement writing job `job_id` for the next group commit; return a token for `withdraw`."""
        return self._writable().stage(sql, tuple(params), job_id)

    stage_new_job = insert_job

    def stage_history(self, row: tuple | dict[str, Any]) -> None:
        """Stage a finished job's job_history row: values in `HISTORY_COLUMNS` order, or a dict of them."""
        if isinstance(row, dict):
            row = tuple(row.get(c) for c in HISTORY_COLUMNS)
        if len(row) != len(HISTORY_COLUMNS):
            raise ValueError(f"a job_history row has {len(HISTORY_COLUMNS)} values, got {len(row)}")
        self.stage(INSERT_HISTORY, row, row[0])

    # --- reads --------------------------------------------------------------------------------

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        return await self._db.submit(_fetchall, sql, tuple(params))

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> tuple | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def job(self, job_id: str) -> JobRecord | None:
        row = await self.fetchone(SELECT_JOB, (job_id,))
        return None if row is None else record_from_row(row)

    async def active_jobs(self) -> list[JobRecord]:
        return [record_from_row(r) for r in await self.fetchall(SELECT_ACTIVE)]

    async def spawn_keys(self, parent_id: str) -> dict[str, str]:
        rows = await self.fetchall("SELECT spawn_key, id FROM jobs WHERE parent_id=? AND spawn_key IS NOT NULL", (parent_id,))
        return dict(rows)

    async def job_data(self, job_id: str) -> tuple[str, int, bytes] | None:
        """(name, version, saved state) of a job; raises JobNotFound for a finished job's dropped state."""
        row = await self.fetchone(SELECT_DATA, (job_id,))
        if row is None:
            return None
        name, version, data, status = row
        if not data and status in TERMINAL:
            raise JobNotFound(
                f"job {name} ({job_id}) is {status}: its saved state was dropped when it finished (a finished "
                f"job never resumes). Its result: `await manager.result(id)`; its record: `manager.record(id)`"
            )
        return name, version, data

    async def queued_data(self) -> list[tuple[str, str, int, bytes]]:
        return [tuple(r) for r in await self.fetchall(SELECT_QUEUED_DATA)]

    async def checkpoint_count(self, job_id: str) -> int:
        """How many checkpoints of the job reached jobs.db (0 if none)."""
        row = await self.fetchone("SELECT count FROM job_checkpoints WHERE job_id=?", (job_id,))
        return 0 if row is None else int(row[0])

    async def result_blob(self, job_id: str) -> bytes | None:
        row = await self.fetchone(SELECT_RESULT, (job_id,))
        return None if row is None else row[0]

    async def errors(self, job_id: str, limit: int = 1000) -> list[tuple[float, str]]:
        return [tuple(r) for r in await self.fetchall(SELECT_ERRORS, (job_id, limit))]

    async def max_seq(self) -> int:
        row = await self.fetchone(SELECT_MAX_SEQ)
        return int(row[0]) if row else 0

    def job_sync(self, job_id: str) -> JobRecord | None:
        """Read one record by primary key without awaiting (a sub-millisecond WAL read)."""
        row = self._read_now(SELECT_JOB, (job_id,))
        return None if row is None else record_from_row(row)

    def _read_now(self, sql: str, params: tuple) -> tuple | None:
        """One row of an indexed read of committed data, without awaiting (a sub-millisecond WAL read)."""
        if self._sync_reader is None:
            self._sync_reader = sqlite3.connect(read_only_uri(self.path), uri=True, check_same_thread=False)
        return self._sync_reader.execute(sql, params).fetchone()

    async def run_read(self, fn: Any, *args: Any) -> Any:
        """Run `fn(conn, *args)` off the loop on a connection that sees the committed state.

        An owner's big reads (history, metrics, plots) use their own connection and thread,
        so jobs' commits never wait for them; a read-only view reads on its only connection.
        """
        if self._bulk_reader is not None:
            return await self._bulk_reader.run(fn, *args)
        return await self._db.submit(fn, *args)

    async def backup(self, folder: Path, *, overwrite: bool = False) -> Path:
        """Write a consistent, checked copy of jobs.db to `folder/jobs.db` and return its path (see backup.py).

        An owner's writes staged before the call are in the copy; jobs go on while it is made.
        """
        if not self.read_only:
            await self.commit()
        return await backup_library(read_only_uri(self.path), self.path, folder, overwrite)


# --- on the store's thread ------------------------------------------------------------------


def _execute(conn: sqlite3.Connection, sql: str) -> None:
    conn.execute(sql)


def _fetchall(conn: sqlite3.Connection, sql: str, params: tuple) -> list[tuple]:
    return conn.execute(sql, params).fetchall()


def _statuses(conn: sqlite3.Connection, ids: list[str]) -> dict[str, str]:
    return {job_id: row[0] for job_id in ids
            for row in conn.execute("SELECT status FROM jobs WHERE id=?", (job_id,)).fetchall()}


async def _connect(db_path: Path, target: str, *, read_only: bool, durable: bool, check: bool = False) -> DbThread:
    # room for the multi-row statements of every write shape (multirow.py) in the statement cache
    connect = functools.partial(sqlite3.connect, target, isolation_level=None, check_same_thread=False,
                                uri=read_only, cached_statements=512)
    db = DbThread()
    try:
        try:
            await db.open(connect)
        except sqlite3.Error as e:
            raise LibraryError(f"cannot open {db_path}: {e}") from e
        await db.submit(_configure, read_only, durable, str(db_path), check)
    except BaseException:
        await db.close()
        raise
    return db


def _configure(conn: sqlite3.Connection, read_only: bool, durable: bool, where: str, check: bool = False) -> None:
    """Check and set up a fresh connection (on the store's thread: one hop for all of it)."""
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {t[0] for t in conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()}
    except sqlite3.DatabaseError as e:
        raise unreadable(e, where) from e
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"{where} has schema version {version}, newer than this sdjobs_nb understands ({SCHEMA_VERSION}); "
            f"upgrade sdjobs_nb. The file was not modified."
        )
    if read_only:
        conn.execute("PRAGMA query_only = ON")
        return
    _refuse_foreign(version, tables, where)
    if check and tables:
        _quick_check(conn, where)
    _set_up(conn, durable, where, version)


def _set_up(conn: sqlite3.Connection, durable: bool, where: str, version: int) -> None:
    """The owner's settings, and the schema (created, or brought up to date)."""
    try:
        # WAL before the first write: a process killed while creating the schema then leaves a
        # WAL that any reader can use, never a hot rollback journal only a writer may undo
        conn.execute("PRAGMA journal_mode = WAL")
        # random UUID keys touch pages all over the indexes; a bigger cache keeps a deep queue fast
        conn.execute("PRAGMA cache_size = -32768")
        conn.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
    except sqlite3.Error as e:
        raise _refused(e, f"cannot set up {where}: {e}", where) from e
    try:
        # an up-to-date file gets no write at all (its version is not written again)
        stamp = "" if version == SCHEMA_VERSION else f"PRAGMA user_version = {SCHEMA_VERSION};"
        conn.executescript(f"BEGIN IMMEDIATE; {CREATE} {OBSOLETE} {stamp} COMMIT;")
    except sqlite3.Error as e:
        raise _refused(e, f"cannot write {where}: {e}", where) from e


def _quick_check(conn: sqlite3.Connection, where: str) -> None:
    """Refuse a jobs.db that SQLite's `quick_check` finds damaged (a torn copy), before writing to it.

    It reads every page: about 0.15 s per 100,000 finished jobs, paid only when the file's
    history is unknown (`OwnerLock.history_unknown`: copied, or not closed by a manager).
    """
    try:
        problems = [row[0] for row in conn.execute("PRAGMA quick_check(3)").fetchall()]
    except sqlite3.DatabaseError as e:
        raise unreadable(e, where) from e
    if problems != ["ok"]:
        raise damaged(where, f"SQLite's quick_check: {'; '.join(problems)}")


def _refused(error: sqlite3.Error, message: str, where: str) -> LibraryError:
    """A write refused while opening: a damaged file says so, anything else keeps `message`."""
    return damaged(where, str(error)) if _is_corrupt(error) else LibraryError(message)


# --- a jobs.db SQLite cannot read ----------------------------------------------------------------

_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


def _is_corrupt(error: BaseException) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return (code is not None and code & 0xFF == _SQLITE_CORRUPT) or "malformed" in str(error)


def unreadable(error: sqlite3.DatabaseError, where: str) -> LibraryError:
    """The `LibraryError` for a jobs.db that SQLite refused to read: damaged, not SQLite, or busy."""
    code = getattr(error, "sqlite_errorcode", None)
    if _is_corrupt(error):
        return damaged(where, str(error))
    if code is not None and code & 0xFF == _SQLITE_NOTADB:
        return LibraryError(
            f"{where} is not a usable SQLite database ({error}): another program's file, or a jobs.db whose first "
            f"page is damaged. Nothing was written to it. If it is your library's, restore it from a backup "
            f"(`sdjobs backup`); otherwise move it aside or pick another library folder"
        )
    return LibraryError(f"cannot read {where}: {error}")


def damaged(where: str, what: str) -> LibraryError:
    """The `LibraryError` for a jobs.db whose pages are inconsistent (e.g. a file copied while written)."""
    return LibraryError(
        f"{where} is damaged ({what}); nothing was written to it. A plain file "
        f"copy of a library in use can be torn like this: restore the library from a backup made with "
        f"`await manager.backup(folder)` or `sdjobs backup LIBRARY FOLDER`, or salvage its rows with "
        f"`sqlite3 {where} .recover | sqlite3 recovered.db` and use recovered.db as the jobs.db of a new library folder"
    )


def library_error(error: BaseException, where: Path) -> BaseException:
    """`error` as the `LibraryError` to show, if it is SQLite refusing to read jobs.db; else `error`."""
    if isinstance(error, sqlite3.DatabaseError):
        return unreadable(error, str(where))
    return error


def _refuse_foreign(version: int, tables: set[str], where: str) -> None:
    """Leave a SQLite file of some other program untouched."""
    if version == 0 and tables - {"jobs", "job_history", "job_checkpoints", "job_errors"}:
        raise LibraryError(f"{where} is a SQLite database of something else (tables: {', '.join(sorted(tables))}); pick another folder")
