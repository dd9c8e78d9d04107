"""The only code that talks to SQLite: opening jobs.db, staging writes, reading records."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import operator
import os
import sqlite3
from collections.abc import Iterable
from math import isfinite
from pathlib import Path
from typing import Any

import aiosqlite

from .._codec import pack, unpack
from .._errors import LibraryError, ReadOnlyLibrary, SchemaTooNew
from .._progress import Progress
from .._records import JobRecord
from .._status import JobStatus
from .batch import Op, WriteBatcher, apply_ops
from .reader import BulkReader
from .schema import CREATE, HISTORY_COLUMNS, JOB_COLUMNS, OBSOLETE, SCHEMA_VERSION

DB_NAME = "jobs.db"

log = logging.getLogger("sdjobs_nb.store")

# --- statements -----------------------------------------------------------------------------

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
SET_FINISHED = (
    "UPDATE jobs SET status=?, error=?, traceback=?, result=?, progress=?, metrics=?, finished_at=?, "
    "started_at=coalesce(started_at, ?), pause_reason=NULL, updated_at=? WHERE id=?"
)
SET_PROGRESS = "UPDATE jobs SET progress=?, metrics=?, updated_at=? WHERE id=?"
SET_DATA = "UPDATE jobs SET data=?, progress=?, updated_at=? WHERE id=?"
SET_DATA_METRICS = "UPDATE jobs SET data=?, progress=?, metrics=?, updated_at=? WHERE id=?"
UPSERT_CHECKPOINT = (
    "INSERT INTO job_checkpoints (job_id, version, data, count, created_at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT(job_id) DO UPDATE SET version=excluded.version, data=excluded.data, "
    "count=excluded.count, created_at=excluded.created_at"
)
INSERT_ERROR = "INSERT INTO job_errors (job_id, at, message) VALUES (?, ?, ?)"

_RECORD_COLUMNS = tuple(c for c in JOB_COLUMNS if c not in ("data", "result"))
SELECT_RECORD = f"SELECT {', '.join(_RECORD_COLUMNS)} FROM jobs"
SELECT_JOB = f"{SELECT_RECORD} WHERE id=?"
SELECT_ACTIVE = f"{SELECT_RECORD} WHERE finished_at IS NULL AND status IN ('queued', 'running', 'paused') ORDER BY seq"
SELECT_DATA = "SELECT name, version, data FROM jobs WHERE id=?"
SELECT_QUEUED_DATA = "SELECT id, name, version, data FROM jobs WHERE finished_at IS NULL AND status='queued' ORDER BY seq"
SELECT_RESULT = "SELECT result FROM jobs WHERE id=?"
SELECT_DEDUP = "SELECT id FROM jobs WHERE dedup_key=? AND status IN ('queued', 'running', 'paused') LIMIT 1"
SELECT_CHILDREN = f"{SELECT_RECORD} WHERE parent_id=? ORDER BY seq"
SELECT_ERRORS = "SELECT at, message FROM job_errors WHERE job_id=? ORDER BY at LIMIT ?"
SELECT_MAX_SEQ = "SELECT coalesce(max(seq), 0) FROM jobs"
SELECT_RUNNING = f"{SELECT_RECORD} WHERE finished_at IS NULL AND status='running'"


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str)


def _unjson(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except (TypeError, ValueError):  # a damaged column must not make the job unreadable
        log.warning("ignoring a jobs.db column that is not JSON: %.80r", text)
        return None


def pack_progress(progress: Progress | None) -> bytes | None:
    return None if progress is None else pack(progress.to_plain())


_METRIC_KEYS = ("elapsed_seconds", "memory_mb", "items", "bytes", "checkpoints", "non_critical_errors")
_metric_values = operator.itemgetter(*_METRIC_KEYS)


def metrics_json(metrics: dict[str, Any]) -> str:
    """The JSON text of a job's metrics column (the same text `json.dumps` gives).

    A finishing job writes its metrics twice (jobs and job_history): the usual six numbers are
    formatted directly, about 4x cheaper than `json.dumps`; anything else goes to `json.dumps`.
    """
    if len(metrics) == 6:
        try:
            elapsed, memory, items, nbytes, checkpoints, errors = _metric_values(metrics)
        except KeyError:
            return json.dumps(metrics)
        if (type(elapsed) is float and isfinite(elapsed)
                and (memory is None or (type(memory) is float and isfinite(memory)))
                and type(items) is int and type(nbytes) is int and type(checkpoints) is int and type(errors) is int):
            return (f'{{"elapsed_seconds": {elapsed!r}, "memory_mb": {"null" if memory is None else repr(memory)}, '
                    f'"items": {items}, "bytes": {nbytes}, "checkpoints": {checkpoints}, '
                    f'"non_critical_errors": {errors}}}')
    return json.dumps(metrics)


def unpack_progress(blob: bytes | None) -> Progress | None:
    if blob is None:
        return None
    try:
        return Progress.from_plain(unpack(blob))
    except Exception:  # a corrupt progress blob must not make the job unreadable
        return None


def record_from_row(row: Iterable[Any]) -> JobRecord:
    r = dict(zip(_RECORD_COLUMNS, row))
    return JobRecord(
        id=r["id"], name=r["name"], version=r["version"], status=JobStatus(r["status"]),
        priority=r["priority"], parent_id=r["parent_id"], initiated_by=r["initiated_by"],
        context=_unjson(r["context"]), dedup_key=r["dedup_key"], pause_reason=r["pause_reason"],
        error=r["error"], traceback=r["traceback"], progress=unpack_progress(r["progress"]),
        metrics=_unjson(r["metrics"]) or {}, created_at=r["created_at"], started_at=r["started_at"],
        paused_at=r["paused_at"], finished_at=r["finished_at"], seq=r["seq"], spawn_key=r["spawn_key"],
    )


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
    """One library's jobs.db: group-committed writes and record reads, via aiosqlite."""

    def __init__(self, db: aiosqlite.Connection, path: Path, read_only: bool, durable: bool = False) -> None:
        self._db = db
        self.path = path
        self.read_only = read_only
        self.durable = durable
        self._writer = WriteBatcher(self._submit)
        self._sync_reader: sqlite3.Connection | None = None
        # owners read big results on a second connection so commits never queue behind them
        self._bulk_reader = None if read_only else BulkReader(read_only_uri(path))
        self.closed = False

    @classmethod
    async def open(cls, folder: Path, *, read_only: bool = False, durable: bool = False) -> Store:
        """Open (and for writers create or check) the library's jobs.db."""
        db_path = prepare_folder(folder, read_only)
        if not read_only:
            return cls(await _connect(db_path, str(db_path), read_only=False, durable=durable), db_path, False, durable)
        try:
            db = await _connect(db_path, read_only_uri(db_path), read_only=True, durable=False)
        except LibraryError:
            # a folder we cannot write: SQLite cannot make the WAL index there, so read the file as is
            db = await _connect(db_path, read_only_uri(db_path, immutable=True), read_only=True, durable=False)
        return cls(db, db_path, True)

    async def set_durable(self, durable: bool) -> None:
        """Make commits from now on survive a power cut (`synchronous=FULL`), or not (`NORMAL`)."""
        await self.commit()  # what was staged keeps the setting it was staged under
        await self._db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
        self.durable = durable

    def abandon(self) -> None:
        """Let go of jobs.db without the event loop this store ran on (it is closed).

        Nothing staged can be committed any more; the connection's thread closes the connection
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
                await self._db.execute("PRAGMA optimize")
        finally:
            if self._sync_reader is not None:
                self._sync_reader.close()
            if self._bulk_reader is not None:
                await self._bulk_reader.close()
            await self._db.close()

    # --- writes -------------------------------------------------------------------------------

    def _submit(self, ops: list[Op]) -> asyncio.Future[None]:
        """Hand a batch to aiosqlite's thread as one call; return a future for its end."""
        return self._in_db_thread(functools.partial(apply_ops, self._db._conn, ops))

    def _in_db_thread(self, call: Any) -> asyncio.Future[Any]:
        # aiosqlite's own queue takes (future, callable) pairs; using it directly avoids a
        # task per call (aiosqlite is pinned below 0.23; the fallback keeps newer ones working)
        queue = getattr(self._db, "_tx", None)
        if queue is None or not self._db._running:
            return asyncio.ensure_future(self._db._execute(call))
        future = asyncio.get_running_loop().create_future()
        queue.put_nowait((future, call))
        return future

    def stage(self, sql: str, params: Iterable[Any], job_id: str) -> tuple[int, int]:
        """Stage one statement writing job `job_id` for the next group commit; return a token for `withdraw`."""
        if self.read_only:
            raise ReadOnlyLibrary(f"library {str(self.path.parent)!r} is open read-only; open it without read_only to change jobs")
        return self._writer.stage(sql, tuple(params), job_id)

    def withdraw(self, token: tuple[int, int] | None) -> bool:
        """Drop a staged statement if it has not been sent yet."""
        return token is not None and self._writer.withdraw(token)

    def commit(self) -> asyncio.Future[None]:
        """Return a future that is done when everything staged so far is on disk (await it)."""
        return self._writer.commit()

    def after_commit(self, callback: Any) -> None:
        """Call `callback(None)` once everything staged so far is on disk, or `callback(error)`."""
        self._writer.after_commit(callback)

    def stage_new_job(self, job_id: str, name: str, version: int, data: bytes, priority: int, seq: int,
                      parent_id: str | None, spawn_key: str | None, initiated_by: str | None,
                      context: str | None, dedup_key: str | None, now: float) -> None:
        """Stage the row of a newly dispatched (queued) job."""
        self.stage(INSERT_NEW_JOB, (job_id, name, version, data, priority, seq, parent_id, spawn_key,
                                    initiated_by, context, dedup_key, now, now), job_id)

    def stage_history(self, row: tuple | dict[str, Any]) -> None:
        """Stage a finished job's job_history row: values in `HISTORY_COLUMNS` order, or a dict of them."""
        if isinstance(row, dict):
            row = tuple(row.get(c) for c in HISTORY_COLUMNS)
        if len(row) != len(HISTORY_COLUMNS):
            raise ValueError(f"a job_history row has {len(HISTORY_COLUMNS)} values, got {len(row)}")
        self.stage(INSERT_HISTORY, row, row[0])

    # --- reads --------------------------------------------------------------------------------

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[tuple]:
        return list(await self._db.execute_fetchall(sql, tuple(params)))

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> tuple | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def job(self, job_id: str) -> JobRecord | None:
        row = await self.fetchone(SELECT_JOB, (job_id,))
        return None if row is None else record_from_row(row)

    async def active_jobs(self) -> list[JobRecord]:
        return [record_from_row(r) for r in await self.fetchall(SELECT_ACTIVE)]

    async def running_jobs(self) -> list[JobRecord]:
        return [record_from_row(r) for r in await self.fetchall(SELECT_RUNNING)]

    async def children(self, parent_id: str) -> list[JobRecord]:
        return [record_from_row(r) for r in await self.fetchall(SELECT_CHILDREN, (parent_id,))]

    async def spawn_keys(self, parent_id: str) -> dict[str, str]:
        rows = await self.fetchall("SELECT spawn_key, id FROM jobs WHERE parent_id=? AND spawn_key IS NOT NULL", (parent_id,))
        return dict(rows)

    async def job_data(self, job_id: str) -> tuple[str, int, bytes] | None:
        return await self.fetchone(SELECT_DATA, (job_id,))

    async def queued_data(self) -> list[tuple[str, str, int, bytes]]:
        return [tuple(r) for r in await self.fetchall(SELECT_QUEUED_DATA)]

    async def checkpoint_count(self, job_id: str) -> int:
        """How many checkpoints of the job reached jobs.db (0 if none)."""
        row = await self.fetchone("SELECT count FROM job_checkpoints WHERE job_id=?", (job_id,))
        return 0 if row is None else int(row[0])

    async def result_blob(self, job_id: str) -> bytes | None:
        row = await self.fetchone(SELECT_RESULT, (job_id,))
        return None if row is None else row[0]

    async def dedup_owner(self, key: str) -> str | None:
        row = await self.fetchone(SELECT_DEDUP, (key,))
        return None if row is None else row[0]

    async def errors(self, job_id: str, limit: int = 1000) -> list[tuple[float, str]]:
        return [tuple(r) for r in await self.fetchall(SELECT_ERRORS, (job_id, limit))]

    async def max_seq(self) -> int:
        row = await self.fetchone(SELECT_MAX_SEQ)
        return int(row[0]) if row else 0

    def job_sync(self, job_id: str) -> JobRecord | None:
        """Read one record by primary key without awaiting (a sub-millisecond WAL read)."""
        if self._sync_reader is None:
            self._sync_reader = sqlite3.connect(read_only_uri(self.path), uri=True, check_same_thread=False)
        row = self._sync_reader.execute(SELECT_JOB, (job_id,)).fetchone()
        return None if row is None else record_from_row(row)

    async def run_read(self, fn: Any, *args: Any) -> Any:
        """Run `fn(conn, *args)` off the loop on a connection that sees the committed state.

        An owner's big reads (history, metrics, plots) use their own connection and thread,
        so jobs' commits never wait for them; a read-only view reads on its only connection.
        """
        if self._bulk_reader is not None:
            return await self._bulk_reader.run(fn, *args)
        return await self._in_db_thread(functools.partial(fn, self._db._conn, *args))


async def _connect(db_path: Path, target: str, *, read_only: bool, durable: bool) -> aiosqlite.Connection:
    # room for the multi-row statements of every write shape (multirow.py) in the statement cache
    pending = aiosqlite.connect(target, isolation_level=None, check_same_thread=False, uri=read_only,
                                cached_statements=512)
    thread = getattr(pending, "_thread", None)
    if thread is not None:  # a script that forgets close() must still be able to exit
        thread.daemon = True
    try:
        db = await pending
    except sqlite3.Error as e:
        raise LibraryError(f"cannot open {db_path}: {e}") from e
    try:
        await _configure(db, read_only=read_only, durable=durable, where=str(db_path))
    except BaseException:
        await db.close()
        raise
    return db


async def _configure(db: aiosqlite.Connection, *, read_only: bool, durable: bool, where: str) -> None:
    try:
        await db.execute("PRAGMA busy_timeout = 10000")
        version = (await (await db.execute("PRAGMA user_version")).fetchone())[0]
        tables = await db.execute_fetchall("SELECT name FROM sqlite_master WHERE type='table'")
    except sqlite3.DatabaseError as e:
        raise LibraryError(f"{where} is not a usable SQLite database ({e}); move it aside or pick another library folder") from e
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"{where} has schema version {version}, newer than this sdjobs_nb understands ({SCHEMA_VERSION}); "
            f"upgrade sdjobs_nb. The file was not modified."
        )
    if read_only:
        await db.execute("PRAGMA query_only = ON")
        return
    _refuse_foreign(version, {t[0] for t in tables}, where)
    try:
        # WAL before the first write: a process killed while creating the schema then leaves a
        # WAL that any reader can use, never a hot rollback journal only a writer may undo
        await db.execute("PRAGMA journal_mode = WAL")
        # random UUID keys touch pages all over the indexes; a bigger cache keeps a deep queue fast
        await db.execute("PRAGMA cache_size = -32768")
        await db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
    except sqlite3.Error as e:
        raise LibraryError(f"cannot set up {where}: {e}") from e
    try:
        await db.executescript(f"BEGIN IMMEDIATE; {CREATE} {OBSOLETE} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
    except sqlite3.Error as e:
        raise LibraryError(f"cannot write {where}: {e}") from e


def _refuse_foreign(version: int, tables: set[str], where: str) -> None:
    """Leave a SQLite file of some other program untouched."""
    if version == 0 and tables - {"jobs", "job_history", "job_checkpoints", "job_errors"}:
        raise LibraryError(f"{where} is a SQLite database of something else (tables: {', '.join(sorted(tables))}); pick another folder")
