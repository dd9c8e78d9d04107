"""`ctx.run_blocking` on a `dask.distributed` cluster started by the tests on 127.0.0.1 (issue 7).

The clusters keep their scratch space under pytest's tmp_path, not in the system temp folder.
Where a test needs a call to be in flight, the call waits on its worker for the test
(`wait_for_release`): no test assumes how long anything takes.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

import children_worker_fns as fns
from blocking_jobs import Call
import sdjobs_nb as sj

distributed = pytest.importorskip("distributed", reason="needs the [dask] extra")

S = sj.JobStatus
DEADLINE = 120.0  # seconds: only a test that is failing waits this long


def cluster_options(scratch: Path) -> dict[str, Any]:
    """Two worker processes on 127.0.0.1; the scheduler's and workers' scratch space in `scratch`."""
    return dict(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                local_directory=scratch,
                scheduler_kwargs={"local_directory": scratch, "dashboard_address": "127.0.0.1:0"})


def wait_for_release(folder: str, patience: float = 600.0) -> int:
    """On a worker: leave a `started-*` file in `folder`, wait until the test creates `folder/release`.

    Returns the worker's pid. Gives up (raises) after `patience` seconds, so a broken test
    cannot hold a worker thread forever.
    """
    gate = Path(folder)
    (gate / f"started-{os.getpid()}-{time.monotonic_ns()}").touch()
    deadline = time.monotonic() + patience
    while not (gate / "release").exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the test did not release {gate} within {patience:g} s")
        time.sleep(0.01)
    return os.getpid()


# sent to the workers by value: they need not import this test module
import cloudpickle  # noqa: E402

cloudpickle.register_pickle_by_value(sys.modules[__name__])


@dataclass
class Gated(sj.Job):
    """Calls `wait_for_release(folder)` on the cluster `calls` times, one after another."""

    NAME = "dask_gated"
    folder: str
    calls: int = 1
    patience: float = 600.0
    pids: list[int] = field(default_factory=list)

    async def run(self, ctx: sj.JobContext) -> list[int]:
        while len(self.pids) < self.calls:
            self.pids.append(await ctx.run_blocking(wait_for_release, self.folder, self.patience))
            ctx.report_count_progress(len(self.pids), self.calls)
            await ctx.check_interrupted()
        return self.pids


def calls_started(folder: Path) -> int:
    return len(list(folder.glob("started-*")))


async def until_started(folder: Path, count: int) -> None:
    """Wait until `count` gated calls are running on the workers (they then wait for `release`)."""
    deadline = time.monotonic() + DEADLINE
    while calls_started(folder) < count:
        assert time.monotonic() < deadline, f"fewer than {count} gated calls started within {DEADLINE:g} s"
        await asyncio.sleep(0.02)


def release(folder: Path) -> None:
    (folder / "release").touch()


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
def cluster(tmp_path_factory):
    """A 2-worker LocalCluster and a (synchronous, as in a notebook) Client on it, shared by this module."""
    local = client = None
    try:
        local = distributed.LocalCluster(**cluster_options(tmp_path_factory.mktemp("dask")))
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


async def test_a_local_cluster_listens_only_on_localhost_and_runs_jobs(library, tmp_path):
    before = set(our_processes())
    local = client = None
    try:
        local = await asyncio.to_thread(distributed.LocalCluster, **cluster_options(tmp_path / "dask"))
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


async def test_work_runs_on_the_workers_and_the_loop_stays_free(library, cluster, tmp_path):
    workers = await asyncio.to_thread(worker_pids, cluster)
    async with sj.JobManager.open(library, executor=cluster) as manager:
        handle = await manager.dispatch(Gated(str(tmp_path), patience=DEADLINE))
        # the call waits on a worker until this coroutine releases it: had it blocked the loop, this
        # coroutine could not run until the call gave up, and the job would have failed by then
        await until_started(tmp_path, 1)
        assert handle.current_status is S.RUNNING
        release(tmp_path)
        (pid,) = await asyncio.wait_for(handle.wait(), DEADLINE)
        assert pid in workers

        assert await run_job(manager, Call("burn", [3_000_000], repeat=2)) == [fns.burn(3_000_000)] * 2
        pids = await run_job(manager, Parallel(chunks=8, n=10))
        assert set(pids) <= workers and os.getpid() not in pids


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


async def test_pause_during_a_remote_call_takes_effect_when_it_returns(library, cluster, tmp_path):
    workers = await asyncio.to_thread(worker_pids, cluster)
    async with sj.JobManager.open(library, executor=cluster, grace_period=DEADLINE) as manager:
        handle = await manager.dispatch(Gated(str(tmp_path), calls=2))
        await until_started(tmp_path, 1)  # the first call is in flight, held on its worker
        pausing = asyncio.create_task(manager.pause(handle.id))
        done, _ = await asyncio.wait({pausing}, timeout=0.5)
        assert not done and handle.current_status is S.RUNNING  # the pause waits for the call
        release(tmp_path)
        await asyncio.wait_for(pausing, DEADLINE)
        record = await manager.record(handle.id)
        assert record.status is S.PAUSED and record.progress.current == 1  # its result was kept
        assert calls_started(tmp_path) == 1  # and the second call was not sent
        await manager.resume(handle.id)
        pids = await asyncio.wait_for(handle.wait(), DEADLINE)
        assert len(pids) == 2 and set(pids) <= workers and calls_started(tmp_path) == 2


async def test_cancel_during_a_remote_call_longer_than_the_grace_period_does_not_wait(library, cluster, tmp_path):
    try:
        async with sj.JobManager.open(library, executor=cluster, grace_period=0.3) as manager:
            handle = await manager.dispatch(Gated(str(tmp_path)))
            await until_started(tmp_path, 1)
            # the call cannot return before `release` below: the cancel must not wait for it
            await asyncio.wait_for(manager.cancel(handle.id), DEADLINE)
            assert (await manager.record(handle.id)).status is S.CANCELLED
        # the cancelled call's task was released: the scheduler forgets it, though it still runs
        await until_forgotten(cluster)
    finally:
        release(tmp_path)  # frees the worker thread


def gated_calls_on_scheduler(client) -> list[str]:
    keys = client.run_on_scheduler(lambda dask_scheduler: [str(k) for k in dask_scheduler.tasks])
    return [k for k in keys if k.startswith("wait_for_release-")]


async def until_forgotten(client) -> None:
    deadline = time.monotonic() + DEADLINE
    while await asyncio.to_thread(gated_calls_on_scheduler, client):
        assert time.monotonic() < deadline, "the cancelled call's task is still on the scheduler"
        await asyncio.sleep(0.1)


async def test_an_asynchronous_client_works_too(library, cluster):
    address = cluster.scheduler.address
    async with distributed.Client(address, asynchronous=True) as client:
        async with sj.JobManager.open(library, executor=client) as manager:
            assert await run_job(manager, Call("square", [7], repeat=2)) == [49, 49]
            assert await run_job(manager, Call("scaled", [3], {"factor": 2, "offset": 1})) == [7]
            with pytest.raises(sj.JobFailed, match="ValueError: remote"):
                await run_job(manager, Call("boom", ["remote"]))
            assert await run_job(manager, Call("labelled", [3], {"key": "k", "priority": 2})) == ["k:3:2"]


async def test_cancel_with_an_asynchronous_client_does_not_wait_and_releases_the_task(library, cluster, tmp_path):
    address = cluster.scheduler.address
    try:
        async with distributed.Client(address, asynchronous=True) as client:
            async with sj.JobManager.open(library, executor=client, grace_period=0.3) as manager:
                handle = await manager.dispatch(Gated(str(tmp_path)))
                await until_started(tmp_path, 1)
                await asyncio.wait_for(manager.cancel(handle.id), DEADLINE)  # without waiting for the call
                assert (await manager.record(handle.id)).status is S.CANCELLED
            await until_forgotten(cluster)
    finally:
        release(tmp_path)
