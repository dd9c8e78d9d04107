"""The store's own database thread: one daemon thread owning jobs.db's writing connection.

Why a thread of our own (and not aiosqlite): a group commit must cost ONE hop to the thread
that owns the connection and one back. The write batcher (batch.py) hands the thread a whole
batch as one call (`apply_ops`), and the loop is told the result by one
`loop.call_soon_threadsafe`. aiosqlite's public API gives one hop per `execute` plus a task
per call; reaching the single hop through it needed its private queue and thread (and an
upper pin on its version). This module is that single hop, with nothing private of anyone.

Design:

* one `threading.Thread`, daemon, so a script that forgets `close()` still exits (the next
  owner then finds jobs.db as a crash would have left it; WAL makes that safe);
* a `queue.SimpleQueue` of requests `(future, fn, args)`, served strictly in order: the thread
  runs `fn(conn, *args)` on its `sqlite3.Connection` and posts the result (or the exception)
  back with `future.get_loop().call_soon_threadsafe`. A future cancelled meanwhile is left
  alone; a loop closed meanwhile is nobody's to tell;
* the connection is made on the thread itself (`open`, the first request), so opening a file
  on a slow disk never blocks the event loop;
* `close()` is a request like the others: it runs after everything queued before it (drains),
  closes the connection, ends the thread, and is joined. It is idempotent. `stop()` does the
  same without an event loop and without waiting (a store abandoned by a closed loop);
* a `DbThread` dropped without either still ends its thread (a `weakref.finalize` queues the
  last request; the thread itself holds no reference to the `DbThread`).

Requests made after close get a future failed with `sqlite3.ProgrammingError`, as a closed
`sqlite3.Connection` would raise; the write batcher turns that into its usual `LibraryError`.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ("DbThread",)

T = TypeVar("T")

_OPEN = object()  # request: make the connection with args[0]()
_CLOSE = object()  # the last request: close the connection and end the thread

_Request = tuple["asyncio.Future[Any] | None", Any, tuple]


class DbThread:
    """Runs `fn(conn, *args)` calls, in order, on one daemon thread that owns `conn`."""

    def __init__(self, *, name: str = "sdjobs-db") -> None:
        self._requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=_serve, args=(self._requests,), name=name, daemon=True)
        self._thread.start()
        weakref.finalize(self, self._requests.put, (None, _CLOSE, ())).atexit = False

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    @property
    def closed(self) -> bool:
        return self._closed

    def open(self, connect: Callable[[], sqlite3.Connection]) -> asyncio.Future[None]:
        """Make the connection on the thread with `connect()`; await the future for errors."""
        return self._put(_OPEN, (connect,))

    def submit(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Queue `fn(conn, *args)`; return a loop future for its result (await it)."""
        return self._put(fn, args)

    def _put(self, fn: Any, args: tuple) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        if self._closed:
            future.set_exception(sqlite3.ProgrammingError("Cannot operate on a closed database."))
        else:
            self._requests.put((future, fn, args))
        return future

    async def close(self) -> None:
        """Close the connection after the calls queued before, end the thread and join it."""
        if self._closed:
            return
        closing = self._put(_CLOSE, ())
        self._closed = True
        # shielded: a cancelled close still closes the connection and ends the thread
        await asyncio.shield(closing)
        # the thread posts close's result as its very last action: this join is immediate
        self._thread.join()

    def stop(self) -> None:
        """Close the connection after the calls queued before and end the thread; do not wait."""
        if self._closed:
            return
        self._closed = True
        self._requests.put((None, _CLOSE, ()))


def _serve(requests: queue.SimpleQueue[_Request]) -> None:
    """The thread: serves requests in order until the close request."""
    conn: sqlite3.Connection | None = None
    while True:
        future, fn, args = requests.get()
        if fn is _CLOSE:
            break
        try:
            if fn is _OPEN:
                conn = args[0]()
                result = None
            elif conn is None:
                raise sqlite3.ProgrammingError("the database thread has no connection (open failed or was not asked)")
            else:
                result = fn(conn, *args)
        except BaseException as error:  # noqa: BLE001 - handed to whoever awaits the future
            _post(future, None, error)
        else:
            _post(future, result, None)
        # drop references before waiting for the next request (big results, tracebacks)
        future = fn = args = result = None  # type: ignore[assignment]
    error = None
    try:
        if conn is not None:
            conn.close()
    except BaseException as e:  # noqa: BLE001
        error = e
    _post(future, None, error)


def _post(future: asyncio.Future[Any] | None, result: Any, error: BaseException | None) -> None:
    if future is None:
        return
    try:
        future.get_loop().call_soon_threadsafe(_settle, future, result, error)
    except RuntimeError:  # the loop is closed: nobody waits for this any more
        pass


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # cancelled while the thread ran it
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
