"""W1 dispatch: enqueue N no-op jobs and run them all to completion, jobs/s.

Timed region, for every contender: from the first enqueue to the moment the
last job has finished (all N enqueued first, then drained).  Each call runs
in a fresh empty directory (``ctx.workdir``), so every queue starts empty.

Huey (the baseline) is driven **in-process, single-threaded**:
``while (t := huey.dequeue()) is not None: huey.execute(t)``.  That is exactly
what a consumer worker thread does per task (``Worker.loop`` in
huey/consumer.py) minus thread hand-off, polling sleeps and the scheduler
thread, so it is Huey's *best case* on its own storage: every enqueue is one
committed INSERT, every dequeue one ``BEGIN EXCLUSIVE`` SELECT+DELETE, every
execute one committed DELETE of the revoke key.  Comparing against Huey's best
case keeps our 10x target honest.  ``huey_consumer`` (a real
``huey.create_consumer(workers=2)`` with threads, default polling) is shown for
information only.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time

from ._harness import Case, Contender, Ctx, Workload, ours_api, peer, timer, NotYetImplemented


def cases(quick: bool) -> list[Case]:
    return [Case("200 jobs" if quick else "2,000 jobs", {"n": 200 if quick else 2000})]


# --- peers ----------------------------------------------------------------

def _huey(ctx: Ctx, **storage_kw):
    huey_mod = peer("huey")
    h = huey_mod.SqliteHuey("bench", filename=str(ctx.workdir / "huey.db"), **storage_kw)
    done = [0]
    lock = threading.Lock()

    @h.task()
    def noop():
        with lock:  # consumer variant runs this on 2 threads
            done[0] += 1

    return h, noop, done


def _huey_direct(ctx: Ctx, **storage_kw) -> float:
    n = ctx["n"]
    h, noop, done = _huey(ctx, **storage_kw)
    with timer() as t:
        for _ in range(n):
            noop()
        while (task := h.dequeue()) is not None:
            h.execute(task)
    assert done[0] == n, done[0]
    h.storage.close()
    return n / t()


def huey_default(ctx: Ctx) -> float:
    """SqliteHuey() defaults: WAL, fsync=None (SQLite's default synchronous=FULL)."""
    return _huey_direct(ctx)


def huey_fsync_off(ctx: Ctx) -> float:
    """SqliteHuey(fsync=False): huey then issues PRAGMA synchronous=0 (OFF)."""
    return _huey_direct(ctx, fsync=False)


def huey_consumer(ctx: Ctx) -> float:
    """Real in-process consumer, 2 worker threads, huey's default polling."""
    n = ctx["n"]
    h, noop, done = _huey(ctx)
    finished = threading.Event()

    @h.signal("complete")
    def _on_complete(sig, task, *args, **kwargs):
        if done[0] >= n:
            finished.set()

    consumer = h.create_consumer(workers=2, worker_type="thread", periodic=False,
                                 check_worker_health=False)
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        with timer() as t:
            for _ in range(n):
                noop()
            consumer.start()  # installs signal handlers: restored below
            if not finished.wait(timeout=120):
                raise TimeoutError(f"huey consumer finished {done[0]}/{n} jobs")
        consumer.stop(graceful=True)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
    h.storage.close()
    return n / t()


def persistqueue_sqlite(ctx: Ctx) -> float:
    """SQLiteQueue (auto_commit=True): put N, then get + task_done N."""
    pq = peer("persistqueue")
    n = ctx["n"]
    q = pq.SQLiteQueue(str(ctx.workdir / "pq"), auto_commit=True)
    with timer() as t:
        for i in range(n):
            q.put(i)
        for _ in range(n):
            q.get(block=False)
            q.task_done()
    assert q.qsize() == 0
    q.close()
    return n / t()


def persistqueue_ack(ctx: Ctx) -> float:
    """SQLiteAckQueue: put N, then get + ack N (crash-safe consume)."""
    pq = peer("persistqueue")
    n = ctx["n"]
    q = pq.SQLiteAckQueue(str(ctx.workdir / "pqa"))
    with timer() as t:
        for i in range(n):
            q.put(i)
        for _ in range(n):
            item = q.get(block=False)
            q.ack(item)
    q.close()
    return n / t()


async def asyncio_bare(ctx: Ctx) -> float:
    """asyncio.create_task of N no-op coroutines, then gather: no persistence."""
    n = ctx["n"]

    async def noop() -> None:
        return None

    with timer() as t:
        tasks = [asyncio.create_task(noop()) for _ in range(n)]
        await asyncio.gather(*tasks)
    return n / t()


async def aiosqlite_insert_commit(ctx: Ctx) -> float:
    """One aiosqlite INSERT + COMMIT per job (WAL, synchronous=NORMAL); jobs not run."""
    aiosqlite = peer("aiosqlite")
    n = ctx["n"]
    async with aiosqlite.connect(ctx.workdir / "raw.db") as db:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, name TEXT, "
                         "status TEXT, created_at REAL)")
        await db.commit()
        with timer() as t:
            for i in range(n):
                await db.execute("INSERT INTO jobs (name, status, created_at) VALUES (?, ?, ?)",
                                 ("noop", "queued", time.time()))
                await db.commit()
    return n / t()


async def asyncio_floor(ctx: Ctx) -> float:
    """The asyncio skeleton of `ours` with no bookkeeping and no SQL: N gathered dispatch
    coroutines each awaiting one shared-batch future, a task per job awaiting a second, and
    a wait on each job's done future. No Python job system can beat this shape."""
    n = ctx["n"]
    loop = asyncio.get_running_loop()
    pending: list[asyncio.Future[None]] = []

    def flush() -> None:
        waiters = pending[:]
        pending.clear()
        for w in waiters:
            w.set_result(None)

    def commit() -> asyncio.Future[None]:
        f = loop.create_future()
        pending.append(f)
        if len(pending) == 1:
            loop.call_soon(flush)
        return f

    async def job() -> None:
        return None

    async def run(done: asyncio.Future[None]) -> None:
        result = await job()
        await commit()
        done.set_result(result)

    async def dispatch() -> asyncio.Future[None]:
        await commit()
        done = loop.create_future()
        loop.create_task(run(done))
        return done

    with timer() as t:
        dones = await asyncio.gather(*(dispatch() for _ in range(n)))
        for done in dones:
            await asyncio.shield(done)
    return n / t()


def sqlite_rows_floor(ctx: Ctx) -> float:
    """The SQL `ours` writes per job (insert, terminal update, history row) with our schema,
    as two executemany transactions in one thread: no event loop, no GIL hand-offs."""
    import sqlite3
    import uuid

    from sdjobs_nb._store.schema import CREATE

    n = ctx["n"]
    conn = sqlite3.connect(ctx.workdir / "floor.db", isolation_level=None)
    conn.executescript(CREATE)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    metrics = '{"elapsed_seconds": 1e-05, "memory_mb": 60.0, "items": 0, "bytes": 0, "checkpoints": 0, "non_critical_errors": 0}'
    insert = ("INSERT INTO jobs (id, name, version, status, data, metrics, priority, seq, created_at, updated_at) "
              "VALUES (?, ?, ?, 'queued', ?, '{}', ?, ?, ?, ?)")
    finish = ("UPDATE jobs SET status=?, result=?, metrics=?, finished_at=?, started_at=?, updated_at=? "
              "WHERE id=?")
    history = ("INSERT OR REPLACE INTO job_history (id, name, version, status, priority, created_at, started_at, "
               "finished_at, duration_s, queue_wait_s, items, bytes, checkpoints, non_critical_errors, "
               "memory_mb, metrics) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
    with timer() as t:
        now = time.time()
        ids = [str(uuid.uuid4()) for _ in range(n)]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(insert, [(i, "noop", 1, b"\x80", 0, k, now, now) for k, i in enumerate(ids)])
        conn.execute("COMMIT")
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(finish, [("completed", b"\xc0", metrics, now, now, now, i) for i in ids])
        conn.executemany(history, [(i, "noop", 1, "completed", 0, now, now, now, 0.0, 0.0, 0, 0, 0, 0, 60.0, metrics)
                                   for i in ids])
        conn.execute("COMMIT")
    conn.close()
    return n / t()


# --- REGISTRATION POINT: our contender -------------------------------------
# Replace the body with: create our job store in ctx.workdir, submit ctx["n"]
# no-op jobs, wait until all are finished, return n / elapsed (jobs/s).
# Keep the timed region the same as the peers': first submit -> last finish.

async def ours(ctx: Ctx) -> float:
    """sdjobs_nb: dispatch N no-op jobs concurrently (each dispatch awaited), wait for all."""
    ours_api("sdjobs_nb", "JobManager")
    from ._ours import dispatch_and_wait

    return await dispatch_and_wait(ctx.workdir, ctx["n"], concurrent=True)


async def ours_sequential(ctx: Ctx) -> float:
    """sdjobs_nb: one awaited dispatch at a time (one commit each), then wait for all."""
    ours_api("sdjobs_nb", "JobManager")
    from ._ours import dispatch_and_wait

    return await dispatch_and_wait(ctx.workdir, ctx["n"], concurrent=False)

def contenders() -> dict[str, Contender]:
    u = "jobs/s"
    return {
        "ours": Contender("ours", ours, u, ours.__doc__),
        "ours_sequential": Contender("ours_sequential", ours_sequential, u, ours_sequential.__doc__),
        "huey_default": Contender("huey_default", huey_default, u, huey_default.__doc__),
        "huey_fsync_off": Contender("huey_fsync_off", huey_fsync_off, u, huey_fsync_off.__doc__),
        "huey_consumer": Contender("huey_consumer", huey_consumer, u, huey_consumer.__doc__),
        "persistqueue_sqlite": Contender("persistqueue_sqlite", persistqueue_sqlite, u,
                                         persistqueue_sqlite.__doc__),
        "persistqueue_ack": Contender("persistqueue_ack", persistqueue_ack, u,
                                      persistqueue_ack.__doc__),
        "asyncio_bare": Contender("asyncio_bare", asyncio_bare, u, asyncio_bare.__doc__),
        "aiosqlite_insert_commit": Contender("aiosqlite_insert_commit", aiosqlite_insert_commit,
                                             u, aiosqlite_insert_commit.__doc__),
        "asyncio_floor": Contender("asyncio_floor", asyncio_floor, u, asyncio_floor.__doc__),
        "sqlite_rows_floor": Contender("sqlite_rows_floor", sqlite_rows_floor, u, sqlite_rows_floor.__doc__),
    }


WORKLOAD = Workload(
    id="W1", title="dispatch", contenders=contenders, cases=cases,
    baseline="huey_default",
    targets=["ours jobs/s >= 10 x huey_default jobs/s"],
    description=__doc__ or "",
)
