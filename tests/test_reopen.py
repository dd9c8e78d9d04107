"""A notebook user's habits: re-running the `open` cell, re-running a notebook after a restart.

Re-opening a library in the process that owns it gives back the live manager (its options
replaced by the new ones); a dispatch whose `dedup_key` finds a job interrupted by a dead
kernel or a close carries that job on; errors that leave a job waiting say what to do.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from dataclasses import dataclass

import pytest

import sdjobs_nb as sj
from jobs_for_tests import Gated, open_gate
from support import db_rows

S = sj.JobStatus


async def _until(predicate, what: str = "condition", timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


async def _at_step(handle, step: int) -> None:
    """Wait until the job has taken (and checkpointed) `step` steps."""
    await _until(lambda: handle.current_progress is not None and handle.current_progress.current >= step,
                 f"step {step}")


@pytest.fixture
def gate(tmp_path) -> str:
    path = str(tmp_path / "gate")
    open_gate(path, 0)
    return path


async def test_reopening_in_the_owning_process_returns_the_live_manager(library, gate):
    manager = await sj.JobManager.open(library)
    try:
        handle = await manager.dispatch(Gated(gate=gate, total=5))
        open_gate(gate, 1)
        await _at_step(handle, 1)
        again = await sj.JobManager.open(library)
        assert again is manager
        assert handle.current_status is S.RUNNING  # the re-run cell disturbed nothing
        open_gate(gate, 5)
        assert await handle.wait() == 5
    finally:
        await manager.close()
    assert db_rows(library, "SELECT count(*) FROM job_history") == [(1,)]


async def test_the_options_of_a_repeated_open_take_effect(library, gate):
    manager = await sj.JobManager.open(library, max_concurrent=1)
    try:
        first = await manager.dispatch(Gated(gate=gate, total=1))
        second = await manager.dispatch(Gated(gate=gate, total=1))
        await _until(lambda: first.current_status is S.RUNNING, "the first job to start")
        assert second.current_status is S.QUEUED
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="users-pool")
        try:
            await sj.JobManager.open(library, max_concurrent=3, grace_period=1.5, executor=pool,
                                     durable=True, file_log=True)
            await _until(lambda: second.current_status is S.RUNNING, "a second slot to start the queued job")
            assert (manager.max_concurrent, manager.grace_period) == (3, 1.5)
            assert await manager.store.fetchone("PRAGMA synchronous") == (2,)  # FULL
            thread_name = await manager.dispatch(ThreadName())
            assert (await thread_name.wait()).startswith("users-pool")
            assert (library / "logs" / f"{thread_name.id}.log").exists()
            await sj.JobManager.open(library, max_concurrent=3)
            assert await manager.store.fetchone("PRAGMA synchronous") == (1,)  # NORMAL again
        finally:
            open_gate(gate, 1)
            await asyncio.gather(first.wait(), second.wait())
            pool.shutdown()
    finally:
        await manager.close()


@dataclass
class ThreadName(sj.Job):
    NAME = "test_thread_name"

    async def run(self, ctx: sj.JobContext) -> str:
        return await ctx.run_blocking(lambda: threading.current_thread().name)


async def test_async_with_closes_a_manager_it_got_again(library):
    manager = await sj.JobManager.open(library)
    async with sj.JobManager.open(library) as again:
        assert again is manager
    assert manager.closed
    async with sj.JobManager.open(library) as fresh:
        assert fresh is not manager


async def test_a_read_only_view_in_the_owning_process_is_its_own(library):
    async with sj.JobManager.open(library) as manager:
        async with sj.JobManager.open(library, read_only=True) as view:
            assert view is not manager and view.read_only and not manager.read_only


async def test_a_manager_on_another_live_loop_keeps_the_library(library):
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def open_there() -> sj.JobManager:
        return await sj.JobManager.open(library)

    other = asyncio.run_coroutine_threadsafe(open_there(), loop).result(30)
    try:
        with pytest.raises(sj.LibraryLocked) as caught:
            await sj.JobManager.open(library)
        message = str(caught.value)
        assert "another event loop" in message and "close that manager first" in message
        assert "stop" not in message and "kernel" not in message
        assert not other.closed
    finally:
        asyncio.run_coroutine_threadsafe(other.close(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
    async with sj.JobManager.open(library) as manager:
        assert manager is not other


def test_a_manager_whose_loop_ended_is_let_go(library, gate):
    """`asyncio.run(main())` twice in a script, the first run never closing its manager."""

    async def first_run() -> str:
        manager = await sj.JobManager.open(library)
        handle = await manager.dispatch(Gated(gate=gate, total=3))
        open_gate(gate, 1)
        await _at_step(handle, 1)
        return handle.id  # no close(): asyncio.run cancels the job and closes the loop

    async def second_run(job_id: str) -> int:
        async with sj.JobManager.open(library) as manager:
            record = await manager.record(job_id)
            assert (record.status, record.pause_reason) == (S.PAUSED, "interrupted")
            open_gate(gate, 3)
            [handle] = await manager.resume_interrupted()
            return await handle.wait()

    job_id = asyncio.run(first_run())
    assert asyncio.run(second_run(job_id)) == 3


async def test_dispatch_carries_on_an_interrupted_twin(library, gate):
    async with sj.JobManager.open(library) as manager:
        first = await manager.dispatch(Gated(gate=gate, total=4), dedup_key="count:gate")
        open_gate(gate, 2)
        await _at_step(first, 2)
    # a new kernel runs the notebook again: the same cell dispatches the same work
    async with sj.JobManager.open(library) as manager:
        again = await manager.dispatch(Gated(gate=gate, total=4), dedup_key="count:gate")
        assert again.id == first.id
        assert again.current_status in (S.QUEUED, S.RUNNING)
        open_gate(gate, 4)
        assert await again.wait() == 4
        # carried on from its checkpoint at step 2: 2 + 2 checkpoints (from scratch it would be 2 + 4); a
        # finished job's saved state itself is dropped when it finishes (issue 17)
        assert (await manager.record(first.id)).metrics["checkpoints"] == 4
    assert db_rows(library, "SELECT count(*) FROM jobs") == [(1,)]
    assert db_rows(library, "SELECT count(*) FROM job_history") == [(1,)]


async def test_dispatch_leaves_a_twin_the_user_paused_paused(manager, gate):
    first = await manager.dispatch(Gated(gate=gate, total=4), dedup_key="count:gate")
    open_gate(gate, 1)
    await _at_step(first, 1)
    await first.pause()
    again = await manager.dispatch(Gated(gate=gate, total=4), dedup_key="count:gate")
    assert again.id == first.id and again.current_status is S.PAUSED


def _define_reshaped(with_done: bool) -> type:
    if with_done:
        @dataclass
        class Reshaped(sj.Job):
            NAME = "test_reshaped"
            gate: str
            done: int = 0

            async def run(self, ctx: sj.JobContext) -> int:
                open_gate(self.gate + ".started", 1)
                while True:
                    await ctx.check_interrupted()
                    await asyncio.sleep(0.005)
    else:
        @dataclass
        class Reshaped(sj.Job):  # type: ignore[no-redef]
            NAME = "test_reshaped"
            gate: str

            async def run(self, ctx: sj.JobContext) -> str:
                return "reshaped"
    return Reshaped


async def test_a_class_that_no_longer_fits_says_what_to_do(manager, gate):
    handle = await manager.dispatch(_define_reshaped(with_done=True)(gate=gate))
    await _until(lambda: handle.current_status is S.RUNNING, "the job to start")
    await handle.pause()
    _define_reshaped(with_done=False)  # the user dropped the field `done`
    with pytest.raises(sj.BrokenJob) as caught:
        await handle.resume()
    message = str(caught.value)
    assert "unknown field 'done'" in message
    assert "bump VERSION to 2" in message and "migrate" in message and "manager.broken()" in message
    assert handle.id in manager.broken()
    assert handle.current_status is S.PAUSED  # nothing lost: it waits for a class that fits


async def test_a_stored_job_of_an_unknown_name_says_it_waits(library, gate):
    Reshaped = _define_reshaped(with_done=False)
    async with sj.JobManager.open(library, max_concurrent=1) as manager:
        blocker = await manager.dispatch(Gated(gate=gate, total=1))
        queued = await manager.dispatch(Reshaped(gate=gate))
        await _until(lambda: blocker.current_status is S.RUNNING, "the blocker to start")
    sj.registry.unregister("test_reshaped")
    try:
        async with sj.JobManager.open(library) as manager:
            why = manager.broken()[queued.id]
            assert "test_reshaped" in why and "waits in manager.broken()" in why
            assert "starts as soon as its class is defined" in why
    finally:
        _define_reshaped(with_done=False)
