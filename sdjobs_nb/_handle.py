"""`JobHandle`: a thin live view over one job id."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ._errors import JobNotFound
from ._progress import Progress
from ._records import JobRecord
from ._status import JobStatus

if TYPE_CHECKING:
    from ._runtime.entry import JobEntry
    from ._manager import JobManager

__all__ = ("JobHandle",)


class JobHandle:
    """What `dispatch` returns: control, await and watch one job.

    As the last expression of a notebook cell it shows a live widget; elsewhere its repr is
    one line of text.
    """

    __slots__ = ("_manager", "id", "name", "_entry", "_record")

    def __init__(self, manager: JobManager, entry: JobEntry | None, record: JobRecord | None = None) -> None:
        self._manager = manager
        self._entry = entry
        self._record = record
        self.id: str = entry.id if entry is not None else record.id  # type: ignore[union-attr]
        self.name: str = entry.name if entry is not None else record.name  # type: ignore[union-attr]

    @classmethod
    def for_record(cls, manager: JobManager, job_id: str) -> JobHandle:
        record = manager.queries.record_now(job_id)
        if record is None:
            raise JobNotFound(f"no job with id {job_id!r} in library {str(manager.path)!r}")
        return cls(manager, None, record)

    def _live(self, name: str) -> Any:
        """Read an attribute from the live entry while the job is in memory, else from its record."""
        return getattr(self._entry if self._entry is not None else self._record, name)

    @property
    def manager(self) -> JobManager:
        return self._manager

    @property
    def parent_id(self) -> str | None:
        return self._live("parent_id")

    @property
    def current_status(self) -> JobStatus:
        """The status right now."""
        return self._live("status")

    @property
    def current_progress(self) -> Progress | None:
        """The newest progress snapshot (updated up to 10 times a second), or None."""
        return self._live("progress")

    @property
    def pause_reason(self) -> str | None:
        """Why a paused job is paused: 'user', 'interrupted' (crash or close), 'parent' or 'job'."""
        return self._live("pause_reason")

    @property
    def error(self) -> str | None:
        """The failure message of a failed job, else None."""
        return self._live("error")

    @property
    def metrics(self) -> dict[str, Any]:
        """Items, bytes, checkpoints, errors, elapsed time and memory: live while it runs."""
        entry = self._entry
        if entry is not None and entry.ctx is not None:
            return entry.ctx.get_metrics()
        return dict(entry.metrics if entry is not None else self._record.metrics)  # type: ignore[union-attr]

    @property
    def priority(self) -> int:
        return self._live("priority")

    @property
    def created_at(self) -> float:
        """When it was dispatched (epoch seconds)."""
        return self._live("created_at")

    @property
    def started_at(self) -> float | None:
        """When it first ran (epoch seconds), or None."""
        return self._live("started_at")

    async def wait(self) -> Any:
        """Wait for the job to finish and return its result; raise `JobFailed` or `Cancelled`."""
        if self._entry is not None:  # its outcome stays on the entry once known
            done = self._entry.done_future()
            outcome = done.result() if done.done() else await asyncio.shield(done)
            return outcome.unwrap(self.id, self.name)
        return await self._manager.result(self.id)

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the result from synchronous code (a script); in a notebook use `await handle.wait()`."""
        from ._loops import wait_sync

        return wait_sync(self, timeout)

    async def pause(self) -> None:
        """Pause the job; returns once it is PAUSED with its state saved."""
        await self._manager.pause(self.id)

    async def resume(self) -> None:
        """Resume a paused job from its saved state."""
        await self._manager.resume(self.id)

    async def cancel(self) -> None:
        """Cancel the job (and its unfinished children)."""
        await self._manager.cancel(self.id)

    async def status(self) -> AsyncIterator[JobStatus]:
        """Yield the current status, then every transition, until a terminal one."""
        entry = self._entry
        if entry is None or entry.status.is_terminal:
            yield self.current_status
            return
        queue = entry.watch_status()
        try:
            current = entry.status
            yield current
            while not current.is_terminal:
                current = await queue.get()
                yield current
        finally:
            entry.unwatch_status(queue)

    async def progress(self) -> AsyncIterator[Progress]:
        """Yield progress snapshots, newest wins (a slow reader skips, never piles up)."""
        entry = self._entry
        if entry is None:
            if self.current_progress is not None:
                yield self.current_progress
            return
        slot = entry.watch_progress()
        try:
            while True:
                ok, value = await slot.get()
                if not ok:
                    return
                yield value  # type: ignore[misc]
        finally:
            entry.unwatch_progress(slot)

    def describe(self) -> str:
        """One line of text: name, short id, status and progress."""
        progress = self.current_progress
        text = f"{self.name} [{self.id[:8]}] {self.current_status.value}"
        if progress is not None and progress.describe():
            text += f" · {progress.describe()}"
        if self.error:
            text += f" · {self.error}"
        return text

    def __repr__(self) -> str:
        return f"<JobHandle {self.describe()}>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from . import _display

        return _display.mimebundle(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JobHandle) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)
