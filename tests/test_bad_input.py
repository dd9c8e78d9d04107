"""Bad input catalogue: each case gets a clear error, and nothing is written or lost.

"Nothing written" is checked by counting the rows of every table with plain sqlite3 before
and after; "nothing lost" by the other jobs of the library still loading and finishing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import io
import math
import os
import pickle
import sqlite3
import sys
import threading
from pathlib import Path
from typing import Any

import msgpack
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sdjobs_nb as sj  # noqa: E402
from _workers.jobs import CheckpointJob, expected_outcome  # noqa: E402
from _workers.tally import record as tally  # noqa: E402
from _workers.util import counts, decode, integrity, rows, quiet_dead_tasks, within, write  # noqa: E402, F401
from jobs_for_tests import gate_value, open_gate, steps_done, until  # noqa: E402


@dataclasses.dataclass
class Typed(sj.Job):
    NAME = "rel_typed"

    count: int
    names: list[str]
    ratio: float = 1.0
    when: dt.datetime | None = None

    async def run(self, ctx: sj.JobContext) -> int:
        return self.count * len(self.names)


@dataclasses.dataclass
class Holder(sj.Job):
    """Holds any value in its state."""

    NAME = "rel_holder"

    payload: Any = None

    async def run(self, ctx: sj.JobContext) -> int:
        return 1


@dataclasses.dataclass
class CheckpointsBadState(sj.Job):
    """Puts `bad` (an unstorable value, or a large string) into its state halfway and checkpoints."""

    NAME = "rel_bad_checkpoint"

    n: int = 10
    kind: str = "lock"
    i: int = 0
    extra: Any = None
    caught: str = ""
    gate: str = ""  # with a gate file, it ends only once the gate is open (its checkpoint is dropped then)

    async def run(self, ctx: sj.JobContext) -> str:
        while self.i < self.n:
            await ctx.check_interrupted()
            self.i += 1
            if self.i == self.n // 2:
                self.extra = threading.Lock() if self.kind == "lock" else "x" * 5000
                try:
                    await ctx.checkpoint()
                except sj.SerializationError as e:
                    self.caught = f"{type(e).__name__}: {e}"
                self.extra = None
            await ctx.checkpoint()
        while self.gate and gate_value(self.gate) < 1:  # held after its last checkpoint
            await asyncio.sleep(0.005)
        return self.caught


async def _seed(manager: sj.JobManager) -> list[str]:
    """Give the library some finished jobs, so 'nothing lost' has something to lose."""
    handles = [await manager.dispatch(CheckpointJob(n=6, k=2, salt=s)) for s in range(3)]
    for h in handles:
        await within(h.wait())
    return [h.id for h in handles]


# --- unknown names and bad data ---------------------------------------------------------------


async def test_unknown_job_name_lists_the_known_names(tmp_path: Path) -> None:
    library = tmp_path / "library"
    async with sj.JobManager.open(library) as manager:
        await _seed(manager)
        before = counts(library)
        with pytest.raises(sj.UnknownJob) as caught:
            await manager.dispatch_by_name("rel_no_such_job", {"n": 1})
        assert "'rel_no_such_job'" in str(caught.value)
        assert "rel_ckpt" in str(caught.value) and "rel_typed" in str(caught.value)
        assert counts(library) == before
        assert manager.handles() == []


BAD_DATA = [
    pytest.param({"names": ["a"]}, "count", id="missing"),
    pytest.param({"count": 1, "names": [], "colour": "red"}, "colour", id="extra"),
    pytest.param({"count": "three", "names": []}, "count", id="str-for-int"),
    pytest.param({"count": True, "names": []}, "count", id="bool-for-int"),
    pytest.param({"count": 1.5, "names": []}, "count", id="float-for-int"),
    pytest.param({"count": 1, "names": ["a", 2]}, "names[1]", id="ill-typed-item"),
    pytest.param({"count": 1, "names": "abc"}, "names", id="str-for-list"),
    pytest.param({"count": 1, "names": [], "when": "yesterday"}, "when", id="bad-datetime"),
    pytest.param({"count": None, "names": []}, "count", id="none-for-int"),
]


@pytest.mark.parametrize(("data", "field"), BAD_DATA)
async def test_bad_data_names_the_field_and_writes_nothing(tmp_path: Path, data: dict, field: str) -> None:
    library = tmp_path / "library"
    async with sj.JobManager.open(library) as manager:
        await _seed(manager)
        before = counts(library)
        with pytest.raises(sj.InvalidJobData) as caught:
            await manager.dispatch_by_name("rel_typed", data)
        assert f"'{field}'" in str(caught.value)
        assert counts(library) == before
        assert manager.handles() == []
    tally("bad_job_data", case=field)


async def test_data_that_is_not_a_dict(tmp_path: Path) -> None:
    library = tmp_path / "library"
    async with sj.JobManager.open(library) as manager:
        await _seed(manager)
        before = counts(library)
        with pytest.raises(sj.InvalidJobData, match="must be a dict"):
            await manager.dispatch_by_name("rel_typed", ["count", 1])  # type: ignore[arg-type]
        assert counts(library) == before


async def test_ill_typed_instance_is_refused_or_resumable(tmp_path: Path) -> None:
    """`Typed(count=3.0, ...)` (a float where an int is declared) must not become a job that cannot resume.

    Either `dispatch` refuses it (`InvalidJobData` naming the field), or the job pauses and resumes
    like any other; what must not happen is a job accepted now and `BrokenJob` at resume.
    """
    library, gate = tmp_path / "library", str(tmp_path / "gate")
    open_gate(gate, 7)
    async with sj.JobManager.open(library) as manager:
        try:
            handle = await manager.dispatch(CheckpointJob(n=300.0, k=5, gate=gate))  # type: ignore[arg-type]
        except sj.InvalidJobData as e:
            assert "'n'" in str(e)
            return
        await until(lambda: steps_done(handle) == 7, what="7 items done")  # paused mid-run, past a checkpoint
        await handle.pause()
        assert (await manager.saved_state(handle.id))["i"] == 7
        open_gate(gate, 300)
        await handle.resume()
        assert await within(handle.wait()) == expected_outcome("rel_ckpt", {"n": 300})[1]


# --- state that cannot be stored ----------------------------------------------------------------


def _unstorable() -> list[Any]:
    return [
        pytest.param(lambda: io.StringIO("open file"), id="open-file"),
        pytest.param(lambda: open(os.devnull), id="os-file"),  # noqa: SIM115 - closed by the test
        pytest.param(lambda: threading.Lock(), id="lock"),
        pytest.param(lambda: (lambda x: x), id="lambda"),
        pytest.param(lambda: {"nested": [1, threading.Event()]}, id="nested-event"),
        pytest.param(lambda: object(), id="object"),
    ]


@pytest.mark.parametrize("make", _unstorable())
async def test_unserializable_state_names_the_field(tmp_path: Path, make: Any) -> None:
    library = tmp_path / "library"
    value = make()
    try:
        async with sj.JobManager.open(library) as manager:
            await _seed(manager)
            before = counts(library)
            with pytest.raises(sj.SerializationError) as caught:
                await manager.dispatch(Holder(payload=value))
            assert "'payload'" in str(caught.value)
            assert counts(library) == before
            assert manager.handles() == []
    finally:
        if hasattr(value, "close"):
            value.close()
    tally("unserializable_state")


async def test_unserializable_context_is_refused(tmp_path: Path) -> None:
    library = tmp_path / "library"
    async with sj.JobManager.open(library) as manager:
        await _seed(manager)
        before = counts(library)
        with pytest.raises(sj.SerializationError, match="context"):
            await manager.dispatch(Holder(), context={"lock": threading.Lock()})
        assert counts(library) == before


@pytest.mark.parametrize("kind", ["lock", "large"])
async def test_bad_state_at_checkpoint_keeps_the_previous_checkpoint(tmp_path: Path, kind: str) -> None:
    library, gate = tmp_path / "library", str(tmp_path / "gate")
    async with sj.JobManager.open(library, max_state_bytes=2000) as manager:
        handle = await manager.dispatch(CheckpointsBadState(n=10, kind=kind, gate=gate))
        # held after its last checkpoint: a finished job's checkpoint is dropped (issue 17)
        await until(lambda: rows(library, "SELECT count FROM job_checkpoints WHERE job_id=?", (handle.id,)) == [(10,)],
                    what="the last checkpoint")
        ((saved,),) = rows(library, "SELECT data FROM job_checkpoints WHERE job_id=?", (handle.id,))
        assert decode(saved)["i"] == 10 and decode(saved)["extra"] is None
        open_gate(gate, 1)
        caught = await within(handle.wait())
        expected = sj.SerializationError if kind == "lock" else sj.StateTooLarge
        assert caught.startswith(expected.__name__)
        assert "'extra'" in caught or "max_state_bytes" in caught
        assert (await manager.record(handle.id)).status is sj.JobStatus.COMPLETED


async def test_refused_checkpoint_is_not_counted(tmp_path: Path) -> None:
    """`checkpoints` in the metrics counts saved checkpoints; one that raised saved nothing."""
    library, gate = tmp_path / "library", str(tmp_path / "gate")
    async with sj.JobManager.open(library) as manager:
        handle = await manager.dispatch(CheckpointsBadState(n=10, kind="lock", gate=gate))
        # held after its last checkpoint: a finished job's checkpoint is dropped (issue 17)
        await until(lambda: rows(library, "SELECT count FROM job_checkpoints WHERE job_id=?", (handle.id,)) == [(10,)],
                    what="the last checkpoint")
        ((count,),) = rows(library, "SELECT count FROM job_checkpoints WHERE job_id=?", (handle.id,))
        assert count == 10
        open_gate(gate, 1)
        assert (await within(handle.wait())).startswith("SerializationError")
        assert (await manager.record(handle.id)).metrics["checkpoints"] == 10


async def test_state_too_large_at_dispatch(tmp_path: Path) -> None:
    library = tmp_path / "library"
    async with sj.JobManager.open(library, max_state_bytes=1024) as manager:
        await _seed(manager)
        before = counts(library)
        with pytest.raises(sj.StateTooLarge) as caught:
            await manager.dispatch(Holder(payload="x" * 5000))
        assert "1,024" in str(caught.value) and "max_state_bytes" in str(caught.value)
        assert counts(library) == before
        assert await within((await manager.dispatch(Holder(payload="x" * 500))).wait()) == 1
    tally("state_too_large")


# --- corrupt stored values ----------------------------------------------------------------------

CORRUPT_DATA = [
    pytest.param(b"\xc1\xc1 not msgpack", id="not-msgpack"),
    pytest.param(msgpack.packb([1, 2, 3]), id="a-list"),
    pytest.param(msgpack.packb({"evil": 1}), id="unknown-fields"),
    pytest.param(msgpack.packb({"n": "forty", "k": 5}), id="ill-typed-field"),
    pytest.param(msgpack.packb({"n": 10}) + b"trailing", id="trailing-bytes"),
    pytest.param(b"", id="empty"),
    pytest.param(pickle.dumps({"n": 10}), id="pickle"),
]


async def _library_with_interrupted_and_queued(library: Path) -> tuple[list[str], list[str]]:
    """Close a manager with 3 running jobs (paused 'interrupted' after 5 items) and 2 queued ones.

    Every job waits at the gate file beside the library, which is then opened all the way, so
    the jobs of a later manager run to the end.
    """
    gate = str(library.parent / "gate")
    open_gate(gate, 5)
    async with sj.JobManager.open(library, max_concurrent=3) as manager:
        await _seed(manager)
        running = [await manager.dispatch(CheckpointJob(n=60, k=4, salt=s, gate=gate)) for s in range(3)]
        queued = [await manager.dispatch(CheckpointJob(n=8, k=4, salt=10 + s, gate=gate)) for s in range(2)]
        await until(lambda: all(steps_done(h) == 5 for h in running), what="the running jobs at their gate")
    assert rows(library, "SELECT status FROM jobs WHERE id IN (?, ?)", tuple(h.id for h in queued)) == [("queued",)] * 2
    open_gate(gate, 60)
    return [h.id for h in running], [h.id for h in queued]


@pytest.mark.parametrize("blob", CORRUPT_DATA)
async def test_corrupt_state_blob_only_breaks_that_job(tmp_path: Path, blob: bytes) -> None:
    library = tmp_path / "library"
    running, queued = await _library_with_interrupted_and_queued(library)
    bad_paused, bad_queued = running[0], queued[0]
    # the saved states, read before the jobs finish (a finished job's state is dropped: issue 17)
    fields = {job_id: decode(data) for job_id, data in rows(library, "SELECT id, data FROM jobs WHERE finished_at IS NULL")}
    write(library, "UPDATE jobs SET data=? WHERE id IN (?, ?)", (blob, bad_paused, bad_queued))
    before = counts(library)

    async with sj.JobManager.open(library) as manager:
        assert bad_queued in manager.broken()  # queued jobs are loaded at open
        resumed = await manager.resume_interrupted()
        assert sorted(h.id for h in resumed) == sorted(running[1:])
        broken = manager.broken()
        assert set(broken) == {bad_paused, bad_queued}
        assert all("rel_ckpt" in why for why in broken.values())
        for job_id in running[1:] + queued[1:]:
            assert await within(manager.get(job_id).wait()) == expected_outcome("rel_ckpt", fields[job_id])[1]
        for job_id in (bad_paused, bad_queued):
            record = await manager.record(job_id)  # still readable, status kept
            assert record.status in (sj.JobStatus.PAUSED, sj.JobStatus.QUEUED)
        with pytest.raises(sj.BrokenJob):
            await manager.resume(bad_paused)

    kept = rows(library, "SELECT data, status FROM jobs WHERE id IN (?, ?)", (bad_paused, bad_queued))
    assert sorted(kept) == sorted([(blob, "paused"), (blob, "queued")])  # never deleted or rewritten
    assert counts(library)["jobs"] == before["jobs"]
    assert integrity(library) == "ok"
    tally("corrupt_state_blob")


CORRUPT_COLUMNS = [
    pytest.param("progress", b"\xc1\xc1", id="progress-not-msgpack"),
    pytest.param("progress", msgpack.packb({"kind": "count", "current": "lots", "bogus": 1}), id="progress-wrong-shape"),
    pytest.param("metrics", "{not json", id="metrics-not-json"),
    pytest.param("context", "{not json", id="context-not-json"),
]


@pytest.mark.parametrize(("column", "value"), CORRUPT_COLUMNS)
async def test_corrupt_stored_column_only_affects_that_job(tmp_path: Path, column: str, value: Any) -> None:
    """A damaged progress/metrics/context value of one job must not make the library unopenable."""
    library = tmp_path / "library"
    running, queued = await _library_with_interrupted_and_queued(library)
    damaged = running[0]
    write(library, f"UPDATE jobs SET {column}=? WHERE id=?", (value, damaged))
    # unfinished jobs' saved states (a finished job's state is dropped: issue 17)
    fields = {job_id: decode(data) for job_id, data in rows(library, "SELECT id, data FROM jobs WHERE finished_at IS NULL")}

    async with sj.JobManager.open(library) as manager:
        resumed = {h.id for h in await manager.resume_interrupted()}
        assert set(running[1:]) <= resumed
        for job_id in running[1:] + queued:  # every other job finishes as if nothing had happened
            assert await within(manager.get(job_id).wait()) == expected_outcome("rel_ckpt", fields[job_id])[1]
        record = await manager.record(damaged)  # still readable
        if damaged in manager.broken():  # set aside, kept as it was
            assert damaged not in resumed and record.status is sj.JobStatus.PAUSED
        else:  # or resumed, to the right result
            assert await within(manager.get(damaged).wait()) == expected_outcome("rel_ckpt", fields[damaged])[1]
    assert integrity(library) == "ok"
    tally("corrupt_stored_column", column=column)


# --- unusable library locations -----------------------------------------------------------------


async def test_library_path_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "not_a_folder"
    path.write_bytes(b"precious")
    for read_only in (False, True):
        with pytest.raises(sj.LibraryError, match="is a file"):
            await sj.JobManager.open(path, read_only=read_only)
    assert path.read_bytes() == b"precious"
    with pytest.raises(sj.LibraryError):
        await sj.JobManager.open(path / "library")  # below a file: cannot be created
    assert path.read_bytes() == b"precious"


async def test_read_only_view_of_a_missing_library(tmp_path: Path) -> None:
    with pytest.raises(sj.LibraryError, match="does not exist"):
        await sj.JobManager.open(tmp_path / "nowhere", read_only=True)
    assert not (tmp_path / "nowhere").exists()


def _files(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}


async def test_jobs_db_from_a_newer_schema_is_refused_and_untouched(tmp_path: Path) -> None:
    library = tmp_path / "library"
    library.mkdir()
    conn = sqlite3.connect(library / "jobs.db")
    conn.executescript("CREATE TABLE jobs (id TEXT PRIMARY KEY, shiny_new_column BLOB); "
                       "INSERT INTO jobs VALUES ('a', x'00'); PRAGMA user_version = 99;")
    conn.close()
    before = _files(library)
    for read_only in (False, True):
        with pytest.raises(sj.SchemaTooNew) as caught:
            await sj.JobManager.open(library, read_only=read_only)
        assert "99" in str(caught.value) and "upgrade" in str(caught.value)
    after = {name: v for name, v in _files(library).items() if name != "jobs.lock"}
    assert after == before
    tally("schema_too_new")


NOT_SQLITE = [
    pytest.param(b"hello, I am a text file\n" * 200, id="text"),
    pytest.param(os.urandom(8192), id="random-bytes"),
    pytest.param(b"SQLite format 3\x00" + b"\xff" * 4000, id="bad-header"),
]


@pytest.mark.parametrize("content", NOT_SQLITE)
async def test_jobs_db_that_is_not_sqlite(tmp_path: Path, content: bytes) -> None:
    library = tmp_path / "library"
    library.mkdir()
    (library / "jobs.db").write_bytes(content)
    before = _files(library)
    for read_only in (False, True):
        with pytest.raises(sj.LibraryError, match="jobs.db"):
            await sj.JobManager.open(library, read_only=read_only)
    assert {n: v for n, v in _files(library).items() if n != "jobs.lock"} == before
    tally("not_sqlite")


async def test_sqlite_database_of_something_else(tmp_path: Path) -> None:
    library = tmp_path / "library"
    library.mkdir()
    conn = sqlite3.connect(library / "jobs.db")
    conn.executescript("CREATE TABLE users (name TEXT); INSERT INTO users VALUES ('ada');")
    conn.close()
    before = _files(library)
    with pytest.raises(sj.LibraryError, match="something else"):
        await sj.JobManager.open(library)
    assert {n: v for n, v in _files(library).items() if n != "jobs.lock"} == before


async def test_truncated_jobs_db(tmp_path: Path) -> None:
    library = tmp_path / "library"
    async with sj.JobManager.open(library) as manager:
        await manager.dispatch_many([Holder(payload="x" * 300) for _ in range(300)])
    db = library / "jobs.db"
    with open(db, "r+b") as f:
        f.truncate(db.stat().st_size // 2)
    with pytest.raises(sj.LibraryError, match="malformed|not a usable"):
        await sj.JobManager.open(library)


# --- progress values out of range ---------------------------------------------------------------

nan, inf = math.nan, math.inf
ANY = object()  # `current` of a percentage report: only its fraction is specified

#: (reports, final (current, total, fraction)) following the rules in sdjobs_nb/_progress.py
PROGRESS_CASES = [
    pytest.param([("count", 4, 10), ("count", -5, 10)], (0, 10, 0.0), id="negative"),
    pytest.param([("count", 4, 10), ("count", 15, 10)], (10, 10, 1.0), id="current-over-total"),
    pytest.param([("count", 4, 10), ("count", nan, 10)], (4, 10, 0.4), id="nan"),
    pytest.param([("count", 4, 10), ("count", inf, 10)], (4, 10, 0.4), id="inf"),
    pytest.param([("count", 4, 10), ("count", "seven", 10)], (4, 10, 0.4), id="string"),
    pytest.param([("count", 4, 10), ("count", True, 10)], (4, 10, 0.4), id="bool"),
    pytest.param([("count", 4, 10), ("count", 5, nan)], (5, 10, 0.5), id="nan-total"),
    pytest.param([("percentage", 0.3, None), ("percentage", 2.5, None)], (ANY, None, 1.0), id="fraction-2.5"),
    pytest.param([("percentage", 0.3, None), ("percentage", -1, None)], (ANY, None, 0.0), id="fraction-negative"),
    pytest.param([("percentage", 0.3, None), ("percentage", nan, None)], (ANY, None, 0.3), id="fraction-nan"),
    pytest.param([("percentage", 0.3, None), ("percentage", "half", None)], (ANY, None, 0.3), id="fraction-string"),
    pytest.param([("bytes", 100, 1000), ("bytes", 2000, 1000)], (1000, 1000, 1.0), id="bytes-over-total"),
    pytest.param([("bytes", 100, 1000), ("bytes", -1, -1)], (0, 0, None), id="bytes-negative"),
]


@dataclasses.dataclass
class ReportsProgress(sj.Job):
    """Makes report i only once the `gate` file (if any) holds a number >= i (the test opens it once
    the ticker has published the report before)."""

    NAME = "rel_reports_progress"

    reports: list = dataclasses.field(default_factory=list)
    gate: str = ""

    async def run(self, ctx: sj.JobContext) -> None:
        report = {"count": ctx.report_count_progress, "bytes": ctx.report_bytes_progress}
        for i, (kind, a, b) in enumerate(self.reports, 1):
            while self.gate and gate_value(self.gate) < i:
                await asyncio.sleep(0.005)
            if kind == "percentage":
                ctx.report_percentage_progress(a)
            else:
                report[kind](a, b)


def _sane(p: sj.Progress) -> None:
    for value in (p.current, p.total, p.fraction, p.rate, p.eta_seconds):
        assert value is None or (type(value) in (int, float) and math.isfinite(value)), p
    assert p.current is None or p.current >= 0, p
    assert p.total is None or p.total >= 0, p
    assert p.fraction is None or 0.0 <= p.fraction <= 1.0, p
    if p.current is not None and p.total is not None:
        assert p.current <= p.total, p


@pytest.mark.parametrize(("reports", "final"), PROGRESS_CASES)
async def test_progress_out_of_range_is_clamped_or_ignored(tmp_path: Path, reports: list, final: tuple) -> None:
    library, gate = tmp_path / "library", str(tmp_path / "gate")
    async with sj.JobManager.open(library) as manager:
        handle = await manager.dispatch(ReportsProgress(reports=[list(r) for r in reports], gate=gate))
        seen: list[sj.Progress] = []

        async def watch() -> None:
            async for p in handle.progress():
                seen.append(p)

        watcher = asyncio.create_task(watch())
        for i in range(1, len(reports)):  # the ticker takes a snapshot of each report before the next is made
            before = handle.current_progress
            open_gate(gate, i)
            await until(lambda: handle.current_progress is not before, what=f"a snapshot of report {i}")
        open_gate(gate, len(reports))
        await within(handle.wait())
        await within(watcher)
        stored = (await manager.record(handle.id)).progress
    assert seen, "no progress was published"
    for p in [*seen, stored]:
        _sane(p)
    for got, want in zip((stored.current, stored.total, stored.fraction), final):
        if want is not ANY:
            assert got == (want if want is None else pytest.approx(want))
    tally("progress_out_of_range")


@dataclasses.dataclass
class ReportsStructured(sj.Job):
    """Makes a bad structured report, then a good one, and returns once the `gate` file (if any) holds 1."""

    NAME = "rel_reports_structured"

    case: str = "huge"
    gate: str = ""

    async def run(self, ctx: sj.JobContext) -> str:
        bad: dict[str, Any] = {
            "huge": {"blob": "x" * 200_000},
            "not-json": {"items": {1, 2, 3}},
            "deep-huge": {"nested": [{"a": [1, 2, {"b": "y" * 70_000}]}]},
        }[self.case]
        caught = ""
        try:
            ctx.report_structured_progress("loading", bad)
        except ValueError as e:
            caught = str(e)
        ctx.report_structured_progress("loading", {"files": 3})
        while self.gate and gate_value(self.gate) < 1:
            await asyncio.sleep(0.005)
        return caught


@pytest.mark.parametrize("case", ["huge", "not-json", "deep-huge"])
async def test_bad_structured_progress_raises_and_the_job_goes_on(tmp_path: Path, case: str) -> None:
    library, gate = tmp_path / "library", str(tmp_path / "gate")
    async with sj.JobManager.open(library) as manager:
        handle = await manager.dispatch(ReportsStructured(case=case, gate=gate))
        # the ticker publishes the good report while the job still runs
        await until(lambda: handle.current_progress is not None, what="a progress snapshot")
        assert (handle.current_progress.phase, handle.current_progress.data) == ("loading", {"files": 3})
        open_gate(gate, 1)
        caught = await within(handle.wait())
        assert caught, "report_structured_progress accepted bad data"
        record = await manager.record(handle.id)
        assert record.status is sj.JobStatus.COMPLETED
        assert (record.progress.phase, record.progress.data) == ("loading", {"files": 3})
    ((size,),) = rows(library, "SELECT length(progress) FROM jobs WHERE id=?", (handle.id,))
    assert size < 4096
    tally("bad_structured_progress")


async def test_structured_progress_phase_must_be_text(tmp_path: Path) -> None:
    @dataclasses.dataclass
    class BadPhase(sj.Job):
        NAME = "rel_bad_phase"

        async def run(self, ctx: sj.JobContext) -> str:
            try:
                ctx.report_structured_progress(3, {})  # type: ignore[arg-type]
            except TypeError as e:
                return str(e)
            return ""

    async with sj.JobManager.open(tmp_path / "library") as manager:
        assert "phase must be a str" in await within((await manager.dispatch(BadPhase())).wait())
