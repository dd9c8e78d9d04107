"""The wasm side of a run: one engine, store and instance per run, driven from a worker thread.

Nothing here touches the event loop: the sandbox talks to the job through a `Host` (see
`_runner`). Host functions never raise into wasm, because wasmtime-py passes Python exceptions
through one process-wide slot that concurrent runs would race on; a misuse stops the run with
a message instead (`Sandbox.stop`), which traps the guest at its next epoch check.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import threading
from collections.abc import Callable
from typing import Any, Protocol

from ._abi import HOST_FUNCTIONS, HOST_MODULE, MEMORY_EXPORT, NO_STATE, wasmtime_module

__all__ = ("Limits", "Host", "Sandbox", "SandboxOutcome", "compile_module", "WASM_PAGE")

WASM_PAGE = 65536
MAX_TEXT_BYTES = 4096          # a log line or error message is cut to this many bytes
MAX_MESSAGES_PER_RUN = 10_000  # log lines and non-critical errors each; more are dropped
_WAIT_SLICE_S = 0.1            # how often a blocked checkpoint looks at stop requests


@dataclasses.dataclass(frozen=True)
class Limits:
    """What the host lets one run of an extension job use.

    ``memory_bytes`` caps the module's linear memory (``memory.grow`` returns -1 past it);
    ``fuel`` is how many wasm instructions a run may execute between two ``should_stop``
    calls (roughly a few seconds per 10**9); ``time_limit`` (seconds, or None) caps the
    wall-clock time of one run; a resumed job starts a new run.
    """

    memory_bytes: int = 64 * 2**20
    fuel: int = 1_000_000_000
    time_limit: float | None = None

    def __post_init__(self) -> None:
        if type(self.memory_bytes) is not int or self.memory_bytes < WASM_PAGE:
            raise ValueError(f"memory_bytes must be an int >= {WASM_PAGE} (one wasm page), got {self.memory_bytes!r}")
        if type(self.fuel) is not int or not 1 <= self.fuel < 2**63:
            raise ValueError(f"fuel must be a positive int below 2**63, got {self.fuel!r}")
        if self.time_limit is not None and not (isinstance(self.time_limit, (int, float)) and self.time_limit > 0):
            raise ValueError(f"time_limit must be a positive number of seconds or None, got {self.time_limit!r}")


class Host(Protocol):
    """What a running guest can reach; implemented on the event-loop side by `_runner`."""

    def interrupt_requested(self) -> bool: ...
    def checkpoint(self, data: bytes) -> concurrent.futures.Future[str | None]: ...
    def progress(self, kind: str, current: Any, total: Any) -> None: ...
    def log(self, line: str) -> None: ...
    def report_error(self, message: str) -> None: ...


@dataclasses.dataclass
class SandboxOutcome:
    """How the guest's job function ended: a return code, or a trap / start error."""

    code: int | None = None
    result: bytes | None = None
    error: Exception | None = None
    memory_bytes: int = 0


def new_engine() -> Any:
    w = wasmtime_module()
    config = w.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    return w.Engine(config)


def compile_module(wasm: bytes) -> tuple[Any, bytes]:
    """Validate and compile `wasm`; return the module (to inspect) and the artifact each run deserializes.

    Raises `wasmtime.WasmtimeError` for a malformed module.
    """
    w = wasmtime_module()
    engine = new_engine()
    w.Module.validate(engine, wasm)
    module = w.Module(engine, wasm)
    return module, bytes(module.serialize())


class Sandbox:
    """One run of one job function; `execute` in a worker thread, `stop` from anywhere."""

    def __init__(self, compiled: bytes, export: str, input: bytes, state: bytes | None,
                 limits: Limits, host: Host) -> None:
        self._compiled = compiled
        self._export = export
        self._input = input
        self.state = state
        self.limits = limits
        self._host = host
        self._engine = new_engine()  # one per run, so an epoch bump stops this run only
        self._store: Any = None
        self._result: bytes | None = None
        self._stop_reason: str | None = None
        self._stop_lock = threading.Lock()
        self._messages = {"log": 0, "report_error": 0}

    @property
    def stop_reason(self) -> str | None:
        """Why the host stopped this run (first reason wins), or None."""
        return self._stop_reason

    def stop(self, reason: str) -> None:
        """Make the guest trap at its next loop or call; safe from any thread."""
        with self._stop_lock:
            if self._stop_reason is None:
                self._stop_reason = reason
        self._engine.increment_epoch()

    def execute(self) -> SandboxOutcome:
        """Instantiate the module and call the job function (blocking; run it in a worker thread)."""
        w = wasmtime_module()
        outcome = SandboxOutcome()
        store = instance = None
        try:
            module = w.Module.deserialize(self._engine, self._compiled)
            store = self._store = self._new_store()
            if self._stop_reason is not None:  # stopped before the epoch deadline was armed
                return outcome
            instance = self._linker().instantiate(store, module)
            outcome.code = instance.exports(store)[self._export](store)
        except (w.Trap, w.WasmtimeError) as e:
            outcome.error = e
            outcome.memory_bytes = _memory_size(store, instance)
        finally:
            self._store = None
        outcome.result = self._result
        return outcome

    def _new_store(self) -> Any:
        w = wasmtime_module()
        store = w.Store(self._engine)
        store.set_limits(memory_size=self.limits.memory_bytes, instances=1)
        store.set_fuel(self.limits.fuel)
        store.set_epoch_deadline(1)
        return store

    def _linker(self) -> Any:
        w = wasmtime_module()
        linker = w.Linker(self._engine)
        valtype = {"i32": w.ValType.i32(), "i64": w.ValType.i64(), "f64": w.ValType.f64()}
        for name, spec in HOST_FUNCTIONS.items():
            ty = w.FuncType([valtype[p] for p in spec.params], [valtype[r] for r in spec.results])
            fallback = -1 if spec.results else None
            linker.define_func(HOST_MODULE, name, ty, self._guarded(name, fallback), access_caller=True)
        return linker

    def _guarded(self, name: str, fallback: int | None) -> Callable[..., Any]:
        method = getattr(self, f"_host_{name}")

        def call(caller: Any, *args: Any) -> Any:
            try:
                result = method(caller, *args)
            except BaseException as e:  # never let an exception cross into wasm (see module doc)
                self.stop(f"failed in host function {HOST_MODULE}.{name}: {type(e).__name__}: {e}")
                return fallback
            if fallback is not None and not -2**31 <= result < 2**31:  # would fail converting to i32
                self.stop(f"got a value from {HOST_MODULE}.{name} too large for an i32 ({result})")
                return fallback
            return result

        return call

    # --- memory access ------------------------------------------------------------------------

    def _span(self, caller: Any, name: str, ptr: int, length: int) -> tuple[Any, int, int] | None:
        ptr, length = ptr & 0xFFFFFFFF, length & 0xFFFFFFFF  # i32 arrive signed
        memory = caller.get(MEMORY_EXPORT)
        size = memory.data_len(caller) if isinstance(memory, wasmtime_module().Memory) else 0
        if ptr + length > size:
            self.stop(f"called {HOST_MODULE}.{name} with bytes {ptr}..{ptr + length} outside its "
                      f"{size}-byte memory")
            return None
        return memory, ptr, length

    def _read(self, caller: Any, name: str, ptr: int, length: int, cap: int | None = None) -> bytes | None:
        span = self._span(caller, name, ptr, length)
        if span is None:
            return None
        memory, start, n = span
        return bytes(memory.read(caller, start, start + min(n, cap if cap is not None else n)))

    def _write(self, caller: Any, name: str, ptr: int, length: int, data: bytes) -> int:
        span = self._span(caller, name, ptr, min(length & 0xFFFFFFFF, len(data)))
        if span is None:
            return -1
        memory, start, n = span
        if n:
            memory.write(caller, data[:n], start)
        return n

    def _text(self, caller: Any, name: str, ptr: int, length: int) -> str | None:
        if self._messages[name] >= MAX_MESSAGES_PER_RUN:
            return None
        self._messages[name] += 1
        raw = self._read(caller, name, ptr, length, cap=MAX_TEXT_BYTES)
        if raw is None:
            return None
        text = raw.decode("utf-8", errors="replace")
        if self._messages[name] == MAX_MESSAGES_PER_RUN:
            text += f" (the limit of {MAX_MESSAGES_PER_RUN} per run is reached; further ones are dropped)"
        return text

    # --- the host interface (names match HOST_FUNCTIONS) -----------------------------------------

    def _host_input_size(self, caller: Any) -> int:
        return len(self._input)

    def _host_input_read(self, caller: Any, ptr: int, length: int) -> int:
        return self._write(caller, "input_read", ptr, length, self._input)

    def _host_state_size(self, caller: Any) -> int:
        return NO_STATE if self.state is None else len(self.state)

    def _host_state_read(self, caller: Any, ptr: int, length: int) -> int:
        return self._write(caller, "state_read", ptr, length, self.state or b"")

    def _host_checkpoint(self, caller: Any, ptr: int, length: int) -> int:
        data = self._read(caller, "checkpoint", ptr, length)
        if data is None or self._stop_reason is not None:
            return -1
        error = self._wait(self._host.checkpoint(data))
        if error is not None:
            self.stop(f"could not checkpoint its state: {error}")
            return -1
        self.state = data
        return 0

    def _wait(self, future: concurrent.futures.Future[str | None]) -> str | None:
        """Block this worker until the loop saved the checkpoint, unless the run is stopped."""
        while True:
            try:
                return future.result(timeout=_WAIT_SLICE_S)
            except concurrent.futures.TimeoutError:
                if self._stop_reason is not None:
                    future.cancel()
                    return "the run was stopped while the checkpoint was being saved"

    def _host_should_stop(self, caller: Any) -> int:
        if self._store is not None:
            self._store.set_fuel(self.limits.fuel)
        return 1 if self._stop_reason is not None or self._host.interrupt_requested() else 0

    def _host_progress_count(self, caller: Any, current: int, total: int) -> None:
        self._host.progress("count", current, None if total < 0 else total)

    def _host_progress_fraction(self, caller: Any, fraction: float) -> None:
        self._host.progress("percentage", fraction if math.isfinite(fraction) else 0.0, None)

    def _host_log(self, caller: Any, ptr: int, length: int) -> None:
        text = self._text(caller, "log", ptr, length)
        if text is not None:
            self._host.log(text)

    def _host_report_error(self, caller: Any, ptr: int, length: int) -> None:
        text = self._text(caller, "report_error", ptr, length)
        if text is not None:
            self._host.report_error(text)

    def _host_set_result(self, caller: Any, ptr: int, length: int) -> None:
        data = self._read(caller, "set_result", ptr, length)
        if data is not None:
            self._result = data


def _memory_size(store: Any, instance: Any) -> int:
    """Bytes of the exported memory after a failure (0 when there is none to look at)."""
    if store is None or instance is None:
        return 0
    try:
        memory = instance.exports(store).get(MEMORY_EXPORT)
        return memory.data_len(store) if isinstance(memory, wasmtime_module().Memory) else 0
    except Exception:
        return 0
