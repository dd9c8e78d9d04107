"""Plain, frozen records of what is stored and shown: jobs and events."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from ._progress import Progress
from ._status import JobStatus, Priority

__all__ = ("JobRecord", "JobEvent", "EVENT_KINDS")

EVENT_KINDS = (
    "queued", "started", "progress", "paused", "resumed", "completed", "failed", "cancelled",
    "non_critical_error",
)


def _when(ts: float | None) -> dt.datetime | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.timezone.utc)


@dataclasses.dataclass(frozen=True, slots=True)
class JobRecord:
    """A job as stored in jobs.db (without its state blob)."""

    id: str
    name: str
    version: int
    status: JobStatus
    priority: int
    parent_id: str | None
    initiated_by: str | None
    context: dict[str, Any] | None
    dedup_key: str | None
    pause_reason: str | None
    error: str | None
    traceback: str | None
    progress: Progress | None
    metrics: dict[str, Any]
    created_at: float
    started_at: float | None
    paused_at: float | None
    finished_at: float | None
    seq: int = 0
    spawn_key: str | None = None

    @property
    def priority_name(self) -> str:
        try:
            return Priority(self.priority).name
        except ValueError:
            return str(self.priority)

    @property
    def created(self) -> dt.datetime:
        return _when(self.created_at)  # type: ignore[return-value]

    @property
    def finished(self) -> dt.datetime | None:
        return _when(self.finished_at)


@dataclasses.dataclass(frozen=True, slots=True)
class JobEvent:
    """Something that happened to a job; see `EVENT_KINDS`."""

    kind: str
    job_id: str
    name: str
    status: JobStatus
    progress: Progress | None = None
    error: str | None = None
    at: float = 0.0
    parent_id: str | None = None
    result: Any = None


@dataclasses.dataclass(frozen=True, slots=True)
class FinishedJob:
    """What the manager knows of a job as it finishes: written by `Store.finish` to jobs and job_history.

    `status` is terminal; `result` is the encoded result (COMPLETED only); `finished_at` is the
    time of the finish, `started_at` None for a job that never ran; `context` is the dict given
    at dispatch; `progress` and `metrics` are the job's last ones.
    """

    id: str
    name: str
    version: int
    status: JobStatus
    priority: int
    created_at: float
    finished_at: float
    started_at: float | None = None
    error: str | None = None
    traceback: str | None = None
    result: bytes | None = None
    parent_id: str | None = None
    initiated_by: str | None = None
    context: dict[str, Any] | None = None
    progress: Progress | None = None
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
