"""Run in a fresh process by W7: memory per queued job, dispatch-rate flatness, reopen time.

Prints one JSON object. Kept out of the parent so earlier workloads do not skew RSS.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import statistics
import sys
import time
import uuid
from pathlib import Path

import sdjobs_nb as sj
from sdjobs_nb._store.schema import CREATE, HISTORY_COLUMNS, JOB_COLUMNS, SCHEMA_VERSION

CHUNK = 10_000


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        import os

        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def queue_scaling(library: Path, queued: int) -> dict[str, float]:
    from bench._ours import BenchNoop, BenchSpinner

    chunk = min(CHUNK, max(queued // 10, 1))
    async with sj.JobManager.open(library, max_concurrent=1) as manager:
        blocker = await manager.dispatch(BenchSpinner())  # holds the only slot: the rest stay queued
        await asyncio.sleep(0.05)
        before = rss_bytes()
        rates = []
        for _ in range(queued // chunk):
            t0 = time.perf_counter()
            await manager.dispatch_many([BenchNoop() for _ in range(chunk)])
            rates.append(chunk / (time.perf_counter() - t0))
        after = rss_bytes()
        await blocker.cancel()
        for handle in manager.handles():
            if not handle.current_status.is_terminal:
                await handle.cancel()
    # medians of the first and last three chunks: one chunk alone is at the mercy of a noisy neighbour
    first, last = statistics.median(rates[:3]), statistics.median(rates[-3:])
    return {"bytes/job": (after - before) / queued, "rate_ratio": last / first,
            "first_chunks_jobs/s": first, "last_chunks_jobs/s": last}


def build_big_library(library: Path, history: int, interrupted: int) -> None:
    """Write a library as a long-lived one would look: many finished jobs, some interrupted."""
    library.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(library / "jobs.db")
    conn.executescript(CREATE)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.execute("PRAGMA journal_mode = WAL")
    now = time.time()
    hist_rows, job_rows = [], []
    for i in range(history):
        job_id = str(uuid.uuid4())
        created = now - history + i
        hist = {"id": job_id, "name": f"job_{i % 7}", "version": 1, "status": "completed", "priority": 0,
                "created_at": created, "started_at": created + 0.1, "finished_at": created + 0.5,
                "duration_s": 0.4, "queue_wait_s": 0.1, "items": 10, "bytes": 0, "checkpoints": 1,
                "non_critical_errors": 0}
        hist_rows.append([hist.get(c) for c in HISTORY_COLUMNS])
        job_rows.append(_job_row(job_id, "completed", i, created))
    for i in range(interrupted):
        job_rows.append(_job_row(str(uuid.uuid4()), "running", history + i, now))
    conn.executemany(f"INSERT INTO job_history VALUES ({','.join('?' * len(HISTORY_COLUMNS))})", hist_rows)
    conn.executemany(f"INSERT INTO jobs ({','.join(JOB_COLUMNS)}) VALUES ({','.join('?' * len(JOB_COLUMNS))})", job_rows)
    conn.commit()
    conn.close()


def _job_row(job_id: str, status: str, seq: int, at: float) -> list:
    values = {"id": job_id, "name": "bench_noop", "version": 1, "status": status, "data": b"\x80", "priority": 0,
              "seq": seq, "created_at": at, "updated_at": at, "started_at": at, "metrics": "{}"}
    return [values.get(c) for c in JOB_COLUMNS]


async def reopen_time(library: Path) -> float:
    t0 = time.perf_counter()
    async with sj.JobManager.open(library) as manager:
        elapsed = time.perf_counter() - t0
        paused = sum(1 for h in manager.handles() if h.current_status is sj.JobStatus.PAUSED)
    assert paused > 0
    return elapsed


def main() -> None:
    mode, workdir, size = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    if mode == "queue":
        print(json.dumps(asyncio.run(queue_scaling(workdir / "lib", size))))
    elif mode == "build":
        build_big_library(workdir, size, size // 100)
        print(json.dumps({"built": str(workdir)}))
    else:
        print(json.dumps({"s": asyncio.run(reopen_time(workdir))}))


if __name__ == "__main__":
    main()
