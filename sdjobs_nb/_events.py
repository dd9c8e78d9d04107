"""Fan-out of job events and status/progress streams with bounded memory.

State changes are never dropped; progress coalesces to the newest snapshot per job. A
subscriber that falls more than `max_pending` state changes behind is ended with
`EventsOverflow` instead of growing without bound.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

from ._errors import EventsOverflow
from ._records import JobEvent

__all__ = ("EventBus", "LatestSlot", "DEFAULT_MAX_PENDING")

DEFAULT_MAX_PENDING = 10_000

T = TypeVar("T")


class _Subscriber:
    __slots__ = ("states", "progress", "wake", "overflowed", "max_pending", "closed")

    def __init__(self, max_pending: int) -> None:
        self.states: deque[JobEvent] = deque()
        self.progress: OrderedDict[str, JobEvent] = OrderedDict()
        self.wake = asyncio.Event()
        self.overflowed = False
        self.closed = False
        self.max_pending = max_pending

    def put(self, event: JobEvent) -> None:
        if event.kind == "progress":
            self.progress.pop(event.job_id, None)
            self.progress[event.job_id] = event
        else:
            earlier = self.progress.pop(event.job_id, None)
            if earlier is not None:  # keep a job's progress before its later state change
                self.states.append(earlier)
            self.states.append(event)
            if len(self.states) > self.max_pending:
                self.overflowed = True
                self.states.clear()
                self.progress.clear()
        self.wake.set()

    def pop(self) -> JobEvent | None:
        if self.states:
            return self.states.popleft()
        if self.progress:
            return self.progress.popitem(last=False)[1]
        return None


class EventBus:
    """Delivers every `JobEvent` to each live `subscribe()` iterator."""

    def __init__(self, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self._subscribers: set[_Subscriber] = set()
        self._max_pending = max_pending

    def publish(self, event: JobEvent) -> None:
        for sub in self._subscribers:
            sub.put(event)

    @property
    def has_subscribers(self) -> bool:
        return bool(self._subscribers)

    def close(self) -> None:
        """End every subscription (after it has read what is pending)."""
        for sub in self._subscribers:
            sub.closed = True
            sub.wake.set()

    async def subscribe(self) -> AsyncIterator[JobEvent]:
        sub = _Subscriber(self._max_pending)
        self._subscribers.add(sub)
        try:
            while True:
                if sub.overflowed:
                    raise EventsOverflow(
                        f"an events() subscriber fell more than {sub.max_pending:,} state changes behind "
                        f"and was ended; read events faster or subscribe again"
                    )
                event = sub.pop()
                if event is not None:
                    yield event
                    continue
                if sub.closed:
                    return
                sub.wake.clear()
                await sub.wake.wait()
        finally:
            self._subscribers.discard(sub)


class LatestSlot(Generic[T]):
    """A one-value mailbox: a new value replaces an unread one (latest wins)."""

    __slots__ = ("value", "has_value", "wake", "closed")

    def __init__(self) -> None:
        self.value: T | None = None
        self.has_value = False
        self.wake = asyncio.Event()
        self.closed = False

    def put(self, value: T) -> None:
        self.value, self.has_value = value, True
        self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.wake.set()

    async def get(self) -> tuple[bool, T | None]:
        """Return (True, value) for the newest value, or (False, None) once closed and drained."""
        while True:
            if self.has_value:
                value, self.value, self.has_value = self.value, None, False
                return True, value
            if self.closed:
                return False, None
            self.wake.clear()
            await self.wake.wait()
