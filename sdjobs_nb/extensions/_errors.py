"""Errors raised by extension loading, dispatch and sandboxed runs."""

from __future__ import annotations

from .._errors import BrokenJob, Critical, SdjobsError, UnknownJob

__all__ = ("ExtensionError", "InvalidExtension", "UnknownExtension", "ExtensionMismatch", "ExtensionTrap")


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
