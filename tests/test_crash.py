"""A real process running a checkpointing job is SIGKILLed mid-run; another process resumes it.

The job appends `<id> <item>` to a side file after processing each item and checkpoints every
K items, so the side file shows exactly which items ran twice: only those after the last
checkpoint that reached jobs.db (at most K: K-1 after it, plus the K-th when the kill lands
between that item's line and its checkpoint's commit). It processes only as many items as the
test opens its gate file for (`CheckpointJob.gate`), so the kill lands where the test chose,
however fast the machine is.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sdjobs_nb as sj  # noqa: E402
from _workers.jobs import CheckpointJob, ParentJob, expected_outcome  # noqa: E402
from _workers.tally import record as tally  # noqa: E402
from _workers.util import Worker, decode, integrity, rows, side_lines, wait_for, within, write  # noqa: E402
from jobs_for_tests import open_gate, steps_done, until  # noqa: E402

N, K, DELAY = 40, 5, 0.01
#: side-file lengths at which the worker is killed: first item, around checkpoints, late
KILL_POINTS = (1, 4, 5, 6, 13, 22, 37)

_uninterrupted: dict[str, int] = {}


def uninterrupted_result(tmp_path: Path) -> int:
    """The result of the same job run once without any interruption (computed once per session)."""
    if "result" not in _uninterrupted:
        async def run() -> int:
            async with sj.JobManager.open(tmp_path / "reference") as manager:
                return await (await manager.dispatch(CheckpointJob(n=N, k=K))).wait()

        _uninterrupted["result"] = asyncio.run(run())
    return _uninterrupted["result"]


def start_and_kill(library: Path, side: Path, gate: Path, kill_at: int, stderr: Path) -> tuple[str, int]:
    """Start the worker with its gate open for `kill_at` items, SIGKILL it once they are in the side file.

    Returns (job id, side-file lines).
    """
    open_gate(str(gate), kill_at)
    worker = Worker("counted", library, N, K, side, DELAY, gate, stderr_path=stderr)
    try:
        job_id = worker.expect("id")
        wait_for(lambda: len(side_lines(side)) >= kill_at, 30, what=f"{kill_at} items processed")
    finally:
        worker.kill()
    return job_id, len(side_lines(side))


def saved_item(library: Path, job_id: str) -> tuple[str, int]:
    """(status, checkpointed `i`) of the job as another process sees jobs.db after the crash."""
    ((status, blob),) = rows(library, "SELECT status, data FROM jobs WHERE id=?", (job_id,))
    return status, decode(blob)["i"]


async def resume_in_this_process(library: Path, job_id: str) -> int:
    async with sj.JobManager.open(library) as manager:
        record = await manager.record(job_id)
        assert record.status is sj.JobStatus.PAUSED
        assert record.pause_reason == "interrupted"
        resumed = await manager.resume_interrupted()
        assert [h.id for h in resumed] == [job_id]
        result = await asyncio.wait_for(resumed[0].wait(), 30)
        assert (await manager.record(job_id)).status is sj.JobStatus.COMPLETED
        return result


@pytest.mark.parametrize("kill_at", KILL_POINTS)
def test_sigkill_mid_run_resumes_from_last_checkpoint(tmp_path: Path, kill_at: int) -> None:
    library, side, gate = tmp_path / "library", tmp_path / "side.txt", tmp_path / "gate"
    job_id, done_before = start_and_kill(library, side, gate, kill_at, tmp_path / "worker.err")
    assert done_before == kill_at < N  # the gate let it go no further

    assert integrity(library) == "ok"
    status, checkpointed = saved_item(library, job_id)
    assert status == "running"  # what the dead process left behind
    assert checkpointed % K == 0 and kill_at - K <= checkpointed <= done_before

    open_gate(str(gate), N)
    result = asyncio.run(resume_in_this_process(library, job_id))

    assert result == uninterrupted_result(tmp_path) == expected_outcome("rel_ckpt", {"n": N})[1]
    items = [item for _, item in side_lines(side)]
    before, after = items[:done_before], items[done_before:]
    assert before == list(range(done_before)), "the killed run processed an item twice"
    assert after == list(range(checkpointed, N)), "the resumed run did not start at the last checkpoint"
    redone = set(before) & set(after)
    assert redone == set(range(checkpointed, done_before))
    assert len(redone) <= K
    assert integrity(library) == "ok"
    # every checkpoint that reached jobs.db counts once, even those the crash kept out of the metrics
    assert rows(library, "SELECT checkpoints FROM job_history WHERE id=?", (job_id,)) == [(N // K,)]
    tally("sigkill_checkpointing_job", kill_at=done_before, checkpointed=checkpointed, redone_items=len(redone))


def test_killed_twice_then_resumed(tmp_path: Path) -> None:
    """Kill the first run, then kill the process that resumed it; a third process finishes the job."""
    library, side, gate = tmp_path / "library", tmp_path / "side.txt", tmp_path / "gate"
    job_id, first = start_and_kill(library, side, gate, 12, tmp_path / "worker1.err")
    _, first_ck = saved_item(library, job_id)

    open_gate(str(gate), first_ck + 13)  # the second run does 13 items, from the first run's checkpoint
    second = Worker("resume", library, stderr_path=tmp_path / "worker2.err")
    try:
        second.expect("ready")
        wait_for(lambda: len(side_lines(side)) >= first + 13, 30, what="second run progress")
    finally:
        second.kill()
    lines_after_second = len(side_lines(side))
    assert lines_after_second == first + 13
    status, second_ck = saved_item(library, job_id)
    assert status == "running"
    assert integrity(library) == "ok"

    open_gate(str(gate), N)
    assert asyncio.run(resume_in_this_process(library, job_id)) == uninterrupted_result(tmp_path)
    items = [item for _, item in side_lines(side)]
    assert items[:first] == list(range(first))
    assert items[first:lines_after_second] == list(range(first_ck, first_ck + lines_after_second - first))
    assert items[lines_after_second:] == list(range(second_ck, N))
    assert first - first_ck <= K
    assert (first_ck + lines_after_second - first) - second_ck <= K
    tally("sigkill_twice", redone_items=(first - first_ck) + (first_ck + lines_after_second - first) - second_ck)


# --- crashes between two commits of one operation -------------------------------------------------
# A kill can land between the commits of a cascade (the parent's row, then each child's). These
# tests write jobs.db exactly as such a kill leaves it, then open the library as the next kernel.


async def _paused_parent_with_children(library: Path) -> tuple[str, list[str]]:
    """A user-paused parent whose two children were paused with it mid-way (held at a gate until then).

    The gate (`_gate_of`) is opened all the way afterwards, so a later manager runs them to the end.
    """
    gate = _gate_of(library)
    open_gate(gate, 5)
    async with sj.JobManager.open(library, max_concurrent=4) as manager:
        parent = await manager.dispatch(ParentJob(n_children=2, child_n=30, gate=gate))

        def children() -> list[sj.JobHandle]:
            return [h for h in manager.handles() if h.parent_id == parent.id]

        await until(lambda: len(children()) == 2 and all(steps_done(h) == 5 for h in children()),
                    what="both children held at their gate")
        await parent.pause()
        ids = [h.id for h in children()]
        assert len(ids) == 2
        for child in ids:
            record = await manager.record(child)
            assert (record.status, record.pause_reason) == (sj.JobStatus.PAUSED, "parent")
    open_gate(gate, 30)
    return parent.id, ids


def _gate_of(library: Path) -> str:
    return str(library.parent / "gate")


def test_crash_between_resuming_a_parent_and_its_children(tmp_path: Path) -> None:
    """resume(parent) commits the parent as QUEUED, then resumes each child; the kill lands in between."""
    library = tmp_path / "library"
    parent_id, children = asyncio.run(_paused_parent_with_children(library))
    write(library, "UPDATE jobs SET status='queued', pause_reason=NULL, paused_at=NULL WHERE id=?", (parent_id,))

    async def next_kernel() -> int:
        async with sj.JobManager.open(library, max_concurrent=4) as manager:
            await manager.resume_interrupted()
            tally("crash_between_cascade_commits", case="resume")
            try:
                return await within(manager.get(parent_id).wait(), 30)
            except asyncio.TimeoutError:
                stuck = {c: (await manager.record(c)).pause_reason for c in children}
                for child in children:  # end the test without leaving the parent waiting
                    await manager.cancel(child)
                return f"still waiting after 30 s; children paused with reasons {stuck}"

    expected = expected_outcome("rel_parent", {"n_children": 2, "child_n": 30})[1]
    assert asyncio.run(next_kernel()) == expected, "the parent waits forever for children paused on its behalf"


def test_crash_between_pausing_a_parent_and_its_children(tmp_path: Path) -> None:
    """pause(parent) commits the parent as PAUSED, then pauses each child; the kill lands in between."""
    library = tmp_path / "library"
    parent_id, children = asyncio.run(_paused_parent_with_children(library))
    write(library, "UPDATE jobs SET status='running', pause_reason=NULL WHERE id IN (?, ?)", tuple(children))

    async def next_kernel() -> int:
        async with sj.JobManager.open(library, max_concurrent=4) as manager:
            for child in children:
                record = await manager.record(child)
                assert (record.status, record.pause_reason) == (sj.JobStatus.PAUSED, "interrupted")
            await manager.resume_interrupted()
            assert (await manager.record(parent_id)).pause_reason == "user"  # the user's pause stands
            await manager.resume(parent_id)
            tally("crash_between_cascade_commits", case="pause")
            return await within(manager.get(parent_id).wait(), 30)

    assert asyncio.run(next_kernel()) == expected_outcome("rel_parent", {"n_children": 2, "child_n": 30})[1]


_SLOW_CREATE = '''
import asyncio, sys
import sdjobs_nb as sj
from sdjobs_nb._store import store
# the schema script gains a statement that writes for a long time, so the kill lands inside it
store.CREATE += (" CREATE TABLE slow_fill AS WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
                 " WHERE i < 50000000) SELECT i, randomblob(64) AS b FROM n;")
async def main():
    await sj.JobManager.open(sys.argv[1])
asyncio.run(main())
'''


def test_a_kill_while_the_library_is_created_leaves_a_file_any_reader_can_open(tmp_path: Path) -> None:
    import subprocess

    library = tmp_path / "library"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_CREATE, str(library)], stderr=subprocess.PIPE)
    try:
        wait_for(lambda: max(_size(library / "jobs.db-wal"), _size(library / "jobs.db-journal")) > 4 * 2**20, 60,
                 what="the schema being written (4 MiB of it)")
        # the schema's statement writes gigabytes: it is still running, well inside its transaction
        assert proc.poll() is None, proc.stderr.read().decode()
    finally:
        proc.kill()
        proc.wait()
    assert not (library / "jobs.db-journal").exists()  # WAL from the first write: no hot journal
    assert integrity(library) == "ok"  # a read-only connection, as another tool would open it
    assert rows(library, "SELECT count(*) FROM sqlite_master WHERE name='jobs'") == [(0,)]  # nothing half-made

    async def reopen() -> int:
        async with sj.JobManager.open(library) as manager:
            return await (await manager.dispatch(CheckpointJob(n=3, k=1))).wait()

    assert asyncio.run(reopen()) == asyncio.run(_reference(tmp_path / "reference"))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


async def _reference(library: Path) -> int:
    async with sj.JobManager.open(library) as manager:
        return await (await manager.dispatch(CheckpointJob(n=3, k=1))).wait()
