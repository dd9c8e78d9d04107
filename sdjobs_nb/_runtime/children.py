"""Child jobs: spawned by a running parent, waited for without holding its slot."""

from __future__ import annotations

import asyncio
from typing import Any

from .. import _codec
from .._errors import ChildFailed, Interrupted, JobNotFound
from .._job import Job
from .._status import JobStatus, PauseReason
from .._store.store import Store
from .control import Control
from .dispatch import Dispatcher
from .entry import JobEntry, Outcome
from .scheduler import Scheduler
from .settings import RunSettings
from .table import JobTable

__all__ = ("Children",)

S = JobStatus


class Children:
    """Spawns and waits for the children of running jobs; finds any job's outcome."""

    def __init__(self, store: Store, table: JobTable, scheduler: Scheduler, dispatcher: Dispatcher,
                 control: Control, settings: RunSettings) -> None:
        self._store = store
        self._table = table
        self._scheduler = scheduler
        self._dispatcher = dispatcher
        self._control = control
        self._settings = settings

    async def spawn(self, parent: JobEntry, jobs: list[Job], call: int) -> list[str]:
        """Dispatch `jobs` as children of `parent`; a resumed parent gets the same children back."""
        if parent.interrupt is not None or self._settings.closing:
            # a pause, cancel or close already asked for: spawn nothing it would miss
            raise Interrupted(f"{parent.interrupt or 'close'} requested before children were spawned")
        existing = await self._store.spawn_keys(parent.id)
        ids: list[str] = []
        new: list[JobEntry] = []
        for index, job in enumerate(jobs):
            key = f"{call}:{index}"
            if key in existing:
                ids.append(existing[key])
                continue
            entry, _ = self._dispatcher.prepare(job, priority=parent.priority, initiated_by=parent.initiated_by,
                                                parent_id=parent.id, spawn_key=key)
            new.append(entry)
            ids.append(entry.id)
        await self._dispatcher.commit_new(new)
        return ids

    async def wait(self, parent: JobEntry, ids: list[str]) -> list[Any]:
        """Wait without holding a slot; a pause or cancel of the parent interrupts the wait."""
        for child_id in ids:
            child = self._table.get(child_id)
            if child is not None and child.status is S.PAUSED and child.pause_reason == PauseReason.PARENT:
                await self._control.resume(child_id)  # paused on this parent's behalf (a crash cut the cascade short)
        self._scheduler.release_slot(parent)
        try:
            outcomes = await self._wait_outcomes(parent, ids)
        except Interrupted:
            raise  # the parent stops now: it needs no slot back
        except asyncio.CancelledError:
            if not (parent.forced or parent.interrupt is not None):
                await self._scheduler.acquire_slot(parent)  # its own code gave up waiting (a timeout) and goes on
            raise
        except BaseException:
            await self._scheduler.acquire_slot(parent)  # it may catch ChildFailed and go on
            raise
        await self._scheduler.acquire_slot(parent)
        return [outcome.result for _, outcome in outcomes]

    async def _wait_outcomes(self, parent: JobEntry, ids: list[str]) -> list[tuple[str, Outcome]]:
        """Wait for every child; raise `ChildFailed` as soon as one fails (siblings keep running)."""
        waits = {asyncio.ensure_future(self.outcome(i)): i for i in ids}
        try:
            while True:
                if parent.interrupt is not None:
                    raise Interrupted(f"{parent.interrupt} requested while waiting for children")
                for wait, child_id in waits.items():
                    if wait.done():
                        _raise_if_failed(child_id, *wait.result())
                pending = [w for w in waits if not w.done()]
                if not pending:
                    return [w.result() for w in waits]
                await asyncio.wait(pending, timeout=0.05, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def outcome(self, job_id: str) -> tuple[str, Outcome]:
        """Wait for a job's terminal outcome, from memory or from jobs.db; return (name, outcome)."""
        entry = self._table.get(job_id)
        if entry is not None:
            return entry.name, await asyncio.shield(entry.done_future())
        record = await self._control.record(job_id)
        if not record.status.is_terminal:
            raise JobNotFound(f"job {job_id} is {record.status.value} but not loaded; reopen the library")
        result = None
        if record.status is S.COMPLETED:
            blob = await self._store.result_blob(job_id)
            result = None if blob is None else _codec.unpack(blob)
        return record.name, Outcome(record.status, result, record.error, record.traceback)


def _raise_if_failed(child_id: str, name: str, outcome: Outcome) -> None:
    if outcome.status is not S.COMPLETED:
        message = outcome.error or outcome.status.value
        raise ChildFailed(child_id, name, f"child {outcome.status.value}: {message}", outcome.traceback)
