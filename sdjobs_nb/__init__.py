"""sdjobs_nb: resumable background jobs for Jupyter notebooks.

Define a job as a dataclass subclass of `Job` with `async def run(self, ctx)`, open a library
with `JobManager.open(folder)`, and `dispatch` it: the cell returns at once, the job runs on
the kernel's loop, and its state lives in `<folder>/jobs.db` so it survives the kernel.
"""

import logging as _logging

from ._runtime.context import JobContext
from ._errors import (
    BrokenJob,
    Cancelled,
    ChildFailed,
    Critical,
    EventsOverflow,
    ExtensionError,
    ExtensionMismatch,
    ExtensionTrap,
    InvalidExtension,
    InvalidJobData,
    InvalidTransition,
    Interrupted,
    JobDefinitionError,
    JobFailed,
    JobNotFound,
    LibraryError,
    LibraryLocked,
    ManagerClosed,
    MissingExtra,
    NestedLoopWarning,
    NotResumable,
    ReadOnlyLibrary,
    SchemaTooNew,
    SdjobsError,
    SerializationError,
    StateTooLarge,
    SyncInRunningLoop,
    UnknownExtension,
    UnknownJob,
    VersionMismatch,
)
from ._handle import JobHandle
from ._job import Job, JobRegistry, registry
from ._manager import JobManager
from ._progress import Progress
from ._records import JobEvent, JobRecord
from ._status import JobStatus, Priority
from ._sync import allow_nested_loop, open_sync, run_sync, wait_sync

__version__ = "0.1.0"

# a library adds no output of its own: the application decides where log records go
_logging.getLogger("sdjobs_nb").addHandler(_logging.NullHandler())

__all__ = (
    "BrokenJob",
    "Cancelled",
    "ChildFailed",
    "Critical",
    "EventsOverflow",
    "ExtensionError",
    "ExtensionMismatch",
    "ExtensionTrap",
    "InvalidExtension",
    "InvalidJobData",
    "InvalidTransition",
    "Interrupted",
    "Job",
    "JobContext",
    "JobDefinitionError",
    "JobEvent",
    "JobFailed",
    "JobHandle",
    "JobManager",
    "JobNotFound",
    "JobRecord",
    "JobRegistry",
    "JobStatus",
    "LibraryError",
    "LibraryLocked",
    "ManagerClosed",
    "MissingExtra",
    "NestedLoopWarning",
    "NotResumable",
    "Priority",
    "Progress",
    "ReadOnlyLibrary",
    "SchemaTooNew",
    "SdjobsError",
    "SerializationError",
    "StateTooLarge",
    "SyncInRunningLoop",
    "UnknownExtension",
    "UnknownJob",
    "VersionMismatch",
    "allow_nested_loop",
    "open_sync",
    "registry",
    "run_sync",
    "wait_sync",
)
