"""A separate process for 05_crash_resume.ipynb: run one checkpointing job on a library.

    python worker.py LIBRARY N

opens LIBRARY (taking its owner lock), dispatches `SumOfSquares(n=N)`, prints
``JOB <id>`` and waits for the job. The notebook kills this process part-way and resumes
the job in its own kernel; it imports `SumOfSquares` from here so both sides know the class.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass

import sdjobs_nb as sj


@dataclass
class SumOfSquares(sj.Job):
    """Add up i * i for i in range(n), 10 ms per number, checkpointing every 25 numbers."""

    NAME = "sum_of_squares"

    n: int
    done: int = 0
    total: int = 0

    async def run(self, ctx: sj.JobContext) -> int:
        while self.done < self.n:
            await ctx.check_interrupted()
            await asyncio.sleep(0.01)  # stands in for real work on each number
            self.total += self.done * self.done
            self.done += 1
            ctx.report_count_progress(self.done, self.n)
            if self.done % 25 == 0:
                await ctx.checkpoint()
        return self.total


async def main(library: str, n: int) -> None:
    async with sj.JobManager.open(library) as manager:
        handle = await manager.dispatch(SumOfSquares(n), initiated_by="worker.py")
        print("JOB", handle.id, flush=True)
        await handle.wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
