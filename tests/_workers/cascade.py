"""A worker process for the cascade tests: `python cascade.py LIBRARY GATE N_QUEUED`.

It runs a `Family` parent whose first child never looks at interruptions (`Stubborn`, held at
the gate file) and whose other children are queued behind it, cancels the parent with a long
grace period, and prints `cancelling` once the cancel is under way: the test kills it then,
while the stubborn child still runs. Lines: `ids <parent> <child> ...`, `cancelling`.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/, for `_workers` and jobs_for_tests

import sdjobs_nb as sj  # noqa: E402
from _workers.jobs import CheckpointJob  # noqa: E402
from jobs_for_tests import Stubborn, until  # noqa: E402


@dataclass
class Family(sj.Job):
    """Spawns one `Stubborn` child and `n_queued` CheckpointJobs, all held at `gate`, and waits for them."""

    NAME = "rel_family"

    n_queued: int
    gate: str

    def children(self) -> list[sj.Job]:
        return [Stubborn(total=10, gate=self.gate), *(CheckpointJob(n=3, k=1, gate=self.gate) for _ in range(self.n_queued))]

    async def run(self, ctx: sj.JobContext) -> int:
        return len(await ctx.wait_for_children(await ctx.spawn_children(self.children())))


def say(*parts: object) -> None:
    print(*parts, flush=True)


async def cancel_mid_cascade(library: str, gate: str, n_queued: str) -> None:
    # one slot: the stubborn child runs, its siblings wait; a grace period that outlasts the test
    async with sj.JobManager.open(library, max_concurrent=1, grace_period=600) as manager:
        parent = await manager.dispatch(Family(n_queued=int(n_queued), gate=gate))

        def children() -> list[sj.JobHandle]:
            return [h for h in manager.handles() if h.parent_id == parent.id]

        await until(lambda: len(children()) == 1 + int(n_queued)
                    and children()[0].current_status is sj.JobStatus.RUNNING, what="the family in place")
        say("ids", parent.id, *(h.id for h in children()))
        cancelling = asyncio.ensure_future(manager.cancel(parent.id))
        await asyncio.sleep(0)  # the cancel has started
        say("cancelling", os.getpid())
        await cancelling  # the stubborn child holds it for the grace period: the test kills us first


if __name__ == "__main__":
    asyncio.run(cancel_mid_cascade(*sys.argv[1:]))
