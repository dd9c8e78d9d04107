"""The store's own database thread (dbthread.py): results, errors, order, close, daemon, one hop per commit."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import sdjobs_nb as sj
from sdjobs_nb._store.dbthread import DbThread
from sdjobs_nb._store.store import Store


def memory() -> sqlite3.Connection:
    return sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)


async def opened() -> DbThread:
    db = DbThread(name="sdjobs-db-test")
    await db.open(memory)
    return db


async def test_calls_run_in_order_on_the_thread_and_return_their_results():
    db = await opened()
    try:
        seen: list[str] = []

        def where(conn: sqlite3.Connection, n: int) -> tuple[int, str]:
            seen.append(threading.current_thread().name)
            return n, conn.execute("SELECT ?", (n,)).fetchone()[0]

        results = await asyncio.gather(*(db.submit(where, n) for n in range(50)))
        assert results == [(n, n) for n in range(50)]
        assert set(seen) == {"sdjobs-db-test"} and db.thread is not threading.current_thread()
        await db.submit(lambda conn: conn.execute("CREATE TABLE t (v)"))
        futures = [db.submit(lambda conn, v=v: conn.execute("INSERT INTO t VALUES (?)", (v,))) for v in range(20)]
        await asyncio.gather(*futures)
        assert await db.submit(lambda conn: [v for (v,) in conn.execute("SELECT v FROM t ORDER BY rowid")]) == list(range(20))
    finally:
        await db.close()


async def test_errors_reach_the_caller_and_the_thread_goes_on():
    db = await opened()
    try:
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            await db.submit(lambda conn: conn.execute("SELECT * FROM missing"))

        def fail(conn: sqlite3.Connection) -> None:
            raise KeyError("mine")

        with pytest.raises(KeyError, match="mine"):
            await db.submit(fail)
        assert await db.submit(lambda conn: conn.execute("SELECT 41 + 1").fetchone()) == (42,)
    finally:
        await db.close()


async def test_a_failed_open_is_reported_and_later_calls_fail_clearly(tmp_path):
    db = DbThread()
    try:
        with pytest.raises(sqlite3.OperationalError):
            await db.open(lambda: sqlite3.connect(tmp_path / "no" / "such" / "folder.db"))
        with pytest.raises(sqlite3.ProgrammingError, match="no connection"):
            await db.submit(lambda conn: None)
    finally:
        await db.close()


async def test_a_cancelled_wait_leaves_the_thread_serving():
    db = await opened()
    try:
        release = threading.Event()
        slow = db.submit(lambda conn: release.wait(10))
        after = db.submit(lambda conn: "after")
        slow.cancel()
        release.set()
        assert await after == "after"
        assert slow.cancelled()
    finally:
        await db.close()


async def test_close_drains_closes_and_joins_and_is_idempotent():
    db = await opened()
    conns: list[sqlite3.Connection] = []
    queued = db.submit(lambda conn: conns.append(conn) or "queued before close")
    await db.close()
    assert queued.done() and queued.result() == "queued before close"  # served before the close
    assert not db.thread.is_alive() and db.closed
    with pytest.raises(sqlite3.ProgrammingError):
        conns[0].execute("SELECT 1")  # the connection is closed
    await db.close()  # twice: nothing happens
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        await db.submit(lambda conn: None)


async def test_a_cancelled_close_still_closes():
    db = await opened()
    release = threading.Event()
    db.submit(lambda conn: release.wait(10))
    closing = asyncio.ensure_future(db.close())
    await asyncio.sleep(0.01)
    closing.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await closing
    db.thread.join(10)
    assert not db.thread.is_alive()


def test_stop_ends_the_thread_without_a_loop():
    async def make() -> DbThread:
        return await opened()

    db = asyncio.run(make())  # the loop is closed now, as for an abandoned store
    db.stop()
    db.thread.join(10)
    assert not db.thread.is_alive()
    db.stop()  # twice: nothing happens


def test_results_for_a_closed_loop_are_dropped_quietly():
    release = threading.Event()
    holder: dict = {}

    async def leave_a_call_running() -> None:
        holder["db"] = db = await opened()
        db.submit(lambda conn: release.wait(10))

    asyncio.run(leave_a_call_running())
    db = holder["db"]
    release.set()  # the thread now posts to a closed loop
    db.stop()
    db.thread.join(10)
    assert not db.thread.is_alive()


def test_the_thread_is_a_daemon_and_a_dropped_one_ends():
    async def make() -> threading.Thread:
        db = await opened()
        assert db.thread.daemon
        return db.thread  # the DbThread itself is dropped here, never closed

    thread = asyncio.run(make())
    gc.collect()
    thread.join(10)
    assert not thread.is_alive()


def test_a_script_that_never_closes_its_store_still_exits(tmp_path):
    code = textwrap.dedent("""
        import asyncio, sys
        from pathlib import Path
        from sdjobs_nb._store.store import Store

        async def main():
            store = await Store.open(Path(sys.argv[1]))
            store.insert_job("j1", "n", 1, b"", 0, 1, None, None, None, None, None, 1.0)
            await store.commit()
            return store

        kept = asyncio.run(main())  # kept alive, never closed
        print("ran", "aiosqlite" in sys.modules)
    """)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "lib")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ran", "False"]  # and the store never loaded aiosqlite
    assert time.monotonic() - started < 30
    conn = sqlite3.connect(tmp_path / "lib" / "jobs.db")
    assert conn.execute("SELECT id FROM jobs").fetchall() == [("j1",)]
    conn.close()


async def test_a_group_commit_is_one_hop_to_the_thread(tmp_path):
    store = await Store.open(tmp_path / "lib")
    calls: list[str] = []
    submit = store._db.submit

    def counting(fn, *args):
        calls.append(getattr(fn, "__name__", repr(fn)))
        return submit(fn, *args)

    store._db.submit = counting
    try:
        for i in range(500):
            store.insert_job(f"j{i}", "n", 1, b"x", 0, i, None, None, None, None, None, 1.0)
            store.mark_running(f"j{i}", 2.0)
        await store.commit()
        assert calls == ["apply_ops"]
        assert len(await store.fetchall("SELECT id FROM jobs WHERE status='running'")) == 500
    finally:
        store._db.submit = submit
        await store.close()


async def test_reads_on_a_read_only_view_run_on_its_thread(library):
    async with sj.JobManager.open(library) as owner:
        store = owner.store
        assert await store.fetchone("PRAGMA journal_mode") == ("wal",)
    view = await Store.open(library, read_only=True)
    try:
        assert await view.run_read(lambda conn: threading.current_thread().name) == "sdjobs-db"
        assert await view.fetchall("SELECT count(*) FROM jobs") == [(0,)]
    finally:
        await view.close()
