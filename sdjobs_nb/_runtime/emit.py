"""Publishing a job's events to `manager.events()` subscribers."""

from __future__ import annotations

import time
from typing import Any

from .._events import EventBus
from .._records import JobEvent
from .._status import EventKind
from .entry import JobEntry

__all__ = ("emit",)


def emit(bus: EventBus, kind: EventKind, entry: JobEntry, *, error: str | None = None, result: Any = None) -> None:
    """Publish one event about `entry` (nothing is built when nobody listens)."""
    if not bus.has_subscribers:
        return
    bus.publish(JobEvent(kind=kind, job_id=entry.id, name=entry.name, status=entry.status, progress=entry.progress,
                         error=error, at=time.time(), parent_id=entry.parent_id, result=result))
