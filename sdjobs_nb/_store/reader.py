"""A second connection, on its own thread, for big reads (history, metrics, plots).

The owner's writes go through the store's own thread (dbthread.py). A history() of a million rows run there
would hold it for seconds, and every running job's checkpoint and final write would wait.
WAL lets a reader see the last committed state while the writer goes on, so big reads get
their own read-only connection and thread, made on first use.

The thread is a plain daemon thread, not a `concurrent.futures` pool: those refuse new work
once the interpreter starts to exit (before atexit callbacks run), and a manager left open by
a script is closed by such a callback (`_sync._shutdown`). A daemon thread still takes work
then, and never keeps the process alive.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import queue
import sqlite3
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from .._executors import run_into

__all__ = ("BulkReader",)

T = TypeVar("T")


class BulkReader:
    """Runs `fn(conn, *args)` on a dedicated thread with its own read-only connection."""

    def __init__(self, uri: str) -> None:
        self._uri = uri
        self._requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise RuntimeError("the bulk reader is closed")
        if self._thread is None:
            self._thread = threading.Thread(target=_serve, args=(self._uri, self._requests),
                                            name="sdjobs-reader", daemon=True)
            self._thread.start()
            # a reader dropped without close() still ends its thread and connection (not at
            # exit, where `_sync._shutdown` may close it later and would then wait forever)
            weakref.finalize(self, self._requests.put, (None, _CLOSE, ())).atexit = False
        return await self._request(fn, args)

    def _request(self, fn: Any, args: tuple) -> asyncio.Future[Any]:
        # a cancelled wait cancels the read too if it has not started (as run_in_executor does)
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._requests.put((future, fn, args))
        return asyncio.wrap_future(future)

    async def close(self) -> None:
        """Close the connection once reads in progress are done; the thread then ends."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            # shielded: a cancelled close still closes the connection and ends the thread
            await asyncio.shield(self._request(_CLOSE, ()))


_CLOSE = object()  # the last request: close the connection and end the thread
_Request = tuple["concurrent.futures.Future[Any] | None", Any, tuple]


def _serve(uri: str, requests: queue.SimpleQueue[_Request]) -> None:
    """The reader thread: runs requests in order, on a connection made for the first one."""
    conn: sqlite3.Connection | None = None

    def read(fn: Callable[..., Any], args: tuple) -> Any:
        nonlocal conn
        if conn is None:
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            conn.execute("PRAGMA query_only = ON")
        return fn(conn, *args)

    def close() -> None:
        if conn is not None:
            conn.close()

    while True:
        future, fn, args = requests.get()
        if fn is _CLOSE:
            break
        run_into(future, functools.partial(read, fn, args))  # type: ignore[arg-type]
    if future is None:  # the reader was dropped without close(): nobody waits
        close()
    else:
        run_into(future, close)  # never cancelled: close() shields it
