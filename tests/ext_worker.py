"""Run a gated counting job in this process until killed: `ext_worker.py MODULE LIBRARY N EVERY HOLD`.

MODULE is a file holding ext_common.GATED_WAT. The job checkpoints every EVERY steps and waits
at step HOLD (it never gets further in this process). Prints `id <job id>` once the job is
dispatched, and `done <result>` if it ever finishes.
"""

from __future__ import annotations

import asyncio
import sys

import sdjobs_nb as sj
from ext_common import gated_input


async def main(module: str, library: str, n: int, every: int, hold: int) -> None:
    async with sj.JobManager.open(library) as manager:
        manager.load_extension(module, "gated")
        handle = await manager.dispatch_extension_job("gated", "count", gated_input(n, every, hold))
        print("id", handle.id, flush=True)
        print("done", await handle.wait(), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])))
