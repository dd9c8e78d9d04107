"""Job status, priority, and the one table of allowed transitions."""

from __future__ import annotations

import enum

from ._errors import InvalidTransition

__all__ = ("JobStatus", "Priority", "TERMINAL", "ACTIVE", "check_transition")


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
