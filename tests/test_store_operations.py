"""The store's named write operations write exactly what the old `stage(SQL, tuple)` calls wrote.

Each test plays one story twice, on two fresh stores: once as the manager staged it before the
named operations (statement constants, tuples built by the caller, `_history_row`), once
through the named operations, and compares every row of every table.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest

import sdjobs_nb as sj
from sdjobs_nb._progress import Progress
from sdjobs_nb._records import FinishedJob
from sdjobs_nb._status import JobStatus
from sdjobs_nb._store import store as st
from sdjobs_nb._store.rows import history_row
from sdjobs_nb._store.schema import HISTORY_COLUMNS, JOB_COLUMNS
from sdjobs_nb._store.store import Store, metrics_json, pack_progress

S = JobStatus

TABLES = {
    "jobs": "SELECT * FROM jobs ORDER BY id",
    "job_history": "SELECT * FROM job_history ORDER BY id",
    "job_checkpoints": "SELECT * FROM job_checkpoints ORDER BY job_id",
    "job_errors": "SELECT * FROM job_errors ORDER BY job_id, at, message",
}

METRICS = {"elapsed_seconds": 1.25, "memory_mb": 61.5, "items": 7, "bytes": 2048, "checkpoints": 2,
           "non_critical_errors": 1}
ODD_METRICS = {"items": 3, "custom": [1, 2], "memory_mb": None}
PROGRESS = Progress(kind="count", current=5.0, total=10.0, fraction=0.5, phase="copy", updated_at=3.5)
BYTES_PROGRESS = Progress(kind="bytes", current=1024.0, total=None, fraction=None, message="reading")


def dump(folder: Path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(folder / "jobs.db")
    try:
        return {table: [tuple(r) for r in conn.execute(sql)] for table, sql in TABLES.items()}
    finally:
        conn.close()


def old_history_row(entry, outcome, now: float, metrics_text: str) -> tuple:
    """The manager's `_history_row` before the named operations (verbatim), for the old path."""
    p = entry.progress
    m = entry.metrics
    started = entry.started_at
    return (
        entry.id, entry.name, entry.version, outcome.status.value, entry.parent_id, entry.priority,
        entry.initiated_by, None if entry.context is None else json.dumps(entry.context),
        entry.created_at, started, now,
        None if started is None else now - started,  # duration_s
        None if started is None else started - entry.created_at,  # queue_wait_s
        *((p.kind, p.fraction, p.current, p.total, p.phase) if p is not None else (None,) * 5),
        int(m.get("items", 0)), int(m.get("bytes", 0)), int(m.get("checkpoints", 0)),
        int(m.get("non_critical_errors", 0)), m.get("memory_mb"), outcome.error, metrics_text,
    )


def entry_and_outcome(job: FinishedJob) -> tuple[SimpleNamespace, SimpleNamespace]:
    """What the manager held for `job`: its entry and outcome (duck-typed)."""
    entry = SimpleNamespace(id=job.id, name=job.name, version=job.version, parent_id=job.parent_id,
                            priority=job.priority, initiated_by=job.initiated_by, context=job.context,
                            created_at=job.created_at, started_at=job.started_at, progress=job.progress,
                            metrics=job.metrics)
    outcome = SimpleNamespace(status=job.status, error=job.error, traceback=job.traceback)
    return entry, outcome


def finished(job_id: str, status: JobStatus, **values) -> FinishedJob:
    base = dict(id=job_id, name="story", version=2, status=status, priority=0, created_at=100.0,
                finished_at=200.5)
    base.update(values)
    return FinishedJob(**base)


JOBS = [  # id, name, version, data, priority, seq, parent_id, spawn_key, initiated_by, context, dedup_key, now
    ("j1", "story", 2, b"state-1", 0, 1, None, None, None, None, None, 100.0),
    ("j2", "story", 2, b"state-2", 1, 2, "j1", "k0", "alice", json.dumps({"run": 3, "tag": "x"}), None, 100.5),
    ("j3", "other", 1, b"", -1, 3, None, None, None, json.dumps({}), "dedup-3", 101.0),
    ("j4", "story", 2, b"\x00\x01", 10, 4, "j1", "k1", None, None, None, 101.5),
    ("j5", "story", 2, b"s5", 0, 5, None, None, "bob", None, None, 102.0),
]

FINISHED = [
    finished("j1", S.COMPLETED, result=b"\x93result", started_at=110.25, progress=PROGRESS, metrics=METRICS,
             context=None),
    finished("j2", S.CANCELLED, error="cancelled by the user", started_at=120.0, parent_id="j1",
             initiated_by="alice", context={"run": 3, "tag": "x"}, priority=1, progress=BYTES_PROGRESS,
             metrics=ODD_METRICS),
    finished("j3", S.FAILED, name="other", version=1, priority=-1, error="boom", traceback="Traceback...\nboom",
             context={}, metrics={}),
    finished("j5", S.COMPLETED, result=None, started_at=None, initiated_by="bob", metrics=METRICS),
]


def old_story(store: Store) -> None:
    """The story as the manager staged it with statement constants and tuples."""
    for row in JOBS:
        store.stage_new_job(*row)
    store.stage(st.SET_RUNNING, (110.25, 110.25, "j1"), "j1")
    store.stage(st.SET_PROGRESS, (pack_progress(PROGRESS), metrics_json(METRICS), 111.0, "j1"), "j1")
    store.stage(st.SET_DATA, (b"ck-1", pack_progress(PROGRESS), 112.0, "j1"), "j1")
    store.stage(st.UPSERT_CHECKPOINT, ("j1", 2, b"ck-1", 1, 112.0), "j1")
    store.stage(st.SET_DATA_METRICS, (b"ck-2", pack_progress(None), metrics_json(METRICS), 113.0, "j1"), "j1")
    store.stage(st.UPSERT_CHECKPOINT, ("j1", 2, b"ck-2", 2, 113.0), "j1")
    store.stage(st.INSERT_ERROR, ("j1", 114.0, "a non-critical error"), "j1")
    store.stage(st.INSERT_ERROR, ("j1", 114.0, "another one"), "j1")
    store.stage(st.SET_RUNNING, (120.0, 120.0, "j2"), "j2")
    store.stage(st.SET_PAUSED, ("user", 121.0, pack_progress(None), metrics_json(ODD_METRICS), 121.0, "j2"), "j2")
    store.stage(st.SET_QUEUED, (122.0, "j2"), "j2")
    store.stage(st.SET_RUNNING, (123.0, 123.0, "j2"), "j2")
    store.stage(st.SET_PAUSED_WITH_DATA, ("parent", 124.0, pack_progress(BYTES_PROGRESS), metrics_json(METRICS),
                                          b"paused-state", 124.0, "j2"), "j2")
    store.stage(st.SET_PAUSED, ("interrupted", 125.0, pack_progress(PROGRESS), metrics_json({}), 125.0, "j4"), "j4")
    token = store.stage(st.SET_RUNNING, (130.0, 130.0, "j5"), "j5")
    store.withdraw(token)
    for job in FINISHED:
        entry, outcome = entry_and_outcome(job)
        metrics_text = metrics_json(entry.metrics)
        store.stage(st.SET_FINISHED, (outcome.status.value, outcome.error, outcome.traceback, job.result,
                                      pack_progress(entry.progress), metrics_text, job.finished_at,
                                      entry.started_at, job.finished_at, entry.id), entry.id)
        store.stage_history(old_history_row(entry, outcome, job.finished_at, metrics_text))
        store.stage(st.DROP_CHECKPOINT, (entry.id,), entry.id)  # issue 17: a finished job keeps no state


def new_story(store: Store) -> None:
    """The same story through the named operations."""
    for row in JOBS[:2]:
        store.insert_job(*row)
    for row in JOBS[2:]:
        store.stage_new_job(*row)  # the old name stays, for now
    store.mark_running("j1", 110.25)
    store.save_progress("j1", PROGRESS, METRICS, 111.0)
    store.save_checkpoint("j1", 2, b"ck-1", PROGRESS, 1, 112.0)
    store.save_checkpoint("j1", 2, b"ck-2", None, 2, 113.0, metrics=METRICS)
    store.record_error("j1", 114.0, "a non-critical error")
    store.record_error("j1", 114.0, "another one")
    store.mark_running("j2", 120.0)
    store.mark_paused("j2", "user", 121.0, None, ODD_METRICS)
    store.mark_queued("j2", 122.0)
    store.mark_running("j2", 123.0)
    store.mark_paused("j2", "parent", 124.0, BYTES_PROGRESS, METRICS, data=b"paused-state")
    store.mark_paused("j4", "interrupted", 125.0, PROGRESS, {})
    token = store.mark_running("j5", 130.0)
    assert store.withdraw(token)
    for job in FINISHED:
        store.finish(job)


async def play(folder: Path, story) -> dict[str, list[tuple]]:
    store = await Store.open(folder)
    try:
        story(store)
        await store.commit()
    finally:
        await store.close()
    return dump(folder)


async def test_named_operations_write_the_rows_the_old_statements_wrote(tmp_path):
    old = await play(tmp_path / "old", old_story)
    new = await play(tmp_path / "new", new_story)
    assert new == old
    assert len(old["jobs"]) == 5 and len(old["job_history"]) == 4
    assert len(old["job_checkpoints"]) == 0 and len(old["job_errors"]) == 2  # j1's checkpoint went at its finish
    assert {row[0]: row[4] for row in old["jobs"]} == {"j1": b"", "j2": b"", "j3": b"", "j4": b"\x00\x01",
                                                       "j5": b""}  # finished jobs' saved state is dropped
    by_id = {row[0]: row for row in old["jobs"]}
    assert by_id["j5"][3] == "completed" and by_id["j5"][19] is None  # RUNNING withdrawn: never started
    assert by_id["j4"][3] == "paused"


async def test_each_operation_alone_writes_what_its_statement_wrote(tmp_path):
    """One operation per commit, so each row is compared after every step, not only at the end."""
    steps_old = [
        lambda s: s.stage(st.SET_RUNNING, (1.0, 1.0, "j1"), "j1"),
        lambda s: s.stage(st.SET_PAUSED, ("user", 2.0, pack_progress(PROGRESS), metrics_json(METRICS), 2.0, "j1"), "j1"),
        lambda s: s.stage(st.SET_QUEUED, (3.0, "j1"), "j1"),
        lambda s: s.stage(st.SET_RUNNING, (4.0, 4.0, "j1"), "j1"),
        lambda s: s.stage(st.SET_PROGRESS, (pack_progress(None), metrics_json(ODD_METRICS), 5.0, "j1"), "j1"),
        lambda s: s.stage(st.SET_DATA, (b"d", pack_progress(BYTES_PROGRESS), 6.0, "j1"), "j1"),
        lambda s: s.stage(st.UPSERT_CHECKPOINT, ("j1", 2, b"d", 1, 6.0), "j1"),
        lambda s: s.stage(st.SET_PAUSED_WITH_DATA, ("self", 7.0, None, metrics_json({}), b"e", 7.0, "j1"), "j1"),
        lambda s: s.stage(st.INSERT_ERROR, ("j1", 8.0, "oops"), "j1"),
    ]
    steps_new = [
        lambda s: s.mark_running("j1", 1.0),
        lambda s: s.mark_paused("j1", "user", 2.0, PROGRESS, METRICS),
        lambda s: s.mark_queued("j1", 3.0),
        lambda s: s.mark_running("j1", 4.0),
        lambda s: s.save_progress("j1", None, ODD_METRICS, 5.0),
        lambda s: s.save_checkpoint("j1", 2, b"d", BYTES_PROGRESS, 1, 6.0),
        None,  # the checkpoint row came with save_checkpoint
        lambda s: s.mark_paused("j1", "self", 7.0, None, {}, data=b"e"),
        lambda s: s.record_error("j1", 8.0, "oops"),
    ]
    old_store = await Store.open(tmp_path / "old")
    new_store = await Store.open(tmp_path / "new")
    try:
        for store in (old_store, new_store):
            store.insert_job(*JOBS[0])
            await store.commit()
        for old_step, new_step in zip(steps_old, steps_new):
            old_step(old_store)
            if new_step is not None:
                new_step(new_store)
            if new_step is None or old_step is steps_old[5]:
                continue  # SET_DATA alone is half of save_checkpoint: compare after its checkpoint row
            await old_store.commit()
            await new_store.commit()
            assert dump(tmp_path / "new") == dump(tmp_path / "old")
    finally:
        await old_store.close()
        await new_store.close()


def test_the_history_row_is_the_managers_row_in_schema_order():
    for job in FINISHED:
        entry, outcome = entry_and_outcome(job)
        metrics_text = metrics_json(job.metrics)
        row = history_row(job, metrics_text)
        assert len(row) == len(HISTORY_COLUMNS)
        assert row == old_history_row(entry, outcome, job.finished_at, metrics_text)
    named = dict(zip(HISTORY_COLUMNS, history_row(FINISHED[0], metrics_json(METRICS))))
    assert named["duration_s"] == 200.5 - 110.25 and named["queue_wait_s"] == 110.25 - 100.0
    assert (named["progress_kind"], named["progress_phase"], named["items"]) == ("count", "copy", 7)


async def test_finish_refuses_a_job_that_is_not_finished(tmp_path):
    store = await Store.open(tmp_path / "lib")
    try:
        store.insert_job(*JOBS[0])
        with pytest.raises(ValueError, match="finished job"):
            store.finish(finished("j1", S.RUNNING))
        await store.commit()
    finally:
        await store.close()
    assert dump(tmp_path / "lib")["job_history"] == []


async def _library_with_statuses(folder: Path) -> None:
    store = await Store.open(folder)
    try:
        for row in JOBS:
            store.insert_job(*row)
        store.mark_paused("j1", "user", 110.0, None, {})
        store.mark_paused("j2", "parent", 110.0, None, {})
        store.mark_running("j4", 111.0)
        store.finish(finished("j5", S.COMPLETED, started_at=None))
        await store.commit()
    finally:
        await store.close()


async def test_requeue_queues_paused_jobs_and_commits(tmp_path):
    folder = tmp_path / "lib"
    await _library_with_statuses(folder)
    store = await Store.open(folder)
    try:
        await store.requeue(["j1", "j2"], 200.0)
        assert (await store.job("j1")).status is S.QUEUED  # committed before it returns
    finally:
        await store.close()
    rows = {r[0]: dict(zip(JOB_COLUMNS, r)) for r in dump(folder)["jobs"]}
    for job_id in ("j1", "j2"):
        record = rows[job_id]
        assert (record["status"], record["pause_reason"], record["paused_at"], record["updated_at"]) == (
            "queued", None, None, 200.0)
    assert rows["j3"]["updated_at"] == 101.0  # the others are untouched


@pytest.mark.parametrize("job_id, status", [("j3", "queued"), ("j4", "running"), ("j5", "completed")])
async def test_requeue_refuses_a_job_that_is_not_paused_and_writes_nothing(tmp_path, job_id, status):
    folder = tmp_path / "lib"
    await _library_with_statuses(folder)
    before = dump(folder)
    store = await Store.open(folder)
    try:
        with pytest.raises(sj.InvalidTransition, match=f"job {job_id} cannot go from {status} to queued.*only a paused job"):
            await store.requeue(["j1", job_id], 300.0)  # j1 is paused, but nothing is written
        with pytest.raises(sj.JobNotFound, match="no job with id 'nope'"):
            await store.requeue("nope", 300.0)
        await store.commit()
    finally:
        await store.close()
    assert dump(folder) == before


async def test_named_operations_refuse_a_read_only_library(tmp_path):
    folder = tmp_path / "lib"
    await _library_with_statuses(folder)
    before = dump(folder)
    store = await Store.open(folder, read_only=True)
    try:
        for operation in (lambda: store.insert_job(*JOBS[0]), lambda: store.mark_running("j1", 1.0),
                          lambda: store.mark_queued("j1", 1.0), lambda: store.mark_paused("j1", "user", 1.0, None, {}),
                          lambda: store.finish(FINISHED[0]), lambda: store.save_progress("j1", None, {}, 1.0),
                          lambda: store.save_checkpoint("j1", 1, b"", None, 1, 1.0),
                          lambda: store.record_error("j1", 1.0, "x")):
            with pytest.raises(sj.ReadOnlyLibrary):
                operation()
        with pytest.raises(sj.ReadOnlyLibrary):
            await store.requeue("j1", 1.0)
        assert (await store.job("j1")).status is S.PAUSED  # reads work
    finally:
        await store.close()
    assert dump(folder) == before
