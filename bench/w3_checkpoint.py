"""W3 checkpoint: persist a ~200-byte job state blob, N times, us/checkpoint.

* ``raw_aiosqlite`` (baseline) - aiosqlite, WAL, ``synchronous=NORMAL``:
  ``UPDATE checkpoints SET data=? WHERE id=?`` + ``COMMIT`` per checkpoint,
  always the same row (one job checkpointing repeatedly).  This is the floor
  for an asyncio library persisting each checkpoint durably-enough in SQLite.
* ``huey_put_data`` - Huey's ``SqliteStorage`` with its defaults (WAL,
  SQLite's default synchronous=FULL), ``storage.put_data(key, value)`` on the
  same key each time (``INSERT OR REPLACE`` + commit).
* ``raw_sqlite3`` - the same UPDATE+commit as the baseline on a blocking
  stdlib ``sqlite3`` connection: shows aiosqlite's thread hop cost.

Blobs are prebuilt (16 distinct ``os.urandom(200)`` values, cycled), outside
the timed region; the row exists before timing starts.
"""

from __future__ import annotations

import os
import sqlite3

from ._harness import Case, Contender, Ctx, NotYetImplemented, Workload, ours_api, peer, timer

BLOB_SIZE = 200


def cases(quick: bool) -> list[Case]:
    n = 200 if quick else 10_000
    return [Case(f"{n:,} x {BLOB_SIZE} B", {"n": n})]


def _blobs() -> list[bytes]:
    return [os.urandom(BLOB_SIZE) for _ in range(16)]


async def raw_aiosqlite(ctx: Ctx) -> float:
    aiosqlite = peer("aiosqlite")
    n, blobs = ctx["n"], _blobs()
    async with aiosqlite.connect(ctx.workdir / "ckpt.db") as db:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute("CREATE TABLE checkpoints (id TEXT PRIMARY KEY, data BLOB)")
        await db.execute("INSERT INTO checkpoints VALUES (?, ?)", ("job-1", blobs[0]))
        await db.commit()
        with timer() as t:
            for i in range(n):
                await db.execute("UPDATE checkpoints SET data=? WHERE id=?",
                                 (blobs[i & 15], "job-1"))
                await db.commit()
    return t() / n * 1e6


def raw_sqlite3(ctx: Ctx) -> float:
    n, blobs = ctx["n"], _blobs()
    db = sqlite3.connect(ctx.workdir / "ckpt.db")
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE checkpoints (id TEXT PRIMARY KEY, data BLOB)")
        db.execute("INSERT INTO checkpoints VALUES (?, ?)", ("job-1", blobs[0]))
        db.commit()
        with timer() as t:
            for i in range(n):
                db.execute("UPDATE checkpoints SET data=? WHERE id=?", (blobs[i & 15], "job-1"))
                db.commit()
    finally:
        db.close()
    return t() / n * 1e6


def huey_put_data(ctx: Ctx) -> float:
    storage_mod = peer("huey.storage")
    n, blobs = ctx["n"], _blobs()
    st = storage_mod.SqliteStorage("bench", filename=str(ctx.workdir / "huey.db"))
    st.put_data("job-1", blobs[0])
    with timer() as t:
        for i in range(n):
            st.put_data("job-1", blobs[i & 15])
    st.close()
    return t() / n * 1e6


# --- REGISTRATION POINT: our contender -------------------------------------
# Replace the body with: open our store in ctx.workdir, create one job
# (untimed), then time n calls of our checkpoint API persisting a ~200-byte
# state (use _blobs() cycled like the peers) and return elapsed / n * 1e6.

async def ours(ctx: Ctx) -> float:
    """await ctx.checkpoint() of a job whose state is ~200 bytes."""
    ours_api("sdjobs_nb", "JobManager")
    from ._ours import checkpoint_cost

    return await checkpoint_cost(ctx.workdir, ctx["n"], _blobs())

def contenders() -> dict[str, Contender]:
    u = "us/checkpoint"
    return {
        "ours": Contender("ours", ours, u, "sdjobs_nb checkpoint of a ~200 B state"),
        "raw_aiosqlite": Contender("raw_aiosqlite", raw_aiosqlite, u,
                                   "aiosqlite UPDATE+COMMIT, WAL, synchronous=NORMAL"),
        "huey_put_data": Contender("huey_put_data", huey_put_data, u,
                                   "huey SqliteStorage.put_data, defaults"),
        "raw_sqlite3": Contender("raw_sqlite3", raw_sqlite3, u,
                                 "stdlib sqlite3 UPDATE+commit, WAL, NORMAL"),
    }


WORKLOAD = Workload(
    id="W3", title="checkpoint", contenders=contenders, cases=cases,
    baseline="raw_aiosqlite",
    targets=["ours us/checkpoint <= 1.3 x raw_aiosqlite us/checkpoint"],
    description=__doc__ or "",
)
