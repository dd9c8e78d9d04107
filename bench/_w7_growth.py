"""W7's library growth: bytes jobs.db keeps per finished job whose state is 50 KB.

Jobs run in waves of ten, as a notebook runs them, and checkpoint three times each. The growth
per job is measured between two equal runs into the same library (bytes after the second minus
bytes after the first, over the jobs of one run), so the pages a wave needs while it runs, which
later waves reuse, do not count as growth. The baseline stores the same states once each in a
plain SQLite table: a library that kept every finished job's state would grow at least that much.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import sdjobs_nb as sj

STATE_BYTES = 50_000
WAVE = 10


@dataclass
class BenchBallast(sj.Job):
    NAME = "bench_ballast"
    ballast: str = ""
    checkpoints: int = 3
    done: int = 0

    async def run(self, ctx: sj.JobContext) -> int:
        while self.done < self.checkpoints:
            self.done += 1
            await ctx.checkpoint()
        return self.done


def library_bytes(folder: Path, db: str = "jobs.db") -> int:
    """Size of the database and its WAL (after close the WAL is normally gone)."""
    return sum(p.stat().st_size for p in (folder / db, folder / f"{db}-wal") if p.exists())


async def _run_jobs(library: Path, n: int) -> int:
    async with sj.JobManager.open(library, max_concurrent=4) as manager:
        for start in range(0, n, WAVE):
            jobs = [BenchBallast(ballast="b" * STATE_BYTES) for _ in range(min(WAVE, n - start))]
            handles = await manager.dispatch_many(jobs)
            await asyncio.gather(*(h.wait() for h in handles))
    return library_bytes(library)


async def growth(workdir: Path, n: int) -> dict[str, float]:
    """Bytes the library grows by per finished job, and its total size per job after 2n jobs."""
    library = workdir / "lib"
    first = await _run_jobs(library, n)
    second = await _run_jobs(library, n)
    return {"bytes/job": (second - first) / n, "library_bytes/job": second / (2 * n)}


def plain_states(workdir: Path, n: int) -> float:
    """Bytes per state of n 50 KB states stored once in a plain SQLite table (WAL, closed)."""
    conn = sqlite3.connect(workdir / "plain.db")
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE states (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
        with conn:
            conn.executemany("INSERT INTO states (data) VALUES (?)", ((b"b" * STATE_BYTES,) for _ in range(n)))
    finally:
        conn.close()
    return library_bytes(workdir, "plain.db") / n
