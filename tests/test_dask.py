"""`ctx.run_blocking` on a `dask.distributed` cluster started by the tests on 127.0.0.1 (issue 7)."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import Any

import psutil
import pytest

import children_worker_fns as fns
from blocking_jobs import Call
import sdjobs_nb as sj
from children_worker_probe import LoopProbe

distributed = pytest.importorskip("distributed", reason="needs the [dask] extra")

S = sj.JobStatus
CLUSTER = dict(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None)


@dataclass
class Parallel(sj.Job):
    """Sends `chunks` calls at once with asyncio.gather: the cluster runs them side by side."""

    NAME = "dask_parallel"
    chunks: int
    n: int

    async def run(self, ctx: sj.JobContext) -> list[int]:
        return list(await asyncio.gather(*(ctx.run_blocking(fns.whoami) for _ in range(self.chunks))))


def listening(pids: list[int]) -> list[tuple[int, str, int]]:
    """(pid, ip, port) of every listening TCP socket of these processes."""
    out = []
    for pid in pids:
        for conn in psutil.Process(pid).net_connections(kind="inet"):
            if conn.status == psutil.CONN_LISTEN:
                out.append((pid, conn.laddr.ip, conn.laddr.port))
    return out


def our_processes() -> list[int]:
    me = psutil.Process()
    return [me.pid, *(p.pid for p in me.children(recursive=True))]


@pytest.fixture(scope="module")
def cluster():
    """A 2-worker LocalCluster and a (synchronous, as in a notebook) Client on it, shared by this module."""
    local = client = None
    try:
        local = distributed.LocalCluster(**CLUSTER)
        client = distributed.Client(local)
        yield client
    finally:
        if client is not None:
            client.close()
        if local is not None:
            local.close()


async def run_job(manager: sj.JobManager, job: sj.Job, timeout: float = 30) -> Any:
    return await asyncio.wait_for((await manager.dispatch(job)).wait(), timeout)


def worker_pids(client) -> set[int]:
    return set(client.run(os.getpid).values())


async def test_a_local_cluster_listens_only_on_localhost_and_runs_jobs(library):
    before = set(our_processes())
    local = client = None
    try:
        local = await asyncio.to_thread(distributed.LocalCluster, **CLUSTER)
        client = await asyncio.to_thread(distributed.Client, local)
        sockets = listening(our_processes())
        assert sockets, "the cluster should listen somewhere"
        assert {ip for _, ip, _ in sockets} == {"127.0.0.1"}, sockets
        workers = await asyncio.to_thread(worker_pids, client)
        assert len(workers) == 2 and workers.isdisjoint(before)

        async with sj.JobManager.open(library, executor=client) as manager:
            assert set(await run_job(manager, Call("whoami", repeat=4))) <= workers
            assert await run_job(manager, Call("square", [12])) == [144]
    finally:
        if client is not None:
            await asyncio.to_thread(client.close)
        if local is not None:
            await asyncio.to_thread(local.close)
    assert not [pid for pid in workers if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]


async def test_work_runs_on_the_workers_and_the_loop_stays_responsive(library, cluster):
    workers = await asyncio.to_thread(worker_pids, cluster)
    async with sj.JobManager.open(library, executor=cluster) as manager:
        async with LoopProbe() as probe:
            results = await run_job(manager, Call("burn", [3_000_000], repeat=2))
        assert results == [fns.burn(3_000_000)] * 2
        pids = await run_job(manager, Parallel(chunks=8, n=10))
        assert set(pids) <= workers and os.getpid() not in pids
    # inline, each call would stall the loop for its whole length
    assert probe.worst_ms < probe.half_a_call_ms(2), (probe.worst_ms, probe.seconds)


async def test_keyword_arguments_reach_the_function_on_the_cluster(library, cluster):
    async with sj.JobManager.open(library, executor=cluster) as manager:
        assert await run_job(manager, Call("scaled", [3], {"factor": 2, "offset": 1})) == [7]
        # `key` and `priority` are also keyword arguments of Client.submit: they must not be taken by it
        assert await run_job(manager, Call("labelled", [3], {"key": "k", "priority": 2})) == ["k:3:2"]


async def test_a_remote_error_fails_the_job_with_its_real_message(library, cluster):
    async with sj.JobManager.open(library, executor=cluster) as manager:
        handle = await manager.dispatch(Call("boom", ["worker ran out of disk"]))
        with pytest.raises(sj.JobFailed) as info:
            await asyncio.wait_for(handle.wait(), 30)
        assert info.value.message == "ValueError: worker ran out of disk"


async def test_pause_during_a_remote_call_takes_effect_when_it_returns(library, cluster):
    async with sj.JobManager.open(library, executor=cluster, grace_period=5) as manager:
        handle = await manager.dispatch(Call("nap", [0.6], repeat=2))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        await asyncio.wait_for(manager.pause(handle.id), 10)
        took = time.monotonic() - started
        record = await manager.record(handle.id)
        assert record.status is S.PAUSED and record.progress.current == 1
        assert 0.1 < took < 2.0, took
        await manager.resume(handle.id)
        assert await asyncio.wait_for(handle.wait(), 30) == [0.6, 0.6]


async def test_cancel_during_a_remote_call_longer_than_the_grace_period_does_not_wait(library, cluster):
    async with sj.JobManager.open(library, executor=cluster, grace_period=0.3) as manager:
        handle = await manager.dispatch(Call("nap", [2.5]))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        await asyncio.wait_for(manager.cancel(handle.id), 10)
        took = time.monotonic() - started
        assert (await manager.record(handle.id)).status is S.CANCELLED
        assert took < 1.5, took
    # the cancelled call's task was released: the scheduler forgets it
    deadline = time.monotonic() + 10
    while await asyncio.to_thread(naps_on_scheduler, cluster):
        assert time.monotonic() < deadline, "the cancelled call's task is still on the scheduler"
        await asyncio.sleep(0.1)


def naps_on_scheduler(client) -> list[str]:
    keys = client.run_on_scheduler(lambda dask_scheduler: [str(k) for k in dask_scheduler.tasks])
    return [k for k in keys if k.startswith("nap-")]


async def test_an_asynchronous_client_works_too(library, cluster):
    address = cluster.scheduler.address
    async with distributed.Client(address, asynchronous=True) as client:
        async with sj.JobManager.open(library, executor=client) as manager:
            assert await run_job(manager, Call("square", [7], repeat=2)) == [49, 49]
            assert await run_job(manager, Call("scaled", [3], {"factor": 2, "offset": 1})) == [7]
            with pytest.raises(sj.JobFailed, match="ValueError: remote"):
                await run_job(manager, Call("boom", ["remote"]))
            assert await run_job(manager, Call("labelled", [3], {"key": "k", "priority": 2})) == ["k:3:2"]


async def test_cancel_with_an_asynchronous_client_does_not_wait_and_releases_the_task(library, cluster):
    address = cluster.scheduler.address
    async with distributed.Client(address, asynchronous=True) as client:
        async with sj.JobManager.open(library, executor=client, grace_period=0.3) as manager:
            handle = await manager.dispatch(Call("nap", [2.5]))
            await asyncio.sleep(0.3)
            started = time.monotonic()
            await asyncio.wait_for(manager.cancel(handle.id), 10)
            assert time.monotonic() - started < 1.5
            assert (await manager.record(handle.id)).status is S.CANCELLED
        deadline = time.monotonic() + 10
        while await asyncio.to_thread(naps_on_scheduler, cluster):
            assert time.monotonic() < deadline, "the cancelled call's task is still on the scheduler"
            await asyncio.sleep(0.1)
