"""A second connection, on its own thread, for big reads (history, metrics, plots).

The owner's writes go through one aiosqlite thread. A history() of a million rows run there
would hold it for seconds, and every running job's checkpoint and final write would wait.
WAL lets a reader see the last committed state while the writer goes on, so big reads get
their own read-only connection and thread, made on first use.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ("BulkReader",)

T = TypeVar("T")


class BulkReader:
    """Runs `fn(conn, *args)` on a dedicated thread with its own read-only connection."""

    def __init__(self, uri: str) -> None:
        self._uri = uri
        self._conn: sqlite3.Connection | None = None
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="sdjobs-reader")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._call, fn, args)

    def _call(self, fn: Callable[..., T], args: tuple) -> T:
        if self._conn is None:
            self._conn = sqlite3.connect(self._uri, uri=True, check_same_thread=False)
            self._conn.execute("PRAGMA query_only = ON")
        return fn(self._conn, *args)

    async def close(self) -> None:
        """Close the connection once reads in progress are done; the thread then ends."""
        try:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._close_connection)
        finally:
            self._thread.shutdown(wait=False)

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
