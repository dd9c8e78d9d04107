"""Hypothesis state machine: random dispatch, pause, resume, cancel, checkpoint, close/reopen, failure.

Invariants checked after every step:
- every status change seen on `manager.events()` is allowed by `sdjobs_nb._status.ALLOWED`
  (across a reopen, where events emitted inside `open` cannot be seen, the new status must be
  reachable from the last one);
- exactly one job_history row per terminal job, none for the others (plain sqlite3);
- no job's `run` executes twice at once (jobs count their concurrent entries);
- nothing is lost: every dispatched job stays in jobs.db, a finished job never changes again,
  and after a reopen paused jobs keep their reason and no job is left RUNNING.
At teardown every job is resumed and must end as its parameters say (sum of its steps, or
the failure at `fail_at`), unless a cancel was accepted.

Hypothesis' `RuleBasedStateMachine` is synchronous, so the machine owns an event loop and
drives it with `run_until_complete`; the library's jobs only make progress inside a rule.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, multiple, rule

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sdjobs_nb as sj  # noqa: E402
from _workers import jobs as J  # noqa: E402
from _workers.tally import record as tally  # noqa: E402
from _workers.util import _remember_dead_task  # noqa: E402
from sdjobs_nb._status import ALLOWED  # noqa: E402

S = sj.JobStatus
TERMINAL = {S.COMPLETED, S.FAILED, S.CANCELLED}
STEP_TIMEOUT_S = 20


def reachable(old: S, new: S) -> bool:
    """Whether `new` can follow `old` through zero or more allowed transitions."""
    seen, frontier = {old}, [old]
    while frontier:
        for nxt in ALLOWED[frontier.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    return new in seen


class JobMachine(RuleBasedStateMachine):
    jobs = Bundle("jobs")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(_remember_dead_task)
        self.folder = Path(tempfile.mkdtemp(prefix="sdjobs-stateful-"))
        self.library = self.folder / "library"
        self.manager: sj.JobManager | None = None
        self.watcher: asyncio.Task[None] | None = None
        self.specs: dict[str, J.StepJob] = {}
        self.seen: dict[str, list[S]] = {}
        self.session_start: dict[str, S] = {}
        self.finished: dict[str, str] = {}
        self.cancelled: set[str] = set()
        self.violations: list[str] = []
        self.reopens = 0

    # --- driving the loop -------------------------------------------------------------------

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(asyncio.wait_for(coro, STEP_TIMEOUT_S))

    async def _open(self) -> None:
        self.manager = await sj.JobManager.open(self.library, max_concurrent=2, grace_period=1.0)
        for job_id, statuses in self.seen.items():  # events of this session are checked against these
            self.session_start[job_id] = statuses[-1]
        self.watcher = asyncio.ensure_future(self._watch(self.manager))
        await asyncio.sleep(0)  # let the watcher subscribe

    async def _watch(self, manager: sj.JobManager) -> None:
        async for event in manager.events():
            self._observe(event.job_id, event.status, event.kind)

    def _observe(self, job_id: str, status: S, why: str) -> None:
        statuses = self.seen.setdefault(job_id, [])
        if not statuses:
            if status is not S.QUEUED and job_id not in self.specs:
                self.violations.append(f"{job_id} first seen as {status.value} ({why})")
            statuses.append(status)
            return
        last = statuses[-1]
        if status is last:
            return
        start = self.session_start.pop(job_id, None)
        if start is not None:  # first change after a reopen: events inside open() were not seen
            ok = reachable(start, status)
        else:
            ok = status in ALLOWED[last]
        if not ok:
            self.violations.append(f"{job_id}: {last.value} -> {status.value} ({why}); history {statuses}")
        statuses.append(status)

    async def _close(self) -> None:
        assert self.manager is not None
        await self.manager.close()
        if self.watcher is not None:
            await self.watcher  # the subscription ends after delivering what is pending
        self.session_start.clear()

    async def _record(self, job_id: str) -> sj.JobRecord:
        assert self.manager is not None
        return await self.manager.record(job_id)

    # --- rules ------------------------------------------------------------------------------

    @initialize()
    def open_library(self) -> None:
        self.run(self._open())

    @rule(target=jobs, steps=st.integers(1, 12), fail=st.booleans(), data=st.data())
    def dispatch(self, steps: int, fail: bool, data: st.DataObject) -> str:
        fail_at = data.draw(st.integers(0, steps - 1)) if fail else -1
        job = J.StepJob(token=str(uuid.uuid4()), steps=steps, fail_at=fail_at)
        handle = self.run(self.manager.dispatch(job))  # type: ignore[union-attr]
        self.specs[handle.id] = job
        return handle.id

    @rule(target=jobs, shapes=st.lists(st.tuples(st.integers(1, 12), st.integers(-3, 11)), min_size=2, max_size=4))
    def dispatch_several(self, shapes: list[tuple[int, int]]) -> Any:
        ids = []
        for steps, fail_at in shapes:  # a negative or too large fail_at never fails
            job = J.StepJob(token=str(uuid.uuid4()), steps=steps, fail_at=fail_at if fail_at < steps else -1)
            handle = self.run(self.manager.dispatch(job))  # type: ignore[union-attr]
            self.specs[handle.id] = job
            ids.append(handle.id)
        return multiple(*ids)

    @rule(job_id=jobs)
    def pause(self, job_id: str) -> None:
        try:
            self.run(self.manager.pause(job_id))  # type: ignore[union-attr]
        except sj.InvalidTransition:
            assert self.run(self._record(job_id)).status in TERMINAL
            return
        status = self.run(self._record(job_id)).status
        assert status is S.PAUSED or status in TERMINAL, status

    @rule(job_id=jobs)
    def resume(self, job_id: str) -> None:
        try:
            self.run(self.manager.resume(job_id))  # type: ignore[union-attr]
        except sj.InvalidTransition:
            assert self.run(self._record(job_id)).status in TERMINAL
            return
        assert self.run(self._record(job_id)).status is not S.PAUSED

    @rule(job_id=jobs)
    def cancel(self, job_id: str) -> None:
        try:
            self.run(self.manager.cancel(job_id))  # type: ignore[union-attr]
        except sj.InvalidTransition:
            assert self.run(self._record(job_id)).status in (S.COMPLETED, S.FAILED)
            return
        status = self.run(self._record(job_id)).status
        # a running job may finish its last step before it next checks for the request
        assert status in TERMINAL, status
        if status is S.CANCELLED:
            self.cancelled.add(job_id)

    @rule(job_id=jobs)
    def checkpoint(self, job_id: str) -> None:
        J.REQUESTS.add(self.specs[job_id].token)

    @rule(seconds=st.sampled_from([0.0, 0.005, 0.02, 0.06]))
    def let_jobs_run(self, seconds: float) -> None:
        self.run(asyncio.sleep(seconds))

    @rule()
    def close_and_reopen(self) -> None:
        self.run(self._close())
        stored = {job_id: (status, reason, error) for job_id, status, reason, error in self._db(
            "SELECT id, status, pause_reason, error FROM jobs")}
        assert all(status != S.RUNNING.value for status, _, _ in stored.values()), f"close() left running jobs: {stored}"
        self.run(self._open())
        self.reopens += 1
        for job_id in self.specs:
            status, reason, error = stored[job_id]
            new = self.run(self._record(job_id))
            if S(status) in TERMINAL:
                assert (new.status.value, new.error) == (status, error)
            elif status == S.PAUSED.value:
                assert (new.status, new.pause_reason) == (S.PAUSED, reason)

    # --- invariants -------------------------------------------------------------------------

    def _db(self, sql: str, params: tuple = ()) -> list[tuple]:
        conn = sqlite3.connect(f"file:{self.library / 'jobs.db'}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    @invariant()
    def transitions_are_allowed(self) -> None:
        assert self.violations == []

    @invariant()
    def no_job_runs_twice_at_once(self) -> None:
        assert J.OVERLAPS == [], J.OVERLAPS
        assert all(v in (0, 1) for v in J.ACTIVE.values())

    @invariant()
    def one_history_row_per_terminal_job_and_nothing_lost(self) -> None:
        if not self.specs:
            return
        table = {job_id: (status, n) for job_id, status, n in self._db(
            "SELECT j.id, j.status, (SELECT count(*) FROM job_history h WHERE h.id = j.id) FROM jobs j")}
        assert set(self.specs) <= set(table), "a dispatched job vanished from jobs.db"
        for job_id, (status, history_rows) in table.items():
            expected = 1 if status in ("completed", "failed", "cancelled") else 0
            assert history_rows == expected, (job_id, status, history_rows)
            if job_id in self.finished:
                assert status == self.finished[job_id], f"finished job {job_id} changed"
            elif expected:
                self.finished[job_id] = status
        orphans = self._db("SELECT count(*) FROM job_history WHERE id NOT IN (SELECT id FROM jobs)")
        assert orphans == [(0,)]

    # --- the end ------------------------------------------------------------------------------

    def teardown(self) -> None:
        try:
            if self.manager is not None and not self.manager.closed:
                self.run(self._finish_everything())
                self._check_outcomes()
                self.run(self._close())
                tally("stateful_sequence", jobs=len(self.specs), reopens=self.reopens)
        finally:
            if self.manager is not None and not self.manager.closed:
                self.loop.run_until_complete(self.manager.close())
            self.loop.close()
            shutil.rmtree(self.folder, ignore_errors=True)
            J.REQUESTS.clear()

    async def _finish_everything(self) -> None:
        manager = self.manager
        assert manager is not None
        while handles := manager.handles():
            for handle in handles:
                if handle.current_status is S.PAUSED:
                    await manager.resume(handle.id)
            await asyncio.sleep(0.01)

    def _check_outcomes(self) -> None:
        assert self.violations == []
        for job_id, job in self.specs.items():
            record = self.run(self._record(job_id))
            if job_id in self.cancelled:
                assert record.status is S.CANCELLED
                continue
            want_status, want = J.expected_outcome(J.StepJob.NAME, {"steps": job.steps, "fail_at": job.fail_at})
            assert record.status.value == want_status, (job_id, record.status, record.error, job)
            if want_status == "completed":
                assert self.run(self.manager.result(job_id)) == want  # type: ignore[union-attr]
            else:
                assert want in (record.error or "")


JobMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=20, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestJobStateMachine = JobMachine.TestCase
