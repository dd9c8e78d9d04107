"""Group commit: writes staged by many jobs share one transaction and one thread hop."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("sdjobs_nb.store")

Op = tuple[str, Sequence[Any]]


def apply_ops(conn: sqlite3.Connection, ops: list[Op]) -> None:
    """Run `ops` in one transaction on the database thread; consecutive same-SQL ops use executemany."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        start = 0
        while start < len(ops):
            sql = ops[start][0]
            end = start + 1
            while end < len(ops) and ops[end][0] == sql:
                end += 1
            if end - start == 1:
                conn.execute(sql, ops[start][1])
            else:
                conn.executemany(sql, [params for _, params in ops[start:end]])
            start = end
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class WriteBatcher:
    """Collects staged statements and commits them together as soon as the loop is free.

    `stage` never blocks; `commit()` waits until everything staged before it is on disk
    (or raises the error that stopped that transaction).
    """

    def __init__(self, run_in_db_thread: Callable[[list[Op]], Any]) -> None:
        self._run = run_in_db_thread
        self._pending: list[Op] = []
        self._pending_done: asyncio.Future[None] | None = None
        self._inflight_done: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    def stage(self, sql: str, params: Sequence[Any]) -> None:
        """Add one statement to the next transaction."""
        self._pending.append((sql, params))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def commit(self) -> None:
        """Wait until every statement staged so far is committed."""
        if self._pending:
            await asyncio.shield(self._future_for_pending())
        elif self._inflight_done is not None:
            await asyncio.shield(self._inflight_done)

    def _future_for_pending(self) -> asyncio.Future[None]:
        if self._pending_done is None:
            self._pending_done = asyncio.get_running_loop().create_future()
        return self._pending_done

    @property
    def idle(self) -> bool:
        return self._task is None

    async def _drain(self) -> None:
        try:
            while self._pending:
                ops, self._pending = self._pending, []
                done, self._pending_done = self._pending_done, None
                if done is None:
                    done = asyncio.get_running_loop().create_future()
                self._inflight_done = done
                await self._write(ops, done)
        finally:
            self._task = None
            self._inflight_done = None

    async def _write(self, ops: list[Op], done: asyncio.Future[None]) -> None:
        try:
            await self._run(ops)
        except Exception as e:  # a failed transaction reaches whoever waits on it
            log.error("jobs.db write of %d statements failed: %s", len(ops), e)
            if not done.done():
                done.set_exception(e)
                done.exception()  # mark retrieved: nobody may be waiting
            return
        if not done.done():
            done.set_result(None)

    async def drain(self) -> None:
        """Wait until nothing is staged or in flight (used by close)."""
        while self._task is not None:
            await asyncio.shield(self._task)
