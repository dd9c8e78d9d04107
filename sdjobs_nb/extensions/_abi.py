"""The host interface a module may import, and the checks a module must pass to be loaded."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._errors import InvalidExtension, MissingExtra

if TYPE_CHECKING:
    import wasmtime

__all__ = (
    "HOST_MODULE", "HOST_FUNCTIONS", "JOB_PREFIX", "MEMORY_EXPORT", "DONE", "STOPPED", "NO_STATE",
    "HostFunction", "wasmtime_module", "check_imports", "declared_jobs", "check_name",
)

HOST_MODULE = "sdjobs"
JOB_PREFIX = "job_"
MEMORY_EXPORT = "memory"

DONE = 0      #: a job function's return code: finished; the result is what it passed to set_result
STOPPED = 1   #: a job function's return code: stopped early (should_stop said so); the job is saved PAUSED
NO_STATE = -1  #: state_size() when nothing was ever checkpointed

_NAME = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class HostFunction:
    """One function of the host interface: its wasm signature and what it does."""

    params: tuple[str, ...]
    results: tuple[str, ...]
    reads_memory: bool
    doc: str

    @property
    def signature(self) -> str:
        return f"({', '.join(self.params)}) -> ({', '.join(self.results)})"


def _f(params: str, results: str, doc: str, *, memory: bool = False) -> HostFunction:
    return HostFunction(tuple(params.split()), tuple(results.split()), memory, doc)


# the whole way out of the sandbox; "ptr, len" are a byte range of the exported memory
HOST_FUNCTIONS: dict[str, HostFunction] = {
    "input_size": _f("", "i32", "size in bytes of the job's input"),
    "input_read": _f("i32 i32", "i32", "copy up to len input bytes to ptr; returns the number copied", memory=True),
    "state_size": _f("", "i32", "size of the last checkpointed state, or -1 when there is none"),
    "state_read": _f("i32 i32", "i32", "copy up to len bytes of that state to ptr; returns the number copied", memory=True),
    "checkpoint": _f("i32 i32", "i32", "save len bytes at ptr as the job's state now; 0 = saved, -1 = not saved (the run is being stopped)", memory=True),
    "should_stop": _f("", "i32", "1 when a pause or cancel is pending (save, then return 1), else 0; refills the fuel"),
    "progress_count": _f("i64 i64", "", "report current of total items (total < 0: unknown)"),
    "progress_fraction": _f("f64", "", "report progress as a fraction from 0.0 to 1.0"),
    "log": _f("i32 i32", "", "log one UTF-8 line (ptr, len) to the job's log", memory=True),
    "report_error": _f("i32 i32", "", "record a non-critical error, UTF-8 message at ptr, len; the job goes on", memory=True),
    "set_result": _f("i32 i32", "", "set the job's result to the bytes at ptr, len (the last call wins)", memory=True),
}


def wasmtime_module() -> Any:
    """Import wasmtime, or say which extra installs it."""
    try:
        import wasmtime
    except ImportError as e:
        raise MissingExtra("extension jobs", "extensions", "wasmtime") from e
    return wasmtime


def check_name(value: object, what: str) -> str:
    """Return `value` if it is a plain name (letters, digits, '_', '.', '-'), else raise."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidExtension(f"{what} must be a non-empty string of letters, digits, '_', '.' or '-', got {value!r}")
    return value


def check_imports(module: wasmtime.Module, where: str) -> None:
    """Refuse a module that imports anything but host functions with their exact signatures."""
    problems = [p for imp in module.imports if (p := _import_problem(imp)) is not None]
    if problems:
        available = ", ".join(f"{HOST_MODULE}.{n}" for n in HOST_FUNCTIONS)
        raise InvalidExtension(
            f"{where} imports what the host does not provide: {'; '.join(problems)}. "
            f"Extensions may import only these functions: {available}"
        )


def _import_problem(imp: Any) -> str | None:
    w = wasmtime_module()
    label = f"{imp.module}.{imp.name}"
    host = HOST_FUNCTIONS.get(imp.name) if imp.module == HOST_MODULE else None
    if host is None:
        return f"{label} (no such host function)"
    if not isinstance(imp.type, w.FuncType):
        return f"{label} must be imported as a function"
    got = _signature(imp.type)
    if got != (host.params, host.results):
        return f"{label} has signature {_show(got)}, expected {host.signature}"
    return None


def declared_jobs(module: wasmtime.Module, where: str) -> tuple[str, ...]:
    """Return the job names a module declares by exporting `job_<name>: () -> i32` functions."""
    w = wasmtime_module()
    jobs, problems = [], []
    for exp in module.exports:
        if not exp.name.startswith(JOB_PREFIX):
            continue
        name = exp.name[len(JOB_PREFIX):]
        if not isinstance(exp.type, w.FuncType) or _signature(exp.type) != ((), ("i32",)):
            problems.append(f"export {exp.name!r} must be a function of type () -> (i32)")
        elif not _NAME.fullmatch(name):
            problems.append(f"export {exp.name!r} has an invalid job name (use letters, digits, '_', '.', '-')")
        else:
            jobs.append(name)
    if problems:
        raise InvalidExtension(f"{where}: " + "; ".join(problems))
    if not jobs:
        raise InvalidExtension(f"{where} declares no jobs: export at least one function named "
                               f"'{JOB_PREFIX}<name>' of type () -> (i32)")
    _check_memory(module, where)
    return tuple(jobs)


def _check_memory(module: wasmtime.Module, where: str) -> None:
    """Host functions that take (ptr, len) need a plain 32-bit memory exported as 'memory'."""
    w = wasmtime_module()
    needing = [i.name for i in module.imports if i.module == HOST_MODULE and HOST_FUNCTIONS[i.name].reads_memory]
    if not needing:
        return
    memory = next((e.type for e in module.exports if e.name == MEMORY_EXPORT), None)
    if not isinstance(memory, w.MemoryType) or memory.is_64 or memory.is_shared:
        raise InvalidExtension(
            f"{where} imports {', '.join(f'{HOST_MODULE}.{n}' for n in needing)}, which pass bytes through "
            f"memory, but does not export a 32-bit, unshared memory named {MEMORY_EXPORT!r}"
        )


def _signature(ty: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return tuple(str(p) for p in ty.params), tuple(str(r) for r in ty.results)


def _show(sig: tuple[tuple[str, ...], tuple[str, ...]]) -> str:
    return f"({', '.join(sig[0])}) -> ({', '.join(sig[1])})"
