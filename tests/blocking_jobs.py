"""A job that sends named functions of `children_worker_fns` through `ctx.run_blocking`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import children_worker_fns as fns

import sdjobs_nb as sj


@dataclass
class Call(sj.Job):
    """Calls `fns.<fn>(*args, **kwargs)` through run_blocking `repeat` times and returns the results."""

    NAME = "blocking_call"
    fn: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    repeat: int = 1
    results: list[Any] = field(default_factory=list)

    async def run(self, ctx: sj.JobContext) -> list[Any]:
        fn = getattr(fns, self.fn)
        while len(self.results) < self.repeat:
            self.results.append(await ctx.run_blocking(fn, *self.args, **self.kwargs))
            ctx.report_count_progress(len(self.results), self.repeat)
            await ctx.check_interrupted()
        return self.results
