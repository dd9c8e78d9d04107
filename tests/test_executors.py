"""`ctx.run_blocking` on the default thread pool and on a process pool (issue 7)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import children_worker_fns as fns
from blocking_jobs import Call
import sdjobs_nb as sj
from jobs_for_tests import until
from children_worker_probe import release, release_after_turns, started, until_started

S = sj.JobStatus
BIG = 300_000  # a burn() that is real work, checked against the same call made here


@dataclass
class Inline(sj.Job):
    """Makes a held call on the loop itself, blocking it on purpose: what run_blocking is for."""

    NAME = "executors_inline"
    folder: str
    patience: float

    async def run(self, ctx: sj.JobContext) -> str:
        return fns.held(self.folder, self.patience)


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


async def run_job(manager: sj.JobManager, job: sj.Job, timeout: float = 60) -> Any:
    return await asyncio.wait_for((await manager.dispatch(job)).wait(), timeout)


async def run_released(manager: sj.JobManager, folder: Path, fn: str, calls: int) -> list[str]:
    """Run `Call(fn, [folder], repeat=calls)` of a held function while this loop releases each call
    only after taking 50 turns during it (children_worker_probe.py); return the job's result."""
    folder.mkdir()
    releaser = asyncio.ensure_future(release_after_turns(folder, calls))
    try:
        result = await run_job(manager, Call(fn, [str(folder)], repeat=calls))
        assert result == await releaser  # each call returned once released, in order
    finally:
        releaser.cancel()
    return result


def forced_warnings(caplog: pytest.LogCaptureFixture, job_id: str) -> list[str]:
    """The library's warnings that it stopped `job_id` after its grace period."""
    return [r.getMessage() for r in caplog.records
            if job_id in r.getMessage() and "did not reach check_interrupted within" in r.getMessage()]


# --- the default thread pool -------------------------------------------------------------------


async def test_default_runs_on_a_thread_and_keeps_the_loop_responsive(library, tmp_path):
    async with sj.JobManager.open(library) as manager:
        worker_thread, loop_thread = await run_job(manager, WhereAmI())
        assert worker_thread != loop_thread

        # each call returns only after the loop took 50 turns while it was in flight: run_blocking
        # keeps the loop free for a sleeping call, and for CPU work in a thread, which only shares
        # the GIL (children_worker_probe.py)
        assert len(set(await run_released(manager, tmp_path / "sleeping", "held", 2))) == 2
        assert len(set(await run_released(manager, tmp_path / "burning", "burn_until_released", 2))) == 2
        assert await run_job(manager, Call("burn", [BIG], repeat=2)) == [fns.burn(BIG)] * 2

        # the control: the same held call made on the loop itself blocks it, so the loop cannot
        # release it and it gives up
        blocked = tmp_path / "blocked"
        blocked.mkdir()
        releaser = asyncio.ensure_future(release_after_turns(blocked, 1))
        try:
            with pytest.raises(sj.JobFailed, match="TimeoutError: call .* was not released"):
                await run_job(manager, Inline(str(blocked), patience=1.0))
        finally:
            releaser.cancel()
        assert len(started(blocked)) == 1


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


async def test_pause_during_a_call_takes_effect_when_it_returns(library, tmp_path):
    # a grace period far beyond the test's deadlines: the pause can only end by the call returning
    async with sj.JobManager.open(library, grace_period=600) as manager:
        handle = await manager.dispatch(Call("held", [str(tmp_path)], repeat=3))
        (first,) = await until_started(tmp_path, 1)  # the first call is in flight, held
        pausing = asyncio.ensure_future(manager.pause(handle.id))
        await until(lambda: handle.pause_reason == "user")  # the pause is requested...
        assert not pausing.done() and handle.current_status is S.RUNNING  # ...and waits for the call
        release(tmp_path, first)
        await asyncio.wait_for(pausing, 30)
        record = await manager.record(handle.id)
        assert record.status is S.PAUSED
        assert record.progress.current == 1  # the finished call's result was kept
        assert started(tmp_path) == {first}  # paused when the call returned: no second call began

        release(tmp_path)  # every later call returns at once
        await manager.resume(handle.id)
        results = await asyncio.wait_for(handle.wait(), 30)
        assert results[0] == first and len(results) == 3 and set(results) == started(tmp_path)  # none redone


async def test_cancel_during_a_call_longer_than_the_grace_period_does_not_wait_for_it(library, tmp_path, caplog):
    pool = concurrent.futures.ThreadPoolExecutor(1)
    caplog.set_level(logging.WARNING, logger="sdjobs_nb.jobs")
    try:
        async with sj.JobManager.open(library, grace_period=0.3, executor=pool) as manager:
            handle = await manager.dispatch(Call("held", [str(tmp_path)]))
            await until_started(tmp_path, 1)
            # the call is released only after the cancel returns: the cancel cannot have waited for it
            await asyncio.wait_for(manager.cancel(handle.id), 30)
            assert (await manager.record(handle.id)).status is S.CANCELLED
            with pytest.raises(sj.Cancelled):
                await handle.wait()
            # it was stopped once its grace period was over, not at once
            assert len(forced_warnings(caplog, handle.id)) == 1
    finally:
        release(tmp_path)
        pool.shutdown(wait=False)


async def test_pause_during_a_call_longer_than_the_grace_period_resumes_from_the_checkpoint(library, tmp_path, caplog):
    pool = concurrent.futures.ThreadPoolExecutor(1)
    caplog.set_level(logging.WARNING, logger="sdjobs_nb.jobs")
    try:
        async with sj.JobManager.open(library, grace_period=0.3, executor=pool) as manager:
            handle = await manager.dispatch(Call("held", [str(tmp_path)], repeat=1))
            (first,) = await until_started(tmp_path, 1)
            # the call is released only after the pause returns: the pause cannot have waited for it
            await asyncio.wait_for(manager.pause(handle.id), 30)
            record = await manager.record(handle.id)
            assert (record.status, record.pause_reason) == (S.PAUSED, "user")
            assert len(forced_warnings(caplog, handle.id)) == 1  # stopped after its grace period
            assert (await manager.saved_state(handle.id))["results"] == []  # forced: its dispatched state stands

            release(tmp_path)  # the abandoned call returns, and so does the one the resume makes
            await manager.resume(handle.id)
            (result,) = await asyncio.wait_for(handle.wait(), 30)
            assert started(tmp_path) == {first, result}  # the forced call ran again: nothing was saved after it
    finally:
        release(tmp_path)
        pool.shutdown(wait=False)


# --- a process pool ------------------------------------------------------------------------------


async def test_process_pool_runs_work_in_other_processes(library, process_pool, tmp_path):
    async with sj.JobManager.open(library, executor=process_pool) as manager:
        pids = await run_job(manager, Call("whoami", repeat=6))
        assert os.getpid() not in pids
        assert await run_job(manager, Call("scaled", [3], {"factor": 2, "offset": 1})) == [7]
        assert await run_job(manager, Call("burn", [BIG], repeat=2)) == [fns.burn(BIG)] * 2
        # CPU work in another process: each call returns only after the loop took 50 turns during it
        assert len(set(await run_released(manager, tmp_path / "burning", "burn_until_released", 2))) == 2


async def test_process_pool_errors_fail_the_job_with_the_real_message(library, process_pool):
    async with sj.JobManager.open(library, executor=process_pool) as manager:
        with pytest.raises(sj.JobFailed, match="ValueError: lost the network"):
            await run_job(manager, Call("boom", ["lost the network"]))
        # a function a process pool cannot pickle fails the job instead of hanging it
        handle = await manager.dispatch(Unpicklable())
        with pytest.raises(sj.JobFailed, match="(?i)pickl"):
            await asyncio.wait_for(handle.wait(), 10)
