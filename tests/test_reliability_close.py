"""Closing a manager at awkward moments: mid-checkpoint, twice, and with jobs that do not cooperate.

Every job here waits at a gate file (`jobs_for_tests.open_gate`) or a held call, so it is still
running when the manager closes however fast the machine is, and stops exactly where the test
let it go.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sdjobs_nb as sj  # noqa: E402
from _workers.jobs import CheckpointJob, ParentJob, expected_outcome, item_value  # noqa: E402
from _workers.tally import record as tally  # noqa: E402
from _workers.util import decode, integrity, rows, quiet_dead_tasks, within  # noqa: E402, F401
from blocking_jobs import Call  # noqa: E402
from children_worker_probe import release, started, until_started  # noqa: E402
from jobs_for_tests import Stubborn, open_gate, steps_done, until  # noqa: E402

BALLAST = "b" * 100_000  # ~100 KB of state per checkpoint, so a close lands inside one


def _consistent(fields: dict) -> bool:
    return fields["acc"] == sum(item_value(fields["salt"], j) for j in range(fields["i"]))


def _saved(library: Path, job_id: str) -> dict:
    """The state jobs.db holds for a job (what a resume starts from)."""
    return decode(rows(library, "SELECT data FROM jobs WHERE id=?", (job_id,))[0][0])


@pytest.mark.parametrize("attempt", range(6))
async def test_close_while_jobs_are_mid_checkpoint(tmp_path: Path, attempt: int) -> None:
    library, gate = tmp_path / "library", str(tmp_path / "gate")
    # every attempt closes at another point of the jobs' runs; the gate keeps them running until then
    reached, allowed = 1 + 4 * attempt, 30 + 4 * attempt
    open_gate(gate, allowed)
    async with sj.JobManager.open(library, max_concurrent=4) as manager:
        handles = [await manager.dispatch(CheckpointJob(n=100_000, k=1, salt=s, ballast=BALLAST, gate=gate))
                   for s in range(3)]
        handles.append(await manager.dispatch(CheckpointJob(n=100_000, k=1, salt=9, gate=gate)))
        await until(lambda: all(steps_done(h) >= reached for h in handles), what=f"every job past item {reached}")
    ids = [h.id for h in handles]

    assert integrity(library) == "ok"
    for job_id in ids:
        ((status, reason, data),) = rows(library, "SELECT status, pause_reason, data FROM jobs WHERE id=?", (job_id,))
        assert (status, reason) == ("paused", "interrupted")
        assert _consistent(decode(data)) and reached <= decode(data)["i"] <= allowed
        ((saved,),) = rows(library, "SELECT data FROM job_checkpoints WHERE job_id=?", (job_id,)) or [(data,)]
        assert _consistent(decode(saved)) and decode(saved)["i"] <= decode(data)["i"]

    async with sj.JobManager.open(library) as manager:
        assert manager.broken() == {}
        for job_id in ids:  # 100,000 items would take too long to finish: the state check above is the point
            await manager.cancel(job_id)
    tally("close_mid_checkpoint")


async def test_closed_mid_checkpoint_jobs_resume_to_the_right_result(tmp_path: Path) -> None:
    library, gate = tmp_path / "library", str(tmp_path / "gate")
    open_gate(gate, 20)
    async with sj.JobManager.open(library) as manager:
        handles = [await manager.dispatch(CheckpointJob(n=300, k=1, salt=s, ballast="b" * 20_000, gate=gate))
                   for s in range(3)]
        await until(lambda: all(steps_done(h) >= 1 for h in handles), what="every job past its first item")
    assert {r[0] for r in rows(library, "SELECT status FROM jobs")} == {"paused"}
    open_gate(gate, 300)
    async with sj.JobManager.open(library) as manager:
        resumed = await manager.resume_interrupted()
        assert sorted(h.id for h in resumed) == sorted(h.id for h in handles)
        for salt, handle in enumerate(handles):
            assert await within(manager.get(handle.id).wait()) == expected_outcome("rel_ckpt", {"n": 300, "salt": salt})[1]


async def test_close_twice(tmp_path: Path) -> None:
    library = tmp_path / "library"
    manager = await sj.JobManager.open(library)
    handle = await manager.dispatch(CheckpointJob(n=10, k=1, gate=str(tmp_path / "gate")))  # held at a closed gate
    await until(lambda: handle.current_status is sj.JobStatus.RUNNING)
    await manager.close()
    await manager.close()
    assert manager.closed
    with pytest.raises(sj.ManagerClosed):
        await manager.dispatch(CheckpointJob(n=1))
    async with sj.JobManager.open(library) as again:
        assert (await again.record(handle.id)).pause_reason == "interrupted"


async def test_concurrent_closes_both_wait_until_closed(tmp_path: Path) -> None:
    """A second `close()` while the first is still pausing jobs returns only once the library is released."""
    library, gate = tmp_path / "library", str(tmp_path / "gate")
    manager = await sj.JobManager.open(library, grace_period=600)
    # never checks for interruption and waits at a closed gate: the first close cannot end on its own
    handle = await manager.dispatch(Stubborn(total=3, every=1, gate=gate))
    await until(lambda: handle.current_status is sj.JobStatus.RUNNING)
    first = asyncio.ensure_future(manager.close())
    await until(lambda: handle.pause_reason == "interrupted")  # the first close asked the job to stop
    second = asyncio.ensure_future(manager.close())
    try:
        for _ in range(20):  # give the second close every chance to return early
            await asyncio.sleep(0)
        assert not first.done() and not second.done(), "the second close() returned while the manager was still closing"
        open_gate(gate, 3)  # the job finishes, so the first close ends
        await within(second, 30)
        assert manager.closed, "the second close() returned while the manager was still closing"
        async with sj.JobManager.open(library):
            pass
    finally:
        open_gate(gate, 3)
        await within(first, 30)
    assert rows(library, "SELECT status FROM jobs WHERE id=?", (handle.id,)) == [("completed",)]


@pytest.mark.parametrize("jobs", [1, 3])
async def test_close_with_jobs_that_ignore_check_interrupted(tmp_path: Path, jobs: int,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    library, gate = tmp_path / "library", str(tmp_path / "gate")
    caplog.set_level(logging.WARNING, logger="sdjobs_nb.jobs")
    open_gate(gate, 7)  # 7 steps, checkpoints at 3 and 6, then a wait that never checks for interruption
    manager = await sj.JobManager.open(library, grace_period=0.2)
    handles = [await manager.dispatch(Stubborn(total=200, every=3, gate=gate)) for _ in range(jobs)]
    await until(lambda: all(rows(library, "SELECT count FROM job_checkpoints WHERE job_id=?", (h.id,)) == [(2,)]
                            for h in handles), what="every job's second checkpoint")
    # the jobs can never reach a check: close() returns only by stopping them after the grace period
    await within(manager.close(), 30)
    assert manager.closed

    for handle in handles:
        ((status, reason, data),) = rows(library, "SELECT status, pause_reason, data FROM jobs WHERE id=?", (handle.id,))
        assert (status, reason) == ("paused", "interrupted")
        assert decode(data)["done"] == 6  # forced: its last checkpoint, not the 7 steps it had in memory
        assert rows(library, "SELECT data FROM job_checkpoints WHERE job_id=?", (handle.id,)) == [(data,)]
    stopped = [r.getMessage() for r in caplog.records if "did not reach check_interrupted within 0.2 s" in r.getMessage()]
    assert all(sum(h.id in m for m in stopped) == 1 for h in handles), stopped  # each stopped after its grace period

    open_gate(gate, 200)
    async with sj.JobManager.open(library) as manager:
        resumed = await manager.resume_interrupted()
        assert len(resumed) == jobs
        for handle in handles:
            assert await within(manager.get(handle.id).wait(), 60) == 200
    tally("close_stubborn_job", jobs=jobs)


async def test_close_with_a_job_blocked_in_run_blocking(tmp_path: Path) -> None:
    library, calls = tmp_path / "library", tmp_path / "calls"
    calls.mkdir()
    manager = await sj.JobManager.open(library, grace_period=0.2)
    try:
        handle = await manager.dispatch(Call("held", [str(calls)], repeat=3))
        (abandoned,) = await until_started(calls, 1)
        # the call is released only after close() returns: close() cannot have waited for it
        await within(manager.close(), 30)
    finally:
        release(calls)
    async with sj.JobManager.open(library) as manager:
        record = await manager.record(handle.id)
        assert (record.status, record.pause_reason) == (sj.JobStatus.PAUSED, "interrupted")
        await manager.resume_interrupted()
        results = await within(manager.get(handle.id).wait())
    assert len(results) == 3 and started(calls) == {abandoned, *results}  # the forced call ran again
    tally("close_blocked_job")


async def test_close_while_a_parent_waits_for_children(tmp_path: Path) -> None:
    library, gate = tmp_path / "library", str(tmp_path / "gate")
    open_gate(gate, 5)
    async with sj.JobManager.open(library, max_concurrent=2) as manager:
        parent = await manager.dispatch(ParentJob(n_children=3, child_n=40, gate=gate))

        def children_at_the_gate() -> bool:
            children = [h for h in manager.handles() if h.parent_id == parent.id]
            return len(children) == 3 and sum(steps_done(h) == 5 for h in children) == 2  # the third is queued

        await until(children_at_the_gate, what="two children running, held at the gate")
    statuses = dict(rows(library, "SELECT id, status FROM jobs"))
    assert len(statuses) == 4
    assert sorted(statuses.values()) == ["paused", "paused", "paused", "queued"], statuses

    open_gate(gate, 40)
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
    library, gate = tmp_path / "library", str(tmp_path / "gate")
    manager = await sj.JobManager.open(library, grace_period=1.0)
    paused = await manager.dispatch(CheckpointJob(n=10, k=1, gate=gate))  # both held at a closed gate
    cancelled = await manager.dispatch(CheckpointJob(n=10, k=1, salt=1, gate=gate))
    await until(lambda: paused.current_status is cancelled.current_status is sj.JobStatus.RUNNING)
    results = await within(asyncio.gather(paused.pause(), cancelled.cancel(), manager.close(), return_exceptions=True))
    assert [r for r in results if isinstance(r, BaseException) and not isinstance(r, sj.ManagerClosed)] == []
    final = dict(rows(library, "SELECT id, status FROM jobs"))
    assert final[paused.id] == "paused"
    assert final[cancelled.id] in ("cancelled", "paused")
    assert integrity(library) == "ok"
    async with sj.JobManager.open(library) as manager:
        assert manager.broken() == {}
