"""Run a slow counter.wat job in this process until killed: `ext_worker.py LIBRARY N EVERY WORK`.

Prints `id <job id>` once the job is dispatched, and `done <result>` if it ever finishes.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import sdjobs_nb as sj

COUNTER = Path(sj.__file__).resolve().parent / "extensions" / "examples" / "counter.wat"


async def main(library: str, n: int, every: int, work: int) -> None:
    async with sj.JobManager.open(library) as manager:
        manager.load_extension(COUNTER, "demo")
        handle = await manager.dispatch_extension_job("demo", "count", [n, every, work])
        print("id", handle.id, flush=True)
        print("done", await handle.wait(), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], *map(int, sys.argv[2:5])))
