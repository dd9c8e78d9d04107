"""A job for the browser tests, importable by the test process and by the kernels it drives."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import sdjobs_nb as sj


@dataclass
class SlowCount(sj.Job):
    """Counts to `total`, one step every `delay` seconds; checkpoints every 10 steps."""

    NAME = "browser_slow_count"
    total: int = 1500
    delay: float = 0.02
    done: int = 0

    async def run(self, ctx: sj.JobContext) -> int:
        while self.done < self.total:
            await ctx.check_interrupted()
            await asyncio.sleep(self.delay)
            self.done += 1
            ctx.report_count_progress(self.done, self.total)
            if self.done % 10 == 0:
                await ctx.checkpoint()
        return self.done
