"""W4 history: load a whole job history table into a pandas DataFrame, seconds.

The fixture (untimed, once per case) is a SQLite file with a ``job_history``
table of N rows shaped like a job history::

    id TEXT PRIMARY KEY (uuid4 string), name TEXT, status TEXT,
    created_at REAL, started_at REAL, finished_at REAL (epoch seconds),
    duration_s REAL, items INTEGER, bytes INTEGER, error TEXT NULL

Rows are deterministic (seeded): ~20 job names, 90 % done / 7 % failed (with an
error string) / 3 % cancelled.  :func:`history_rows` yields the very same rows
so our contender can load identical data into our own store in its setup.

* ``read_sql`` (baseline) - ``pandas.read_sql("SELECT * FROM job_history",
  sqlite3_conn)``, connection opened outside the timed region.
* ``read_sql_datetimes`` - the same plus converting the three epoch columns to
  tz-aware ``datetime64`` (what a friendly ``history()`` returns); information.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import uuid
from pathlib import Path
from typing import Iterator

from ._harness import Case, Contender, Ctx, Workload, ours_api, peer, timer

SCHEMA = """
CREATE TABLE job_history (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    duration_s REAL,
    items INTEGER,
    bytes INTEGER,
    error TEXT
)
"""
COLUMNS = ("id", "name", "status", "created_at", "started_at", "finished_at",
           "duration_s", "items", "bytes", "error")
_NAMES = [f"{verb}_{noun}" for verb in ("resize", "train", "fetch", "index", "export")
          for noun in ("images", "model", "shards", "reports")]
_ERRORS = ["ValueError: bad shape (3, 224) for input 'x'",
           "TimeoutError: fetch of shard 17 exceeded 30s",
           "KeyError: 'label'",
           "RuntimeError: CUDA out of memory"]


def history_rows(n: int, seed: int = 42) -> Iterator[tuple]:
    """Yield n deterministic job-history rows in COLUMNS order."""
    rng = random.Random(seed)
    t = 1_700_000_000.0
    for _ in range(n):
        t += rng.expovariate(1 / 30.0)
        created = t
        started = created + rng.expovariate(1 / 0.5)
        duration = rng.expovariate(1 / 12.0)
        finished = started + duration
        r = rng.random()
        if r < 0.90:
            status, error = "done", None
        elif r < 0.97:
            status, error = "failed", rng.choice(_ERRORS)
        else:
            status, error = "cancelled", None
        yield (str(uuid.UUID(int=rng.getrandbits(128), version=4)), rng.choice(_NAMES),
               status, created, started, finished, duration, rng.randrange(1, 10_000),
               rng.randrange(1, 50_000_000), error)


def cases(quick: bool) -> list[Case]:
    if quick:
        return [Case("2,000 rows", {"n": 2_000})]
    return [Case("100k rows", {"n": 100_000}), Case("1M rows", {"n": 1_000_000})]


def build_fixture(ctx: Ctx) -> dict:
    path = ctx.root / "history.db"
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(SCHEMA)
        db.executemany(f"INSERT INTO job_history VALUES ({','.join('?' * len(COLUMNS))})",
                       history_rows(ctx["n"]))
        db.commit()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return {"path": path, "n": ctx["n"]}


def read_sql(ctx: Ctx) -> float:
    pd = peer("pandas")
    conn = sqlite3.connect(ctx.fixture["path"])
    try:
        with timer() as t:
            df = pd.read_sql("SELECT * FROM job_history", conn)
    finally:
        conn.close()
    assert len(df) == ctx.fixture["n"], len(df)
    return t()


def read_sql_datetimes(ctx: Ctx) -> float:
    pd = peer("pandas")
    conn = sqlite3.connect(ctx.fixture["path"])
    try:
        with timer() as t:
            df = pd.read_sql("SELECT * FROM job_history", conn)
            for col in ("created_at", "started_at", "finished_at"):
                df[col] = pd.to_datetime(df[col], unit="s", utc=True)
    finally:
        conn.close()
    assert len(df) == ctx.fixture["n"], len(df)
    return t()


# --- REGISTRATION POINT: our contender -------------------------------------
# 1. ours_setup: open our store under ctx.root (NOT ctx.workdir, which is per
#    call) and load the same rows: ``history_rows(ctx["n"])``; return the store.
#    It runs once per case, untimed, after the fixture.
# 2. ours: ``with timer() as t: df = store.history()``; assert len(df) == n;
#    return t() (seconds).  ctx.state is whatever ours_setup returned.
# ours_metrics (information, and the absolute target) times metrics() on the
# same library; both setups share it.

def ours_setup(ctx: Ctx) -> Path:
    """Load history_rows(n) into an sdjobs_nb library under ctx.root (once per case, shared)."""
    sj = ours_api("sdjobs_nb")
    folder = ctx.root / "sdjobs_library"
    if not (folder / "jobs.db").exists():
        asyncio.run(_load_library(sj, folder, ctx["n"]))
    return folder


async def _load_library(sj, folder: Path, n: int) -> None:
    """Write the rows as the manager writes a finished job (``done`` is our ``completed``)."""
    async with sj.JobManager.open(folder) as manager:
        store = manager.store
        for i, (id_, name, status, created, started, finished, duration, items, nbytes, error) \
                in enumerate(history_rows(n), 1):
            store.stage_history({
                "id": id_, "name": name, "version": 1, "priority": 0,
                "status": "completed" if status == "done" else status,
                "created_at": created, "started_at": started, "finished_at": finished,
                "duration_s": duration, "queue_wait_s": started - created,
                "items": items, "bytes": nbytes, "checkpoints": 0, "non_critical_errors": 0,
                "error": error,
            })
            if i % 100_000 == 0:
                await store.commit()
        await store.commit()


async def ours(ctx: Ctx) -> float:
    sj = ours_api("sdjobs_nb")
    async with sj.JobManager.open(ctx.state, read_only=True) as manager:
        await manager.history(limit=0)  # imports (pandas) stay outside the timing, as for the peers
        with timer() as t:
            df = await manager.history()
    assert len(df) == ctx["n"], len(df)
    return t()


async def ours_metrics(ctx: Ctx) -> float:
    sj = ours_api("sdjobs_nb")
    async with sj.JobManager.open(ctx.state, read_only=True) as manager:
        await manager.history(limit=0)
        with timer() as t:
            df = await manager.metrics()
    assert int(df["count"].sum()) == ctx["n"], df
    return t()


def contenders() -> dict[str, Contender]:
    u = "s"
    return {
        "ours": Contender("ours", ours, u, "sdjobs_nb history() -> DataFrame",
                          setup=ours_setup),
        "ours_metrics": Contender("ours_metrics", ours_metrics, u,
                                  "sdjobs_nb metrics() -> DataFrame (per name: counts, "
                                  "mean/median/p95/max duration, ...)", setup=ours_setup),
        "read_sql": Contender("read_sql", read_sql, u,
                              'pandas.read_sql("SELECT * FROM job_history", sqlite3_conn)'),
        "read_sql_datetimes": Contender("read_sql_datetimes", read_sql_datetimes, u,
                                        "read_sql + 3x pd.to_datetime(unit='s', utc=True)"),
    }


WORKLOAD = Workload(
    id="W4", title="history", contenders=contenders, cases=cases,
    baseline="read_sql",
    targets=["ours s <= 1.2 x read_sql s", "ours_metrics s < 1 s"],
    fixture=build_fixture,
    description=__doc__ or "",
)
