"""Child jobs (issue 7): results in order, failures, cascades, slots, and resume without duplicates."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest

import sdjobs_nb as sj
from children_worker import SPAWNED, FanOut, Impatient, LateSpawn, Nested, Square, TwoRounds
from support import db_rows

S = sj.JobStatus
WORKER = Path(__file__).with_name("children_worker.py")


def child_rows(library: Path, parent_id: str) -> list[tuple[str, str, str]]:
    """(id, spawn_key, status) of every child row of `parent_id` in jobs.db, by spawn key."""
    return db_rows(library, "SELECT id, spawn_key, status FROM jobs WHERE parent_id=? ORDER BY spawn_key", (parent_id,))


async def wait_until(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


async def statuses(manager: sj.JobManager, ids: list[str]) -> list[S]:
    return [(await manager.record(i)).status for i in ids]


async def spawned(manager: sj.JobManager, parent_id: str, count: int, status: S = S.RUNNING) -> list[str]:
    """Wait until the parent has spawned `count` children and they all have `status`; return their ids."""

    async def ready() -> bool:
        ids = SPAWNED.get(parent_id, [[]])[-1]
        return len(ids) == count and all(s is status for s in await statuses(manager, ids))

    await wait_until(ready, what=f"{count} children {status.value}")
    return SPAWNED[parent_id][-1]


def slow(n: int, seconds: float = 3.0) -> Square:
    """A child that runs about `seconds`, checking for interruption every 20 ms."""
    return Square(n, steps=int(seconds / 0.02), delay=0.02)


# --- results -----------------------------------------------------------------------------------


async def test_results_come_back_in_spawn_order_and_children_record_their_parent(library):
    async with sj.JobManager.open(library) as manager:
        # the first child finishes last, so completion order differs from spawn order
        parent = await manager.dispatch(FanOut([Square(3, steps=15), Square(1, steps=1), Square(2, steps=5)]))
        out = await asyncio.wait_for(parent.wait(), 10)
        assert out["results"] == [9, 1, 4]
        for index, child_id in enumerate(out["ids"]):
            record = await manager.record(child_id)
            assert record.parent_id == parent.id
            assert record.spawn_key == f"1:{index}"
            assert record.status is S.COMPLETED
            assert record.metrics["checkpoints"] >= 1  # an ordinary job: its own checkpoints
            assert manager.get(child_id).parent_id == parent.id
        assert (await manager.record(parent.id)).parent_id is None
    history = dict(db_rows(library, "SELECT id, parent_id FROM job_history"))
    assert all(history[c] == parent.id for c in out["ids"])
    assert history[parent.id] is None


async def test_each_spawn_call_gets_its_own_spawn_keys(library):
    async with sj.JobManager.open(library) as manager:
        parent = await manager.dispatch(TwoRounds(first=[1, 2], second=[3]))
        assert await asyncio.wait_for(parent.wait(), 10) == [[1, 4], [9]]
    assert [key for _, key, _ in child_rows(library, parent.id)] == ["1:0", "1:1", "2:0"]


async def test_a_parent_waiting_for_children_holds_no_slot(library):
    async with sj.JobManager.open(library, max_concurrent=1) as manager:
        parent = await manager.dispatch(FanOut([Square(n, steps=3) for n in (1, 2, 3)]))
        assert (await asyncio.wait_for(parent.wait(), 10))["results"] == [1, 4, 9]
        # grandchildren too: every waiting level gives its slot away
        nested = await manager.dispatch(Nested(depth=2, width=2))
        assert await asyncio.wait_for(nested.wait(), 10) == 4


async def test_a_parent_that_stops_waiting_on_its_own_takes_a_slot_again(library):
    """A wait the job itself abandons (asyncio.wait_for timeout) gives the slot back to the parent."""
    async with sj.JobManager.open(library, max_concurrent=1) as manager:
        parent = await manager.dispatch(Impatient(0.2, [slow(1, 1.0)]))
        went_on_at = await asyncio.wait_for(parent.wait(), 10)
        child_id = SPAWNED[parent.id][-1][0]
        await asyncio.wait_for(manager.get(child_id).wait(), 10)
        child = await manager.record(child_id)
        # max_concurrent=1: the parent's own work waits until the child frees the only slot
        assert went_on_at >= child.finished_at - 0.05, f"ran {child.finished_at - went_on_at:.2f} s beside its child"


# --- failures ----------------------------------------------------------------------------------


async def test_a_failed_child_raises_child_failed_with_its_real_error(library):
    async with sj.JobManager.open(library) as manager:
        caught = await manager.dispatch(FanOut([Square(1), Square(2, fail="disk on fire")], catch=True))
        out = await asyncio.wait_for(caught.wait(), 10)
        failed_id = out["ids"][1]
        assert out["failed"] == failed_id
        assert "ValueError: disk on fire" in out["message"]

        uncaught = await manager.dispatch(FanOut([Square(1), Square(2, fail="disk on fire")]))
        with pytest.raises(sj.JobFailed) as info:
            await asyncio.wait_for(uncaught.wait(), 10)
        assert not isinstance(info.value, sj.ChildFailed)  # the parent's own failure, caused by a child
        assert "ChildFailed" in info.value.message and "ValueError: disk on fire" in info.value.message
        record = await manager.record(uncaught.id)
        assert record.status is S.FAILED and "disk on fire" in record.error


async def test_child_failed_names_the_child_and_keeps_its_traceback(library):
    errors: list[sj.ChildFailed] = []

    class Keep(FanOut):
        NAME = "children_keep_error"

        async def run(self, ctx):
            ids = await ctx.spawn_children([Square(5, fail="bad row 17")])
            try:
                await ctx.wait_for_children(ids)
            except sj.ChildFailed as e:
                errors.append(e)
            return ids

    try:
        async with sj.JobManager.open(library) as manager:
            ids = await asyncio.wait_for((await manager.dispatch(Keep())).wait(), 10)
    finally:
        sj.registry.unregister(Keep.NAME)
    (error,) = errors
    assert isinstance(error, sj.JobFailed)
    assert error.job_id == ids[0] and error.name == "children_square"
    assert "ValueError: bad row 17" in error.message
    assert "raise ValueError(self.fail)" in error.traceback_text


async def test_a_failed_child_raises_at_once_and_its_siblings_keep_running(library):
    """Documented: wait_for_children raises on the first failure; siblings are not cancelled."""
    async with sj.JobManager.open(library) as manager:
        parent = await manager.dispatch(FanOut([Square(1, fail="early failure"), slow(2, 3.0)]))
        started = time.monotonic()
        with pytest.raises(sj.JobFailed, match="early failure"):
            await asyncio.wait_for(parent.wait(), 10)
        took = time.monotonic() - started
        sibling = SPAWNED[parent.id][-1][1]
        assert took < 1.5, f"the parent failed only after {took:.1f} s, when its slow sibling had finished"
        assert (await manager.record(sibling)).status is S.RUNNING
        assert await asyncio.wait_for(manager.get(sibling).wait(), 10) == 4


async def test_a_cancelled_child_makes_wait_for_children_raise(library):
    async with sj.JobManager.open(library) as manager:
        parent = await manager.dispatch(FanOut([slow(1), Square(2)], catch=True))
        await wait_until(lambda: _has_children(parent.id, 2), what="children spawned")
        first = SPAWNED[parent.id][-1][0]
        await manager.cancel(first)
        out = await asyncio.wait_for(parent.wait(), 10)
        assert out["failed"] == first and "cancelled" in out["message"]


async def _has_children(parent_id: str, count: int) -> bool:
    return len(SPAWNED.get(parent_id, [[]])[-1]) == count


# --- cascades ----------------------------------------------------------------------------------


async def test_cancelling_a_parent_cancels_its_unfinished_children(library):
    async with sj.JobManager.open(library) as manager:
        parent = await manager.dispatch(FanOut([Square(1), slow(2), slow(3)]))
        await wait_until(lambda: _has_children(parent.id, 3), what="children spawned")
        done, *running = SPAWNED[parent.id][-1]
        await asyncio.wait_for(manager.get(done).wait(), 10)
        await asyncio.wait_for(manager.cancel(parent.id), 5)
        with pytest.raises(sj.Cancelled):
            await parent.wait()
        assert (await manager.record(parent.id)).status is S.CANCELLED
        assert await statuses(manager, running) == [S.CANCELLED, S.CANCELLED]
        assert (await manager.record(done)).status is S.COMPLETED


async def test_cancelling_a_paused_parent_cancels_its_paused_children(library):
    async with sj.JobManager.open(library) as manager:
        parent = await manager.dispatch(FanOut([slow(1), slow(2)]))
        ids = await spawned(manager, parent.id, 2)
        await manager.pause(parent.id)
        await manager.cancel(parent.id)
        assert await statuses(manager, [parent.id, *ids]) == [S.CANCELLED] * 3


async def test_pausing_a_parent_pauses_its_children_and_resuming_it_resumes_them(library):
    async with sj.JobManager.open(library, max_concurrent=4, grace_period=10) as manager:
        parent = await manager.dispatch(FanOut([slow(1, 1.0), slow(2, 1.0), slow(3, 1.0)]))
        ids = await spawned(manager, parent.id, 3)
        await asyncio.wait_for(manager.pause(parent.id), 5)
        record = await manager.record(parent.id)
        assert (record.status, record.pause_reason) == (S.PAUSED, "user")
        for child_id in ids:
            child = await manager.record(child_id)
            assert (child.status, child.pause_reason) == (S.PAUSED, "parent")
            assert 0 < child.progress.current < child.progress.total  # paused mid-way, state saved

        await manager.resume(parent.id)
        out = await asyncio.wait_for(parent.wait(), 15)
        assert out["results"] == [1, 4, 9] and out["runs"] == 2
        assert SPAWNED[parent.id] == [ids, ids]  # the resumed parent got the same children back
        assert [cid for cid, _, _ in child_rows(library, parent.id)] == ids
        assert await statuses(manager, ids) == [S.COMPLETED] * 3


async def test_pause_is_prompt_when_children_hold_every_slot(library):
    """Waiting is an interruption point even when the parent's slot went to a child (max_concurrent=1).

    Children that are still queued are paused too.
    """
    async with sj.JobManager.open(library, max_concurrent=1, grace_period=10) as manager:
        parent = await manager.dispatch(FanOut([slow(1, 3.0), slow(2, 3.0)]))
        await _pause_promptly_with_children(manager, parent.id)

        await manager.resume(parent.id)
        assert (await asyncio.wait_for(parent.wait(), 20))["results"] == [1, 4]
        assert len(child_rows(library, parent.id)) == 2


async def _pause_promptly_with_children(manager: sj.JobManager, parent_id: str) -> None:
    """Pause a parent whose first child runs and second is queued; both children end PAUSED (parent)."""
    await wait_until(lambda: _has_children(parent_id, 2), what="children spawned")
    running, queued = SPAWNED[parent_id][-1]
    await wait_until(lambda: _status_is(manager, running, S.RUNNING), what="first child running")
    started = time.monotonic()
    await asyncio.wait_for(manager.pause(parent_id), 15)
    took = time.monotonic() - started
    children = [await manager.record(i) for i in (running, queued)]
    assert took < 1.0, f"pause() took {took:.1f} s; children: {[(c.status.value, c.pause_reason) for c in children]}"
    assert [(c.status, c.pause_reason) for c in children] == [(S.PAUSED, "parent")] * 2


async def _status_is(manager: sj.JobManager, job_id: str, status: S) -> bool:
    return (await manager.record(job_id)).status is status


async def test_pause_with_no_grace_period_is_prompt_when_children_hold_every_slot(library):
    """grace_period=0 stops the waiting parent's task at once; it must not then queue for a slot."""
    async with sj.JobManager.open(library, max_concurrent=1, grace_period=0) as manager:
        parent = await manager.dispatch(FanOut([Square(1, steps=10, delay=0.3), Square(2, steps=10, delay=0.3)]))
        await _pause_promptly_with_children(manager, parent.id)


async def test_close_with_no_grace_period_while_a_parent_waits_does_not_hang(library):
    manager = await sj.JobManager.open(library, max_concurrent=1, grace_period=0)
    try:
        parent = await manager.dispatch(FanOut([Square(1, steps=4, delay=0.3), Square(2, steps=4, delay=0.3)]))
        await wait_until(lambda: _has_children(parent.id, 2), what="children spawned")
        ids = SPAWNED[parent.id][-1]
        await wait_until(lambda: _status_is(manager, ids[0], S.RUNNING), what="first child running")
    finally:
        await asyncio.wait_for(manager.close(), 5)  # TimeoutError here: close() hung
    async with sj.JobManager.open(library) as manager:
        await manager.resume_interrupted()
        out = await asyncio.wait_for(manager.get(parent.id).wait(), 15)
        assert out["ids"] == ids and out["results"] == [1, 4]
    assert [cid for cid, _, _ in child_rows(library, parent.id)] == ids


# a request that arrives while the parent is busy before spawn_children: the children it then
# spawns are covered by the request too (or not spawned at all)


async def test_pause_requested_before_a_parent_spawns_covers_the_children_it_spawns(library):
    async with sj.JobManager.open(library, grace_period=5) as manager:
        parent = await manager.dispatch(LateSpawn(0.3, [slow(2, 1.0)]))
        await asyncio.sleep(0.1)
        await asyncio.wait_for(manager.pause(parent.id), 10)
        await asyncio.sleep(0.3)
        assert (await manager.record(parent.id)).status is S.PAUSED
        rows = db_rows(library, "SELECT status, pause_reason FROM jobs WHERE parent_id=?", (parent.id,))
        assert all(row == ("paused", "parent") for row in rows), f"children of a paused parent: {rows}"
        await manager.resume(parent.id)
        assert await asyncio.wait_for(parent.wait(), 10) == [4]


async def test_cancel_requested_before_a_parent_spawns_covers_the_children_it_spawns(library):
    async with sj.JobManager.open(library, grace_period=5) as manager:
        parent = await manager.dispatch(LateSpawn(0.3, [slow(2, 1.0)]))
        await asyncio.sleep(0.1)
        await asyncio.wait_for(manager.cancel(parent.id), 10)
        await asyncio.sleep(0.3)
        assert (await manager.record(parent.id)).status is S.CANCELLED
        rows = db_rows(library, "SELECT status FROM jobs WHERE parent_id=?", (parent.id,))
        assert all(row == ("cancelled",) for row in rows), f"children of a cancelled parent: {rows}"


async def test_close_before_a_parent_spawns_pauses_it_instead_of_failing_it(library):
    async with sj.JobManager.open(library, grace_period=5) as manager:
        parent = await manager.dispatch(LateSpawn(0.3, [Square(2)]))
        await asyncio.sleep(0.1)
    record = db_rows(library, "SELECT status, pause_reason, error FROM jobs WHERE id=?", (parent.id,))
    assert record == [("paused", "interrupted", None)]
    async with sj.JobManager.open(library) as manager:
        await manager.resume_interrupted()
        assert await asyncio.wait_for(manager.get(parent.id).wait(), 10) == [4]


# --- resume without duplicates -------------------------------------------------------------------


async def test_a_user_paused_parent_resumes_after_reopen_without_duplicates(library):
    async with sj.JobManager.open(library) as manager:
        parent = await manager.dispatch(FanOut([slow(1, 1.0), slow(2, 1.0)]))
        ids = await spawned(manager, parent.id, 2)
        await manager.pause(parent.id)
    async with sj.JobManager.open(library) as manager:
        assert await manager.resume_interrupted() == []  # paused by the user: stays paused
        await manager.resume(parent.id)
        out = await asyncio.wait_for(manager.get(parent.id).wait(), 15)
        assert out["ids"] == ids and out["results"] == [1, 4]
    assert [cid for cid, _, _ in child_rows(library, parent.id)] == ids


async def test_close_while_a_parent_waits_is_prompt_and_resumes_without_duplicates(library):
    # the running child checks for interruption only every 0.3 s, so the parent's wait notices the
    # close first and needs its slot back while the child still holds it
    async with sj.JobManager.open(library, max_concurrent=1, grace_period=5) as manager:
        parent = await manager.dispatch(FanOut([Square(1, steps=4, delay=0.3), Square(2, steps=4, delay=0.3)]))
        await wait_until(lambda: _has_children(parent.id, 2), what="children spawned")
        ids = SPAWNED[parent.id][-1]
        await wait_until(lambda: _status_is(manager, ids[0], S.RUNNING), what="first child running")
        started = time.monotonic()
        await manager.close()
        took = time.monotonic() - started
    async with sj.JobManager.open(library) as manager:
        assert (await manager.record(parent.id)).pause_reason == "interrupted"
        await manager.resume_interrupted()
        out = await asyncio.wait_for(manager.get(parent.id).wait(), 15)
        assert out["ids"] == ids and out["results"] == [1, 4]
    assert [cid for cid, _, _ in child_rows(library, parent.id)] == ids
    assert took < 1.0, f"close() took {took:.1f} s (grace_period is 5 s)"
    assert out["runs"] == 2, "close() forced the parent's task: its state at the pause was lost"


async def test_a_parent_killed_while_waiting_resumes_in_a_new_process_without_duplicates(library):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(WORKER), str(library), "2", "3", "4",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=WORKER.parent,
    )
    try:
        parent_id = (await _line(proc, "PARENT")).split()[1]
        ids = (await _line(proc, "WAITING")).split()[1:]
        # let every child run and checkpoint a little before the kill
        await wait_until(lambda: _all_progressed(library, ids), what="children checkpointed")
        os.kill(proc.pid, signal.SIGKILL)
        assert await asyncio.wait_for(proc.wait(), 10) == -signal.SIGKILL
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    rows_before = child_rows(library, parent_id)
    assert [cid for cid, _, _ in rows_before] == ids
    assert {status for _, _, status in rows_before} == {"running"}  # died mid-run

    async with sj.JobManager.open(library) as manager:
        record = await manager.record(parent_id)
        assert (record.status, record.pause_reason) == (S.PAUSED, "interrupted")
        resumed = await manager.resume_interrupted()
        assert {h.id for h in resumed} == {parent_id, *ids}
        out = await asyncio.wait_for(manager.get(parent_id).wait(), 20)
        assert out["ids"] == ids
        assert [square for square, _ in out["results"]] == [4, 9, 16]
        # each child ran twice: from step 0, then from its last checkpoint (not from scratch)
        assert all(starts[0] == 0 and starts[1] >= 5 for _, starts in out["results"]), out["results"]
        assert SPAWNED[parent_id] == [ids]  # this process ran the parent once, with the old children
    assert child_rows(library, parent_id) == [(cid, key, "completed") for cid, key, _ in rows_before]
    assert db_rows(library, "SELECT count(*) FROM jobs") == [(4,)]


async def _line(proc: asyncio.subprocess.Process, prefix: str) -> str:
    while True:
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        if not line:
            err = await proc.stderr.read()
            raise AssertionError(f"worker exited before printing {prefix}: {err.decode()}")
        text = line.decode().strip()
        if text.startswith(prefix):
            return text


async def _all_progressed(library: Path, ids: list[str]) -> bool:
    marks = ",".join("?" * len(ids))
    rows = db_rows(library, f"SELECT count(*) FROM job_checkpoints WHERE job_id IN ({marks}) AND count >= 5", tuple(ids))
    return rows == [(len(ids),)]
