"""Child jobs (issue 7): results in order, failures, cascades, slots, and resume without duplicates.

Children that must still be running when the test acts wait at a gate file (`Square.gate`), so
no test depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

import sdjobs_nb as sj
from children_worker import GAVE_UP, SPAWNED, WORKER_STEPS, FanOut, Impatient, LateSpawn, Nested, Square, TwoRounds
from jobs_for_tests import open_gate, steps_done, until
from support import db_rows

S = sj.JobStatus
WORKER = Path(__file__).with_name("children_worker.py")


def child_rows(library: Path, parent_id: str) -> list[tuple[str, str, str]]:
    """(id, spawn_key, status) of every child row of `parent_id` in jobs.db, by spawn key."""
    return db_rows(library, "SELECT id, spawn_key, status FROM jobs WHERE parent_id=? ORDER BY spawn_key", (parent_id,))


async def statuses(manager: sj.JobManager, ids: list[str]) -> list[S]:
    return [(await manager.record(i)).status for i in ids]


async def spawned(manager: sj.JobManager, parent_id: str, count: int, status: S = S.RUNNING) -> list[str]:
    """Wait until the parent has spawned `count` children and they all have `status`; return their ids."""

    async def ready() -> bool:
        ids = SPAWNED.get(parent_id, [[]])[-1]
        return len(ids) == count and all(s is status for s in await statuses(manager, ids))

    await until(ready, what=f"{count} children {status.value}")
    return SPAWNED[parent_id][-1]


def gate_of(library: Path, name: str = "gate") -> str:
    """A gate file beside the library, closed until the test opens it (`open_gate`)."""
    return str(library.parent / name)


def held(n: int, gate: str, steps: int = 3, stubborn: bool = False) -> Square:
    """A child that takes its `steps` steps only as the test opens `gate`, checking for interruption
    while it waits (unless `stubborn`)."""
    return Square(n, steps=steps, delay=0.0, gate=gate, stubborn=stubborn)


# --- results -----------------------------------------------------------------------------------


async def test_results_come_back_in_spawn_order_and_children_record_their_parent(library):
    gate = gate_of(library)
    async with sj.JobManager.open(library) as manager:
        # the first child finishes last (it is held until the others have), so completion order
        # differs from spawn order
        parent = await manager.dispatch(FanOut([held(3, gate), Square(1, steps=1), Square(2, steps=5)]))
        await until(lambda: _has_children(parent.id, 3), what="children spawned")
        first, *others = SPAWNED[parent.id][-1]
        for child_id in others:
            await asyncio.wait_for(manager.get(child_id).wait(), 30)
        assert (await manager.record(first)).status is S.RUNNING
        open_gate(gate, 3)
        out = await asyncio.wait_for(parent.wait(), 30)
        assert out["results"] == [9, 1, 4]
        finished = [(await manager.record(child_id)).finished_at for child_id in out["ids"]]
        assert finished[0] > max(finished[1:])
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
        assert await asyncio.wait_for(nested.wait(), 30) == 4


async def test_a_parent_that_stops_waiting_on_its_own_takes_a_slot_again(library):
    """A wait the job itself abandons (asyncio.wait_for timeout) gives the slot back to the parent."""
    gate = gate_of(library)
    async with sj.JobManager.open(library, max_concurrent=1) as manager:
        # the child cannot finish before the test opens its gate, so the parent's patience runs out first
        parent = await manager.dispatch(Impatient(0.2, [held(1, gate, steps=1)]))
        await until(lambda: parent.id in GAVE_UP, what="the parent to give up waiting")
        child_id = SPAWNED[parent.id][-1][0]
        assert (await manager.record(child_id)).status is S.RUNNING  # it holds the only slot
        open_gate(gate, 1)
        went_on_at = await asyncio.wait_for(parent.wait(), 30)
        await asyncio.wait_for(manager.get(child_id).wait(), 30)
        child = await manager.record(child_id)
        # max_concurrent=1: the parent's own work waits until the child frees the only slot
        assert went_on_at >= child.finished_at, f"ran {child.finished_at - went_on_at:.3f} s beside its child"


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
    gate = gate_of(library)
    async with sj.JobManager.open(library) as manager:
        # the sibling is held at its gate until the parent has failed: the parent cannot have waited for it
        parent = await manager.dispatch(FanOut([Square(1, fail="early failure"), held(2, gate)]))
        with pytest.raises(sj.JobFailed, match="early failure"):
            await asyncio.wait_for(parent.wait(), 30)
        sibling = SPAWNED[parent.id][-1][1]
        assert (await manager.record(sibling)).status is S.RUNNING
        open_gate(gate, 3)
        assert await asyncio.wait_for(manager.get(sibling).wait(), 30) == 4


async def test_a_cancelled_child_makes_wait_for_children_raise(library):
    async with sj.JobManager.open(library) as manager:
        parent = await manager.dispatch(FanOut([held(1, gate_of(library)), Square(2)], catch=True))
        await until(lambda: _has_children(parent.id, 2), what="children spawned")
        first = SPAWNED[parent.id][-1][0]
        await manager.cancel(first)
        out = await asyncio.wait_for(parent.wait(), 30)
        assert out["failed"] == first and "cancelled" in out["message"]


def _has_children(parent_id: str, count: int) -> bool:
    return len(SPAWNED.get(parent_id, [[]])[-1]) == count


# --- cascades ----------------------------------------------------------------------------------


async def test_cancelling_a_parent_cancels_its_unfinished_children(library):
    gate = gate_of(library)
    async with sj.JobManager.open(library) as manager:
        parent = await manager.dispatch(FanOut([Square(1), held(2, gate), held(3, gate)]))
        await until(lambda: _has_children(parent.id, 3), what="children spawned")
        done, *running = SPAWNED[parent.id][-1]
        await asyncio.wait_for(manager.get(done).wait(), 30)
        await asyncio.wait_for(manager.cancel(parent.id), 30)
        with pytest.raises(sj.Cancelled):
            await parent.wait()
        assert (await manager.record(parent.id)).status is S.CANCELLED
        assert await statuses(manager, running) == [S.CANCELLED, S.CANCELLED]
        assert (await manager.record(done)).status is S.COMPLETED


async def test_cancelling_a_paused_parent_cancels_its_paused_children(library):
    async with sj.JobManager.open(library) as manager:
        parent = await manager.dispatch(FanOut([held(1, gate_of(library)), held(2, gate_of(library))]))
        ids = await spawned(manager, parent.id, 2)
        await manager.pause(parent.id)
        await manager.cancel(parent.id)
        assert await statuses(manager, [parent.id, *ids]) == [S.CANCELLED] * 3


async def test_pausing_a_parent_pauses_its_children_and_resuming_it_resumes_them(library):
    gate = gate_of(library)
    open_gate(gate, 2)
    async with sj.JobManager.open(library, max_concurrent=4, grace_period=10) as manager:
        parent = await manager.dispatch(FanOut([held(n, gate, steps=5) for n in (1, 2, 3)]))
        ids = await spawned(manager, parent.id, 3)
        await until(lambda: all(steps_done(manager.get(i)) == 2 for i in ids), what="children held after 2 steps")
        await asyncio.wait_for(manager.pause(parent.id), 30)
        record = await manager.record(parent.id)
        assert (record.status, record.pause_reason) == (S.PAUSED, "user")
        for child_id in ids:
            child = await manager.record(child_id)
            assert (child.status, child.pause_reason) == (S.PAUSED, "parent")
            assert (child.progress.current, child.progress.total) == (2, 5)  # paused mid-way, state saved
            assert (await manager.saved_state(child_id))["done"] == 2

        open_gate(gate, 5)
        await manager.resume(parent.id)
        out = await asyncio.wait_for(parent.wait(), 30)
        assert out["results"] == [1, 4, 9] and out["runs"] == 2
        assert SPAWNED[parent.id] == [ids, ids]  # the resumed parent got the same children back
        assert [cid for cid, _, _ in child_rows(library, parent.id)] == ids
        assert await statuses(manager, ids) == [S.COMPLETED] * 3


async def test_pause_is_prompt_when_children_hold_every_slot(library):
    """Waiting is an interruption point even when the parent's slot went to a child (max_concurrent=1).

    Children that are still queued are paused too. The grace period is twice any deadline
    here, so a pause that waited for it (the parent forced) fails instead of being slow.
    """
    gate = gate_of(library)
    async with sj.JobManager.open(library, max_concurrent=1, grace_period=60) as manager:
        parent = await manager.dispatch(FanOut([held(1, gate), held(2, gate)]))
        await _pause_promptly_with_children(manager, parent.id)

        open_gate(gate, 3)
        await manager.resume(parent.id)
        out = await asyncio.wait_for(parent.wait(), 30)
        assert out["results"] == [1, 4]
        assert out["runs"] == 2  # paused at its wait with its state saved, not forced
        assert len(child_rows(library, parent.id)) == 2


async def _pause_promptly_with_children(manager: sj.JobManager, parent_id: str) -> None:
    """Pause a parent whose first child runs and second is queued; both children end PAUSED (parent).

    The running child is held at its gate and can never finish on its own, so a pause that
    needed the parent's slot back, or the child to finish, would never return (the deadline fails it).
    """
    await until(lambda: _has_children(parent_id, 2), what="children spawned")
    running, queued = SPAWNED[parent_id][-1]
    await until(lambda: _status_is(manager, running, S.RUNNING), what="first child running")
    await asyncio.wait_for(manager.pause(parent_id), 30)
    children = [await manager.record(i) for i in (running, queued)]
    assert [(c.status, c.pause_reason) for c in children] == [(S.PAUSED, "parent")] * 2


async def _status_is(manager: sj.JobManager, job_id: str, status: S) -> bool:
    return (await manager.record(job_id)).status is status


async def test_pause_with_no_grace_period_is_prompt_when_children_hold_every_slot(library):
    """grace_period=0 stops the waiting parent's task at once; it must not then queue for a slot
    (held by a child that cannot finish: such a pause would never return)."""
    gate = gate_of(library)
    async with sj.JobManager.open(library, max_concurrent=1, grace_period=0) as manager:
        parent = await manager.dispatch(FanOut([held(1, gate), held(2, gate)]))
        await _pause_promptly_with_children(manager, parent.id)


async def test_close_with_no_grace_period_while_a_parent_waits_does_not_hang(library):
    gate = gate_of(library)
    manager = await sj.JobManager.open(library, max_concurrent=1, grace_period=0)
    try:
        parent = await manager.dispatch(FanOut([held(1, gate, steps=4), held(2, gate, steps=4)]))
        await until(lambda: _has_children(parent.id, 2), what="children spawned")
        ids = SPAWNED[parent.id][-1]
        await until(lambda: _status_is(manager, ids[0], S.RUNNING), what="first child running")
    finally:
        # the running child is held at its gate: a close that queued the parent for its slot would hang
        await asyncio.wait_for(manager.close(), 30)
    open_gate(gate, 4)
    async with sj.JobManager.open(library) as manager:
        await manager.resume_interrupted()
        out = await asyncio.wait_for(manager.get(parent.id).wait(), 30)
        assert out["ids"] == ids and out["results"] == [1, 4]
    assert [cid for cid, _, _ in child_rows(library, parent.id)] == ids


# a request that arrives while the parent is busy before spawn_children (`LateSpawn` stays busy
# until one arrives): the children it then spawns are covered by the request too (or not spawned
# at all), and once its run has ended none of them is left running


async def _request_before_spawn(manager: sj.JobManager, request: str) -> sj.JobHandle:
    """Dispatch a `LateSpawn` parent and, while it is busy, pause or cancel it; return its handle."""
    parent = await manager.dispatch(LateSpawn([Square(2, steps=3)]))
    await until(lambda: parent.current_status is S.RUNNING)
    await asyncio.wait_for(getattr(manager, request)(parent.id), 30)
    assert [h for h in manager.handles() if h.parent_id == parent.id and h.current_status is S.RUNNING] == []
    return parent


async def test_pause_requested_before_a_parent_spawns_covers_the_children_it_spawns(library):
    async with sj.JobManager.open(library, grace_period=5) as manager:
        parent = await _request_before_spawn(manager, "pause")
        assert (await manager.record(parent.id)).status is S.PAUSED
        rows = db_rows(library, "SELECT status, pause_reason FROM jobs WHERE parent_id=?", (parent.id,))
        assert all(row == ("paused", "parent") for row in rows), f"children of a paused parent: {rows}"
        await manager.resume(parent.id)
        assert await asyncio.wait_for(parent.wait(), 30) == [4]


async def test_cancel_requested_before_a_parent_spawns_covers_the_children_it_spawns(library):
    async with sj.JobManager.open(library, grace_period=5) as manager:
        parent = await _request_before_spawn(manager, "cancel")
        assert (await manager.record(parent.id)).status is S.CANCELLED
        rows = db_rows(library, "SELECT status FROM jobs WHERE parent_id=?", (parent.id,))
        assert all(row == ("cancelled",) for row in rows), f"children of a cancelled parent: {rows}"


async def test_close_before_a_parent_spawns_pauses_it_instead_of_failing_it(library):
    async with sj.JobManager.open(library, grace_period=5) as manager:
        parent = await manager.dispatch(LateSpawn([Square(2)]))
        await until(lambda: parent.current_status is S.RUNNING)  # busy until the close asks it to stop
    record = db_rows(library, "SELECT status, pause_reason, error FROM jobs WHERE id=?", (parent.id,))
    assert record == [("paused", "interrupted", None)]
    async with sj.JobManager.open(library) as manager:
        await manager.resume_interrupted()
        assert await asyncio.wait_for(manager.get(parent.id).wait(), 30) == [4]


# --- resume without duplicates -------------------------------------------------------------------


async def test_a_user_paused_parent_resumes_after_reopen_without_duplicates(library):
    gate = gate_of(library)
    async with sj.JobManager.open(library) as manager:
        parent = await manager.dispatch(FanOut([held(1, gate), held(2, gate)]))
        ids = await spawned(manager, parent.id, 2)
        await manager.pause(parent.id)
    open_gate(gate, 3)
    async with sj.JobManager.open(library) as manager:
        assert await manager.resume_interrupted() == []  # paused by the user: stays paused
        await manager.resume(parent.id)
        out = await asyncio.wait_for(manager.get(parent.id).wait(), 30)
        assert out["ids"] == ids and out["results"] == [1, 4]
    assert [cid for cid, _, _ in child_rows(library, parent.id)] == ids


async def test_close_while_a_parent_waits_is_prompt_and_resumes_without_duplicates(library):
    # the running child notices the close only when it takes its next step, which the test allows
    # only once the parent has stopped: the parent's wait notices the close first, while the child
    # still holds the only slot. A parent that needed its slot back would never stop (the deadline
    # fails it); the grace period is twice any deadline here, so it is never forced either.
    gate = gate_of(library)
    async with sj.JobManager.open(library, max_concurrent=1, grace_period=60) as manager:
        parent = await manager.dispatch(FanOut([held(1, gate, steps=4, stubborn=True),
                                                held(2, gate, steps=4, stubborn=True)]))
        await until(lambda: _has_children(parent.id, 2), what="children spawned")
        ids = SPAWNED[parent.id][-1]
        await until(lambda: _status_is(manager, ids[0], S.RUNNING), what="first child running")
        running = manager.get(ids[0])
        closing = asyncio.ensure_future(manager.close())
        try:
            await until(lambda: parent.current_status is S.PAUSED, what="the waiting parent to stop")
            assert running.current_status is S.RUNNING and not closing.done()
        finally:
            open_gate(gate, 1)  # the child's next step notices the close
        await asyncio.wait_for(closing, 30)
    open_gate(gate, 4)
    async with sj.JobManager.open(library) as manager:
        assert (await manager.record(parent.id)).pause_reason == "interrupted"
        await manager.resume_interrupted()
        out = await asyncio.wait_for(manager.get(parent.id).wait(), 30)
        assert out["ids"] == ids and out["results"] == [1, 4]
    assert [cid for cid, _, _ in child_rows(library, parent.id)] == ids
    assert out["runs"] == 2, "close() forced the parent's task: its state at the pause was lost"


async def test_a_parent_killed_while_waiting_resumes_in_a_new_process_without_duplicates(library):
    gate = gate_of(library)
    open_gate(gate, 5)  # every child runs and checkpoints 5 of its steps, then waits there for the kill
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(WORKER), str(library), gate, "2", "3", "4",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=WORKER.parent,
    )
    try:
        parent_id = (await _line(proc, "PARENT")).split()[1]
        ids = (await _line(proc, "WAITING")).split()[1:]
        await until(lambda: _all_progressed(library, ids), what="children checkpointed")
        os.kill(proc.pid, signal.SIGKILL)
        assert await asyncio.wait_for(proc.wait(), 10) == -signal.SIGKILL
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    rows_before = child_rows(library, parent_id)
    assert [cid for cid, _, _ in rows_before] == ids
    assert {status for _, _, status in rows_before} == {"running"}  # died mid-run

    open_gate(gate, WORKER_STEPS)
    async with sj.JobManager.open(library) as manager:
        record = await manager.record(parent_id)
        assert (record.status, record.pause_reason) == (S.PAUSED, "interrupted")
        resumed = await manager.resume_interrupted()
        assert {h.id for h in resumed} == {parent_id, *ids}
        out = await asyncio.wait_for(manager.get(parent_id).wait(), 30)
        assert out["ids"] == ids
        assert [square for square, _ in out["results"]] == [4, 9, 16]
        # each child ran twice: from step 0, then from its last checkpoint (not from scratch)
        assert [starts for _, starts in out["results"]] == [[0, 5]] * 3, out["results"]
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


def _all_progressed(library: Path, ids: list[str]) -> bool:
    marks = ",".join("?" * len(ids))
    rows = db_rows(library, f"SELECT count(*) FROM job_checkpoints WHERE job_id IN ({marks}) AND count >= 5", tuple(ids))
    return rows == [(len(ids),)]
