"""W8 blocking work off the loop (ours only): CPU-bound chunks inline vs ``ctx.run_blocking``.

One job does ``chunks`` CPU-bound chunks (pure-Python arithmetic that holds the GIL). It
runs in four configurations of ours:

* ``ours_inline`` (baseline): the job's coroutine computes each chunk itself, calling
  ``ctx.check_interrupted()`` between chunks. This is what ``run_blocking`` is for: the
  kernel's loop is blocked for a whole chunk at a time.
* ``ours_threads``: ``ctx.run_blocking`` on the default thread pool (for information: the loop
  stays free, but pure-Python work cannot run faster under the GIL).
* ``ours_process_pool``: ``JobManager.open(..., executor=ProcessPoolExecutor(2))``.
* ``ours_dask``: ``executor=Client(LocalCluster(n_workers=2, threads_per_worker=1,
  processes=True, host="127.0.0.1"))``.

The off-loop configurations keep ``window`` chunks in flight (``asyncio.gather`` over a batch)
and checkpoint after each batch. The pool and the cluster are started (and warmed up) once
per case, outside the timing. Each call reports ``s`` (dispatch to result, wall time) and
``stall_ms``: the worst lateness of a probe task on the same loop that sleeps 1 ms again
and again while the job runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import multiprocessing
import shutil
import tempfile
import time
from typing import Any

from ._harness import Case, Contender, Ctx, Workload, ours_api, peer, timer

CLUSTER = dict(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None)


def cpu_chunk(n: int) -> int:
    """One chunk of CPU-bound work; module level so process pools and Dask workers can import it."""
    total = 0
    for i in range(n):
        total += i * i
    return total % 1_000_003


def cases(quick: bool) -> list[Case]:
    if quick:
        return [Case("8 chunks x 100k", {"chunks": 8, "n": 100_000, "window": 4})]
    return [Case("64 chunks x 400k", {"chunks": 64, "n": 400_000, "window": 16})]


_job_cls: Any = None


def _job_class() -> Any:
    """Define the job on first use, so `python -m bench --list` works without sdjobs_nb."""
    global _job_cls
    if _job_cls is not None:
        return _job_cls
    Job = ours_api("sdjobs_nb", "Job")

    @dataclasses.dataclass
    class CpuChunks(Job):
        NAME = "bench_w8_cpu_chunks"
        chunks: int
        n: int
        window: int = 8
        inline: bool = False
        done: int = 0
        total: int = 0

        async def run(self, ctx: Any) -> int:
            while self.done < self.chunks:
                batch = min(self.window, self.chunks - self.done)
                if self.inline:
                    await self._inline(ctx, batch)
                else:
                    results = await asyncio.gather(*(ctx.run_blocking(cpu_chunk, self.n) for _ in range(batch)))
                    self.total += sum(results)
                    self.done += batch
                    ctx.report_count_progress(self.done, self.chunks)
                    await ctx.check_interrupted()
                await ctx.checkpoint()
            return self.total

        async def _inline(self, ctx: Any, batch: int) -> None:
            for _ in range(batch):
                self.total += cpu_chunk(self.n)
                self.done += 1
                ctx.report_count_progress(self.done, self.chunks)
                await ctx.check_interrupted()

    _job_cls = CpuChunks
    return _job_cls


class _Probe:
    """Sleeps 1 ms again and again on the loop and keeps the worst lateness, in ms."""

    def __init__(self) -> None:
        self.worst_ms = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            self.worst_ms = max(self.worst_ms, (time.perf_counter() - before - 0.001) * 1000)

    async def __aenter__(self) -> _Probe:
        self._task = asyncio.get_running_loop().create_task(self._run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


async def _measure(ctx: Ctx, executor: Any, inline: bool = False) -> dict[str, float]:
    JobManager = ours_api("sdjobs_nb", "JobManager")
    job = _job_class()(chunks=ctx["chunks"], n=ctx["n"], window=ctx["window"], inline=inline)
    expected = ctx["chunks"] * cpu_chunk(ctx["n"])
    async with JobManager.open(ctx.workdir, executor=executor) as manager:
        async with _Probe() as probe:
            with timer() as t:
                handle = await manager.dispatch(job)
                result = await handle.wait()
    if result != expected:
        raise AssertionError(f"wrong result {result}, expected {expected}")
    return {"s": t(), "stall_ms": probe.worst_ms}


# --- executors, started once per case (untimed) -----------------------------------------------


def _start_pool(ctx: Ctx) -> concurrent.futures.ProcessPoolExecutor:
    pool = concurrent.futures.ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
    list(pool.map(cpu_chunk, [1000] * 4))  # both workers up and this module imported there
    return pool


def _stop_pool(ctx: Ctx) -> None:
    ctx.state.shutdown(wait=True, cancel_futures=True)


def _start_cluster(ctx: Ctx) -> tuple[Any, Any, str]:
    distributed = peer("distributed")
    # Dask's scratch space in a folder of its own, removed at teardown (not the system temp folder)
    scratch = tempfile.mkdtemp(prefix="sdjobs-bench-dask-")
    cluster = distributed.LocalCluster(**CLUSTER, local_directory=scratch, scheduler_kwargs={"local_directory": scratch})
    try:
        client = distributed.Client(cluster)
    except BaseException:
        cluster.close()
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    client.gather(client.map(cpu_chunk, [1000] * 4, pure=False))
    return cluster, client, scratch


def _stop_cluster(ctx: Ctx) -> None:
    cluster, client, scratch = ctx.state
    try:
        client.close()
    finally:
        cluster.close()
        shutil.rmtree(scratch, ignore_errors=True)


# --- REGISTRATION POINT: our contenders ---------------------------------------------------------


async def ours_inline(ctx: Ctx) -> dict[str, float]:
    return await _measure(ctx, None, inline=True)


async def ours_threads(ctx: Ctx) -> dict[str, float]:
    return await _measure(ctx, None)


async def ours_process_pool(ctx: Ctx) -> dict[str, float]:
    return await _measure(ctx, ctx.state)


async def ours_dask(ctx: Ctx) -> dict[str, float]:
    return await _measure(ctx, ctx.state[1])


def contenders() -> dict[str, Contender]:
    return {
        "ours_inline": Contender("ours_inline", ours_inline, "s", "chunks computed in the job's coroutine"),
        "ours_threads": Contender("ours_threads", ours_threads, "s", "run_blocking on the default thread pool"),
        "ours_process_pool": Contender("ours_process_pool", ours_process_pool, "s",
                                       "run_blocking on ProcessPoolExecutor(2)",
                                       setup=_start_pool, teardown=_stop_pool),
        "ours_dask": Contender("ours_dask", ours_dask, "s", "run_blocking on a 2-worker LocalCluster",
                               setup=_start_cluster, teardown=_stop_cluster),
    }


WORKLOAD = Workload(
    id="W8", title="blocking work off the loop", contenders=contenders, cases=cases,
    baseline="ours_inline",
    targets=[
        "ours_process_pool s <= 0.75 x ours_inline s",
        "ours_dask s <= 0.75 x ours_inline s",
        "ours_process_pool stall_ms < 20",
        "ours_dask stall_ms < 20",
    ],
    description=__doc__ or "",
)
