"""Closing a manager at awkward moments: mid-checkpoint, twice, and with jobs that do not cooperate."""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sdjobs_nb as sj  # noqa: E402
from _workers.jobs import CheckpointJob, ParentJob, StubbornJob, expected_outcome, item_value  # noqa: E402
from _workers.tally import record as tally  # noqa: E402
from _workers.util import decode, integrity, rows, quiet_dead_tasks, within  # noqa: E402, F401


@dataclasses.dataclass
class HeavyCheckpointJob(sj.Job):
    """Checkpoints after every item, with ~100 KB of state, so a close lands inside a checkpoint."""

    NAME = "rel_heavy_checkpoint"

    n: int
    salt: int = 0
    i: int = 0
    acc: int = 0
    ballast: str = "b" * 100_000

    async def run(self, ctx: sj.JobContext) -> int:
        while self.i < self.n:
            await ctx.check_interrupted()
            self.acc += item_value(self.salt, self.i)
            self.i += 1
            await ctx.checkpoint()
        return self.acc


@dataclasses.dataclass
class BlockingJob(sj.Job):
    """Spends its time in `run_blocking` and never checks for interruption."""

    NAME = "rel_blocking"

    n: int
    i: int = 0

    async def run(self, ctx: sj.JobContext) -> int:
        while self.i < self.n:
            await ctx.run_blocking(time.sleep, 0.3)
            self.i += 1
            await ctx.checkpoint()
        return self.i


def _consistent(fields: dict) -> bool:
    return fields["acc"] == sum(item_value(fields["salt"], j) for j in range(fields["i"]))


@pytest.mark.parametrize("attempt", range(6))
async def test_close_while_jobs_are_mid_checkpoint(tmp_path: Path, attempt: int) -> None:
    library = tmp_path / "library"
    async with sj.JobManager.open(library, max_concurrent=4) as manager:
        handles = [await manager.dispatch(HeavyCheckpointJob(n=100_000, salt=s)) for s in range(3)]
        handles.append(await manager.dispatch(CheckpointJob(n=100_000, k=1, salt=9)))
        await asyncio.sleep(0.05 + 0.037 * attempt)
    ids = [h.id for h in handles]

    assert integrity(library) == "ok"
    for job_id in ids:
        ((status, reason, data),) = rows(library, "SELECT status, pause_reason, data FROM jobs WHERE id=?", (job_id,))
        assert (status, reason) == ("paused", "interrupted")
        assert _consistent(decode(data))
        ((saved,),) = rows(library, "SELECT data FROM job_checkpoints WHERE job_id=?", (job_id,)) or [(data,)]
        assert _consistent(decode(saved)) and decode(saved)["i"] <= decode(data)["i"]

    async with sj.JobManager.open(library) as manager:
        assert manager.broken() == {}
        for job_id in ids:  # 100,000 items would take too long to finish: the state check above is the point
            await manager.cancel(job_id)
    tally("close_mid_checkpoint")


async def test_closed_mid_checkpoint_jobs_resume_to_the_right_result(tmp_path: Path) -> None:
    library = tmp_path / "library"
    async with sj.JobManager.open(library) as manager:
        handles = [await manager.dispatch(HeavyCheckpointJob(n=300, salt=s, ballast="b" * 20_000)) for s in range(3)]
        await asyncio.sleep(0.03)
    assert {r[0] for r in rows(library, "SELECT status FROM jobs")} == {"paused"}, "finished before the close"
    async with sj.JobManager.open(library) as manager:
        resumed = await manager.resume_interrupted()
        assert sorted(h.id for h in resumed) == sorted(h.id for h in handles)
        for salt, handle in enumerate(handles):
            assert await within(manager.get(handle.id).wait()) == expected_outcome("rel_ckpt", {"n": 300, "salt": salt})[1]


async def test_close_twice(tmp_path: Path) -> None:
    library = tmp_path / "library"
    manager = await sj.JobManager.open(library)
    handle = await manager.dispatch(CheckpointJob(n=10_000, k=10, delay=0.001))
    await asyncio.sleep(0.05)
    await manager.close()
    await manager.close()
    assert manager.closed
    with pytest.raises(sj.ManagerClosed):
        await manager.dispatch(CheckpointJob(n=1))
    async with sj.JobManager.open(library) as again:
        assert (await again.record(handle.id)).pause_reason == "interrupted"


async def test_concurrent_closes_both_wait_until_closed(tmp_path: Path) -> None:
    """A second `close()` while the first is still pausing jobs returns only once the library is released."""
    library = tmp_path / "library"
    manager = await sj.JobManager.open(library, grace_period=0.5)
    await manager.dispatch(StubbornJob(n=10_000, k=5))  # makes the first close take the grace period
    await asyncio.sleep(0.05)
    first = asyncio.create_task(manager.close())
    await asyncio.sleep(0.01)
    await manager.close()
    assert manager.closed, "the second close() returned while the manager was still closing"
    try:
        async with sj.JobManager.open(library):
            pass
    finally:
        await first


@pytest.mark.parametrize("jobs", [1, 3])
async def test_close_with_jobs_that_ignore_check_interrupted(tmp_path: Path, jobs: int) -> None:
    library = tmp_path / "library"
    manager = await sj.JobManager.open(library, grace_period=0.2)
    handles = [await manager.dispatch(StubbornJob(n=200, k=3, salt=s)) for s in range(jobs)]
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await manager.close()
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"close() took {elapsed:.2f} s with grace_period=0.2"

    for handle in handles:
        ((status, reason, data),) = rows(library, "SELECT status, pause_reason, data FROM jobs WHERE id=?", (handle.id,))
        assert (status, reason) == ("paused", "interrupted")
        assert decode(data)["i"] % 3 == 0 and decode(data)["i"] > 0  # forced: its last checkpoint, no later
        assert _consistent(decode(data))

    async with sj.JobManager.open(library) as manager:
        resumed = await manager.resume_interrupted()
        assert len(resumed) == jobs
        for salt, handle in enumerate(handles):
            result = await within(manager.get(handle.id).wait(), 60)
            assert result == expected_outcome("rel_stubborn", {"n": 200, "salt": salt})[1]
    tally("close_stubborn_job", jobs=jobs)


async def test_close_with_a_job_blocked_in_run_blocking(tmp_path: Path) -> None:
    library = tmp_path / "library"
    manager = await sj.JobManager.open(library, grace_period=0.2)
    handle = await manager.dispatch(BlockingJob(n=3))
    await asyncio.sleep(0.45)
    started = time.monotonic()
    await manager.close()
    assert time.monotonic() - started < 1.0
    async with sj.JobManager.open(library) as manager:
        record = await manager.record(handle.id)
        assert (record.status, record.pause_reason) == (sj.JobStatus.PAUSED, "interrupted")
        await manager.resume_interrupted()
        assert await within(manager.get(handle.id).wait()) == 3
    tally("close_blocked_job")


async def test_close_while_a_parent_waits_for_children(tmp_path: Path) -> None:
    library = tmp_path / "library"
    async with sj.JobManager.open(library, max_concurrent=2) as manager:
        parent = await manager.dispatch(ParentJob(n_children=3, child_n=40, delay=0.01))
        await asyncio.sleep(0.2)
    statuses = dict(rows(library, "SELECT id, status FROM jobs"))
    assert all(s in ("paused", "queued") for s in statuses.values()), statuses

    async with sj.JobManager.open(library, max_concurrent=2) as manager:
        await manager.resume_interrupted()
        for handle in manager.handles():  # children paused along with their parent come back with it
            if handle.current_status is sj.JobStatus.PAUSED and (await manager.record(handle.id)).pause_reason == "user":
                await handle.resume()
        assert await within(manager.get(parent.id).wait()) == expected_outcome(
            "rel_parent", {"n_children": 3, "child_n": 40})[1]
    assert rows(library, "SELECT count(*) FROM jobs WHERE parent_id=?", (parent.id,)) == [(3,)]
    tally("close_parent_waiting")


async def test_close_racing_pause_and_cancel(tmp_path: Path) -> None:
    library = tmp_path / "library"
    manager = await sj.JobManager.open(library, grace_period=1.0)
    paused = await manager.dispatch(CheckpointJob(n=100_000, k=10, delay=0.001))
    cancelled = await manager.dispatch(CheckpointJob(n=100_000, k=10, delay=0.001, salt=1))
    await asyncio.sleep(0.05)
    results = await within(asyncio.gather(paused.pause(), cancelled.cancel(), manager.close(), return_exceptions=True))
    assert [r for r in results if isinstance(r, BaseException) and not isinstance(r, sj.ManagerClosed)] == []
    final = dict(rows(library, "SELECT id, status FROM jobs"))
    assert final[paused.id] == "paused"
    assert final[cancelled.id] in ("cancelled", "paused")
    assert integrity(library) == "ok"
    async with sj.JobManager.open(library) as manager:
        assert manager.broken() == {}
