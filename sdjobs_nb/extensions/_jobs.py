"""One `Job` dataclass per job an extension declares, built when the extension is loaded."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Literal

from .._job import Job
from ._data import BYTES, JSON
from .._errors import ExtensionMismatch
from ._runner import run_in_sandbox

if TYPE_CHECKING:
    from .._runtime.context import JobContext
    from ._loader import Extension

__all__ = ("make_job_class",)

_FIELDS = [
    ("input", bytes, dataclasses.field(default=b"")),
    ("input_format", Literal["bytes", "json"], dataclasses.field(default=JSON)),
    ("module_sha256", str, dataclasses.field(default="")),
    ("state", bytes | None, dataclasses.field(default=None)),
]


def make_job_class(extension: Extension, job_name: str) -> type[Job]:
    """Build and register the job class named ``f"{extension.id}:{job_name}"``.

    Its fields are the job's state: the input bytes and their format, the sha256 of the module
    that started it, and the bytes the module last checkpointed.
    """
    name = f"{extension.id}:{job_name}"
    namespace = {
        "NAME": name,
        "VERSION": 1,
        "_EXTENSION_JOB": True,
        "extension": extension,
        "job_name": job_name,
        "__module__": "sdjobs_nb.extensions",
        "__qualname__": f"ExtensionJob[{name}]",
        "__doc__": f"Job {job_name!r} of WebAssembly extension {extension.id!r} ({extension.path}).",
        "__post_init__": _check_module,
        "run": _run,
    }
    return dataclasses.make_dataclass("ExtensionJob", _FIELDS, bases=(Job,), namespace=namespace)


def _check_module(self: Any) -> None:
    """Bind a new job to the loaded module; refuse stored state from another module."""
    if self.input_format not in (BYTES, JSON):
        raise ValueError(f"input_format must be {BYTES!r} or {JSON!r}, got {self.input_format!r}")
    extension = type(self).extension
    if not self.module_sha256:
        self.module_sha256 = extension.sha256
    elif self.module_sha256 != extension.sha256:
        raise ExtensionMismatch(
            f"job {type(self).NAME} was started by a module with sha256 {self.module_sha256[:16]}..., but "
            f"extension {extension.id!r} is now {extension.path} (sha256 {extension.sha256[:16]}...); load the "
            f"module it started with under the same id to resume it. The stored job was left as it is."
        )


async def _run(self: Any, ctx: JobContext) -> Any:
    return await run_in_sandbox(self, ctx)
