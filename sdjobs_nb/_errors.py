"""Every error sdjobs_nb raises, in one hierarchy.

Each class says when it is raised; each message says what to do.
"""

from __future__ import annotations

__all__ = (
    "SdjobsError",
    "JobDefinitionError",
    "SerializationError",
    "StateTooLarge",
    "UnknownJob",
    "InvalidJobData",
    "VersionMismatch",
    "InvalidTransition",
    "NotResumable",
    "JobNotFound",
    "LibraryError",
    "LibraryLocked",
    "ReadOnlyLibrary",
    "SchemaTooNew",
    "ManagerClosed",
    "JobFailed",
    "ChildFailed",
    "Cancelled",
    "Interrupted",
    "Critical",
    "BrokenJob",
    "EventsOverflow",
    "MissingExtra",
    "ExtensionError",
    "InvalidExtension",
    "UnknownExtension",
    "ExtensionMismatch",
    "ExtensionTrap",
    "SyncInRunningLoop",
    "NestedLoopWarning",
)


class SdjobsError(Exception):
    """Base class of every error raised by sdjobs_nb itself."""


class JobDefinitionError(SdjobsError, TypeError):
    """Raised when a `Job` subclass is defined wrongly (bad NAME, VERSION, or a name clash)."""


class SerializationError(SdjobsError, TypeError):
    """Raised when job state, a result or a context holds a value that cannot be stored."""


class StateTooLarge(SerializationError):
    """Raised when a job's encoded state exceeds the library's `max_state_bytes`."""


class UnknownJob(SdjobsError, LookupError):
    """Raised when a job name is not in the registry (the defining code has not run)."""


class InvalidJobData(SdjobsError, ValueError):
    """Raised when data for a job has missing, extra or ill-typed fields."""


class VersionMismatch(SdjobsError):
    """Raised when a stored job's VERSION differs from its class and no `migrate` exists."""

    def __init__(self, name: str, stored: int, current: int) -> None:
        self.name, self.stored, self.current = name, stored, current
        super().__init__(
            f"job {name!r} was stored with VERSION {stored} but the class is VERSION {current}; "
            f"define `@classmethod migrate(cls, data, from_version)` on the class to convert it (or go back "
            f"to VERSION {stored}). The stored job was left untouched and waits in manager.broken(); resume it then."
        )


class InvalidTransition(SdjobsError):
    """Raised when a job is asked to move to a status its current status does not allow."""


class NotResumable(InvalidTransition):
    """Raised when pausing or resuming a job whose class sets IS_RESUMABLE = False."""


class JobNotFound(SdjobsError, KeyError):
    """Raised when no job with the given id exists in the library."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "job not found"


class LibraryError(SdjobsError, OSError):
    """Raised when a library folder or its jobs.db cannot be used (not a folder, not SQLite, ...)."""


class LibraryLocked(LibraryError):
    """Raised when another manager (in another process, or on another event loop of this one) owns the library."""

    def __init__(self, path: str, pid: int | None, *, here: bool = False) -> None:
        self.path, self.pid = path, pid
        if here:
            where = (f"another manager in this process (pid {pid}), running on another event loop (for "
                     f"example one opened with open_sync in another thread); close that manager first "
                     f"(`await manager.close()` on its loop, or `sj.run_sync(manager.close())` in its thread)")
        else:
            holder = f"process {pid}" if pid else "another process"
            where = f"{holder}; close the manager there, or stop that process"
        super().__init__(
            f"library {path!r} is owned by {where}; or open it with read_only=True to look without running jobs"
        )


class ReadOnlyLibrary(LibraryError):
    """Raised when a read-only view is asked to run or change jobs."""


class SchemaTooNew(LibraryError):
    """Raised when jobs.db was written by a newer sdjobs_nb; it is never modified."""


class ManagerClosed(SdjobsError, RuntimeError):
    """Raised when a closed manager is used."""


class JobFailed(SdjobsError):
    """Raised by `JobHandle.wait()` when the job failed; carries the job's own message and traceback."""

    def __init__(self, job_id: str, name: str, message: str, traceback_text: str | None) -> None:
        self.job_id, self.name = job_id, name
        self.message, self.traceback_text = message, traceback_text
        super().__init__(f"job {name} ({job_id}) failed: {message}")

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text}\n\nJob traceback:\n{self.traceback_text}" if self.traceback_text else text


class ChildFailed(JobFailed):
    """Raised by `ctx.wait_for_children` when a child job failed or was cancelled."""


class Cancelled(SdjobsError):
    """Raised by `JobHandle.wait()` when the job was cancelled."""


class Interrupted(BaseException):
    """Raised by `ctx.check_interrupted()` on a pending pause or cancel; raise it to pause yourself.

    Let it propagate out of `run`: the job is then saved PAUSED (or CANCELLED when a cancel
    was requested). Like `asyncio.CancelledError` it is a `BaseException`, so `except Exception`
    around a job's work does not swallow a pause; catch `sj.Interrupted` by name (and re-raise).
    """


class Critical(Exception):
    """Raise from `run` for a permanent failure: the job becomes FAILED and never resumes."""


class BrokenJob(SdjobsError):
    """Raised when a stored job cannot be loaded (corrupt data, unknown name); the record is kept."""


class EventsOverflow(SdjobsError):
    """Raised inside `manager.events()` when a subscriber fell too far behind on state changes."""


class MissingExtra(SdjobsError, ImportError):
    """Raised when a feature needs an optional dependency that is not installed."""

    def __init__(self, feature: str, extra: str, module: str) -> None:
        super().__init__(
            f"{feature} needs {module}, which is not installed; "
            f"install it with: pip install 'sdjobs-nb[{extra}]'"
        )


class ExtensionError(SdjobsError):
    """Base class of the errors about WebAssembly extensions."""


class InvalidExtension(ExtensionError, ValueError):
    """Raised by `load_extension` when a module is malformed or asks for more than the host interface."""


class UnknownExtension(UnknownJob):
    """Raised when dispatching a job of an extension that is not loaded, or a job it does not declare."""


class ExtensionMismatch(BrokenJob):
    """Raised when a stored extension job was started by another module than the one now loaded.

    The job is left as it is (paused or queued); load the module it started with to resume it.
    """


class ExtensionTrap(Critical):
    """Raised from an extension job's `run` when the guest traps, hits a limit or misuses the host.

    The job becomes FAILED with this message; the wasm backtrace is in the stored traceback.
    """


class SyncInRunningLoop(SdjobsError, RuntimeError):
    """Raised when a sync helper is called while an event loop runs in the thread (a notebook): use `await`."""


class NestedLoopWarning(RuntimeWarning):
    """Warned by `allow_nested_loop()`: on ipykernel >= 7.3, widget clicks during a nested run are dropped."""
