"""A library always opens: a damaged row sets that one job aside (or loses a bad metric), a
failed open lets go of the library, and a damaged jobs.db is refused with what to do.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sdjobs_nb as sj  # noqa: E402
from _workers.jobs import CheckpointJob, expected_outcome  # noqa: E402
from _workers.tally import record as tally  # noqa: E402
from _workers.util import REPO, decode, integrity, quiet_dead_tasks, rows, within, write  # noqa: E402, F401
from jobs_for_tests import gate_value, open_gate, steps_done, until  # noqa: E402

S = sj.JobStatus


async def _library_with_interrupted_and_queued(library: Path) -> tuple[list[str], list[str]]:
    """Close a manager with 2 running jobs (so PAUSED 'interrupted' after 5 items) and 2 queued ones.

    They all wait at a gate file beside the library, opened all the way afterwards: a later
    manager runs them to the end.
    """
    gate = str(library.parent / "gate")
    open_gate(gate, 5)
    async with sj.JobManager.open(library, max_concurrent=2) as manager:
        running = [await manager.dispatch(CheckpointJob(n=20, k=4, salt=s, gate=gate)) for s in range(2)]
        queued = [await manager.dispatch(CheckpointJob(n=8, k=4, salt=10 + s, gate=gate)) for s in range(2)]
        await until(lambda: all(steps_done(h) == 5 for h in running), what="the running jobs at their gate")
    open_gate(gate, 100)
    return [h.id for h in running], [h.id for h in queued]


def _expected(library: Path, job_id: str) -> Any:
    return expected_outcome("rel_ckpt", decode(rows(library, "SELECT data FROM jobs WHERE id=?", (job_id,))[0][0]))[1]


# --- finding 9: metrics that are not finite numbers ---------------------------------------------

BAD_METRICS = [
    pytest.param('{"items": 1e400}', id="items-infinite"),
    pytest.param('{"checkpoints": "x"}', id="checkpoints-text"),
    pytest.param('{"bytes": 1e30}', id="bytes-beyond-sqlite-integers"),
    pytest.param("[1, 2, 3]", id="not-an-object"),
]


@pytest.mark.parametrize("metrics", BAD_METRICS)
async def test_bad_stored_metrics_never_stop_the_library(tmp_path: Path, metrics: str) -> None:
    """One slot, bad metrics on a paused and a queued job: open(resume=True) works and every job ends right."""
    library = tmp_path / "library"
    running, queued = await _library_with_interrupted_and_queued(library)
    damaged = [running[0], queued[0]]
    write(library, "UPDATE jobs SET metrics=? WHERE id IN (?, ?)", (metrics, *damaged))
    expected = {job_id: _expected(library, job_id) for job_id in running + queued}

    manager = await within(sj.JobManager.open(library, max_concurrent=1, resume=True), 20)
    async with manager:
        assert manager.broken() == {}  # metrics are repaired, not a reason to set a job aside
        for job_id in running + queued:
            assert await within(manager.get(job_id).wait(), 20) == expected[job_id]
    for items, nbytes, checkpoints in rows(library, "SELECT items, bytes, checkpoints FROM job_history"):
        assert all(type(v) is int and 0 <= v < 2**63 for v in (items, nbytes, checkpoints))
    assert integrity(library) == "ok"
    tally("bad_stored_metrics", metrics=metrics)


class StopOpening(BaseException):
    """The user's own BaseException (as KeyboardInterrupt would be), raised while open resumes jobs."""


@dataclass
class Migrating(sj.Job):
    """VERSION 2 of a job whose `migrate` is interrupted: resuming a VERSION 1 job raises `StopOpening`."""

    NAME = "test_open_migrating"
    VERSION = 2
    gate: str
    done: int = 0

    @classmethod
    def migrate(cls, data: dict, from_version: int) -> dict:
        raise StopOpening("interrupted while migrating")

    async def run(self, ctx: sj.JobContext) -> int:
        while self.done < 3:
            await ctx.check_interrupted()
            await asyncio.sleep(0.005)
            if self.done < gate_value(self.gate):
                self.done += 1
        return self.done


def test_an_open_that_fails_lets_go_of_the_library(tmp_path: Path) -> None:
    """open(resume=True) interrupted after it took the library: the next open (another loop) gets it."""
    library, gate = tmp_path / "library", str(tmp_path / "gate")
    open_gate(gate, 0)

    async def interrupted_job() -> str:
        async with sj.JobManager.open(library) as manager:
            handle = await manager.dispatch(Migrating(gate=gate))
            await until(lambda: handle.current_status is S.RUNNING, what="the job running")
            return handle.id

    job_id = asyncio.run(interrupted_job())
    write(library, "UPDATE jobs SET version=1 WHERE id=?", (job_id,))  # written by VERSION 1

    with pytest.raises(StopOpening):
        sj.open_sync(library, resume=True)  # its loop lives on in this thread, as a notebook's would

    async def reopen() -> tuple[S, dict[str, str]]:
        async with sj.JobManager.open(library) as manager:
            return (await manager.record(job_id)).status, manager.broken()

    status, broken = asyncio.run(reopen())  # not "locked by another manager in this process"
    assert status is S.PAUSED and broken == {}
    tally("failed_open_releases_lock")


# --- finding 14: a row whose values the runtime cannot use --------------------------------------

DEEP = 100_000
DAMAGED_ROWS = [
    # (column, value, what happens to the job: "repaired" runs on, "broken" is set aside)
    pytest.param("metrics", "[" * DEEP + "]" * DEEP, "repaired", id="metrics-nested-100k-deep"),
    pytest.param("context", '{"a": ' * DEEP + "1" + "}" * DEEP, "repaired", id="context-nested-100k-deep"),
    pytest.param("priority", "high", "broken", id="priority-text"),
    pytest.param("seq", "first", "broken", id="seq-text"),
    pytest.param("created_at", "yesterday", "broken", id="created-at-text"),
]


@pytest.mark.parametrize(("column", "value", "fate"), DAMAGED_ROWS)
async def test_a_damaged_row_sets_only_that_job_aside(tmp_path: Path, column: str, value: str, fate: str) -> None:
    library = tmp_path / "library"
    running, queued = await _library_with_interrupted_and_queued(library)
    damaged = [running[0], queued[0]]
    write(library, f"UPDATE jobs SET {column}=? WHERE id IN (?, ?)", (value, *damaged))
    expected = {job_id: _expected(library, job_id) for job_id in running + queued}
    kept = running[1:] + queued[1:] + ([] if fate == "broken" else damaged)

    manager = await within(sj.JobManager.open(library, resume=True), 20)
    async with manager:
        for job_id in kept:
            assert await within(manager.get(job_id).wait(), 20) == expected[job_id]
        if fate == "broken":
            broken = manager.broken()
            assert set(broken) == set(damaged)
            assert all(column in why and "cancel it" in why for why in broken.values()), broken
            with pytest.raises(sj.BrokenJob):
                await manager.resume(damaged[0])
            for job_id in damaged:  # the user can still look at it and clean it up
                assert (await manager.record(job_id)).status in (S.PAUSED, S.QUEUED)
                await manager.cancel(job_id)
    if fate == "broken":
        assert rows(library, "SELECT DISTINCT status FROM jobs WHERE id IN (?, ?)", tuple(damaged)) == [("cancelled",)]
    assert integrity(library) == "ok"
    tally("damaged_row", column=column)


# --- finding 15: a damaged jobs.db --------------------------------------------------------------


async def _closed_library(library: Path) -> None:
    """A library with finished jobs (history rows) and queued ones, closed cleanly."""
    async with sj.JobManager.open(library, max_concurrent=4) as manager:
        for handle in await manager.dispatch_many([CheckpointJob(n=3, k=1, salt=s) for s in range(300)]):
            await handle.wait()
        await manager.dispatch_many([CheckpointJob(n=3, k=1, gate=str(library.parent / "closed-gate"))
                                     for _ in range(50)])


def _damage_root_page(db: Path, table: str) -> None:
    """Overwrite the b-tree header of `table`'s root page (what a torn copy can hold)."""
    conn = sqlite3.connect(db)
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name=?", (table,)).fetchone()
    finally:
        conn.close()
    with open(db, "r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\x0d\xff\xff\xff\xff\xff\xff\xff" * 4)


DAMAGED_FILES = [
    # (table whose root page is damaged, what the folder's jobs.lock says about the last owner)
    pytest.param("jobs", "no-lock-file", id="jobs-copied-alone"),
    pytest.param("jobs", "owner-of-another-file", id="jobs-folder-copied-in-use"),
    pytest.param("jobs", "owner-pid-only", id="jobs-left-by-an-older-version"),
    pytest.param("jobs", "owner-of-this-file", id="jobs-owner-died"),
    pytest.param("jobs", "closed-cleanly", id="jobs-closed-cleanly"),
    pytest.param("job_history", "no-lock-file", id="history-copied-alone"),
    pytest.param("job_history", "owner-of-another-file", id="history-folder-copied-in-use"),
]
#: lock files after which open checks the whole file first (otherwise damage shows when read)
CHECKED = ("no-lock-file", "owner-of-another-file", "owner-pid-only")


def _lock_file(folder: Path, lock: str) -> None:
    """Write the jobs.lock a previous owner of `folder` would have left."""
    st = (folder / "jobs.db").stat()
    text = {"owner-of-another-file": f"4242\n{st.st_dev} {st.st_ino + 1}\n", "owner-pid-only": "4242\n",
            "owner-of-this-file": f"4242\n{st.st_dev} {st.st_ino}\n", "closed-cleanly": ""}.get(lock)
    if text is not None:
        (folder / "jobs.lock").write_text(text)


@pytest.mark.parametrize(("table", "lock"), DAMAGED_FILES)
async def test_a_damaged_jobs_db_is_refused_with_what_to_do(tmp_path: Path, table: str, lock: str) -> None:
    """Refused with a LibraryError naming the fix, before anything is written; then a backup restores it."""
    library, copy = tmp_path / "library", tmp_path / "copy"
    await _closed_library(library)
    backup = tmp_path / "backup.db"
    shutil.copy(library / "jobs.db", backup)  # a file copy of a closed library is a good backup
    copy.mkdir()
    shutil.copy(library / "jobs.db", copy / "jobs.db")
    _lock_file(copy, lock)
    _damage_root_page(copy / "jobs.db", table)
    before = (copy / "jobs.db").read_bytes()

    with pytest.raises(sj.LibraryError) as caught:
        await sj.JobManager.open(copy)
    message = str(caught.value)
    assert "damaged" in message and "sdjobs backup" in message and ".recover" in message, message
    if lock in CHECKED:  # refused before the first write (else the damage shows when load reads it)
        assert (copy / "jobs.db").read_bytes() == before

    shutil.copy(backup, copy / "jobs.db")  # what the message says to do
    async with sj.JobManager.open(copy) as manager:
        assert len(manager.handles()) == 50
    tally("damaged_jobs_db", table=table, lock=lock)


BUSY_OWNER = Path(__file__).resolve().parent / "_workers" / "busy_owner.py"


def _file_copy(db: Path, folder: Path) -> Path:
    """Copy jobs.db (not its -wal) with plain reads in 16 KB chunks, as a backup tool or `cp` would."""
    folder.mkdir()
    with open(db, "rb") as source, open(folder / "jobs.db", "wb") as copy:
        while chunk := source.read(16384):
            copy.write(chunk)
            time.sleep(0.0005)  # a disk slower than the page cache: the owner checkpoints meanwhile
    return folder


def _quick_check(db: Path) -> str:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return ";".join(r[0] for r in conn.execute("PRAGMA quick_check"))
    except sqlite3.DatabaseError as e:
        return str(e)
    finally:
        conn.close()


def test_a_file_copy_torn_by_a_live_owner_is_refused(tmp_path: Path) -> None:
    """Copy jobs.db while its owner writes and checkpoints, until copies fail quick_check: open refuses each."""
    library = tmp_path / "library"
    owner = subprocess.Popen([sys.executable, str(BUSY_OWNER), str(library)], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    torn: list[Path] = []
    whole: list[Path] = []
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        while len(torn) < 3 and time.monotonic() < deadline:
            copy = _file_copy(library / "jobs.db", tmp_path / f"copy{len(torn) + len(whole)}")
            (torn if _quick_check(copy / "jobs.db") != "ok" else whole).append(copy)
    finally:
        owner.kill()
        owner.wait(timeout=10)
    # how many copies tear depends on the machine's speed; each kind is checked, and the
    # deterministic damaged-file cases are test_a_damaged_jobs_db_is_refused_with_what_to_do
    async def open_whole() -> None:
        for copy in whole[:3]:  # a copy that passes quick_check is a usable library
            async with sj.JobManager.open(copy) as manager:
                assert isinstance(manager.handles(active_only=False), list)

    async def open_each() -> list[str]:
        found = []
        for copy in torn:
            before = (copy / "jobs.db").read_bytes()
            try:
                async with sj.JobManager.open(copy):
                    found.append(f"{copy.name} opened")
            except sj.LibraryError as e:
                found.append("refused" if "damaged" in str(e) and "backup" in str(e) else f"unclear: {e}")
            except Exception as e:  # noqa: BLE001 - what the test reports
                found.append(f"{copy.name}: {type(e).__name__}: {e}")
            assert (copy / "jobs.db").read_bytes() == before  # nothing written to a damaged file
        return found

    assert torn or whole, "no copy was made"
    asyncio.run(open_whole())
    assert asyncio.run(open_each()) == ["refused"] * len(torn)
    tally("torn_file_copy", copies=len(torn) + len(whole), torn=len(torn))
