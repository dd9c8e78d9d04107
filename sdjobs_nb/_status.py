"""Job status, priority, and the one table of allowed transitions."""

from __future__ import annotations

import enum

from ._errors import InvalidTransition

__all__ = ("JobStatus", "Priority", "PauseReason", "Request", "EventKind", "TERMINAL", "ACTIVE", "check_transition")


class JobStatus(str, enum.Enum):
    """Where a job is in its life; stored as the lowercase value."""

    #: waiting for a free slot
    QUEUED = "queued"
    #: its `run` coroutine is executing
    RUNNING = "running"
    #: stopped with its state saved; can be resumed
    PAUSED = "paused"
    #: `run` returned; terminal
    COMPLETED = "completed"
    #: `run` raised; terminal
    FAILED = "failed"
    #: stopped on request; terminal
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


class Priority(enum.IntEnum):
    """Queued jobs start by priority (highest first), then first come first served."""

    LOW = -1
    NORMAL = 0
    HIGH = 1
    CRITICAL = 10


class _Word(str, enum.Enum):
    """A str enum that prints, compares and hashes as its value (so `"user" in {PauseReason.USER}`)."""

    def __str__(self) -> str:
        return self.value

    __hash__ = str.__hash__


class PauseReason(_Word):
    """Why a job is paused; stored in jobs.db as the lowercase value."""

    #: asked for by a user (`pause()`, a button, the CLI)
    USER = "user"
    #: its process died or its library was closed; `resume_interrupted()` takes these
    INTERRUPTED = "interrupted"
    #: its parent was paused
    PARENT = "parent"
    #: the job raised `sj.Interrupted` itself
    JOB = "job"


class Request(_Word):
    """A pending interruption of a running job (`ctx.interrupt_requested`)."""

    PAUSE = "pause"
    CANCEL = "cancel"


class EventKind(_Word):
    """What a `JobEvent` announces (`event.kind` compares equal to these values)."""

    QUEUED = "queued"
    STARTED = "started"
    PROGRESS = "progress"
    PAUSED = "paused"
    RESUMED = "resumed"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    NON_CRITICAL_ERROR = "non_critical_error"


TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
ACTIVE = frozenset({JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED})

_S = JobStatus
ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    _S.QUEUED: frozenset({_S.RUNNING, _S.PAUSED, _S.CANCELLED}),
    _S.RUNNING: frozenset({_S.PAUSED, _S.COMPLETED, _S.FAILED, _S.CANCELLED}),
    _S.PAUSED: frozenset({_S.QUEUED, _S.CANCELLED}),
    _S.COMPLETED: frozenset(),
    _S.FAILED: frozenset(),
    _S.CANCELLED: frozenset(),
}


def check_transition(job_id: str, old: JobStatus, new: JobStatus) -> None:
    """Raise `InvalidTransition` unless `old -> new` is allowed."""
    if new not in ALLOWED[old]:
        hint = "it is finished and never runs again" if old.is_terminal else f"it is {old.value}"
        raise InvalidTransition(f"job {job_id} cannot go from {old.value} to {new.value}: {hint}")


def can_transition(old: JobStatus, new: JobStatus) -> bool:
    """Tell whether `old -> new` is allowed (used to enable buttons)."""
    return new in ALLOWED[old]
