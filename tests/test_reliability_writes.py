"""One bad value never costs other jobs their writes (issue 17, finding 2).

A file name from `os.listdir` that is not UTF-8 (here Latin-1 'résumé.txt', which Python gives
as 'r\\udce9sum\\udce9.txt') is exactly what non-critical errors carry. sqlite3 binds str as strict
UTF-8, so such a value used to fail the whole group transaction: every job that finished in the
same batch lost its end. Jobs here wait on one `asyncio.Event` and are released together, so
their ends share a transaction however fast the machine is.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sdjobs_nb as sj  # noqa: E402
from sdjobs_nb._store import store as st  # noqa: E402
from sdjobs_nb._store.store import Store  # noqa: E402
from _workers.util import rows, within  # noqa: E402
from jobs_for_tests import Add, steps_done, until  # noqa: E402

LATIN1_NAME = os.fsdecode(b"r\xe9sum\xe9.txt")  # 'r\udce9sum\udce9.txt' on a UTF-8 file system
READABLE = "r\\xe9sum\\xe9.txt"  # how jobs.db shows it: the bytes the name had
JOBS = 41

RELEASE: dict[str, asyncio.Event] = {}  # gate name -> the event its jobs wait on


@dataclass
class Released(sj.Job):
    """Reports step 1, waits for its gate's event, then ends as `how` says (with a Latin-1 file name)."""

    NAME = "rel_writes_released"
    gate: str
    n: int
    how: str = "completes"  # or "reports" (a non-critical error naming the file), or "fails"

    async def run(self, ctx: sj.JobContext) -> int:
        ctx.report_count_progress(1, 1)
        await RELEASE[self.gate].wait()
        if self.how == "reports":
            ctx.report_non_critical_error(f"skipped {LATIN1_NAME}")
        elif self.how == "fails":
            raise ValueError(f"cannot read {LATIN1_NAME}")
        return self.n


@dataclass
class NamesFiles(sj.Job):
    """Shows a Latin-1 file name as its progress phase."""

    NAME = "rel_writes_names_files"

    async def run(self, ctx: sj.JobContext) -> str:
        ctx.report_structured_progress(f"reading {LATIN1_NAME}", {"done": 1})
        return "ok"


async def _release_together(manager: sj.JobManager, gate: str, offender: str) -> list[sj.JobHandle]:
    """Dispatch JOBS jobs (the offender last), wait until all wait at the gate, release them at once."""
    RELEASE[gate] = asyncio.Event()
    jobs = [Released(gate=gate, n=i) for i in range(JOBS - 1)] + [Released(gate=gate, n=JOBS - 1, how=offender)]
    handles = await manager.dispatch_many(jobs)
    await until(lambda: all(steps_done(h) == 1 for h in handles), what="every job at the gate")
    RELEASE[gate].set()
    return handles


@pytest.mark.parametrize("offender", ["reports", "fails"])
async def test_a_latin1_file_name_in_one_job_costs_no_other_job_its_end(tmp_path: Path, offender: str) -> None:
    library = tmp_path / "library"
    async with sj.JobManager.open(library, max_concurrent=JOBS) as manager:
        handles = await _release_together(manager, str(tmp_path / "gate"), offender)
        ends = await within(asyncio.gather(*(h.wait() for h in handles), return_exceptions=True))
        assert not any(isinstance(e, sj.LibraryError) for e in ends), ends
        assert ends[:-1] == list(range(JOBS - 1))
        expected = sj.JobStatus.FAILED if offender == "fails" else sj.JobStatus.COMPLETED
        assert [h.current_status for h in handles] == [sj.JobStatus.COMPLETED] * (JOBS - 1) + [expected]
        ids = [h.id for h in handles]

    async with sj.JobManager.open(library) as manager:
        assert manager.handles() == []  # nothing to run again
        records = [await manager.record(i) for i in ids]
        assert [r.status for r in records] == [sj.JobStatus.COMPLETED] * (JOBS - 1) + [expected]
        if offender == "reports":
            assert [m for _, m in await manager.errors(ids[-1])] == [f"skipped {READABLE}"]
            assert await manager.result(ids[-1]) == JOBS - 1
        else:
            assert records[-1].error == f"ValueError: cannot read {READABLE}"
            assert READABLE in records[-1].traceback
    assert rows(library, "SELECT count(*) FROM job_history") == [(JOBS,)]


async def test_free_text_that_is_not_utf8_is_stored_readable(tmp_path: Path) -> None:
    """initiated_by, a pause reason and a progress phase carry file names too."""
    library, gate = tmp_path / "library", str(tmp_path / "gate")
    RELEASE[gate] = asyncio.Event()
    async with sj.JobManager.open(library, grace_period=0.2) as manager:  # the held job never checks: forced
        phase = await manager.dispatch(NamesFiles(), initiated_by=f"batch {LATIN1_NAME}")
        assert await within(phase.wait()) == "ok"
        held = await manager.dispatch(Released(gate=gate, n=1))
        await until(lambda: steps_done(held) == 1, what="the job at its gate")
        await within(manager.pause(held.id, reason=f"moving {LATIN1_NAME}"))
        assert held.current_status is sj.JobStatus.PAUSED
    async with sj.JobManager.open(library) as manager:
        record = await manager.record(phase.id)
        assert record.initiated_by == f"batch {READABLE}"
        # the progress blob is msgpack: as lossless as the codec is, readable at worst; history's column is text
        assert record.progress.phase in (f"reading {LATIN1_NAME}", f"reading {READABLE}")
        assert rows(library, "SELECT progress_phase FROM job_history WHERE id=?", (phase.id,)) == [(f"reading {READABLE}",)]
        assert (await manager.record(held.id)).pause_reason == f"moving {READABLE}"


@pytest.mark.parametrize("bad", [{"dedup_key": f"scan:{LATIN1_NAME}"}, {"priority": 2**70}], ids=["dedup_key", "priority"])
async def test_a_dispatch_value_jobs_db_cannot_hold_is_refused_and_costs_no_other_job(tmp_path: Path, bad: dict) -> None:
    """A lossy escape could make two dedup keys one: such a key is refused, with what to do; the others commit."""
    async with sj.JobManager.open(tmp_path / "library") as manager:
        # the first dispatch's commit is in flight while the next two are staged: those two share a batch
        first, innocent, refused = await asyncio.gather(
            manager.dispatch(Add(1, 1)), manager.dispatch(Add(2, 3)), manager.dispatch(Add(1), **bad),
            return_exceptions=True)
        assert isinstance(refused, ValueError) and not isinstance(refused, sj.LibraryError), refused
        assert next(iter(bad)) in str(refused)
        if "dedup_key" in bad:
            assert "os.fsencode" in str(refused)
        assert [await within(first.wait()), await within(innocent.wait())] == [2, 5]
        assert manager.handles(active_only=False) == []
        assert len(await manager.history()) == 2


# --- the group commit itself ------------------------------------------------------------------


def _three_jobs(store: Store) -> None:
    for n, job_id in enumerate(("a", "b", "c")):
        store.insert_job(job_id, "rel_writes_raw", 1, b"\x80", 0, n, None, None, None, None, None, 1.0)


async def test_a_value_sqlite_cannot_bind_fails_only_its_own_jobs_waiters(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "library")
    try:
        _three_jobs(store)
        store.stage(st.INSERT_ERROR, ("a", 2.0, "fine"), "a")
        store.stage(st.INSERT_ERROR, ("b", 2.0, object()), "b")  # sqlite3 cannot bind an object
        store.stage(st.INSERT_ERROR, ("c", 2.0, "fine too"), "c")
        told: dict[str, BaseException | None] = {}
        store.after_commit(lambda error: told.__setitem__("c", error), key="c")
        waits = [store.commit(key="a"), store.commit(key="b"), store.commit()]
        a, b, whole = await within(asyncio.gather(*waits, return_exceptions=True))
        assert a is None and whole is None and told == {"c": None}
        assert isinstance(b, sj.LibraryError) and "job b" in str(b) and isinstance(b.__cause__, sqlite3.Error)
    finally:
        await store.close()
    library = tmp_path / "library"
    assert rows(library, "SELECT id FROM jobs ORDER BY id") == [("a",), ("c",)]  # b's statements all dropped
    assert rows(library, "SELECT job_id, message FROM job_errors ORDER BY job_id") == [("a", "fine"), ("c", "fine too")]


async def test_a_batch_where_every_job_is_refused_or_the_file_fails_tells_everyone(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "library")
    try:
        _three_jobs(store)
        await store.commit()
        store.stage(st.INSERT_ERROR, ("b", 2.0, object()), "b")
        alone = await within(asyncio.gather(store.commit(key="b"), store.commit(), return_exceptions=True))
        assert all(isinstance(e, sj.LibraryError) and "binding" in str(e) for e in alone), alone  # nothing innocent

        store.stage(st.INSERT_ERROR, ("a", 3.0, "fine"), "a")
        store.stage("INSERT INTO no_such_table (id) VALUES (?)", ("c",), "c")  # about the file, not a value
        failed = await within(asyncio.gather(store.commit(key="a"), store.commit(), return_exceptions=True))
        assert all(isinstance(e, sj.LibraryError) and "no such table" in str(e) for e in failed), failed
    finally:
        await store.close()
    assert rows(tmp_path / "library", "SELECT count(*) FROM job_errors") == [(0,)]
