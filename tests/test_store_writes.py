"""How staged writes reach jobs.db: grouping, NULLs, ids, metrics text, index upgrades (issue 2)."""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import sys
import uuid

import pytest

import sdjobs_nb as sj
from sdjobs_nb._ids import new_job_id
from sdjobs_nb._store.batch import apply_ops, group_ops
from sdjobs_nb._store.store import metrics_json
from jobs_for_tests import Add, Steps
from support import db_rows

INSERT = "INSERT INTO t (id, v, note) VALUES (?, ?, ?)"
UPSERT = ("INSERT INTO t (id, v, note) VALUES (?, ?, ?) "
          "ON CONFLICT(id) DO UPDATE SET v=excluded.v + t.v, note=excluded.note")
SET_V = "UPDATE t SET v=? WHERE id=?"
SET_NOTE = "UPDATE t SET note=coalesce(?, note || '!') WHERE id=?"
LOG = "INSERT INTO log (id, v) VALUES (?, ?)"


def table() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY, v INTEGER, note TEXT)")
    conn.execute("CREATE TABLE log (n INTEGER PRIMARY KEY, id TEXT, v)")
    return conn


def contents(conn: sqlite3.Connection) -> list[list[tuple]]:
    """Rows of t, and each job's log lines in the order written (jobs' lines may interleave differently)."""
    return [conn.execute("SELECT id, v, typeof(v), note FROM t ORDER BY id").fetchall(),
            conn.execute("SELECT id, v, typeof(v) FROM log ORDER BY id, n").fetchall()]


def random_ops(seed: int, keys: int, steps: int) -> list:
    """A random mix of every statement form, as staged by many jobs."""
    import random

    rng = random.Random(seed)
    ops, created = [], set()
    for step in range(steps):
        k = f"k{rng.randrange(keys)}"
        if k not in created:
            ops.append((INSERT, (k, step, None), k))
            created.add(k)
            continue
        choice = rng.random()
        if choice < 0.3:
            ops.append((SET_V, (rng.choice([step, step + 0.5, None, b"x"]), k), k))
        elif choice < 0.5:
            ops.append((SET_NOTE, (rng.choice([None, f"n{step}"]), k), k))
        elif choice < 0.7:
            ops.append((UPSERT, (k, 1, f"u{step}"), k))
        else:
            ops.append((LOG, (k, rng.choice([step, "text", None, 1.25])), k))
    return ops


def test_same_sql_is_grouped_and_each_keys_order_is_kept():
    ops = [
        (INSERT, ("a", 1, "x"), "a"), (SET_V, (2, "a"), "a"),
        (INSERT, ("b", 1, "y"), "b"), (SET_V, (3, "b"), "b"),
        (SET_NOTE, ("z", "a"), "a"),
        (SET_V, (4, "b"), "b"),  # b has nothing in a later run: joins the first SET_V run
        (SET_V, (5, "a"), "a"),  # must run after a's SET_NOTE: a new run
    ]
    runs = group_ops(ops)
    assert [(sql, len(rows)) for sql, rows, _ in runs] == [(INSERT, 2), (SET_V, 3), (SET_NOTE, 1), (SET_V, 1)]
    conn = table()
    apply_ops(conn, ops)
    assert conn.execute("SELECT id, v, note FROM t ORDER BY id").fetchall() == [("a", 5, "z"), ("b", 4, "y")]


@pytest.mark.parametrize("keys, steps", [(6, 300), (400, 3000), (2000, 6000)])
def test_grouped_writes_give_the_result_of_running_ops_one_by_one(keys, steps):
    ops = random_ops(seed=keys, keys=keys, steps=steps)
    grouped, one_by_one = table(), table()
    apply_ops(grouped, ops)
    for sql, params, _ in ops:
        one_by_one.execute(sql, params)
    assert contents(grouped) == contents(one_by_one)
    assert len(group_ops(ops)) < len(ops) / 2  # it did group


def test_long_runs_are_written_by_few_statements():
    from sdjobs_nb._store.batch import group_ops
    from sdjobs_nb._store.multirow import write_run

    ops = [(INSERT, (f"k{i}", i, None), f"k{i}") for i in range(1000)]
    ops += [(SET_V, (i * 2, f"k{i}"), f"k{i}") for i in range(1000)]
    conn = table()
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    conn.execute("BEGIN")
    for sql, rows, keys in group_ops(ops):
        write_run(conn, sql, rows, keys)
    conn.execute("COMMIT")
    writes = [s for s in statements if s.startswith(("INSERT", "UPDATE"))]
    assert len(writes) <= 40, len(writes)  # 2,000 one by one
    assert conn.execute("SELECT sum(v), count(*) FROM t").fetchone() == (999 * 1000, 1000)


def test_none_parameters_are_written_as_null_with_the_same_meaning():
    conn = table()
    apply_ops(conn, [(INSERT, ("a", None, None), "a"), (INSERT, ("b", 5, "x"), "b"),
                     (SET_V, (None, "b"), "b"), (SET_V, (9, None), "c")])  # WHERE id=NULL: no row
    assert conn.execute("SELECT id, v, note FROM t ORDER BY id").fetchall() == [("a", None, None), ("b", None, "x")]


def test_a_failing_statement_rolls_back_the_whole_batch():
    conn = table()
    with pytest.raises(sqlite3.IntegrityError):
        apply_ops(conn, [(INSERT, ("a", 1, None), "a"), (INSERT, ("a", 2, None), "a")])
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_job_ids_are_version_4_uuids_and_unique():
    ids = [new_job_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:500]:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == text


def test_job_ids_do_not_follow_the_global_random_seed():
    code = "import random; from sdjobs_nb._ids import new_job_id; random.seed(42); print(new_job_id())"
    first, second = (subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
                     for _ in range(2))
    assert first != second


def test_job_ids_differ_in_a_forked_child():
    import os

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its next id and leave at once
        os.write(write, new_job_id().encode())
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    os.close(read)
    assert child_id and child_id != new_job_id()


@pytest.mark.parametrize("metrics", [
    {"elapsed_seconds": 1.2345e-05, "memory_mb": 61.23, "items": 0, "bytes": 0, "checkpoints": 0,
     "non_critical_errors": 0},
    {"elapsed_seconds": 12.0, "memory_mb": None, "items": 10**20, "bytes": 5, "checkpoints": 3,
     "non_critical_errors": 1},
    {"elapsed_seconds": math.nan, "memory_mb": None, "items": 0, "bytes": 0, "checkpoints": 0,
     "non_critical_errors": 0},
    {"elapsed_seconds": 1.0, "memory_mb": 2.0, "items": True, "bytes": 0, "checkpoints": 0,
     "non_critical_errors": 0},
    {"items": 3, "custom": [1, 2]},
    {},
])
def test_metrics_text_is_exactly_what_json_dumps_writes(metrics):
    assert metrics_json(metrics) == json.dumps(metrics)


async def test_an_older_librarys_indexes_are_brought_up_to_date(library):
    async with sj.JobManager.open(library) as manager:
        done = await manager.dispatch(Add(2, 3))
        await done.wait()
        paused = await manager.dispatch(Steps(total=10_000, delay=0.01))
        await paused.pause()
    conn = sqlite3.connect(library / "jobs.db")
    with conn:  # the unfinished-jobs index of the first release
        conn.execute("DROP INDEX jobs_unfinished")
        conn.execute("CREATE INDEX jobs_active ON jobs (status, seq) WHERE status IN ('queued', 'running', 'paused')")
    conn.close()
    async with sj.JobManager.open(library) as manager:
        assert [h.id for h in manager.handles()] == [paused.id]
        assert await manager.get(done.id).wait() == 5
    names = {n for (n,) in db_rows(library, "SELECT name FROM sqlite_master WHERE type='index'")}
    assert "jobs_unfinished" in names and "jobs_active" not in names
    assert db_rows(library, "PRAGMA user_version") == [(1,)]


def test_unfinished_job_queries_use_the_partial_index(tmp_path):
    from sdjobs_nb._store import store as st
    from sdjobs_nb._store.schema import CREATE

    conn = sqlite3.connect(tmp_path / "plan.db")
    conn.executescript(CREATE)
    for query in (st.SELECT_ACTIVE, st.SELECT_QUEUED_DATA):
        plan = " ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + query))
        assert "USING INDEX jobs_unfinished" in plan, (query, plan)


class FakeDatabase:
    """Stands in for the database thread: records each batch and completes it when told."""

    def __init__(self) -> None:
        self.batches: list[list] = []
        self.futures: list = []

    def submit(self, ops):
        import asyncio

        self.batches.append([op for op in ops if op[0] is not None])
        future = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        return future

    def finish(self, index: int, error: BaseException | None = None) -> None:
        if error is None:
            self.futures[index].set_result(None)
        else:
            self.futures[index].set_exception(error)


async def test_a_lone_commit_sends_at_once_and_later_writes_wait_for_the_next_batch():
    import asyncio

    from sdjobs_nb._store.batch import WriteBatcher

    db = FakeDatabase()
    writer = WriteBatcher(db.submit)
    writer.stage(INSERT, ("a", 1, None), "a")
    first = writer.commit()
    assert len(db.batches) == 1  # sent without waiting for the loop
    writer.stage(INSERT, ("b", 1, None), "b")
    second = writer.commit()
    announced: list = []
    writer.after_commit(announced.append)
    await asyncio.sleep(0)
    assert len(db.batches) == 1  # one batch in flight; the next one grows meanwhile
    db.finish(0)
    await first
    assert not second.done() and len(db.batches) == 2 and db.batches[1][0][2] == "b"
    db.finish(1)
    await second
    assert announced == [None]


async def test_a_withdrawn_write_is_not_sent_but_a_sent_one_stays():
    import asyncio

    from sdjobs_nb._store.batch import WriteBatcher

    db = FakeDatabase()
    writer = WriteBatcher(db.submit)
    sent = writer.stage(INSERT, ("a", 1, None), "a")
    writer.commit()
    kept_back = writer.stage(SET_V, (2, "b"), "b")
    assert not writer.withdraw(sent)
    assert writer.withdraw(kept_back)
    writer.stage(SET_V, (3, "c"), "c")
    done = writer.commit()
    db.finish(0)
    await asyncio.sleep(0)
    db.finish(1)
    await done
    assert [op[1] for op in db.batches[1]] == [(3, "c")]


async def test_a_failed_batch_tells_its_waiters_and_callbacks_why():
    from sdjobs_nb._store.batch import WriteBatcher

    db = FakeDatabase()
    writer = WriteBatcher(db.submit)
    writer.stage(INSERT, ("a", 1, None), "a")
    told: list = []
    writer.after_commit(told.append)
    waiter = writer.commit()
    db.finish(0, sqlite3.OperationalError("database or disk is full"))
    with pytest.raises(sj.LibraryError, match="disk is full"):
        await waiter
    assert len(told) == 1 and isinstance(told[0], sj.LibraryError)


async def test_a_long_read_by_the_owner_never_holds_up_jobs_commits(manager):
    import asyncio
    import threading

    release = threading.Event()

    def slow_read(conn: sqlite3.Connection) -> int:
        release.wait(30)  # holds whatever thread the read runs on until the job below is done
        return conn.execute("SELECT count(*) FROM job_history").fetchone()[0]

    read = asyncio.ensure_future(manager.store.run_read(slow_read))
    await asyncio.sleep(0.05)
    try:
        handle = await asyncio.wait_for(manager.dispatch(Add(2, 3)), 10)
        assert await asyncio.wait_for(handle.wait(), 10) == 5  # committed while the read is open
    finally:
        release.set()
    assert await read == 1  # the read ran after the commit it did not hold up
    history = await manager.history()
    assert list(history["id"]) == [handle.id]


async def test_a_read_only_view_reads_on_its_own_connection(library):
    async with sj.JobManager.open(library) as owner:
        await (await owner.dispatch(Add(1, 1))).wait()
        async with sj.JobManager.open(library, read_only=True) as view:
            assert len(await view.history()) == 1
