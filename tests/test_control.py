"""Pause, resume, cancel, checkpoints, priority, dedup, versions (issue 3)."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass

import pytest

import sdjobs_nb as sj
from jobs_for_tests import ORDER, Add, Once, Recorder, Steps, Stubborn
from support import db_rows
from test_lifecycle import _until

S = sj.JobStatus


async def _running(handle):
    await _until(lambda: handle.current_status is S.RUNNING)


async def test_pause_saves_state_before_reporting_paused(manager, library):
    handle = await manager.dispatch(Steps(total=100_000, every=1_000_000))
    await _running(handle)
    await asyncio.sleep(0.1)
    await handle.pause()
    assert handle.current_status is S.PAUSED
    data = db_rows(library, "SELECT data, status FROM jobs WHERE id=?", (handle.id,))[0]
    assert data[1] == "paused"
    job = sj.registry.create("test_steps", 1, data[0])
    assert job.done > 0  # saved at the interruption point although it never checkpointed


async def test_resume_continues_from_saved_state_and_reports_running_only_when_running(manager):
    handle = await manager.dispatch(Steps(total=300))
    await _running(handle)
    await asyncio.sleep(0.05)
    await handle.pause()
    paused_at = (await manager.record(handle.id)).progress.current
    seen = []

    async def watch():
        async for status in handle.status():
            seen.append(status)

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0)
    await handle.resume()
    assert await handle.wait() == 300
    await watcher
    assert seen == [S.PAUSED, S.QUEUED, S.RUNNING, S.COMPLETED]
    assert paused_at > 0


async def test_pause_of_a_queued_job_keeps_it_out_of_the_queue(library):
    async with sj.JobManager.open(library, max_concurrent=1) as m:
        first = await m.dispatch(Steps(total=40))
        second = await m.dispatch(Add(1, 2))
        await second.pause()
        assert await first.wait() == 40
        await asyncio.sleep(0.05)
        assert second.current_status is S.PAUSED
        await second.resume()
        assert await second.wait() == 3


@pytest.mark.parametrize("state", ["queued", "running", "paused"])
async def test_cancel_from_each_unfinished_state(library, state):
    async with sj.JobManager.open(library, max_concurrent=1) as m:
        blocker = await m.dispatch(Steps(total=100_000))
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


async def test_not_resumable_job_cannot_be_paused_or_resumed(manager):
    handle = await manager.dispatch(Once())
    await _running(handle)
    with pytest.raises(sj.NotResumable, match="IS_RESUMABLE"):
        await handle.pause()
    await handle.cancel()


async def test_job_ignoring_interruption_is_forced_and_resumes_from_last_checkpoint(library):
    async with sj.JobManager.open(library, grace_period=0.3) as m:
        handle = await m.dispatch(Stubborn(total=1000, every=5))
        await _until(lambda: (handle.current_progress is not None) or True)
        await asyncio.sleep(0.3)
        await handle.pause()
        assert handle.current_status is S.PAUSED
        (blob,) = db_rows(library, "SELECT data FROM jobs WHERE id=?", (handle.id,))[0]
        saved = sj.registry.create("test_stubborn", 1, blob)
        (checkpoint,) = db_rows(library, "SELECT data FROM job_checkpoints WHERE job_id=?", (handle.id,))[0]
        assert saved.done % 5 == 0 and saved.done > 0  # the last checkpoint, not the in-memory state
        assert blob == checkpoint
        await handle.resume()
        assert await handle.wait() == 1000


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
    async with sj.JobManager.open(library, max_concurrent=1) as m:
        blocker = await m.dispatch(Steps(total=20))
        low = await m.dispatch(Recorder("low"), priority=sj.Priority.LOW)
        n1 = await m.dispatch(Recorder("normal-1"))
        high = await m.dispatch(Recorder("high"), priority=sj.Priority.HIGH)
        n2 = await m.dispatch(Recorder("normal-2"))
        crit = await m.dispatch(Recorder("critical"), priority=sj.Priority.CRITICAL)
        for h in (blocker, low, n1, high, n2, crit):
            await h.wait()
    assert ORDER == ["critical", "high", "normal-1", "normal-2", "low"]


async def test_max_concurrent_is_respected(library):
    running = {"now": 0, "max": 0}

    @dataclass
    class Probe(sj.Job):
        NAME = "test_probe_concurrency"

        async def run(self, ctx):
            running["now"] += 1
            running["max"] = max(running["max"], running["now"])
            await asyncio.sleep(0.01)
            running["now"] -= 1

    async with sj.JobManager.open(library, max_concurrent=3) as m:
        handles = [await m.dispatch(Probe()) for _ in range(12)]
        await asyncio.gather(*(h.wait() for h in handles))
    assert running["max"] == 3


async def test_dedup_key_returns_the_unfinished_job(manager, library):
    first = await manager.dispatch(Steps(total=100_000), dedup_key="scan:1")
    again = await manager.dispatch(Steps(total=5), dedup_key="scan:1")
    assert again.id == first.id
    assert db_rows(library, "SELECT count(*) FROM jobs") == [(1,)]
    await first.cancel()
    fresh = await manager.dispatch(Add(1), dedup_key="scan:1")
    assert fresh.id != first.id  # a finished job no longer blocks the key


async def test_dedup_survives_reopen(library):
    async with sj.JobManager.open(library) as m:
        first = await m.dispatch(Steps(total=100_000), dedup_key="k")
        await _running(first)
    async with sj.JobManager.open(library) as m:
        again = await m.dispatch(Add(1), dedup_key="k")
        assert again.id == first.id


async def test_checkpoint_writes_state_and_checkpoint_row_together(manager, library):
    handle = await manager.dispatch(Steps(total=30, every=10))
    await handle.wait()
    rows = db_rows(library, "SELECT count, data FROM job_checkpoints WHERE job_id=?", (handle.id,))
    assert rows[0][0] == 3
    assert sj.registry.create("test_steps", 1, rows[0][1]).done == 30


async def test_version_mismatch_on_resume_leaves_the_record_untouched(library):
    @dataclass
    class Evolving(sj.Job):
        NAME = "test_evolving"
        total: int = 100_000
        done: int = 0

        async def run(self, ctx):
            while self.done < self.total:
                await ctx.check_interrupted()
                self.done += 1
                await asyncio.sleep(0.001)
            return self.done

    async with sj.JobManager.open(library) as m:
        handle = await m.dispatch(Evolving())
        await _running(handle)
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
        assert (await m.get(handle.id).wait())[0] == "migrated"


async def test_unknown_stored_name_is_listed_and_untouched(library):
    @dataclass
    class Vanishing(sj.Job):
        NAME = "test_vanishing"

        async def run(self, ctx):
            return 1

    async with sj.JobManager.open(library, max_concurrent=1) as m:
        blocker = await m.dispatch(Steps(total=100_000))
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
    async with sj.JobManager.open(library) as m:
        by_user = await m.dispatch(Steps(total=100_000))
        by_close = await m.dispatch(Steps(total=50))
        await _running(by_user)
        await by_user.pause()
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
        blocker = await m.dispatch(Steps(total=100_000))
        queued = await m.dispatch(Late())
        await _running(blocker)
    sj.registry.unregister("test_defined_late")
    async with sj.JobManager.open(library) as m:
        assert queued.id in m.broken()  # its class is not defined in this "kernel" yet
        define()  # the user runs the cell that defines it
        assert await asyncio.wait_for(m.get(queued.id).wait(), 10) == "ran"
        assert queued.id not in m.broken()


async def test_saved_state_shows_what_a_resume_starts_from(manager):
    handle = await manager.dispatch(Steps(total=100_000, every=10**9))
    await _running(handle)
    await asyncio.sleep(0.05)
    await handle.pause()
    state = await manager.saved_state(handle.id)
    assert state["total"] == 100_000 and state["done"] > 0
    with pytest.raises(sj.JobNotFound):
        await manager.saved_state("nope")
