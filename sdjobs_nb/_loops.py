"""Blocking on coroutines from synchronous code: `run_sync`, `wait_sync`, `allow_nested_loop`.

With no event loop running in the thread, each call runs a private loop that lives as long as
the thread (so a manager opened with `open_sync` keeps its loop, and its jobs run whenever a
sync call is running the loop). Inside a running loop - a notebook cell - blocking on a
coroutine needs a nested loop, and on ipykernel >= 7.3 widget clicks that arrive during a
nested run are dropped; so there these functions raise `SyncInRunningLoop` (use `await`),
unless you opted in with `allow_nested_loop()`.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
import warnings
import weakref
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from ._errors import ManagerClosed, MissingExtra, NestedLoopWarning, SyncInRunningLoop

if TYPE_CHECKING:
    from ._handle import JobHandle
    from ._manager import JobManager

__all__ = ("NestedLoopWarning", "SyncInRunningLoop", "allow_nested_loop", "close_at_exit", "run_sync", "wait_sync")

T = TypeVar("T")

_NESTED: set[asyncio.AbstractEventLoop] = set()
_local = threading.local()


def run_sync(awaitable: Awaitable[T], *, timeout: float | None = None) -> T:
    """Run `awaitable` to completion from synchronous code and return its result.

    Raises `TimeoutError` after `timeout` seconds (the awaitable is cancelled), and
    `SyncInRunningLoop` inside a running loop unless `allow_nested_loop()` was called.
    """
    loop = _running_loop()
    if loop is not None and loop not in _NESTED:
        if asyncio.iscoroutine(awaitable):
            awaitable.close()  # never awaited: no "coroutine was never awaited" warning
        raise _refusal()
    coro = _with_timeout(awaitable, timeout)
    if loop is not None:
        return loop.run_until_complete(coro)
    return _private_runner().run(coro)


def _refusal() -> SyncInRunningLoop:
    return SyncInRunningLoop(
        "an event loop is already running in this thread (a notebook cell runs inside one): "
        "use `await ...` instead of the sync helper, or call sj.allow_nested_loop() first "
        "(widget clicks that arrive during a nested run are lost on ipykernel >= 7.3)"
    )


def close_at_exit(manager: JobManager) -> None:
    """Close `manager` at interpreter exit if it is still open and runs on this thread's private loop."""
    if manager.loop is getattr(_local, "runner_loop", None):
        _local.managers.add(manager)  # closed at exit if still open: running jobs are saved


def wait_sync(handle: JobHandle, timeout: float | None = None) -> Any:
    """Wait for the job and return its result (raise its error), like `await handle.wait()`.

    On `TimeoutError` the job goes on. A manager whose loop runs in another thread is waited
    for from here without touching that loop.
    """
    loop, here = handle.manager.loop, _running_loop()
    if loop is not None and loop.is_closed():
        raise ManagerClosed(f"the event loop of the manager of {str(handle.manager.path)!r} is closed; "
                            f"open the library again (e.g. with open_sync) to wait for its jobs")
    if loop is not None and loop.is_running() and loop is not here:
        if here is not None and here not in _NESTED:
            raise _refusal()
        future = asyncio.run_coroutine_threadsafe(handle.wait(), loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise
    return run_sync(handle.wait(), timeout=timeout)


def allow_nested_loop() -> None:
    """Let the sync helpers block inside this thread's running loop (applies nest_asyncio).

    Opt in only if you need it: on ipykernel >= 7.3, a widget click that arrives while a
    nested run blocks the cell is dropped (the handler never runs). Prefer `await`.
    """
    loop = _running_loop()
    if loop is None:
        return  # nothing to nest into: the sync helpers already run their own loop
    try:
        import nest_asyncio
    except ImportError:
        raise MissingExtra("allow_nested_loop()", "sync", "nest_asyncio") from None
    if loop not in _NESTED:
        nest_asyncio.apply(loop)
        _NESTED.add(loop)
    warnings.warn(
        "nested event loop enabled: on ipykernel >= 7.3, widget clicks (e.g. Pause / Resume / Cancel) "
        "that arrive while a sync helper blocks the cell are dropped; prefer `await`",
        NestedLoopWarning,
        stacklevel=2,
    )


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _with_timeout(awaitable: Awaitable[T], timeout: float | None) -> T:
    if timeout is None:
        return await awaitable
    return await asyncio.wait_for(awaitable, timeout)


def _private_runner() -> asyncio.Runner:
    """Return this thread's private loop runner, made on first use."""
    runner = getattr(_local, "runner", None)
    if runner is None:
        runner = _local.runner = asyncio.Runner()
        _local.runner_loop = runner.get_loop()
        _local.managers = weakref.WeakSet()
        if threading.current_thread() is threading.main_thread():
            atexit.register(_shutdown, runner, _local.managers)
    return runner


def _shutdown(runner: asyncio.Runner, managers: weakref.WeakSet) -> None:
    """At exit: close managers left open (their running jobs are paused and saved), then the loop.

    This runs after `threading` has shut every `concurrent.futures` pool down, so nothing a
    close does may need one: the bulk reader has a thread of its own, and a job's blocking
    calls get one too (`_executors._in_executor`).
    """
    try:
        for manager in list(managers):
            if not manager.closed:
                runner.run(manager.close())
    finally:
        runner.close()
