"""`manager.backup(folder)` and `sdjobs backup`: a consistent copy of a live library that opens as one."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sdjobs_nb as sj  # noqa: E402
from _workers.jobs import CheckpointJob, expected_outcome  # noqa: E402
from _workers.util import Worker, quiet_dead_tasks, rows, within  # noqa: E402, F401
from jobs_for_tests import Add, Fail, Gated, open_gate, steps_done, until  # noqa: E402

S = sj.JobStatus


def _integrity(db: Path) -> str:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return ";".join(r[0] for r in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


async def test_backup_while_a_job_checkpoints_is_consistent_and_opens(tmp_path: Path) -> None:
    library, gate = tmp_path / "library", str(tmp_path / "gate")
    open_gate(gate, 10**9)  # a checkpoint per step, as fast as it goes, until cancelled
    async with sj.JobManager.open(library) as manager:
        finished = [await (await manager.dispatch(Add(a=i, b=1))).wait() for i in range(50)]
        busy = await manager.dispatch(Gated(gate=gate, total=10**9))
        await until(lambda: steps_done(busy) > 20, what="the job checkpointing")
        copies = []
        for n in range(5):
            before = steps_done(busy)
            copies.append(await within(manager.backup(tmp_path / f"backup{n}"), 30))
            await until(lambda: steps_done(busy) > before, what="checkpoints going on after the backup")
        assert busy.current_status is S.RUNNING
        await busy.cancel()

    for copy in copies:
        assert copy == tmp_path / copy.parent.name / "jobs.db"
        assert _integrity(copy) == "ok"
        assert rows(copy.parent, "SELECT count(*) FROM job_history WHERE status='completed'") == [(50,)]
        async with sj.JobManager.open(copy.parent) as restored:  # as the owner: it recovers the running job
            record = await restored.record(busy.id)
            assert (record.status, record.pause_reason) == (S.PAUSED, "interrupted")
            assert (await restored.saved_state(busy.id))["done"] > 20
            done = [r[0] for r in rows(copy.parent, "SELECT id FROM job_history WHERE status='completed'")]
            assert sorted([await restored.result(job_id) for job_id in done]) == sorted(finished)


async def test_backup_round_trip_keeps_every_job(tmp_path: Path) -> None:
    """Completed, failed, cancelled, user-paused and queued jobs come back as they were, and go on."""
    library, gate = tmp_path / "library", str(tmp_path / "gate")
    open_gate(gate, 3)
    async with sj.JobManager.open(library, max_concurrent=2) as manager:
        completed = await manager.dispatch(Add(a=2, b=3))
        failed = await manager.dispatch(Fail(message="on purpose"))
        paused = await manager.dispatch(CheckpointJob(n=10, k=1, gate=gate))
        cancelled = await manager.dispatch(CheckpointJob(n=10, k=1, gate=gate))
        assert await completed.wait() == 5
        with pytest.raises(sj.JobFailed):
            await failed.wait()
        await until(lambda: steps_done(paused) == 3 and steps_done(cancelled) == 3, what="both at their gate")
        await paused.pause()
        await cancelled.cancel()
        manager.max_concurrent = 1
        blocker = await manager.dispatch(CheckpointJob(n=10, k=1, gate=gate))
        queued = await manager.dispatch(CheckpointJob(n=4, k=1, salt=7, gate=gate))  # waits behind the blocker
        await until(lambda: blocker.current_status is S.RUNNING, what="the blocker running")
        backup = await manager.backup(tmp_path / "backup")
        await blocker.cancel()

    statuses = dict(rows(backup.parent, "SELECT id, status FROM jobs"))
    assert statuses == {completed.id: "completed", failed.id: "failed", paused.id: "paused",
                        cancelled.id: "cancelled", blocker.id: "running", queued.id: "queued"}
    open_gate(gate, 10)
    async with sj.JobManager.open(backup.parent, max_concurrent=4) as restored:
        assert await restored.result(completed.id) == 5
        assert "on purpose" in (await restored.record(failed.id)).error
        assert (await restored.record(paused.id)).pause_reason == "user"
        await restored.resume(paused.id)
        assert await within(restored.get(paused.id).wait()) == expected_outcome("rel_ckpt", {"n": 10})[1]
        assert await within(restored.get(queued.id).wait()) == expected_outcome("rel_ckpt", {"n": 4, "salt": 7})[1]


async def test_backup_refuses_what_it_must_not_replace(tmp_path: Path) -> None:
    library, dest, gate = tmp_path / "library", tmp_path / "dest", str(tmp_path / "gate")
    open_gate(gate, 2)
    (tmp_path / "a_file").write_text("precious")
    other_owner = Worker("hold", dest, "1", gate, stderr_path=tmp_path / "owner.err")  # a library at dest, in use
    try:
        _pid, stale_id = other_owner.expect("ready").split()
        async with sj.JobManager.open(library) as manager:
            latest = await manager.dispatch(Add(a=1))
            await latest.wait()
            with pytest.raises(sj.LibraryError, match="is a file"):
                await manager.backup(tmp_path / "a_file")
            with pytest.raises(sj.LibraryError, match="the library itself"):
                await manager.backup(library, overwrite=True)
            with pytest.raises(sj.LibraryError, match="overwrite=True"):
                await manager.backup(dest)
            with pytest.raises(sj.LibraryLocked):  # never pulled from under a manager that runs its jobs
                await manager.backup(dest, overwrite=True)
            other_owner.kill()  # it leaves a WAL that SQLite would replay onto whatever jobs.db is there
            assert (dest / "jobs.db-wal").stat().st_size > 0
            assert await manager.backup(dest, overwrite=True) == dest / "jobs.db"
    finally:
        other_owner.kill()
    assert rows(dest, "SELECT id FROM jobs") == [(latest.id,)]  # nothing of the replaced library, not even its WAL
    assert _integrity(dest / "jobs.db") == "ok"
    assert (tmp_path / "a_file").read_text() == "precious"
    assert not list(dest.glob(".*partial*"))


def test_sdjobs_backup_while_a_kernel_owns_the_library(tmp_path: Path) -> None:
    library, gate, dest = tmp_path / "library", str(tmp_path / "gate"), tmp_path / "dest"
    open_gate(gate, 2)
    owner = Worker("hold", library, "1", gate, stderr_path=tmp_path / "owner.err")
    try:
        _pid, job_id = owner.expect("ready").split()
        done = subprocess.run([sys.executable, "-m", "sdjobs_nb", "backup", str(library), str(dest)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert str(dest / "jobs.db") in done.stdout
    finally:
        owner.kill()
    assert _integrity(dest / "jobs.db") == "ok"
    assert rows(dest, "SELECT status FROM jobs WHERE id=?", (job_id,)) == [("running",)]  # as the owner had it
