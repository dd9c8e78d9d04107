"""Pause, resume, cancel, checkpoints, priority, dedup, versions (issue 3).

Jobs that must still be running when the test acts wait at a gate file (`Steps.gate`,
`jobs_for_tests.open_gate`): the test decides how far they get, never the machine's speed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest

import sdjobs_nb as sj
from jobs_for_tests import ORDER, Add, Once, Recorder, Steps, Stubborn, open_gate, steps_done, until
from support import db_rows

S = sj.JobStatus


async def _running(handle):
    await until(lambda: handle.current_status is S.RUNNING)


async def _at_step(handle, step: int) -> None:
    """Wait until a gated job has reported `step` (it waits at its gate there)."""
    await until(lambda: steps_done(handle) == step, what=f"step {step}")


def _gate(library: Path, name: str = "gate") -> str:
    """A gate file beside the library; closed (0) until the test opens it."""
    return str(library.parent / name)


async def test_pause_saves_state_before_reporting_paused(manager, library):
    gate = _gate(library)
    open_gate(gate, 3)
    handle = await manager.dispatch(Steps(total=100, every=1_000_000, gate=gate))
    await _at_step(handle, 3)
    await handle.pause()
    assert handle.current_status is S.PAUSED
    data = db_rows(library, "SELECT data, status FROM jobs WHERE id=?", (handle.id,))[0]
    assert data[1] == "paused"
    job = sj.registry.create("test_steps", 1, data[0])
    assert job.done == 3  # saved at the interruption point although it never checkpointed
    assert db_rows(library, "SELECT count(*) FROM job_checkpoints WHERE job_id=?", (handle.id,)) == [(0,)]


async def test_resume_continues_from_saved_state_and_reports_running_only_when_running(manager, library):
    gate = _gate(library)
    open_gate(gate, 5)
    handle = await manager.dispatch(Steps(total=300, gate=gate))
    await _at_step(handle, 5)
    await handle.pause()
    paused_at = (await manager.record(handle.id)).progress.current
    seen = []

    async def watch():
        async for status in handle.status():
            seen.append(status)

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0)
    open_gate(gate, 300)
    await handle.resume()
    assert await handle.wait() == 300
    await watcher
    assert seen == [S.PAUSED, S.QUEUED, S.RUNNING, S.COMPLETED]
    assert paused_at == 5


async def test_pause_of_a_queued_job_keeps_it_out_of_the_queue(library):
    gate = _gate(library)
    async with sj.JobManager.open(library, max_concurrent=1) as m:
        first = await m.dispatch(Steps(total=40, gate=gate))  # holds the only slot until the gate opens
        second = await m.dispatch(Add(1, 2))
        await second.pause()
        third = await m.dispatch(Add(3, 4))  # queued behind `second`
        open_gate(gate, 40)
        assert await first.wait() == 40
        assert await third.wait() == 7  # the queue moved on past `second`...
        assert second.current_status is S.PAUSED  # ...which never ran
        assert db_rows(library, "SELECT started_at FROM jobs WHERE id=?", (second.id,)) == [(None,)]
        await second.resume()
        assert await second.wait() == 3


@pytest.mark.parametrize("state", ["queued", "running", "paused"])
async def test_cancel_from_each_unfinished_state(library, state):
    async with sj.JobManager.open(library, max_concurrent=1) as m:
        blocker = await m.dispatch(Steps(total=10, gate=_gate(library)))  # held at a closed gate
        handle = blocker if state != "queued" else await m.dispatch(Add(1))
        await _running(blocker)
        if state == "paused":
            await handle.pause()
        await handle.cancel()
        assert handle.current_status is S.CANCELLED
        with pytest.raises(sj.Cancelled):
            await handle.wait()
        with pytest.raises(sj.InvalidTransition):
            await handle.resume()
        await handle.cancel()  # cancelling a cancelled job again is harmless
    assert db_rows(library, "SELECT status FROM job_history WHERE id=?", (handle.id,)) == [("cancelled",)]


async def test_refused_transitions_change_nothing(manager, library):
    done = await manager.dispatch(Add(1))
    await done.wait()
    for action in (done.pause, done.resume, done.cancel):
        with pytest.raises(sj.InvalidTransition):
            await action()
    assert db_rows(library, "SELECT status FROM jobs") == [("completed",)]


async def test_not_resumable_job_cannot_be_paused_or_resumed(manager, library):
    handle = await manager.dispatch(Once(gate=_gate(library)))  # held at a closed gate
    await _running(handle)
    with pytest.raises(sj.NotResumable, match="IS_RESUMABLE"):
        await handle.pause()
    assert handle.current_status is S.RUNNING  # the refused pause changed nothing
    await handle.cancel()
    assert handle.current_status is S.CANCELLED


async def test_job_ignoring_interruption_is_forced_and_resumes_from_last_checkpoint(library):
    gate = _gate(library)
    open_gate(gate, 7)  # 7 steps (a checkpoint at 5), then a wait that never checks for interruption
    async with sj.JobManager.open(library, grace_period=0.3) as m:
        handle = await m.dispatch(Stubborn(total=100, every=5, gate=gate))
        await until(lambda: db_rows(library, "SELECT count FROM job_checkpoints WHERE job_id=?", (handle.id,)) == [(1,)],
                    what="the first checkpoint")
        await handle.pause()  # returns only by forcing the job: it can never reach a check
        assert handle.current_status is S.PAUSED
        (blob,) = db_rows(library, "SELECT data FROM jobs WHERE id=?", (handle.id,))[0]
        saved = sj.registry.create("test_stubborn", 1, blob)
        (checkpoint,) = db_rows(library, "SELECT data FROM job_checkpoints WHERE job_id=?", (handle.id,))[0]
        assert saved.done == 5  # the last checkpoint, not the in-memory state (up to 7 steps)
        assert blob == checkpoint
        open_gate(gate, 100)
        await handle.resume()
        assert await handle.wait() == 100


async def test_fifty_jobs_twenty_pause_resume_cycles_each(library):
    async with sj.JobManager.open(library, max_concurrent=50) as m:
        handles = [await m.dispatch(Steps(total=400, every=7, delay=0.0005)) for _ in range(50)]

        async def cycle(h):
            for _ in range(20):
                if h.current_status.is_terminal:
                    return
                await h.pause()
                await asyncio.sleep(0.001)
                await h.resume()

        await asyncio.gather(*(cycle(h) for h in handles))
        results = await asyncio.gather(*(h.wait() for h in handles))
    assert results == [400] * 50
    assert db_rows(library, "SELECT count(*), min(status), max(status) FROM job_history") == [(50, "completed", "completed")]


async def test_priority_then_first_come_first_served(library):
    ORDER.clear()
    gate = _gate(library)
    async with sj.JobManager.open(library, max_concurrent=1) as m:
        blocker = await m.dispatch(Steps(total=20, gate=gate))  # holds the only slot until all are queued
        low = await m.dispatch(Recorder("low"), priority=sj.Priority.LOW)
        n1 = await m.dispatch(Recorder("normal-1"))
        high = await m.dispatch(Recorder("high"), priority=sj.Priority.HIGH)
        n2 = await m.dispatch(Recorder("normal-2"))
        crit = await m.dispatch(Recorder("critical"), priority=sj.Priority.CRITICAL)
        open_gate(gate, 20)
        for h in (blocker, low, n1, high, n2, crit):
            await h.wait()
    assert ORDER == ["critical", "high", "normal-1", "normal-2", "low"]


async def test_max_concurrent_is_respected(library):
    running = {"now": 0, "max": 0}
    go = asyncio.Event()

    @dataclass
    class Probe(sj.Job):
        NAME = "test_probe_concurrency"

        async def run(self, ctx):
            running["now"] += 1
            running["max"] = max(running["max"], running["now"])
            await go.wait()  # every probe runs until the test lets them all go
            running["now"] -= 1

    async with sj.JobManager.open(library, max_concurrent=3) as m:
        handles = [await m.dispatch(Probe()) for _ in range(12)]
        await until(lambda: running["now"] == 3, what="three probes running")
        assert sum(h.current_status is S.RUNNING for h in handles) == 3
        assert sum(h.current_status is S.QUEUED for h in handles) == 9
        go.set()
        await asyncio.gather(*(h.wait() for h in handles))
    assert running["max"] == 3


async def test_dedup_key_returns_the_unfinished_job(manager, library):
    first = await manager.dispatch(Steps(total=10, gate=_gate(library)), dedup_key="scan:1")  # held: unfinished
    again = await manager.dispatch(Steps(total=5), dedup_key="scan:1")
    assert again.id == first.id
    assert db_rows(library, "SELECT count(*) FROM jobs") == [(1,)]
    await first.cancel()
    fresh = await manager.dispatch(Add(1), dedup_key="scan:1")
    assert fresh.id != first.id  # a finished job no longer blocks the key


async def test_dedup_survives_reopen(library):
    async with sj.JobManager.open(library) as m:
        first = await m.dispatch(Steps(total=10, gate=_gate(library)), dedup_key="k")  # held: unfinished
        await _running(first)
    async with sj.JobManager.open(library) as m:
        again = await m.dispatch(Add(1), dedup_key="k")
        assert again.id == first.id


async def test_checkpoint_writes_state_and_checkpoint_row_together(manager, library):
    gate = _gate(library)
    open_gate(gate, 30)
    handle = await manager.dispatch(Steps(total=31, every=10, gate=gate))  # held after its third checkpoint
    await _at_step(handle, 30)
    await until(lambda: db_rows(library, "SELECT count FROM job_checkpoints WHERE job_id=?", (handle.id,)) == [(3,)],
                what="the third checkpoint")
    rows = db_rows(library, "SELECT count, data FROM job_checkpoints WHERE job_id=?", (handle.id,))
    assert rows[0][0] == 3
    assert sj.registry.create("test_steps", 1, rows[0][1]).done == 30
    assert db_rows(library, "SELECT data FROM jobs WHERE id=?", (handle.id,)) == [(rows[0][1],)]
    open_gate(gate, 31)
    assert await handle.wait() == 31
    # issue 17: a finished job never resumes, so its checkpoint goes in the transaction that finishes it
    assert db_rows(library, "SELECT count(*) FROM job_checkpoints WHERE job_id=?", (handle.id,)) == [(0,)]


async def test_version_mismatch_on_resume_leaves_the_record_untouched(library):
    @dataclass
    class Evolving(Steps):  # counts like `Steps`, under a name of its own
        NAME = "test_evolving"
        total: int = 100_000

    gate = _gate(library)
    open_gate(gate, 3)
    async with sj.JobManager.open(library) as m:
        handle = await m.dispatch(Evolving(gate=gate))
        await _at_step(handle, 3)
        await handle.pause()
    before = db_rows(library, "SELECT * FROM jobs")

    @dataclass
    class Evolving(sj.Job):  # noqa: F811 - the next version of the same class, as after an upgrade
        NAME = "test_evolving"
        VERSION = 2
        total: int = 100_000
        done: int = 0

        async def run(self, ctx):
            return self.done

    async with sj.JobManager.open(library) as m:
        with pytest.raises(sj.VersionMismatch, match="VERSION 1 but the class is VERSION 2"):
            await m.resume(handle.id)
        assert handle.id in m.broken()
    assert db_rows(library, "SELECT * FROM jobs") == before

    @dataclass
    class Evolving(sj.Job):  # noqa: F811 - now with a migration
        NAME = "test_evolving"
        VERSION = 2
        total: int = 100_000
        done: int = 0

        @classmethod
        def migrate(cls, data, from_version):
            return {"total": 5, "done": min(data["done"], 5)}

        async def run(self, ctx):
            return ("migrated", self.done)

    async with sj.JobManager.open(library) as m:
        await m.resume(handle.id)
        assert await m.get(handle.id).wait() == ("migrated", 3)


async def test_unknown_stored_name_is_listed_and_untouched(library):
    @dataclass
    class Vanishing(sj.Job):
        NAME = "test_vanishing"

        async def run(self, ctx):
            return 1

    async with sj.JobManager.open(library, max_concurrent=1) as m:
        blocker = await m.dispatch(Steps(total=10, gate=_gate(library)))  # held at a closed gate
        queued = await m.dispatch(Vanishing())
        await _running(blocker)
    sj.registry.unregister("test_vanishing")
    before = db_rows(library, "SELECT * FROM jobs WHERE id=?", (queued.id,))
    async with sj.JobManager.open(library) as m:
        assert "test_vanishing" in m.broken()[queued.id]
        with pytest.raises(sj.UnknownJob, match="test_vanishing"):
            await m.dispatch_by_name("test_vanishing", {})
    assert db_rows(library, "SELECT * FROM jobs WHERE id=?", (queued.id,)) == before


async def test_second_open_in_the_owner_gets_it_and_a_view_is_read_only(library):
    async with sj.JobManager.open(library) as owner:
        assert await sj.JobManager.open(library) is owner  # a re-run cell (tests/test_reopen.py)
        async with sj.JobManager.open(library, read_only=True) as view:
            with pytest.raises(sj.ReadOnlyLibrary):
                await view.dispatch(Add(1))
    async with sj.JobManager.open(library):
        pass  # released on close


async def test_resume_interrupted_takes_only_crash_and_close_pauses(library):
    gate = _gate(library)
    async with sj.JobManager.open(library) as m:
        by_user = await m.dispatch(Steps(total=50, gate=gate))  # both held at a closed gate
        by_close = await m.dispatch(Steps(total=50, gate=gate))
        await _running(by_user)
        await _running(by_close)
        await by_user.pause()
    assert dict(db_rows(library, "SELECT id, pause_reason FROM jobs")) == {by_user.id: "user", by_close.id: "interrupted"}
    open_gate(gate, 50)
    async with sj.JobManager.open(library, resume=True) as m:
        assert await m.get(by_close.id).wait() == 50
        assert m.get(by_user.id).current_status is S.PAUSED


async def test_durable_mode_uses_full_sync(library):
    async with sj.JobManager.open(library, durable=True) as m:
        assert (await m.store.fetchone("PRAGMA synchronous"))[0] == 2
    async with sj.JobManager.open(library) as m:
        assert (await m.store.fetchone("PRAGMA synchronous"))[0] == 1


async def test_queued_job_of_a_class_defined_after_open_starts_then(library):
    def define():
        @dataclass
        class Late(sj.Job):
            NAME = "test_defined_late"

            async def run(self, ctx):
                return "ran"

        return Late

    Late = define()
    async with sj.JobManager.open(library, max_concurrent=1) as m:
        blocker = await m.dispatch(Steps(total=10, gate=_gate(library)))  # held at a closed gate
        queued = await m.dispatch(Late())
        await _running(blocker)
    sj.registry.unregister("test_defined_late")
    async with sj.JobManager.open(library) as m:
        assert queued.id in m.broken()  # its class is not defined in this "kernel" yet
        define()  # the user runs the cell that defines it
        assert await asyncio.wait_for(m.get(queued.id).wait(), 10) == "ran"
        assert queued.id not in m.broken()


async def test_saved_state_shows_what_a_resume_starts_from(manager, library):
    gate = _gate(library)
    open_gate(gate, 4)
    handle = await manager.dispatch(Steps(total=100_000, every=10**9, gate=gate))
    await _at_step(handle, 4)
    await handle.pause()
    state = await manager.saved_state(handle.id)
    assert state["total"] == 100_000 and state["done"] == 4
    with pytest.raises(sj.JobNotFound):
        await manager.saved_state("nope")
