"""Opening a library written by someone else runs no code from it; all SQL is parameterised; log
file names come from job ids only.

The hostile payloads are armed: each test first shows that unpickling (or importing) them
really would create the marker file, then that nothing sdjobs_nb does with the library does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pickle
import re
import sqlite3
import sys
import uuid
from pathlib import Path
from typing import Any

import msgpack
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sdjobs_nb as sj  # noqa: E402
from _workers.jobs import CheckpointJob  # noqa: E402
from _workers.tally import record as tally  # noqa: E402
from _workers.util import counts, integrity, quiet_dead_tasks, rows, within, write  # noqa: E402, F401
from jobs_for_tests import open_gate, steps_done, until  # noqa: E402

UUID_LOG = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.log$")

EVIL = [
    "'; DROP TABLE jobs; --",
    'Robert"); DROP TABLE job_history; --',
    "' OR '1'='1",
    "x' UNION SELECT name, sql FROM sqlite_master --",
    "100% _wild_ \\ card",
    "nul\x00byte",
    "名前 🚀",
]


@dataclasses.dataclass
class Quoted(sj.Job):
    NAME = "rel_o'brien\"; DROP TABLE jobs; --"

    text: str = ""

    async def run(self, ctx: sj.JobContext) -> str:
        ctx.log.info("running with %r", self.text)
        return self.text


@dataclasses.dataclass
class Escaping(sj.Job):
    NAME = "rel_../../escape/../x"

    async def run(self, ctx: sj.JobContext) -> int:
        ctx.log.info("hello from a job whose name looks like a path")
        return 1


class _MakesMarker:
    """Unpickling this creates a directory: proof that a payload would have run."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple:
        return (os.mkdir, (self.path,))


def armed_pickles(marker: Path, proof_dir: Path) -> list[bytes]:
    """Pickles (protocols 0..5) that create `marker` when loaded; checked to be live on `proof_dir`."""
    payloads = []
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        proof = proof_dir / f"proof{protocol}"
        pickle.loads(pickle.dumps(_MakesMarker(proof), protocol=protocol))
        assert proof.is_dir(), "the payload is not armed"
        payloads.append(pickle.dumps(_MakesMarker(marker), protocol=protocol))
    return payloads


def _gate(library: Path) -> str:
    """The gate file (`jobs_for_tests.open_gate`) beside the library; closed unless a test opens it."""
    return str(library.parent / "gate")


async def _library_with_every_kind_of_row(library: Path) -> dict[str, str]:
    """A library with a completed, a failed, an interrupted and a queued job; returns their ids.

    The interrupted one was held at the closed gate beside the library (and still is when resumed).
    """
    async with sj.JobManager.open(library, max_concurrent=1) as manager:
        done = await manager.dispatch(CheckpointJob(n=3, k=1))
        await within(done.wait())
        failed = await manager.dispatch(Quoted(text="x"))
        await within(failed.wait())
        running = await manager.dispatch(CheckpointJob(n=10, k=1, gate=_gate(library)))
        queued = await manager.dispatch(CheckpointJob(n=5, k=1, salt=1))
        await until(lambda: running.current_status is sj.JobStatus.RUNNING)
    return {"completed": done.id, "other": failed.id, "interrupted": running.id, "queued": queued.id}


async def _use_everything(library: Path) -> dict[str, Any]:
    """Open the library and touch every read path: load, resume, run, records, results, frames."""
    seen: dict[str, Any] = {}
    async with sj.JobManager.open(library) as manager:
        await manager.resume_interrupted()

        def settled() -> bool:
            """Every job that can run has run: to its end, or to the closed gate (it stays RUNNING there)."""
            return all(h.id in manager.broken() or h.current_status is sj.JobStatus.RUNNING for h in manager.handles())

        await until(settled, what="every loaded job run to its end or its gate")
        for job_id, status in rows(library, "SELECT id, status FROM jobs"):
            reads = {"record": manager.record(job_id)}
            if status in ("completed", "failed", "cancelled"):
                reads["result"] = manager.result(job_id)
            for name, read in reads.items():
                try:
                    seen[f"{name}:{job_id}"] = await within(read, 5)
                except Exception as e:  # noqa: BLE001 - errors are fine, running code is not
                    seen[f"{name}:{job_id}"] = e
            seen[f"get:{job_id}"] = manager.get(job_id).current_status
        seen["broken"] = manager.broken()
        seen["handles"] = manager.handles()
        seen["history"] = await manager.history()
        seen["metrics"] = await manager.metrics()
        seen["jobs"] = manager.jobs()
    return seen


@pytest.mark.parametrize("column", ["data", "result", "progress"])
async def test_pickle_payloads_in_stored_blobs_never_run(tmp_path: Path, column: str) -> None:
    library, marker = tmp_path / "library", tmp_path / "PWNED"
    ids = await _library_with_every_kind_of_row(library)
    for payload in armed_pickles(marker, tmp_path):
        write(library, f"UPDATE jobs SET {column}=?", (payload,))
        write(library, "UPDATE job_checkpoints SET data=?", (payload,))
        seen = await _use_everything(library)
        assert not marker.exists(), f"a pickle in jobs.{column} ran"
        if column == "data":  # unfinished jobs cannot be loaded from it: reported broken, kept
            assert {ids["interrupted"], ids["queued"]} <= set(seen["broken"])
        assert rows(library, f"SELECT count(*) FROM jobs WHERE {column}=?", (payload,))[0][0] >= 2
        assert integrity(library) == "ok"
    tally("pickle_payload", column=column, protocols=pickle.HIGHEST_PROTOCOL + 1)


HOSTILE_MSGPACK = [
    pytest.param(msgpack.packb({"__class__": "os.system", "__reduce__": ["os.system", ["touch PWNED"]]}), id="dunder-keys"),
    pytest.param(msgpack.packb({"n": msgpack.ExtType(42, pickle.dumps(1))}), id="unknown-ext-type"),
    pytest.param(msgpack.packb({"n": msgpack.ExtType(1, b"not a date")}), id="bad-datetime-ext"),
    pytest.param(msgpack.packb({"n": msgpack.ExtType(4, pickle.dumps((1, 2)))}), id="tuple-ext-holding-pickle"),
    pytest.param(b"\x91" * 100_000 + b"\x00", id="nested-100k-deep"),
    pytest.param(b"\xdd\xff\xff\xff\xff", id="claims-4-billion-items"),
    pytest.param(b"\xdf\xff\xff\xff\xff", id="claims-4-billion-keys"),
    pytest.param(b"\xdb\xff\xff\xff\xff" + b"x" * 10, id="claims-4-GiB-string"),
]


@pytest.mark.parametrize("blob", HOSTILE_MSGPACK)
async def test_hostile_msgpack_state_is_reported_broken(tmp_path: Path, blob: bytes) -> None:
    library = tmp_path / "library"
    ids = await _library_with_every_kind_of_row(library)
    write(library, "UPDATE jobs SET data=? WHERE id IN (?, ?)", (blob, ids["interrupted"], ids["queued"]))
    async with sj.JobManager.open(library) as manager:
        assert ids["queued"] in manager.broken()
        assert await manager.resume_interrupted() == []
        assert set(manager.broken()) == {ids["interrupted"], ids["queued"]}
        assert (await manager.record(ids["completed"])).status is sj.JobStatus.COMPLETED
    assert rows(library, "SELECT count(*) FROM jobs WHERE data=?", (blob,)) == [(2,)]
    assert not (Path.cwd() / "PWNED").exists()
    tally("hostile_msgpack")


async def test_stored_job_names_are_never_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    library, marker = tmp_path / "library", tmp_path / "IMPORTED"
    ids = await _library_with_every_kind_of_row(library)
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    (code_dir / "evil_module_rel.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).mkdir()\nclass Evil: pass\n")
    monkeypatch.syspath_prepend(str(code_dir))
    names = ["evil_module_rel", "evil_module_rel.Evil", "evil_module_rel:Evil", "os.system", "builtins.eval"]
    for name in names:
        write(library, "UPDATE jobs SET name=? WHERE id IN (?, ?)", (name, ids["interrupted"], ids["queued"]))
        async with sj.JobManager.open(library) as manager:
            assert await manager.resume_interrupted() == []
            broken = manager.broken()
            assert {ids["interrupted"], ids["queued"]} <= set(broken)
            assert all("no job class is registered" in broken[i] for i in (ids["interrupted"], ids["queued"]))
    assert "evil_module_rel" not in sys.modules
    assert not marker.exists()
    tally("stored_name_import", names=len(names))


# --- SQL is parameterised ---------------------------------------------------------------------------


@pytest.mark.parametrize("evil", EVIL)
async def test_hostile_strings_round_trip_and_drop_nothing(tmp_path: Path, evil: str) -> None:
    library = tmp_path / "library"
    async with sj.JobManager.open(library) as manager:
        first = await manager.dispatch(Quoted(text=evil), initiated_by=evil, context={"q": evil, evil: [evil]},
                                       dedup_key=evil)
        assert await within(first.wait()) == evil
        record = await manager.record(first.id)
        assert record.name == Quoted.NAME
        assert (record.initiated_by, record.context, record.dedup_key) == (evil, {"q": evil, evil: [evil]}, evil)

        slow = await manager.dispatch(CheckpointJob(n=10, k=1, gate=_gate(library)), dedup_key=evil)  # held: unfinished
        again = await manager.dispatch(CheckpointJob(n=1), dedup_key=evil)
        assert again.id == slow.id  # dedup matches the exact key, quotes and all
        other = await manager.dispatch(CheckpointJob(n=1), dedup_key=evil + "%")
        assert other.id != slow.id  # and nothing else (no LIKE, no wildcards)
        await within(other.wait())
        await slow.cancel()

        before = counts(library)
        for hostile_id in (evil, f"{first.id}' OR '1'='1", "' OR 1=1 --"):
            with pytest.raises(sj.JobNotFound):
                await manager.record(hostile_id)
            with pytest.raises(sj.JobNotFound):
                manager.get(hostile_id)
            with pytest.raises((sj.JobNotFound, sj.InvalidTransition)):
                await manager.cancel(hostile_id)
            with pytest.raises((sj.JobNotFound, sj.InvalidTransition)):
                await manager.pause(hostile_id)
        with pytest.raises(sj.UnknownJob):
            await manager.dispatch_by_name(evil, {})
        assert counts(library) == before

        history = await manager.history(name=evil)
        assert len(history) == 0
        named = await manager.history(name=Quoted.NAME)
        assert list(named["id"]) == [first.id]
        per_name = (await manager.metrics()).reset_index()
        assert Quoted.NAME in set(per_name["name"])

    tables = {r[0] for r in rows(library, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"jobs", "job_history", "job_checkpoints", "job_errors"} <= tables
    assert counts(library)["jobs"] == 3  # first, slow (also returned for the duplicate), other
    assert integrity(library) == "ok"
    tally("hostile_strings")


async def test_hostile_non_critical_error_messages(tmp_path: Path) -> None:
    @dataclasses.dataclass
    class Complains(sj.Job):
        NAME = "rel_complains"

        async def run(self, ctx: sj.JobContext) -> None:
            for text in EVIL:
                ctx.report_non_critical_error(text)

    library = tmp_path / "library"
    async with sj.JobManager.open(library) as manager:
        handle = await manager.dispatch(Complains())
        await within(handle.wait())
        assert [message for _, message in await manager.errors(handle.id)] == EVIL


# --- log file names ---------------------------------------------------------------------------------


async def test_log_files_are_named_by_job_id_only(tmp_path: Path) -> None:
    library = tmp_path / "library"
    async with sj.JobManager.open(library, file_log=True) as manager:
        handles = [await manager.dispatch(Quoted(text=evil)) for evil in EVIL]
        handles.append(await manager.dispatch(Escaping()))
        handles.append(await manager.dispatch(CheckpointJob(n=3, k=1)))
        for handle in handles:
            await within(handle.wait())
    logs = sorted(p.name for p in (library / "logs").iterdir())
    assert all(UUID_LOG.match(name) for name in logs), logs
    assert set(logs) <= {f"{h.id}.log" for h in handles}
    assert {p.name for p in tmp_path.iterdir()} == {"library"}  # nothing escaped the library
    assert {p.name for p in library.iterdir()} <= {"jobs.db", "jobs.db-wal", "jobs.db-shm", "jobs.lock", "logs"}
    assert not list(tmp_path.rglob("*escape*"))
    tally("log_names", jobs=len(handles))


@pytest.mark.parametrize("hostile_id", ["../../outside", "/tmp/abs", str(uuid.uuid4()) + "/../x"])
async def test_crafted_job_id_never_names_a_file(tmp_path: Path, hostile_id: str) -> None:
    """A tampered id is never used as a file name, and that one job does not block the others."""
    library, gate = tmp_path / "library", _gate(tmp_path / "library")
    open_gate(gate, 2)
    async with sj.JobManager.open(library) as manager:
        handle = await manager.dispatch(CheckpointJob(n=10, k=1, gate=gate))
        await until(lambda: steps_done(handle) == 2)  # it runs, and waits at its gate for the close
    write(library, "UPDATE jobs SET id=? WHERE id=?", (hostile_id, handle.id))
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))

    async with sj.JobManager.open(library, file_log=True, max_concurrent=1) as manager:
        await manager.resume_interrupted()
        open_gate(gate, 3)
        # the tampered job is set aside, or it has run a step (so its log is open) and waits at its gate
        await until(lambda: hostile_id in manager.broken() or steps_done(manager.get(hostile_id)) == 3,
                    what="the tampered job set aside or running")
        after = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
        new = [p for p in after if p not in before]
        allowed = {"library/logs", "library/jobs.db-wal", "library/jobs.db-shm"}
        assert all(p in allowed or (p.startswith("library/logs/") and UUID_LOG.match(Path(p).name)) for p in new), new
        assert not Path("/tmp/abs.log").exists()
        good = await manager.dispatch(CheckpointJob(n=3, k=1))
        try:
            result = await within(good.wait(), 30)
        except asyncio.TimeoutError:
            result = None
        if hostile_id in manager.broken() or manager.get(hostile_id).current_status is sj.JobStatus.PAUSED:
            await manager.cancel(hostile_id)  # end the test without the tampered job running on
    assert result is not None, "one job with a tampered id blocked every other job of the library"
    tally("crafted_job_id")
