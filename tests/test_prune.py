"""Bounded growth (issue 17, finding 16): finished jobs drop their saved state; `prune` removes old ones.

Before: 200 finished jobs with 50 KB of state made a 19.4 MB library, and nothing could remove
them. A finished job never resumes, so its state and checkpoint go in the transaction that
finishes it; `manager.prune(older_than=..., keep=...)` (and `sdjobs prune`) delete finished jobs,
never an unfinished one nor one that an unfinished parent or child still reads.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import sdjobs_nb as sj
from jobs_for_tests import GATE_POLL_S, Add, Steps, gate_value, open_gate, steps_done, until
from support import db_rows

S = sj.JobStatus
STATE_BYTES = 50_000


@dataclass
class Ballast(sj.Job):
    """Carries ~50 KB of state and checkpoints it `checkpoints` times."""

    NAME = "prune_ballast"
    ballast: str = "b" * STATE_BYTES
    checkpoints: int = 3
    done: int = 0

    async def run(self, ctx: sj.JobContext) -> int:
        while self.done < self.checkpoints:
            self.done += 1
            await ctx.checkpoint()
        return self.done


@dataclass
class Child(sj.Job):
    """Returns n*n; with a `gate` file, only once the gate is open (checking for interruption meanwhile)."""

    NAME = "prune_child"
    n: int
    gate: str = ""

    async def run(self, ctx: sj.JobContext) -> int:
        while self.gate and gate_value(self.gate) < 1:
            await ctx.check_interrupted()
            await asyncio.sleep(GATE_POLL_S)
        return self.n * self.n


@dataclass
class Parent(sj.Job):
    """Spawns a `Child` per entry of `children`; waits for their results unless `wait` is False."""

    NAME = "prune_parent"
    children: list[dict] = field(default_factory=list)
    wait: bool = True

    async def run(self, ctx: sj.JobContext) -> list:
        ids = await ctx.spawn_children([Child(**c) for c in self.children])
        return await ctx.wait_for_children(ids) if self.wait else ids


@dataclass
class Complains(sj.Job):
    NAME = "prune_complains"
    times: int

    async def run(self, ctx: sj.JobContext) -> int:
        for i in range(self.times):
            ctx.report_non_critical_error(f"item {i} skipped")
        return self.times


def library_bytes(library: Path) -> int:
    return sum(p.stat().st_size for p in (library / "jobs.db", library / "jobs.db-wal") if p.exists())


def counts(library: Path) -> dict[str, int]:
    return {t: db_rows(library, f"SELECT count(*) FROM {t}")[0][0]
            for t in ("jobs", "job_history", "job_errors", "job_checkpoints")}


def history_ids(library: Path) -> list[str]:
    return [i for (i,) in db_rows(library, "SELECT id FROM job_history ORDER BY finished_at DESC, id DESC")]


# --- finished jobs keep no state --------------------------------------------------------------


async def test_finished_jobs_drop_their_state_and_checkpoints_so_the_library_stays_small(library: Path) -> None:
    async with sj.JobManager.open(library, max_concurrent=4) as manager:
        for _ in range(20):  # 200 jobs, a wave at a time, as a notebook would run them
            handles = await manager.dispatch_many([Ballast() for _ in range(10)])
            assert await asyncio.wait_for(asyncio.gather(*(h.wait() for h in handles)), 60) == [3] * 10
    assert counts(library) == {"jobs": 200, "job_history": 200, "job_errors": 0, "job_checkpoints": 0}
    assert db_rows(library, "SELECT count(*) FROM jobs WHERE length(data) > 0") == [(0,)]
    assert db_rows(library, "SELECT min(checkpoints), max(checkpoints) FROM job_history") == [(3, 3)]
    assert library_bytes(library) < 3_000_000  # 19.4 MB before: every state kept twice

    async with sj.JobManager.open(library) as manager:
        assert await manager.prune(older_than=0, vacuum=True) == 200
    assert counts(library) == {"jobs": 0, "job_history": 0, "job_errors": 0, "job_checkpoints": 0}
    assert library_bytes(library) < 200_000


async def test_a_batch_of_finishes_drops_every_checkpoint_in_it(tmp_path: Path) -> None:
    """Many jobs finishing in one transaction: their checkpoints go in a few multi-row deletes."""
    from sdjobs_nb._records import FinishedJob
    from sdjobs_nb._store.store import Store

    ids = [f"job-{n:04}" for n in range(300)]
    store = await Store.open(tmp_path / "library")
    try:
        for n, job_id in enumerate(ids):
            store.insert_job(job_id, "prune_raw", 1, b"state", 0, n, None, None, None, None, None, 1.0)
            store.save_checkpoint(job_id, 1, b"checkpoint", None, 1, 2.0)
        await store.commit()
        for job_id in ids[:-1]:  # the last one stays unfinished
            store.finish(FinishedJob(id=job_id, name="prune_raw", version=1, status=S.COMPLETED, priority=0,
                                     created_at=1.0, finished_at=3.0, started_at=2.0))
        await store.commit()
    finally:
        await store.close()
    library = tmp_path / "library"
    assert db_rows(library, "SELECT job_id, data FROM job_checkpoints") == [(ids[-1], b"checkpoint")]
    assert db_rows(library, "SELECT id FROM jobs WHERE length(data) > 0") == [(ids[-1],)]


async def test_the_saved_state_of_a_finished_job_is_gone_and_says_why(manager: sj.JobManager) -> None:
    handle = await manager.dispatch(Ballast(checkpoints=1))
    assert await handle.wait() == 1
    with pytest.raises(sj.JobNotFound, match="dropped when it finished"):
        await manager.saved_state(handle.id)
    assert await manager.result(handle.id) == 1
    assert (await manager.record(handle.id)).metrics["checkpoints"] == 1


async def test_non_critical_errors_stored_per_job_are_capped(manager: sj.JobManager) -> None:
    handle = await manager.dispatch(Complains(times=1500))
    assert await handle.wait() == 1500
    errors = [message for _, message in await manager.errors(handle.id, limit=5000)]
    assert errors[:1000] == [f"item {i} skipped" for i in range(1000)]
    assert len(errors) == 1001 and "counted in its metrics but not stored" in errors[-1]
    assert (await manager.record(handle.id)).metrics["non_critical_errors"] == 1500


# --- prune ----------------------------------------------------------------------------------------


async def _children_of(manager: sj.JobManager, parent_id: str, count: int) -> list[sj.JobRecord]:
    await until(lambda: len(manager.queries.children_records(parent_id)) == count, what=f"{count} children")
    return manager.queries.children_records(parent_id)


async def test_prune_never_removes_unfinished_jobs_or_what_they_still_read(library: Path) -> None:
    gate = str(library.parent / "gate")
    async with sj.JobManager.open(library, max_concurrent=8) as manager:
        old = await manager.dispatch(Add(1, 1))
        await old.wait()
        lone = await manager.dispatch(Parent(children=[{"n": 2, "gate": gate}], wait=False))
        (held_child,) = await lone.wait()  # finished, its child still running
        waiting = await manager.dispatch(Parent(children=[{"n": 3}, {"n": 4, "gate": gate}]))
        done_child, _ = [c.id for c in await _children_of(manager, waiting.id, 2)]
        await until(lambda: manager.get(done_child).current_status is S.COMPLETED, what="the quick child done")
        paused = await manager.dispatch(Steps(total=100, gate=gate))
        await until(lambda: paused.current_status is S.RUNNING)
        await paused.pause()

        assert await manager.prune(older_than=0) == 1  # only `old`: lone has a running child, done_child a waiting parent
        assert sorted(history_ids(library)) == sorted([lone.id, done_child])
        assert db_rows(library, "SELECT count(*) FROM jobs WHERE id=?", (old.id,)) == [(0,)]
        assert db_rows(library, "SELECT count(*) FROM jobs") == [(6,)]
    async with sj.JobManager.open(library, max_concurrent=8) as manager:  # the parent was paused by close
        assert await manager.prune(older_than=0) == 0
        open_gate(gate, 1_000)
        await manager.resume_interrupted()
        assert await asyncio.wait_for(manager.get(waiting.id).wait(), 30) == [9, 16]  # not spawned again
        assert await asyncio.wait_for(manager.get(held_child).wait(), 30) == 4
        assert db_rows(library, "SELECT count(*) FROM jobs WHERE name='prune_child'") == [(3,)]
        assert await manager.prune(older_than=dt.timedelta(0)) == 5  # everything but the user-paused job
        assert [h.id for h in manager.handles()] == [paused.id]
    assert counts(library) == {"jobs": 1, "job_history": 0, "job_errors": 0, "job_checkpoints": 0}


async def test_prune_keeps_the_newest_and_counts_what_it_removed(manager: sj.JobManager, library: Path) -> None:
    ids = []
    for n in range(8):  # one at a time: they finish in this order
        handle = await manager.dispatch(Add(n))
        await handle.wait()
        ids.append(handle.id)
    assert await manager.prune(keep=3) == 5
    assert history_ids(library) == ids[:4:-1]
    assert await manager.prune(older_than=dt.timedelta(hours=1)) == 0  # all finished a moment ago
    assert await manager.prune(keep=5) == 0
    assert await manager.prune(older_than=0, keep=1) == 2
    assert history_ids(library) == [ids[-1]] and db_rows(library, "SELECT id FROM jobs") == [(ids[-1],)]
    with pytest.raises(sj.JobNotFound):
        await manager.record(ids[0])


async def test_prune_walks_a_large_library_in_chunks(manager: sj.JobManager, library: Path) -> None:
    handles = await manager.dispatch_many([Add(n) for n in range(1_200)])
    await asyncio.wait_for(asyncio.gather(*(h.wait() for h in handles)), 60)
    newest = history_ids(library)[:150]
    assert await manager.prune(keep=150) == 1_050
    assert history_ids(library) == newest
    assert counts(library)["jobs"] == 150


@pytest.mark.parametrize("args, error", [
    ({}, ValueError), ({"older_than": -1}, ValueError), ({"older_than": dt.timedelta(days=-1)}, ValueError),
    ({"older_than": float("nan")}, ValueError), ({"older_than": "30d"}, TypeError), ({"older_than": True}, TypeError),
    ({"keep": -1}, ValueError), ({"keep": 1.5}, TypeError), ({"keep": True}, TypeError),
    ({"keep": 1, "vacuum": "yes"}, TypeError),
])
async def test_prune_arguments_are_checked_before_anything_is_written(manager: sj.JobManager, library: Path,
                                                                       args: dict, error: type) -> None:
    await (await manager.dispatch(Add(1))).wait()
    before = counts(library)
    with pytest.raises(error):
        await manager.prune(**args)
    assert counts(library) == before


async def test_a_read_only_view_cannot_prune(library: Path) -> None:
    async with sj.JobManager.open(library) as manager:
        await (await manager.dispatch(Add(1))).wait()
    async with sj.JobManager.open(library, read_only=True) as view:
        with pytest.raises(sj.ReadOnlyLibrary):
            await view.prune(older_than=0)
    assert counts(library)["job_history"] == 1


# --- sdjobs prune -------------------------------------------------------------------------------


def sdjobs(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sdjobs_nb", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env=os.environ | {"PYTHONWARNINGS": "ignore"})


async def test_sdjobs_prune(library: Path) -> None:
    async with sj.JobManager.open(library) as manager:
        for n in range(3):
            await (await manager.dispatch(Add(n))).wait()
        held = sdjobs("prune", library, "--keep", "1")
        assert held.returncode == 2 and f"process {os.getpid()}" in held.stderr  # a kernel owns it
    newest = history_ids(library)[0]

    done = sdjobs("prune", library, "--keep", "1")
    assert (done.returncode, done.stdout.strip()) == (0, f"removed 2 finished jobs from {library}")
    assert history_ids(library) == [newest]
    assert sdjobs("prune", library, "--older-than", "30d").stdout.strip() == f"removed 0 finished jobs from {library}"
    done = sdjobs("prune", library, "--older-than", "0", "--vacuum")
    assert done.stdout.strip() == f"removed 1 finished job from {library}"
    for bad in (["--older-than", "3x"], ["--older-than", "-5"], ["--keep", "-1"], []):
        refused = sdjobs("prune", library, *bad)
        assert refused.returncode == 2 and "error" in refused.stderr and refused.stdout == "", bad
