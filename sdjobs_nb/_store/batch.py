"""Group commit: writes staged by many jobs share one transaction and one thread hop.

No task is spawned per commit: a batch is handed to the database thread with a future and a
done-callback sends the next batch, so a lone `commit()` costs one hop and a busy library
commits everything staged during the previous hop together.

One job's bad value never costs the other jobs their writes: a transaction that SQLite refuses
because of a statement's values (not because of the file: disk full, I/O) is written again one
job at a time under savepoints, and only that job's waiters hear of it (`apply_ops`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from itertools import compress, repeat
from operator import is_not
from collections.abc import Callable, Sequence
from typing import Any, Optional, Union

from .._errors import LibraryError
from .multirow import write_run

log = logging.getLogger("sdjobs_nb.store")

_NONES = repeat(None)

Op = tuple[str, Sequence[Any], str]  # (sql, params, key: the job the statement writes)
Notify = Union["asyncio.Future[None]", Callable[[Optional[BaseException]], None]]
Waiter = tuple[Notify, Optional[str]]  # and the job it waits for (None: the whole batch)

# Errors about the values of one statement rather than about jobs.db itself (disk full, I/O,
# locked: those are sqlite3.OperationalError and the like, and every write of the batch failed).
# A batch that hits one is written again key by key, so only that job's writes are lost.
VALUE_ERRORS = (sqlite3.InterfaceError, sqlite3.ProgrammingError, sqlite3.IntegrityError, sqlite3.DataError,
                ValueError, TypeError, OverflowError)  # UnicodeEncodeError is a ValueError


def apply_ops(conn: sqlite3.Connection, ops: list[Op]) -> dict[str, BaseException] | None:
    """Run `ops` in one transaction on the database thread, a few statements per run of same SQL.

    Return None when all were written. If a statement's values are refused (`VALUE_ERRORS`),
    the other keys' statements are still committed and the refused keys are returned with
    their errors; when no key could be written the first error is raised, as for a failed commit.
    """
    try:
        in_transaction(conn, _write_grouped, conn, ops)
    except VALUE_ERRORS as error:
        return _write_key_by_key(conn, ops, error)
    return None


def in_transaction(conn: sqlite3.Connection, write: Callable[..., Any], *args: Any) -> Any:
    """Return `write(*args)`, run in one write transaction (rolled back if it raises)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = write(*args)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # a failed COMMIT (disk full) has already rolled back
            conn.execute("ROLLBACK")
        raise
    return result


def _write_grouped(conn: sqlite3.Connection, ops: list[Op]) -> None:
    for sql, rows, keys in group_ops(ops):
        write_run(conn, sql, rows, keys)


def _write_key_by_key(conn: sqlite3.Connection, ops: list[Op], first: BaseException) -> dict[str, BaseException]:
    """Write each key's statements under a savepoint of one transaction; return the refused keys."""
    by_key: dict[str, list[Op]] = {}
    for op in ops:
        if op[0] is not None:
            by_key.setdefault(op[2], []).append(op)
    refused = in_transaction(conn, _write_each_key, conn, by_key)
    if len(refused) == len(by_key):  # nothing innocent to keep: the batch failed as a whole
        raise first
    return refused


def _write_each_key(conn: sqlite3.Connection, by_key: dict[str, list[Op]]) -> dict[str, BaseException]:
    refused: dict[str, BaseException] = {}
    for key, key_ops in by_key.items():
        conn.execute("SAVEPOINT one_job")
        try:
            _write_grouped(conn, key_ops)
        except VALUE_ERRORS as error:
            conn.execute("ROLLBACK TO one_job")
            refused[key] = error
        conn.execute("RELEASE one_job")
    return refused


def group_ops(ops: list[Op]) -> list[tuple[str, list[Sequence[Any]], list[str]]]:
    """Gather statements with the same SQL into runs, keeping each key's statements in order.

    A statement joins the newest run of its SQL unless a later run already holds a statement
    of the same key (then order matters and it starts a new run). Statements of different
    keys touch different rows and commute inside one transaction. None parameters become
    literal NULLs first: the sqlite3 module binds None through its adapter lookup, which costs
    about a microsecond per value, more than the rest of a row's write.
    """
    runs: list[tuple[str, list[Sequence[Any]], list[str]]] = []
    newest_run: dict[str, int] = {}  # sql -> index of its newest run
    last_run_of_key: dict[str, int] = {}
    for sql, params, key in ops:
        if sql is None:  # withdrawn before it was sent
            continue
        if None in params:
            kept = tuple(map(is_not, params, _NONES))
            sql = _with_nulls(sql, kept)
            params = tuple(compress(params, kept))
        run = newest_run.get(sql)
        if run is None or last_run_of_key.get(key, -1) > run:
            run = newest_run[sql] = len(runs)
            runs.append((sql, [], []))
        runs[run][1].append(params)
        runs[run][2].append(key)
        last_run_of_key[key] = max(run, last_run_of_key.get(key, -1))
    return runs


@functools.lru_cache(maxsize=1024)
def _with_nulls(sql: str, kept: tuple[bool, ...]) -> str:
    """`sql` with each parameter not `kept` written as NULL (same meaning as binding None)."""
    parts = sql.split("?")  # our statements have no '?' inside string literals
    out = [parts[0]]
    for keep, part in zip(kept, parts[1:]):
        out.append("?" if keep else "NULL")
        out.append(part)
    return "".join(out)


def _call(callback: Callable[[BaseException | None], None], error: BaseException | None) -> None:
    try:
        callback(error)
    except Exception:  # one job's bookkeeping must not stop the others being told
        log.exception("an after-commit callback failed")


def _refused_error(key: str, error: BaseException) -> LibraryError:
    wrapped = LibraryError(
        f"jobs.db refused a write of job {key} ({type(error).__name__}: {error}); that job's writes of this "
        f"transaction were dropped, the other jobs' were saved. This is a bug: please report it"
    )
    wrapped.__cause__ = error
    return wrapped


def _notify(notify: Notify, error: BaseException | None) -> None:
    """Tell one waiter how its commit ended (a cancelled future is left alone)."""
    if not isinstance(notify, asyncio.Future):
        _call(notify, error)
    elif notify.done():
        return
    elif error is None:
        notify.set_result(None)
    else:
        notify.set_exception(error)


def _write_error(error: sqlite3.Error) -> LibraryError:
    wrapped = LibraryError(
        f"could not write jobs.db ({error}); nothing of this write was saved. Free disk space or fix "
        f"the file's permissions; jobs resume from what was saved before"
    )
    wrapped.__cause__ = error
    return wrapped


class WriteBatcher:
    """Collects staged statements and commits them together as soon as the loop is free.

    `stage` never blocks; `commit()` waits until everything staged before it is on disk
    (or raises the error that stopped that transaction). Each waiter has its own future, so
    a cancelled waiter never disturbs the others and no `shield` is needed. `after_commit`
    registers a plain callback instead, for code that need not wait (a finished job's task
    ends at once and the job is announced from the callback: no task wake-up per job).

    A waiter may name the job (`key`) it waits for: if jobs.db refuses that job's values,
    only its waiters get the error and the rest of the batch commits (`apply_ops`). A waiter
    without a key gets an error only when the whole transaction failed.
    """

    def __init__(self, submit: Callable[[list[Op]], asyncio.Future[Any]]) -> None:
        self._submit = submit  # hands ops to the database thread, returns a loop future
        self._pending: list[Op] = []
        self._batch = 0  # number of the batch now collecting
        self._pending_waiters: list[Waiter] = []
        self._inflight_waiters: list[Waiter] | None = None
        self._kick_scheduled = False

    def stage(self, sql: str, params: Sequence[Any], key: str) -> tuple[int, int]:
        """Add one statement (writing job `key`) to the next transaction; return a token for `withdraw`."""
        self._pending.append((sql, params, key))
        if self._inflight_waiters is None and not self._kick_scheduled:
            self._kick_scheduled = True
            asyncio.get_running_loop().call_soon(self._kick)
        return self._batch, len(self._pending) - 1

    def withdraw(self, token: tuple[int, int]) -> bool:
        """Drop a staged statement that was not sent yet (a later one makes it moot)."""
        batch, index = token
        if batch != self._batch:
            return False
        self._pending[index] = (None, (), "")  # type: ignore[assignment]
        return True

    def commit(self, key: str | None = None) -> asyncio.Future[None]:
        """Return a future that is done when every statement staged so far is committed.

        With `key`, it fails only if the whole transaction or that job's writes failed.
        A plain future rather than a coroutine: every dispatch and every finishing job awaits
        one, and a coroutine frame around it would cost more than the wait itself.
        """
        waiter = asyncio.get_running_loop().create_future()
        if not self._wait((waiter, key)):
            waiter.set_result(None)
        return waiter

    def after_commit(self, callback: Callable[[BaseException | None], None], key: str | None = None) -> None:
        """Call `callback(None)` once everything staged so far is committed, or `callback(error)`.

        With `key`, the error comes only if the whole transaction or that job's writes failed.
        """
        if not self._wait((callback, key)):
            asyncio.get_running_loop().call_soon(callback, None)

    def _wait(self, waiter: Waiter) -> bool:
        """Attach `waiter` to the batch holding the newest staged write; False if all is written."""
        if self._pending:
            self._pending_waiters.append(waiter)
            if self._inflight_waiters is None:
                self._send()
            return True
        if self._inflight_waiters is not None:
            self._inflight_waiters.append(waiter)
            return True
        return False

    async def drain(self) -> None:
        """Wait until nothing is staged or in flight (used by close)."""
        while self._pending or self._inflight_waiters is not None:
            await self.commit()

    def _kick(self) -> None:
        self._kick_scheduled = False
        if self._inflight_waiters is None and self._pending:
            self._send()

    def _send(self) -> None:
        ops, self._pending = self._pending, []
        self._batch += 1
        waiters, self._pending_waiters = self._pending_waiters, []
        self._inflight_waiters = waiters
        self._submit(ops).add_done_callback(lambda written: self._sent(written, waiters, len(ops)))

    def _sent(self, written: asyncio.Future[Any], waiters: list[Waiter], count: int) -> None:
        self._inflight_waiters = None
        error = asyncio.CancelledError() if written.cancelled() else written.exception()
        if isinstance(error, sqlite3.Error):
            error = _write_error(error)
        if error is not None:
            log.error("jobs.db write of %d statements failed: %s", count, error)
        refused = written.result() if error is None else None
        if refused:
            self._tell_refused(waiters, refused)
        else:
            self._tell(waiters, error)
        if self._pending:
            self._send()

    @staticmethod
    def _tell(waiters: list[Waiter], error: BaseException | None) -> None:
        for notify, _ in waiters:  # in staging order; callbacks run here, futures wake their tasks later
            _notify(notify, error)

    @staticmethod
    def _tell_refused(waiters: list[Waiter], refused: dict[str, BaseException]) -> None:
        """Some jobs' writes were refused: tell their waiters why, and everyone else it is written."""
        errors = {key: _refused_error(key, error) for key, error in refused.items()}
        for key, error in errors.items():
            log.error("%s", error)
        for notify, key in waiters:
            _notify(notify, errors.get(key) if key is not None else None)
