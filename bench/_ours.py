"""Our contenders: sdjobs_nb measured the way a user would use it."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import sdjobs_nb as sj

from .w2_progress import added_ns


@dataclass
class BenchNoop(sj.Job):
    NAME = "bench_noop"

    async def run(self, ctx: sj.JobContext) -> None:
        return None


@dataclass
class BenchReporter(sj.Job):
    """Measures, inside a real running job, what one progress report adds to a loop."""

    NAME = "bench_reporter"
    n: int

    async def run(self, ctx: sj.JobContext) -> float:
        n = self.n

        def loop(m: int) -> None:
            for i in range(m):
                ctx.report_count_progress(i, n)

        return added_ns(n, loop)


@dataclass
class BenchCheckpointer(sj.Job):
    """Checkpoints a ~200-byte state `n` times and returns microseconds per checkpoint."""

    NAME = "bench_checkpointer"
    n: int
    blobs: list[bytes] = field(default_factory=list)
    state: bytes = b""
    i: int = 0

    async def run(self, ctx: sj.JobContext) -> float:
        blobs, self.blobs = self.blobs, []
        t0 = time.perf_counter()
        for i in range(self.n):
            self.state, self.i = blobs[i & 15], i
            await ctx.checkpoint()
        return (time.perf_counter() - t0) / self.n * 1e6


@dataclass
class BenchSpinner(sj.Job):
    """Checks for interruption every 1 ms, forever."""

    NAME = "bench_spinner"
    spins: int = 0

    async def run(self, ctx: sj.JobContext) -> None:
        while True:
            await ctx.check_interrupted()
            self.spins += 1
            ctx.report_count_progress(self.spins, None)
            await asyncio.sleep(0.001)


async def dispatch_and_wait(workdir: Path, n: int, *, concurrent: bool) -> float:
    """Jobs/s from the first dispatch to the last job finished."""
    async with sj.JobManager.open(workdir / "lib") as manager:
        t0 = time.perf_counter()
        if concurrent:
            handles = await asyncio.gather(*(manager.dispatch(BenchNoop()) for _ in range(n)))
        else:
            handles = [await manager.dispatch(BenchNoop()) for _ in range(n)]
        for handle in handles:
            await handle.wait()
        return n / (time.perf_counter() - t0)


async def progress_cost(workdir: Path, n: int) -> float:
    async with sj.JobManager.open(workdir / "lib") as manager:
        return await (await manager.dispatch(BenchReporter(n))).wait()


async def checkpoint_cost(workdir: Path, n: int, blobs: list[bytes]) -> float:
    async with sj.JobManager.open(workdir / "lib") as manager:
        return await (await manager.dispatch(BenchCheckpointer(n, blobs=list(blobs)))).wait()


async def pause_latency(workdir: Path, pauses: int) -> dict[str, float]:
    """Median ms from pause() to PAUSED-and-saved, and from resume() to RUNNING again."""
    pause_ms, resume_ms = [], []
    async with sj.JobManager.open(workdir / "lib") as manager:
        handle = await manager.dispatch(BenchSpinner())
        for _ in range(pauses):
            await _until_running(handle)
            await asyncio.sleep(0.02)
            t0 = time.perf_counter()
            await handle.pause()
            pause_ms.append((time.perf_counter() - t0) * 1e3)
            t0 = time.perf_counter()
            await handle.resume()
            await _until_running(handle)
            resume_ms.append((time.perf_counter() - t0) * 1e3)
        await handle.cancel()
    return {"ms": statistics.median(pause_ms), "resume_ms": statistics.median(resume_ms)}


async def _until_running(handle: sj.JobHandle) -> None:
    while handle.current_status is not sj.JobStatus.RUNNING:
        await asyncio.sleep(0.0002)
