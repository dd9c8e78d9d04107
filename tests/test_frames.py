"""History, metrics and active jobs as DataFrames (issue 6); helpers shared with the plot and CLI tests."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import sqlite3
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest

import sdjobs_nb as sj
from sdjobs_nb._query import to_epoch
from sdjobs_nb._store import analytics
from sdjobs_nb._store.schema import CREATE


@dataclass
class Tally(sj.Job):
    """Counts to `total`; fails at the end when `fail` is set."""

    NAME = "frames_test_tally"
    total: int = 3
    fail: bool = False
    delay: float = 0.0
    done: int = 0

    async def run(self, ctx: sj.JobContext) -> int:
        while self.done < self.total:
            await ctx.check_interrupted()
            await asyncio.sleep(self.delay)
            self.done += 1
            ctx.report_count_progress(self.done, self.total)
        if self.fail:
            raise ValueError(f"failed after {self.done}")
        return self.done


@dataclass
class Gate(sj.Job):
    """Runs until the test opens `GATES[key]` (or until paused/cancelled)."""

    NAME = "frames_test_gate"
    key: str = "default"
    steps: int = 0

    async def run(self, ctx: sj.JobContext) -> int:
        gate = GATES.setdefault(self.key, asyncio.Event())
        while not gate.is_set():
            await ctx.check_interrupted()
            self.steps += 1
            ctx.report_count_progress(self.steps, 1000)
            await asyncio.sleep(0.01)
        return self.steps


@dataclass
class Parent(sj.Job):
    """Spawns `children` Tally jobs and waits for them."""

    NAME = "frames_test_parent"
    children: int = 2

    async def run(self, ctx: sj.JobContext) -> int:
        ids = await ctx.spawn_children([Tally(total=2) for _ in range(self.children)])
        return sum(await ctx.wait_for_children(ids))


GATES: dict[str, asyncio.Event] = {}


def history_row(**values: Any) -> dict[str, Any]:
    """A full job_history row as the manager writes it, with `values` overriding the defaults."""
    created = values.pop("created_at", 1_700_000_000.0)
    started = values.pop("started_at", created + 1.0)
    finished = values.pop("finished_at", (started if started is not None else created) + 10.0)
    row = {
        "id": str(uuid.uuid4()), "name": "job", "version": 1, "status": "completed", "parent_id": None,
        "priority": 0, "initiated_by": None, "context": None, "created_at": created, "started_at": started,
        "finished_at": finished, "duration_s": None if started is None else finished - started,
        "queue_wait_s": None if started is None else started - created, "progress_kind": None,
        "progress_fraction": None, "progress_current": None, "progress_total": None, "progress_phase": None,
        "items": 0, "bytes": 0, "checkpoints": 0, "non_critical_errors": 0, "memory_mb": None, "error": None,
        "metrics": "{}",
    }
    row.update(values)
    return row


async def add_history(manager: sj.JobManager, rows: list[dict[str, Any]]) -> None:
    """Write finished-job rows straight into the library's history (for big or exact cases)."""
    for row in rows:
        manager.store.stage_history(row)
    await manager.store.commit()


async def until(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


async def finish_three(manager: sj.JobManager) -> dict[str, str]:
    """One completed, one failed, one cancelled job; return status -> id."""
    done = await manager.dispatch(Tally(total=3), initiated_by="tester", context={"batch": 7})
    await done.wait()
    failed = await manager.dispatch(Tally(total=2, fail=True))
    with pytest.raises(sj.JobFailed):
        await failed.wait()
    gate = await manager.dispatch(Gate(key=str(uuid.uuid4())), priority=sj.Priority.HIGH)
    await until(lambda: gate.current_status is sj.JobStatus.RUNNING)
    await gate.cancel()
    return {"completed": done.id, "failed": failed.id, "cancelled": gate.id}


# --- history ------------------------------------------------------------------------------------

HISTORY_COLUMNS = [
    "id", "name", "version", "status", "parent_id", "priority", "initiated_by", "context",
    "created_at", "started_at", "finished_at", "duration_s", "queue_wait_s", "progress_fraction",
    "progress_current", "progress_total", "progress_kind", "progress_phase", "items", "bytes",
    "checkpoints", "non_critical_errors", "memory_mb", "error",
]


def check_dtypes(df: pd.DataFrame) -> None:
    assert list(df.columns) == HISTORY_COLUMNS
    for c in ("id", "name", "parent_id", "initiated_by", "progress_kind", "progress_phase", "error"):
        assert pd.api.types.is_string_dtype(df[c].dtype), c
    assert isinstance(df["status"].dtype, pd.CategoricalDtype)
    assert list(df["status"].cat.categories) == ["completed", "failed", "cancelled"]
    for c in ("created_at", "started_at", "finished_at"):
        assert isinstance(df[c].dtype, pd.DatetimeTZDtype) and str(df[c].dt.tz) == "UTC", c
    for c in ("version", "priority", "items", "bytes", "checkpoints", "non_critical_errors"):
        assert df[c].dtype == np.int64, c
    for c in ("duration_s", "queue_wait_s", "progress_fraction", "progress_current", "progress_total", "memory_mb"):
        assert df[c].dtype == np.float64, c
    assert df["context"].dtype == object


async def test_history_has_typed_columns_newest_first(manager):
    ids = await finish_three(manager)
    df = await manager.history()
    check_dtypes(df)
    assert list(df["id"]) == [ids["cancelled"], ids["failed"], ids["completed"]]
    assert df["finished_at"].is_monotonic_decreasing
    done = df.set_index("id").loc[ids["completed"]]
    assert done["status"] == "completed" and done["name"] == "frames_test_tally"
    assert done["initiated_by"] == "tester" and done["context"] == {"batch": 7}
    assert done["items"] == 3 and done["progress_current"] == 3 and done["progress_fraction"] == 1.0
    assert done["progress_kind"] == "count" and pd.isna(done["error"]) and pd.isna(done["parent_id"])
    assert done["duration_s"] == pytest.approx((done["finished_at"] - done["started_at"]).total_seconds(), abs=2e-6)
    assert done["queue_wait_s"] >= 0 and done["created_at"] <= done["started_at"] <= done["finished_at"]
    failed = df.set_index("id").loc[ids["failed"]]
    assert failed["error"] == "ValueError: failed after 2" and failed["status"] == "failed"
    cancelled = df.set_index("id").loc[ids["cancelled"]]
    assert cancelled["priority"] == int(sj.Priority.HIGH) and cancelled["status"] == "cancelled"


async def test_empty_history_keeps_columns_and_dtypes(manager):
    df = await manager.history()
    assert len(df) == 0
    check_dtypes(df)


async def test_history_filters(manager):
    ids = await finish_three(manager)
    assert set((await manager.history(status="failed"))["id"]) == {ids["failed"]}
    assert set((await manager.history(status=[sj.JobStatus.COMPLETED, "Cancelled"]))["id"]) == {
        ids["completed"], ids["cancelled"]}
    assert len(await manager.history(name="frames_test_gate")) == 1
    assert len(await manager.history(name=["frames_test_gate", "frames_test_tally"])) == 3
    assert len(await manager.history(name="nothing")) == 0
    assert len(await manager.history(since=dt.timedelta(minutes=5))) == 3
    assert len(await manager.history(since="1h")) == 3
    assert len(await manager.history(until=dt.timedelta(minutes=5))) == 0
    assert len(await manager.history(since=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=5))) == 0
    assert len(await manager.history(until=pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=5))) == 3
    newest = await manager.history(limit=1)
    assert list(newest["id"]) == [ids["cancelled"]]
    assert len(await manager.history(limit=0)) == 0
    middle = (await manager.history()).iloc[1]["finished_at"]
    assert list((await manager.history(since=middle))["id"]) == [ids["cancelled"], ids["failed"]]
    assert list((await manager.history(until=middle.isoformat()))["id"]) == [ids["completed"]]


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"since": "last tuesday"}, "cannot read 'last tuesday' as a time"),
        ({"until": object()}, "cannot use a object"),
        ({"since": float("nan")}, "not a finite number"),
        ({"since": pd.NaT}, "NaT is not a time"),
        ({"status": "running"}, "status 'running' is not one of completed, failed, cancelled"),
        ({"status": 3}, "status must be a str or a list of str"),
        ({"name": 5}, "name must be a str or a list of str"),
        ({"limit": -1}, "limit must be an int >= 0"),
        ({"limit": True}, "limit must be an int >= 0"),
    ],
)
async def test_bad_filters_raise_a_clear_value_error(manager, filters, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        await manager.history(**filters)


def test_time_forms_agree():
    now = 1_700_000_000.0
    utc = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
    expected = utc.timestamp()
    assert to_epoch(utc) == expected
    assert to_epoch(pd.Timestamp(utc)) == expected
    assert to_epoch("2024-05-01T12:00:00Z") == expected
    assert to_epoch("2024-05-01T14:00:00+02:00") == expected
    assert to_epoch(np.datetime64("2024-05-01T12:00:00")) == expected
    assert to_epoch(expected) == expected
    naive = dt.datetime(2024, 5, 1, 12, 0)
    assert to_epoch(naive) == naive.timestamp() == to_epoch(pd.Timestamp(naive)) == to_epoch("2024-05-01T12:00")
    assert to_epoch(dt.date(2024, 5, 1)) == dt.datetime(2024, 5, 1).timestamp()
    assert to_epoch(dt.timedelta(hours=2), now=now) == now - 7200
    assert to_epoch("90s", now=now) == now - 90
    assert to_epoch("15 min ago", now=now) == now - 900
    assert to_epoch("7d", now=now) == now - 7 * 86400


# --- big histories: rows written straight to the store -----------------------------------------


async def test_large_history_matches_the_table(manager, library):
    """Past the sample size, columns constant, varying late, or breaking a difference still read right."""
    n = 5000
    rows = [history_row(name=f"job{i % 7}", created_at=1e9 + i, items=i, finished_at=1e9 + i + 10.5)
            for i in range(n)]
    rows[3].update(error="early failure", status="failed", parent_id="p-1", context='{"a": [1, 2]}',
                   initiated_by="someone", progress_phase="phase", memory_mb=12.5, checkpoints=4)
    rows[7].update(duration_s=99.0, queue_wait_s=None, version=2, priority=-1, non_critical_errors=1)
    rows[11].update(started_at=None, duration_s=None, queue_wait_s=None, status="cancelled")
    rows[13].update(progress_kind="count", progress_fraction=0.5, progress_current=1.0, progress_total=2.0)
    await add_history(manager, rows)
    df = await manager.history()
    check_dtypes(df)
    assert len(df) == n
    truth = db_frame(library)
    pd.testing.assert_frame_equal(df.reset_index(drop=True), truth, check_dtype=False)
    for filters, keep in (({"name": ["job3", "job5"]}, truth["name"].isin(["job3", "job5"])),
                          ({"since": 1e9 + 1000}, truth["finished_at"] >= pd.Timestamp(1e9 + 1000, unit="s", tz="UTC")),
                          ({"status": "completed", "until": 1e9 + 4000},
                           (truth["status"] == "completed") & (truth["finished_at"] < pd.Timestamp(1e9 + 4000, unit="s", tz="UTC")))):
        pd.testing.assert_frame_equal(await manager.history(**filters), truth[keep].reset_index(drop=True),
                                      check_dtype=False, check_categorical=False)
        pd.testing.assert_frame_equal(await manager.history(**filters, limit=1300),
                                      truth[keep].iloc[:1300].reset_index(drop=True),
                                      check_dtype=False, check_categorical=False)


async def test_large_history_constant_columns_and_limits(manager, library):
    n = 3000
    await add_history(manager, [history_row(created_at=1e9 + i, finished_at=1e9 + i + 5, bytes=7) for i in range(n)])
    df = await manager.history()
    assert len(df) == n and (df["bytes"] == 7).all() and df["error"].isna().all() and df["context"].isna().all()
    assert (df["status"] == "completed").all() and (df["duration_s"] == 4.0).all()
    pd.testing.assert_frame_equal(df, db_frame(library), check_dtype=False)
    top = await manager.history(limit=2500)
    pd.testing.assert_frame_equal(top, df.iloc[:2500], check_dtype=False)
    assert list((await manager.history(limit=100))["id"]) == list(df["id"].iloc[:100])


async def test_history_is_newest_first_whatever_the_insert_order(manager, library):
    finished = [1e9 + (i * 7919) % 2003 for i in range(2003)]  # a permutation, inserted out of order
    finished[5] = finished[6] = 5e9                             # a tie: the later insert comes first
    rows = [history_row(created_at=1e9 - 100, finished_at=f) for f in finished]
    await add_history(manager, rows)
    df = await manager.history()
    assert df["finished_at"].is_monotonic_decreasing
    assert list(df["id"].iloc[:2]) == [rows[6]["id"], rows[5]["id"]]
    assert list((await manager.history(limit=2))["id"]) == [rows[6]["id"], rows[5]["id"]]


def test_a_limited_read_walks_the_finished_index(tmp_path):
    """history(limit=100) reads the newest rows by the finished_at index, not the whole table."""
    db = tmp_path / "jobs.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript(CREATE)
    conn.execute("BEGIN")
    conn.executemany(f"INSERT INTO job_history (id, name, version, status, priority, created_at, finished_at) "
                     f"VALUES (?, 'j', 1, 'completed', 0, ?, ?)", [(str(i), i, i + 1.0) for i in range(20_000)])
    conn.execute("COMMIT")
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    columns = analytics.read_history(conn, analytics.HistoryQuery(limit=100))
    conn.set_trace_callback(None)
    assert columns.length == 100 and next(columns.fetched_values("id")) == "19999"
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    for sql in selects:
        plan = " ".join(str(r[-1]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
        assert "USING INDEX history_by_finished" in plan and "TEMP B-TREE" not in plan, plan


def test_a_check_that_sees_other_rows_is_not_trusted(tmp_path):
    """The second connection's snapshot may be newer: if its rows differ, its answer is dropped."""
    db = tmp_path / "jobs.db"
    conn = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(CREATE)
    columns = ", ".join(HISTORY_COLUMNS)
    rows = [history_row(created_at=1e9 + i) for i in range(1500)]
    conn.execute("BEGIN")
    conn.executemany(f"INSERT INTO job_history ({columns}) VALUES ({', '.join('?' * len(HISTORY_COLUMNS))})",
                     [[r[c] for c in HISTORY_COLUMNS] for r in rows])
    conn.execute("COMMIT")
    conn.execute("BEGIN")
    sample = conn.execute(f"SELECT {analytics._select(analytics.HISTORY_FIELDS)} FROM job_history LIMIT 1000").fetchall()
    candidates = analytics._Shortcuts.from_sample(sample)
    assert "error" in candidates.constants
    check = analytics._ParallelCheck(conn, candidates, "FROM job_history", [])
    other = sqlite3.connect(db)
    late = history_row(error="late failure")
    other.execute(f"INSERT INTO job_history ({columns}) VALUES ({', '.join('?' * len(HISTORY_COLUMNS))})",
                  [late[c] for c in HISTORY_COLUMNS])
    other.commit()
    check._thread.start()
    assert check.result() is None  # so the reader confirms on its own snapshot instead
    assert candidates.confirmed(conn, "FROM job_history", []) == candidates
    conn.execute("COMMIT")
    conn.execute("BEGIN")
    check = analytics._ParallelCheck.start(conn, candidates, "FROM job_history", [])
    assert "error" not in check.result().constants
    conn.execute("COMMIT")


async def test_reading_a_big_history_leaves_the_loop_free(manager, monkeypatch):
    """The DataFrame is built off the loop: the build waits for the loop to take a turn meanwhile."""
    from sdjobs_nb.frames import _history

    await add_history(manager, [history_row(created_at=1e9 + i, items=i) for i in range(60_000)])
    reading, loop_ran = threading.Event(), threading.Event()
    build = _history.build_history

    def build_once_the_loop_ran(columns):
        reading.set()
        assert loop_ran.wait(60), "the event loop did not run while history() read"
        return build(columns)

    monkeypatch.setattr(_history, "build_history", build_once_the_loop_ran)

    async def loop_side() -> None:
        while not reading.is_set():
            await asyncio.sleep(0.001)
        loop_ran.set()

    turn = asyncio.get_running_loop().create_task(loop_side())
    df = await manager.history()
    await turn
    assert len(df) == 60_000


# --- metrics ------------------------------------------------------------------------------------


def add_metrics_index(library) -> None:
    """Create the optional index that lets metrics() read ordered durations (as the schema may)."""
    conn = sqlite3.connect(library / "jobs.db")
    try:
        conn.execute(f"CREATE INDEX IF NOT EXISTS {analytics.METRICS_INDEX} ON job_history "
                     f"({', '.join(analytics.METRICS_INDEX_COLUMNS)})")
        conn.commit()
    finally:
        conn.close()


@pytest.mark.parametrize("indexed", [False, True], ids=["sorted-rows", "ordered-index"])
async def test_metrics_match_hand_computed_values(manager, library, indexed):
    if indexed:
        add_metrics_index(library)
    t = 1e9
    a_durations = [1.0, 2.0, 3.0, 4.0, 10.0]
    rows = [history_row(name="a", created_at=t, started_at=t + 0.5 * (i + 1), finished_at=t + 0.5 * (i + 1) + d,
                        items=10 * (i + 1), status=s)
            for i, (d, s) in enumerate(zip(a_durations, ["completed", "completed", "failed", "completed", "cancelled"]))]
    rows += [history_row(name="b", created_at=t, started_at=t + 2, finished_at=t + 8, items=30),
             history_row(name="b", created_at=t, started_at=None, finished_at=t + 3, status="cancelled")]
    await add_history(manager, rows)
    m = await manager.metrics()
    assert list(m.index) == ["a", "b"] and m.index.name == "name"
    assert list(m.columns) == ["count", "completed", "failed", "cancelled", "failure_rate", "duration_mean_s",
                               "duration_median_s", "duration_p95_s", "duration_max_s", "items_per_s",
                               "queue_wait_mean_s"]
    a, b = m.loc["a"], m.loc["b"]
    assert (a["count"], a["completed"], a["failed"], a["cancelled"]) == (5, 3, 1, 1)
    assert a["failure_rate"] == pytest.approx(1 / 5)
    assert a["duration_mean_s"] == pytest.approx(4.0)
    assert a["duration_median_s"] == pytest.approx(3.0)
    assert a["duration_p95_s"] == pytest.approx(4.0 + 0.8 * (10.0 - 4.0))  # linear, as pandas' quantile
    assert a["duration_max_s"] == pytest.approx(10.0)
    assert a["items_per_s"] == pytest.approx(150 / 20.0)
    assert a["queue_wait_mean_s"] == pytest.approx((0.5 + 1.0 + 1.5 + 2.0 + 2.5) / 5)
    assert (b["count"], b["completed"], b["cancelled"], b["failure_rate"]) == (2, 1, 1, 0.0)
    assert b["duration_mean_s"] == b["duration_median_s"] == b["duration_p95_s"] == pytest.approx(6.0)
    assert b["items_per_s"] == pytest.approx(5.0) and b["queue_wait_mean_s"] == pytest.approx(2.0)
    assert m["count"].dtype == np.int64 and m["failure_rate"].dtype == np.float64


@pytest.mark.parametrize("indexed", [False, True], ids=["sorted-rows", "ordered-index"])
async def test_metrics_quantiles_for_every_group_size(manager, library, indexed):
    if indexed:
        add_metrics_index(library)
    rng = np.random.default_rng(6)
    rows = []
    for size in (1, 2, 3, 19, 20, 21, 101):
        durations = rng.exponential(5.0, size).round(3)
        rows += [history_row(name=f"n{size:03d}", created_at=1e9, started_at=1e9 + 1, finished_at=1e9 + 1 + d)
                 for d in durations]
    rows.append(history_row(name="n000", started_at=None))  # never ran: no duration at all
    await add_history(manager, rows)
    m = await manager.metrics()
    for size in (1, 2, 3, 19, 20, 21, 101):
        durations = np.array([r["duration_s"] for r in rows if r["name"] == f"n{size:03d}"])
        row = m.loc[f"n{size:03d}"]
        assert row["duration_median_s"] == pytest.approx(np.percentile(durations, 50))
        assert row["duration_p95_s"] == pytest.approx(np.percentile(durations, 95))
    assert m.loc["n000", "count"] == 1 and np.isnan(m.loc["n000", "duration_median_s"])
    since = await manager.metrics(since=1e9 + 1 + 5.0)
    late = np.array([r["duration_s"] for r in rows if r["name"] == "n101" and r["duration_s"] >= 5.0])
    assert since.loc["n101", "count"] == len(late)
    assert since.loc["n101", "duration_median_s"] == pytest.approx(np.percentile(late, 50))
    assert since.loc["n101", "duration_p95_s"] == pytest.approx(np.percentile(late, 95))


async def test_metrics_group_and_since(manager):
    rows = [history_row(name="x", finished_at=1e9 + i, status="failed" if i % 2 else "completed", created_at=1e9 - 20)
            for i in range(6)]
    await add_history(manager, rows)
    by_status = await manager.metrics(by="status")
    assert dict(by_status["count"]) == {"completed": 3, "failed": 3}
    assert by_status.loc["failed", "failure_rate"] == 1.0
    recent = await manager.metrics(since=1e9 + 4)
    assert recent.loc["x", "count"] == 2
    empty = await manager.metrics(since=dt.timedelta(seconds=1))
    assert len(empty) == 0 and "duration_p95_s" in empty.columns
    with pytest.raises(ValueError, match="grouped by name"):
        await manager.metrics(by="error")


async def test_metrics_of_real_jobs_agree_with_history(manager):
    await finish_three(manager)
    for _ in range(3):
        await (await manager.dispatch(Tally(total=4))).wait()
    df = await manager.history()
    m = await manager.metrics()
    tally = df[df["name"] == "frames_test_tally"]
    row = m.loc["frames_test_tally"]
    assert row["count"] == len(tally) == 5 and row["failed"] == 1
    assert row["duration_mean_s"] == pytest.approx(tally["duration_s"].mean())
    assert row["duration_median_s"] == pytest.approx(tally["duration_s"].median())
    assert row["duration_p95_s"] == pytest.approx(tally["duration_s"].quantile(0.95))
    assert row["items_per_s"] == pytest.approx(tally["items"].sum() / tally["duration_s"].sum())


# --- active jobs --------------------------------------------------------------------------------


async def test_jobs_shows_unfinished_jobs_live(manager, library):
    key = str(uuid.uuid4())
    running = await manager.dispatch(Gate(key=key), initiated_by="me", context={"k": 1})
    paused = await manager.dispatch(Gate(key=key + "p"))
    await until(lambda: paused.current_status is sj.JobStatus.RUNNING)
    await paused.pause()
    queued_manager_full = [await manager.dispatch(Gate(key=key + str(i))) for i in range(4)]
    await until(lambda: running.current_progress is not None and running.current_progress.current >= 3)
    jobs = manager.jobs()
    assert isinstance(jobs["status"].dtype, pd.CategoricalDtype)
    assert list(jobs["status"].cat.categories) == ["queued", "running", "paused"]
    by_id = jobs.set_index("id")
    assert by_id.loc[running.id, "status"] == "running"
    assert by_id.loc[running.id, "progress_current"] >= 3 and by_id.loc[running.id, "progress_kind"] == "count"
    assert by_id.loc[running.id, "initiated_by"] == "me" and by_id.loc[running.id, "context"] == {"k": 1}
    assert by_id.loc[paused.id, "status"] == "paused" and by_id.loc[paused.id, "pause_reason"] == "user"
    assert (by_id["status"] == "queued").sum() == 1  # 4 slots: three gates run, one waits
    assert str(jobs["created_at"].dt.tz) == "UTC" and jobs["created_at"].is_monotonic_increasing
    async with sj.JobManager.open(library, read_only=True) as reader:
        seen = reader.jobs().set_index("id")
        assert set(seen.index) == set(by_id.index)
        assert seen.loc[paused.id, "status"] == "paused"
    for handle in [running, paused, *queued_manager_full]:
        await handle.cancel()
    assert len(manager.jobs()) == 0 and len(await manager.history(status="cancelled")) == 6


async def test_read_only_view_reads_history_and_metrics(manager, library):
    await finish_three(manager)
    async with sj.JobManager.open(library, read_only=True) as reader:
        pd.testing.assert_frame_equal(await reader.history(), await manager.history())
        pd.testing.assert_frame_equal(await reader.metrics(), await manager.metrics())


async def test_a_closed_manager_says_so(library):
    manager = await sj.JobManager.open(library)
    await manager.close()
    with pytest.raises(sj.ManagerClosed):
        await manager.history()
    with pytest.raises(sj.ManagerClosed):
        manager.jobs()


async def test_without_pandas_the_error_names_the_extra(manager, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    for call in (manager.history(), manager.metrics(), manager.plot_durations(), manager.plot_timeline()):
        with pytest.raises(sj.MissingExtra, match=re.escape("pip install 'sdjobs-nb[frames]'")):
            await call
    with pytest.raises(ImportError, match="pandas"):
        manager.jobs()


def test_import_needs_neither_pandas_nor_matplotlib():
    code = ("import sys; sys.modules['pandas'] = None; sys.modules['matplotlib'] = None\n"
            "import sdjobs_nb, sdjobs_nb.frames, sdjobs_nb.cli\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- ground truth -------------------------------------------------------------------------------


def db_frame(library) -> pd.DataFrame:
    """Read job_history with plain sqlite3 + pandas, typed like history() (the slow obvious way)."""
    conn = sqlite3.connect(library / "jobs.db")
    try:
        raw = pd.read_sql(f"SELECT {', '.join(HISTORY_COLUMNS)} FROM job_history "
                          f"ORDER BY finished_at DESC, rowid DESC", conn)
    finally:
        conn.close()
    for c in ("created_at", "started_at", "finished_at"):
        raw[c] = pd.to_datetime(np.floor(raw[c].astype(float) * 1e6), unit="us", utc=True).astype("datetime64[us, UTC]")
    raw["status"] = pd.Categorical(raw["status"], categories=["completed", "failed", "cancelled"])
    raw["context"] = [None if v is None or v != v else json.loads(v) for v in raw["context"]]
    for c in ("duration_s", "queue_wait_s", "progress_fraction", "progress_current", "progress_total", "memory_mb"):
        raw[c] = raw[c].astype(float)
    for c in ("parent_id", "initiated_by", "progress_kind", "progress_phase", "error"):
        raw[c] = raw[c].astype(pd.Series(["x"]).dtype)
    return raw
