"""Extension jobs: third-party job code run in a WebAssembly sandbox (needs the `extensions` extra).

A module declares its jobs by exporting functions ``job_<name>`` of type ``() -> i32``;
``manager.load_extension(path, "demo")`` registers each as a job named ``"demo:<name>"`` and
``await manager.dispatch_extension_job("demo", "<name>", data)`` returns an ordinary handle.

The guest's only way out is the host interface, functions it imports from module ``"sdjobs"``
(``ptr, len`` are a byte range of the memory the module exports as ``"memory"``):

=================================  ==============================================================
``input_size() -> i32``            size of the job's input (bytes as given, or compact JSON)
``input_read(ptr, len) -> i32``    copy up to len input bytes to ptr; returns the number copied
``state_size() -> i32``            size of the last checkpointed state, -1 if none (a fresh start)
``state_read(ptr, len) -> i32``    copy up to len bytes of that state to ptr
``checkpoint(ptr, len) -> i32``    save these bytes as the job's state now: 0 saved, -1 not saved
``should_stop() -> i32``           1 if a pause or cancel is pending: checkpoint, then return 1
``progress_count(i64, i64)``       current of total items (total < 0: unknown)
``progress_fraction(f64)``         progress from 0.0 to 1.0
``log(ptr, len)``                  one UTF-8 line to the job's log
``report_error(ptr, len)``         a non-critical error; the job goes on
``set_result(ptr, len)``           the job's result bytes (parsed as JSON when the input was JSON)
=================================  ==============================================================

A job function returns 0 when done, 1 when it stopped because ``should_stop`` said so (the job
is saved PAUSED, or CANCELLED, with its last checkpoint), and anything else to fail. No WASI,
files, network or clock. Each run gets its own engine and store, a memory cap, fuel (wasm
instructions allowed between two ``should_stop`` calls) and an optional wall-clock time limit;
a trap or a limit makes the job FAILED with the reason. See README.md next to this file.
"""

from ._abi import DONE, HOST_FUNCTIONS, HOST_MODULE, JOB_PREFIX, NO_STATE, STOPPED, HostFunction
from .._errors import ExtensionError, ExtensionMismatch, ExtensionTrap, InvalidExtension, UnknownExtension
from ._loader import (
    Extension, dispatch_extension_job, extension_job, job_class, load_extension, loaded_extensions,
)
from ._sandbox import Limits

__all__ = (
    "DONE",
    "Extension",
    "ExtensionError",
    "ExtensionMismatch",
    "ExtensionTrap",
    "HOST_FUNCTIONS",
    "HOST_MODULE",
    "HostFunction",
    "InvalidExtension",
    "JOB_PREFIX",
    "Limits",
    "NO_STATE",
    "STOPPED",
    "UnknownExtension",
    "dispatch_extension_job",
    "extension_job",
    "job_class",
    "load_extension",
    "loaded_extensions",
)
