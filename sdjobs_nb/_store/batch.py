"""Group commit: writes staged by many jobs share one transaction and one thread hop.

No task is spawned per commit: a batch is handed to the database thread with a future and a
done-callback sends the next batch, so a lone `commit()` costs one hop and a busy library
commits everything staged during the previous hop together.
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
Waiter = Union["asyncio.Future[None]", Callable[[Optional[BaseException]], None]]


def apply_ops(conn: sqlite3.Connection, ops: list[Op]) -> None:
    """Run `ops` in one transaction on the database thread, a few statements per run of same SQL."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, rows, keys in group_ops(ops):
            write_run(conn, sql, rows, keys)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # a failed COMMIT (disk full) has already rolled back
            conn.execute("ROLLBACK")
        raise


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

    def commit(self) -> asyncio.Future[None]:
        """Return a future that is done when every statement staged so far is committed.

        A plain future rather than a coroutine: every dispatch and every finishing job awaits
        one, and a coroutine frame around it would cost more than the wait itself.
        """
        waiter = asyncio.get_running_loop().create_future()
        if not self._wait(waiter):
            waiter.set_result(None)
        return waiter

    def after_commit(self, callback: Callable[[BaseException | None], None]) -> None:
        """Call `callback(None)` once everything staged so far is committed, or `callback(error)`."""
        if not self._wait(callback):
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
        for waiter in waiters:  # in staging order; callbacks run here, futures wake their tasks later
            if not isinstance(waiter, asyncio.Future):
                _call(waiter, error)
            elif waiter.done():
                continue
            elif error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)
        if self._pending:
            self._send()
