"""`ctx.run_blocking` on the default thread pool and on a process pool (issue 7)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

import children_worker_fns as fns
from blocking_jobs import Call
import sdjobs_nb as sj
from children_worker_probe import LoopProbe

S = sj.JobStatus
BIG = 3_000_000  # a burn() of a few hundred ms


@dataclass
class Inline(sj.Job):
    """Blocks the loop on purpose: what run_blocking is for."""

    NAME = "executors_inline"
    seconds: float

    async def run(self, ctx: sj.JobContext) -> None:
        time.sleep(self.seconds)


@dataclass
class WhereAmI(sj.Job):
    NAME = "executors_where"

    async def run(self, ctx: sj.JobContext) -> list[int]:
        return [await ctx.run_blocking(threading.get_ident), threading.get_ident()]


@dataclass
class Unpicklable(sj.Job):
    NAME = "executors_unpicklable"

    async def run(self, ctx: sj.JobContext) -> int:
        return await ctx.run_blocking(lambda: 1)


@pytest.fixture
def process_pool():
    # spawn: workers import `children_worker_fns` by name, as they would from a notebook
    pool = concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    try:
        list(pool.map(fns.square, range(4)))  # start both workers before anything is timed
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


async def run_job(manager: sj.JobManager, job: sj.Job, timeout: float = 20) -> Any:
    return await asyncio.wait_for((await manager.dispatch(job)).wait(), timeout)


# --- the default thread pool -------------------------------------------------------------------


async def test_default_runs_on_a_thread_and_keeps_the_loop_responsive(library):
    async with sj.JobManager.open(library) as manager:
        worker_thread, loop_thread = await run_job(manager, WhereAmI())
        assert worker_thread != loop_thread

        async with LoopProbe() as blocked:
            await run_job(manager, Inline(0.5))
        async with LoopProbe() as sleeping:
            assert await run_job(manager, Call("nap", [0.3], repeat=2)) == [0.3] * 2
        async with LoopProbe() as burning:
            results = await run_job(manager, Call("burn", [BIG], repeat=2))
        assert results == [fns.burn(BIG)] * 2

    # the probe sees a loop blocked for 0.5 s; run_blocking keeps it free, even for CPU work in a
    # thread, which only shares the GIL: the loop never waits for a whole call
    assert blocked.worst_ms > 450
    assert sleeping.worst_ms < 150, sleeping.worst_ms
    assert burning.worst_ms < burning.half_a_call_ms(2), (burning.worst_ms, burning.seconds)
    assert sleeping.wakeups > 100


async def test_arguments_and_keyword_arguments_reach_the_function(library):
    async with sj.JobManager.open(library) as manager:
        assert await run_job(manager, Call("scaled", [3], {"factor": 2, "offset": 1})) == [7]
        assert await run_job(manager, Call("labelled", [3], {"key": "k", "priority": 2})) == ["k:3:2"]


async def test_an_error_in_the_blocking_call_fails_the_job_with_its_message(library):
    async with sj.JobManager.open(library) as manager:
        handle = await manager.dispatch(Call("boom", ["bad input file"]))
        with pytest.raises(sj.JobFailed) as info:
            await asyncio.wait_for(handle.wait(), 10)
        assert info.value.message == "ValueError: bad input file"
        assert "raise ValueError(message)" in info.value.traceback_text


async def test_a_bad_executor_is_refused_before_the_library_is_touched(library):
    with pytest.raises(TypeError, match="executor must be"):
        sj.JobManager.open(library, executor=object())
    assert not library.exists()


# --- pause and cancel while a call is in flight --------------------------------------------------


async def test_pause_during_a_call_takes_effect_when_it_returns(library):
    async with sj.JobManager.open(library, grace_period=5) as manager:
        handle = await manager.dispatch(Call("nap", [0.5], repeat=3))
        await asyncio.sleep(0.1)  # the first call is in flight
        started = time.monotonic()
        await asyncio.wait_for(manager.pause(handle.id), 5)
        took = time.monotonic() - started
        record = await manager.record(handle.id)
        assert record.status is S.PAUSED
        assert 0.25 < took < 2.0, took  # waited for the call, not for the grace period
        assert record.progress.current == 1  # the finished call's result was kept

        await manager.resume(handle.id)
        assert await asyncio.wait_for(handle.wait(), 10) == [0.5] * 3  # 3 calls in all, none redone


async def test_cancel_during_a_call_longer_than_the_grace_period_does_not_wait_for_it(library):
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        async with sj.JobManager.open(library, grace_period=0.3, executor=pool) as manager:
            handle = await manager.dispatch(Call("nap", [2.0]))
            await asyncio.sleep(0.1)
            started = time.monotonic()
            await asyncio.wait_for(manager.cancel(handle.id), 5)
            took = time.monotonic() - started
            assert (await manager.record(handle.id)).status is S.CANCELLED
            with pytest.raises(sj.Cancelled):
                await handle.wait()
            assert 0.2 < took < 1.5, took
    finally:
        pool.shutdown(wait=False)


async def test_pause_during_a_call_longer_than_the_grace_period_resumes_from_the_checkpoint(library):
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        async with sj.JobManager.open(library, grace_period=0.3, executor=pool) as manager:
            handle = await manager.dispatch(Call("nap", [1.5], repeat=1))
            await asyncio.sleep(0.1)
            started = time.monotonic()
            await asyncio.wait_for(manager.pause(handle.id), 5)
            assert time.monotonic() - started < 1.3
            assert (await manager.record(handle.id)).status is S.PAUSED
            await manager.resume(handle.id)
            assert await asyncio.wait_for(handle.wait(), 10) == [1.5]
    finally:
        pool.shutdown(wait=False)


# --- a process pool ------------------------------------------------------------------------------


async def test_process_pool_runs_work_in_other_processes(library, process_pool):
    async with sj.JobManager.open(library, executor=process_pool) as manager:
        pids = await run_job(manager, Call("whoami", repeat=6))
        assert os.getpid() not in pids
        assert await run_job(manager, Call("scaled", [3], {"factor": 2, "offset": 1})) == [7]
        async with LoopProbe() as probe:
            results = await run_job(manager, Call("burn", [BIG], repeat=2))
        assert results == [fns.burn(BIG)] * 2
    assert probe.worst_ms < probe.half_a_call_ms(2), (probe.worst_ms, probe.seconds)


async def test_process_pool_errors_fail_the_job_with_the_real_message(library, process_pool):
    async with sj.JobManager.open(library, executor=process_pool) as manager:
        with pytest.raises(sj.JobFailed, match="ValueError: lost the network"):
            await run_job(manager, Call("boom", ["lost the network"]))
        # a function a process pool cannot pickle fails the job instead of hanging it
        handle = await manager.dispatch(Unpicklable())
        with pytest.raises(sj.JobFailed, match="(?i)pickl"):
            await asyncio.wait_for(handle.wait(), 10)
