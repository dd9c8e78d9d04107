"""The loop side of a run: start the sandbox in a worker thread and turn its outcome into a result.

The notebook's event loop stays free while wasm runs. Requests from the guest cross back to
the loop thread-safely: progress through a latest-wins slot (at most one pending callback),
checkpoints through `run_coroutine_threadsafe` (the worker blocks until `ctx.checkpoint()` has
committed), non-critical errors through `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import threading
from typing import TYPE_CHECKING, Any

from .._errors import ExtensionTrap, Interrupted
from ._abi import DONE, JOB_PREFIX, STOPPED, wasmtime_module
from ._data import decode_result
from ._sandbox import WASM_PAGE, Limits, Sandbox, SandboxOutcome

if TYPE_CHECKING:
    from .._runtime.context import JobContext

__all__ = ("run_in_sandbox",)

STOP_WAIT_S = 5.0  # how long a forced stop waits for the worker to leave wasm
FORCED = "was stopped because it did not answer a pause or cancel within the grace period"

_live: dict[Sandbox, threading.Thread] = {}
_live_lock = threading.Lock()


class _Bridge:
    """The sandbox's `Host`: called from the worker thread, acts on the event loop."""

    def __init__(self, job: Any, ctx: JobContext, loop: asyncio.AbstractEventLoop) -> None:
        self._job, self._ctx, self._loop = job, ctx, loop
        self._latest: tuple[str, Any, Any] | None = None
        self._flush_pending = False

    def interrupt_requested(self) -> bool:
        # JobEntry.interrupt is a str or None, set on the loop; reading it here is atomic
        return self._ctx.interrupt_requested is not None

    def checkpoint(self, data: bytes) -> concurrent.futures.Future[str | None]:
        try:
            return asyncio.run_coroutine_threadsafe(self._checkpoint(data), self._loop)
        except RuntimeError as e:  # the loop is closed
            future: concurrent.futures.Future[str | None] = concurrent.futures.Future()
            future.set_result(f"the event loop is gone ({e})")
            return future

    async def _checkpoint(self, data: bytes) -> str | None:
        previous, self._job.state = self._job.state, data
        try:
            await self._ctx.checkpoint()
        except Exception as e:
            self._job.state = previous
            return f"{type(e).__name__}: {e}"
        return None

    def progress(self, kind: str, current: Any, total: Any) -> None:
        self._latest = (kind, current, total)
        if not self._flush_pending:
            self._flush_pending = True
            self._call(self._flush_progress)

    def _flush_progress(self) -> None:
        self._flush_pending = False
        kind, current, total = self._latest  # type: ignore[misc]
        if kind == "count":
            self._ctx.report_count_progress(current, total)
        else:
            self._ctx.report_percentage_progress(current)

    def log(self, line: str) -> None:
        self._ctx.log.info("%s", line)  # logging is thread-safe

    def report_error(self, message: str) -> None:
        self._call(self._ctx.report_non_critical_error, message)

    def _call(self, fn: Any, *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed; nobody is left to tell
            pass


async def run_in_sandbox(job: Any, ctx: JobContext) -> Any:
    """Run an extension job's function in a fresh sandbox; return its result or raise why not."""
    cls = type(job)
    ext = cls.extension
    sandbox = Sandbox(ext.compiled, JOB_PREFIX + cls.job_name, job.input, job.state, ext.limits,
                      _Bridge(job, ctx, asyncio.get_running_loop()))
    outcome = await _execute(sandbox, f"sdjobs-wasm:{cls.NAME}:{ctx.job_id[:8]}")
    return _conclude(cls.NAME, job.input_format, sandbox, outcome)


async def _execute(sandbox: Sandbox, thread_name: str) -> SandboxOutcome:
    """Run the sandbox in its own thread; a cancelled task stops the guest before re-raising."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[SandboxOutcome] = loop.create_future()
    thread = threading.Thread(target=_worker, args=(sandbox, loop, done), name=thread_name, daemon=True)
    time_limit = sandbox.limits.time_limit
    timer = None if time_limit is None else loop.call_later(
        time_limit, sandbox.stop, f"ran longer than its time limit of {time_limit:g} s")
    with _live_lock:
        _live[sandbox] = thread
    thread.start()
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        sandbox.stop(FORCED)
        await asyncio.wait({done}, timeout=STOP_WAIT_S)
        raise
    finally:
        if timer is not None:
            timer.cancel()
        if done.done():
            thread.join(timeout=1.0)  # it has only to return; then "job ended" means "no wasm left"


def _worker(sandbox: Sandbox, loop: asyncio.AbstractEventLoop, done: asyncio.Future[SandboxOutcome]) -> None:
    try:
        outcome: Any = sandbox.execute()
        settle = done.set_result
    except BaseException as e:  # a bug on the host side; the job fails with it
        outcome, settle = e, done.set_exception
    finally:
        with _live_lock:
            _live.pop(sandbox, None)
    try:
        loop.call_soon_threadsafe(lambda: done.done() or settle(outcome))
    except RuntimeError:  # the loop is closed
        pass


def _conclude(name: str, input_format: str, sandbox: Sandbox, outcome: SandboxOutcome) -> Any:
    if sandbox.stop_reason is not None:
        raise ExtensionTrap(f"extension job {name} {sandbox.stop_reason}") from outcome.error
    if outcome.error is not None:
        raise ExtensionTrap(_failure_text(name, outcome, sandbox.limits)) from outcome.error
    if outcome.code == STOPPED:
        raise Interrupted(f"extension job {name} stopped at its request")
    if outcome.code != DONE:
        raise ExtensionTrap(f"extension job {name} returned error code {outcome.code}")
    return decode_result(name, input_format, outcome.result)


def _failure_text(name: str, outcome: SandboxOutcome, limits: Limits) -> str:
    w = wasmtime_module()
    error = outcome.error
    text = _trap_text(error)
    if getattr(error, "trap_code", None) is w.TrapCode.OUT_OF_FUEL:
        return (f"extension job {name} was stopped by its fuel limit: it ran {limits.fuel:,} wasm instructions "
                f"without calling sdjobs.should_stop ({text})")
    cap = _mib(limits.memory_bytes)
    if not isinstance(error, w.Trap):
        hint = f" (the memory cap is {cap})" if "memory" in text else ""
        return f"extension job {name} could not start: {text}{hint}"
    message = f"extension job {name} trapped: {text}"
    if outcome.memory_bytes + WASM_PAGE > limits.memory_bytes:
        message += f"; its memory had reached the cap of {cap} (memory.grow returned -1)"
    return message


def _trap_text(error: BaseException | None) -> str:
    """The cause of a wasmtime error, without the backtrace (that goes to the traceback)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("wasm trap: "):
            return line[len("wasm trap: "):]
    if "Caused by:" in lines:
        return " ".join(lines[lines.index("Caused by:") + 1:])
    return lines[0] if lines else type(error).__name__


def _mib(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n / 1024:g} KiB"


@atexit.register
def _stop_all() -> None:
    """Stop guests still running when Python exits, so no worker is inside wasm at shutdown."""
    with _live_lock:
        live = list(_live.items())
    for sandbox, _ in live:
        sandbox.stop("was stopped because the Python process exited")
    for _, thread in live:
        thread.join(timeout=1.0)
