"""Running blocking work off the loop: a thread pool, any Executor, or a Dask client."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ("BlockingRunner",)


def _is_dask_client(executor: Any) -> bool:
    cls = type(executor)
    return cls.__name__ == "Client" and cls.__module__.startswith("distributed")


class BlockingRunner:
    """Sends `fn(*args, **kwargs)` to the configured executor and awaits it without blocking."""

    def __init__(self, executor: Any = None) -> None:
        if executor is not None and not (isinstance(executor, concurrent.futures.Executor) or _is_dask_client(executor)):
            raise TypeError(
                f"executor must be a concurrent.futures.Executor or a dask.distributed.Client, "
                f"got {type(executor).__name__}"
            )
        self.executor = executor
        self.is_dask = _is_dask_client(executor)

    async def run(self, fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Any:
        if self.is_dask:
            return await self._run_dask(fn, args, kwargs)
        call = functools.partial(fn, *args, **kwargs) if kwargs else functools.partial(fn, *args)
        return await _in_executor(self.executor, call)

    async def _run_dask(self, fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Any:
        client = self.executor
        # keyword arguments travel inside a partial: names like `key` or `priority` belong to submit()
        call = functools.partial(fn, **kwargs) if kwargs else fn
        future = client.submit(call, *args, pure=False)
        if getattr(client, "asynchronous", False):
            return await future
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()

        def _wake(_: Any) -> None:
            loop.call_soon_threadsafe(lambda: finished.done() or finished.set_result(None))

        future.add_done_callback(_wake)
        try:
            await finished
        except asyncio.CancelledError:
            future.cancel()
            raise
        # the result is ready on a worker; fetching it is a short blocking call
        return await _in_executor(None, future.result)


def _in_executor(executor: concurrent.futures.Executor | None, call: Callable[[], Any]) -> Awaitable[Any]:
    """`loop.run_in_executor(executor, call)`, which also works while the interpreter exits.

    When Python exits, `threading` shuts every thread and process pool down before the atexit
    callbacks run; one of those closes a library a script left open (`_sync._shutdown`), and
    its running jobs get their grace period to reach a check and be saved. A job's blocking
    call then runs on a thread of its own, instead of failing the job.
    """
    loop = asyncio.get_running_loop()
    try:
        return loop.run_in_executor(executor, call)
    except RuntimeError:
        if threading.main_thread().is_alive():  # not exiting: a pool shut down by its owner
            raise
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    threading.Thread(target=run_into, args=(future, call), name="sdjobs-blocking-at-exit", daemon=True).start()
    return asyncio.wrap_future(future)


def run_into(future: concurrent.futures.Future[Any], call: Callable[[], Any]) -> None:
    """Run `call()` for `future` unless it was cancelled; its result or error goes to the future."""
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = call()
    except BaseException as e:  # noqa: BLE001 - handed to whoever awaits the future
        future.set_exception(e)
    else:
        future.set_result(result)
