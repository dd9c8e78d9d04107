"""Random-point crashes: a worker runs a seeded mix of jobs and is SIGKILLed at a random moment.

The mix (see `_workers/worker.py`): checkpointing jobs, a parent that spawns and waits for
children, a job that fails, a job that pauses itself, and a driver that pauses, resumes and
cancels jobs at random like a user clicking. While it runs, this process reads jobs.db
read-only and remembers every finished job it sees. After the kill, this process checks:

- `PRAGMA integrity_check` is ok;
- no finished job was lost or changed (status, result, error, finish time, one history row);
- every job that was RUNNING is PAUSED with reason "interrupted"; paused jobs keep their reason;
- after resuming, every job ends as an uninterrupted run would (same result, same failure),
  no parent has duplicate children, and no item ran twice except after a job's last save.

A few seeds (every fifth) kill the worker while it is still starting up and opening the library.
`test_random_kills` runs in the default test command; `test_random_kills_full` (50 more seeds) is
marked slow, and CI runs it too.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import random
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sdjobs_nb as sj  # noqa: E402
from _workers.jobs import CheckpointJob, ParentJob, expected_outcome  # noqa: E402
from _workers.tally import record as tally  # noqa: E402
from _workers.util import Worker, decode, integrity, rows, side_lines, terminal_snapshot  # noqa: E402
from _workers.worker import mix_jobs  # noqa: E402

DEFAULT_SEEDS = range(8)
FULL_SEEDS = range(1000, 1050)
FINISH_TIMEOUT_S = 60


def kill_at_random(library: Path, side: Path, seed: int, stderr: Path) -> dict[str, tuple]:
    """Run the mix worker, SIGKILL it at a seeded random moment; return the finished jobs seen before."""
    rng = random.Random(seed)
    worker = Worker("mix", library, seed, side, stderr_path=stderr)
    seen: dict[str, tuple] = {}
    try:
        if seed % 5 == 0:
            deadline = time.monotonic() + rng.uniform(0.05, 0.8)  # while importing or opening
        else:
            worker.expect("ready")
            deadline = time.monotonic() + rng.uniform(0.0, 2.0)
        while time.monotonic() < deadline:
            seen.update(terminal_snapshot(library))
            time.sleep(0.02)
    finally:
        worker.kill()
    return seen


def stored_jobs(library: Path) -> dict[str, dict[str, Any]]:
    """Every job row as another process sees it: name, status, reason, parent and its parameters."""
    if not (library / "jobs.db").exists():
        return {}
    try:
        found = rows(library, "SELECT id, name, status, pause_reason, parent_id FROM jobs")
    except Exception as e:  # noqa: BLE001 - a kill during schema creation leaves no tables
        if "no such table" in str(e):
            return {}
        raise
    return {r[0]: {"name": r[1], "status": r[2], "reason": r[3], "parent": r[4]} for r in found}


def dispatched_fields(library: Path, seed: int, side: Path) -> dict[str, dict[str, Any]]:
    """job id -> the fields it was dispatched with, from the seeded mix (finished jobs' state is dropped).

    The worker dispatches `mix_jobs(Random(seed))` in order (seq order in jobs.db); a parent's
    children are its `children()`, spawn key `1:<index>`.
    """
    jobs = mix_jobs(random.Random(seed), str(side))
    top = rows(library, "SELECT id, name FROM jobs WHERE parent_id IS NULL ORDER BY seq")
    assert [name for _, name in top] == [job.NAME for job in jobs[:len(top)]], "not the seeded mix, in order"
    fields = {}
    for (job_id, _), job in zip(top, jobs):
        fields[job_id] = dataclasses.asdict(job)
        if isinstance(job, ParentJob):
            children = job.children()
            for child_id, key in rows(library, "SELECT id, spawn_key FROM jobs WHERE parent_id=?", (job_id,)):
                fields[child_id] = dataclasses.asdict(children[int(key.split(":")[1])])
    return fields


async def reopen_and_finish(library: Path, before: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Open in this process, check what the crash left, resume everything and wait until all finish."""
    stats = collections.Counter()
    async with sj.JobManager.open(library) as manager:
        for job_id, job in before.items():
            record = await manager.record(job_id)
            if job["status"] == "running":
                stats["interrupted"] += 1
                assert (record.status.value, record.pause_reason) == ("paused", "interrupted"), job
            elif job["status"] == "paused":
                stats["paused"] += 1
                assert (record.status.value, record.pause_reason) == ("paused", job["reason"]), job
            elif job["status"] == "queued":
                stats["queued"] += 1
            else:
                stats["terminal"] += 1
                assert record.status.value == job["status"], job
        assert manager.broken() == {}
        await manager.resume_interrupted()
        deadline = time.monotonic() + FINISH_TIMEOUT_S
        while manager.handles():
            await resume_paused(manager)  # paused by the user before the kill, or by the job itself
            if time.monotonic() > deadline:
                left = {h.id: (h.name, h.current_status.value, (await manager.record(h.id)).pause_reason)
                        for h in manager.handles()}
                raise AssertionError(f"jobs never finished after the crash: {left}")
            await asyncio.sleep(0.05)
    return stats


async def resume_paused(manager: sj.JobManager) -> None:
    for handle in manager.handles():
        if handle.current_status is sj.JobStatus.PAUSED:
            reason = (await manager.record(handle.id)).pause_reason
            if reason != "parent":  # a parent's resume resumes these
                await handle.resume()


def check_outcomes(library: Path, before: dict[str, dict[str, Any]], fields: dict[str, dict[str, Any]]) -> None:
    """Every job ends as an uninterrupted run would, unless the user had cancelled it before the kill."""
    final = {r[0]: r[1:] for r in rows(library, "SELECT id, name, status, result, error, parent_id FROM jobs")}
    assert set(before) <= set(final)
    cancelled_before = {i for i, j in before.items() if j["status"] == "cancelled"}
    for job_id, (name, status, result, error, parent_id) in final.items():
        want_status, want = expected_outcome(name, fields[job_id])
        if job_id in cancelled_before:
            assert status == "cancelled"
            continue
        if status == "cancelled":  # cancelled by the driver: only before the kill
            raise AssertionError(f"{name} {job_id} was cancelled after the crash")
        if name == ParentJob.NAME and status == "failed" and _children_cancelled(job_id, cancelled_before, before):
            assert "cancelled" in error  # the user's cancel of this parent was cut short by the kill
            continue
        assert status == want_status, (name, job_id, status, error)
        if status == "completed":
            assert decode(result) == want, (name, job_id)
        else:
            assert want in error, (name, job_id, error)
    children = collections.Counter(parent for (_, _, _, _, parent) in final.values() if parent)
    for job_id, (name, status, *_) in final.items():
        if name == ParentJob.NAME:
            n_children = fields[job_id]["n_children"]
            expected_children = n_children if status == "completed" else (0, n_children)
            assert children[job_id] in (expected_children if isinstance(expected_children, tuple) else (expected_children,)), \
                "a resumed parent spawned its children again"


def _children_cancelled(parent_id: str, cancelled: set[str], before: dict[str, dict[str, Any]]) -> bool:
    return any(before[c]["parent"] == parent_id for c in cancelled if c in before)


def check_history(library: Path) -> None:
    per_job = dict(rows(library, "SELECT id, count(*) FROM job_history GROUP BY id"))
    for job_id, status in rows(library, "SELECT id, status FROM jobs"):
        expected = 1 if status in ("completed", "failed", "cancelled") else 0
        assert per_job.get(job_id, 0) == expected, (job_id, status)
    assert set(per_job) <= {r[0] for r in rows(library, "SELECT id FROM jobs")}


def check_side_file(library: Path, side: Path, fields: dict[str, dict[str, Any]]) -> int:
    """No item of a checkpointing job ran twice except the ones after its last save; return the re-done count."""
    k_of = {job_id: f["k"] for job_id, f in fields.items() if "k" in f}
    n_of = {job_id: f["n"] for job_id, f in fields.items() if "k" in f}
    status = dict(rows(library, "SELECT id, status FROM jobs"))
    seen: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for job_id, item in side_lines(side):
        seen[job_id][item] += 1
    redone_total = 0
    for job_id, items in seen.items():
        redone = [i for i, c in items.items() if c > 1]
        assert all(c <= 2 for c in items.values()), (job_id, items)  # one crash: at most one re-run
        assert len(redone) <= k_of[job_id], (job_id, sorted(redone), k_of[job_id])
        if redone:
            assert sorted(redone) == list(range(min(redone), max(redone) + 1)), "re-done items not contiguous"
        if status[job_id] == "completed":
            assert set(items) == set(range(n_of[job_id]))
        redone_total += len(redone)
    return redone_total


def crash_once(tmp_path: Path, seed: int) -> None:
    library, side = tmp_path / "library", tmp_path / "side.txt"
    seen = kill_at_random(library, side, seed, tmp_path / "worker.err")

    if (library / "jobs.db").exists():
        assert integrity(library) == "ok"
    after_kill = terminal_snapshot(library)
    for job_id, snapshot in seen.items():
        assert after_kill.get(job_id) == snapshot, f"finished job {job_id} lost or changed by the crash"
    before = stored_jobs(library)

    stats = asyncio.run(reopen_and_finish(library, before))

    assert integrity(library) == "ok"
    final = terminal_snapshot(library)
    for job_id, snapshot in after_kill.items():
        assert final.get(job_id) == snapshot, f"finished job {job_id} changed after reopening"
    fields = dispatched_fields(library, seed, side)
    check_outcomes(library, before, fields)
    check_history(library)
    redone = check_side_file(library, side, fields)
    tally("random_kill", seed=seed, jobs_before_kill=len(before), redone_items=redone,
           **{key: stats[key] for key in ("interrupted", "paused", "queued", "terminal")})


@pytest.mark.parametrize("seed", DEFAULT_SEEDS)
def test_random_kills(tmp_path: Path, seed: int) -> None:
    crash_once(tmp_path, seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", FULL_SEEDS)
def test_random_kills_full(tmp_path: Path, seed: int) -> None:
    crash_once(tmp_path, seed)


@pytest.mark.parametrize("seed", range(4))
async def test_expected_outcomes_match_an_uninterrupted_run(tmp_path: Path, seed: int) -> None:
    """The answers the kill loop checks against are what a run that is never interrupted gives."""
    jobs = [dataclasses.replace(job, delay=0.0) for job in mix_jobs(random.Random(seed), side="")]
    async with sj.JobManager.open(tmp_path / "library", max_concurrent=8) as manager:
        handles = [await manager.dispatch(job) for job in jobs]
        while manager.handles():
            for handle in manager.handles():
                if handle.current_status is sj.JobStatus.PAUSED:  # the self-pausing job
                    await handle.resume()
            await asyncio.sleep(0.01)
        for job, handle in zip(jobs, handles):
            want_status, want = expected_outcome(job.NAME, dataclasses.asdict(job))
            try:
                got_status, got = "completed", await handle.wait()
            except sj.JobFailed as e:
                got_status, got = "failed", e.message
            assert got_status == want_status
            assert got == want if want_status == "completed" else want in got
