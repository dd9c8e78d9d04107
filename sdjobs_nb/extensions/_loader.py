"""Loading extension modules, the process-wide table of loaded extensions, and dispatching their jobs."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._job import Job, registry
from ._abi import check_imports, check_name, declared_jobs, wasmtime_module
from ._data import encode_input
from .._errors import InvalidExtension, UnknownExtension
from ._jobs import make_job_class
from ._sandbox import Limits, compile_module

if TYPE_CHECKING:
    from .._handle import JobHandle
    from .._manager import JobManager

__all__ = ("Extension", "load_extension", "dispatch_extension_job", "extension_job", "job_class", "loaded_extensions")

_WASM_MAGIC = b"\0asm"

_loaded: dict[str, Extension] = {}
_lock = threading.Lock()


@dataclasses.dataclass(frozen=True)
class Extension:
    """A loaded WebAssembly module: its id, where it came from, its jobs and the limits its runs get."""

    id: str
    path: Path
    sha256: str
    jobs: tuple[str, ...]
    limits: Limits
    compiled: bytes = dataclasses.field(repr=False, compare=False)

    def job_names(self) -> list[str]:
        """Return the registry names of this extension's jobs (``"<id>:<job>"``)."""
        return [f"{self.id}:{job}" for job in self.jobs]


def load_extension(manager: JobManager | None, path: str | os.PathLike[str], extension_id: str, *,
                   memory_bytes: int = Limits.memory_bytes, fuel: int = Limits.fuel,
                   time_limit: float | None = Limits.time_limit) -> Extension:
    """Load a .wasm or .wat module and register one job class per job it declares.

    Jobs are exported functions ``job_<name>: () -> i32``; imports are checked against the host
    interface. Loading again under the same id replaces the extension (jobs started by another
    module then refuse to resume). The registry is process-wide, so `manager` may be None (to load
    before opening a library whose queued jobs need it). Raises `InvalidExtension` for a malformed
    or over-reaching module.
    """
    check_name(extension_id, "extension_id")
    limits = Limits(memory_bytes=memory_bytes, fuel=fuel, time_limit=time_limit)
    source = Path(os.fspath(path)).expanduser()
    where = f"extension module {str(source)!r}"
    wasm = _read_wasm(source, where)
    compiled, jobs = _compile(wasm, where)
    extension = Extension(extension_id, source.resolve(), hashlib.sha256(wasm).hexdigest(), jobs, limits, compiled)
    _install(extension)
    return extension


def _read_wasm(source: Path, where: str) -> bytes:
    w = wasmtime_module()
    try:
        raw = source.read_bytes()
    except OSError as e:
        raise InvalidExtension(f"cannot read {where}: {e}") from e
    if source.suffix == ".wat":
        try:
            return bytes(w.wat2wasm(raw.decode("utf-8")))
        except (UnicodeDecodeError, w.WasmtimeError) as e:
            raise InvalidExtension(f"{where} is not valid WebAssembly text: {_first_lines(e)}") from None
    if not raw.startswith(_WASM_MAGIC):
        raise InvalidExtension(f"{where} is not a WebAssembly binary (it does not start with \\0asm); "
                               f"name text-format modules '.wat'")
    return raw


def _compile(wasm: bytes, where: str) -> tuple[bytes, tuple[str, ...]]:
    w = wasmtime_module()
    try:
        module, compiled = compile_module(wasm)
    except w.WasmtimeError as e:
        raise InvalidExtension(f"{where} is malformed: {_first_lines(e)}") from None
    check_imports(module, where)
    return compiled, declared_jobs(module, where)


def _install(extension: Extension) -> None:
    """Register the extension's job classes, replacing (and dropping) those of a previous load."""
    with _lock:
        previous = _loaded.get(extension.id)
        for job in extension.jobs:
            make_job_class(extension, job)
        if previous is not None:
            for name in set(previous.job_names()) - set(extension.job_names()):
                registry.unregister(name)
        _loaded[extension.id] = extension


def loaded_extensions() -> dict[str, Extension]:
    """Return the extensions loaded in this process, by id."""
    with _lock:
        return dict(_loaded)


def job_class(extension_id: str, job_name: str) -> type[Job]:
    """Return the registered class of a loaded extension's job, or raise `UnknownExtension`."""
    with _lock:
        extension = _loaded.get(extension_id)
        known = ", ".join(sorted(_loaded)) or "none"
    if extension is None:
        raise UnknownExtension(f"no extension {extension_id!r} is loaded (loaded: {known}); call "
                               f"manager.load_extension(path, {extension_id!r}) first")
    if job_name not in extension.jobs:
        raise UnknownExtension(f"extension {extension_id!r} ({extension.path}) declares no job {job_name!r}; "
                               f"its jobs are: {', '.join(extension.jobs)}")
    return registry.get(f"{extension_id}:{job_name}")


def extension_job(extension_id: str, job_name: str, job_data: Any = None) -> Job:
    """Return a new job of a loaded extension (e.g. for `ctx.spawn_children`); `job_data` is its input."""
    cls = job_class(extension_id, job_name)
    data, input_format = encode_input(job_data)
    return cls(input=data, input_format=input_format)  # type: ignore[call-arg]


async def dispatch_extension_job(manager: JobManager, extension_id: str, job_name: str,
                                 job_data: Any = None, **options: Any) -> JobHandle:
    """Dispatch job `job_name` of a loaded extension with `job_data` (bytes or JSON-able) as its input."""
    return await manager.dispatch(extension_job(extension_id, job_name, job_data), **options)


def _first_lines(error: BaseException, limit: int = 6) -> str:
    lines = [line.rstrip() for line in str(error).splitlines() if line.strip()]
    text = " | ".join(line.strip() for line in lines[:limit])
    return text + (" ..." if len(lines) > limit else "")
