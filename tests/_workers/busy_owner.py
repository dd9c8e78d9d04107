"""A worker process that writes a library hard: `python busy_owner.py LIBRARY`.

It runs batches of 200 small jobs and checkpoints the WAL into jobs.db after each batch, so
jobs.db itself changes all the time (b-tree pages split, move, are freed): what a backup tool
copying the file meets. Prints `ready` once the library is open; runs until killed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/, for jobs_for_tests

import sdjobs_nb as sj  # noqa: E402
from jobs_for_tests import Add  # noqa: E402


async def write_hard(library: str) -> None:
    async with sj.JobManager.open(library, max_concurrent=8) as manager:
        checkpointer = sqlite3.connect(Path(library) / "jobs.db", isolation_level=None)
        print("ready", flush=True)
        batch = 0
        while True:
            for handle in await manager.dispatch_many([Add(a=batch, b=k) for k in range(200)]):
                await handle.wait()
            checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")  # the WAL's pages into jobs.db, now
            batch += 1


if __name__ == "__main__":
    asyncio.run(write_hard(sys.argv[1]))
