"""Parent and child jobs for the children tests, and a worker process that runs a parent.

Imported by the tests (which registers the job classes) and run as a script by the SIGKILL
test: ``python children_worker.py LIBRARY GATE N [N ...]`` dispatches a `FanOut` over `Square`
children held at the gate file GATE, prints ``PARENT <id>`` and then ``WAITING <child ids>``
when the parent starts waiting, and waits for it (until the test kills the process).
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from dataclasses import dataclass, field

import sdjobs_nb as sj
from jobs_for_tests import GATE_POLL_S, gate_value

#: parent id -> the child ids each of its runs got from spawn_children (this process only)
SPAWNED: dict[str, list[list[str]]] = {}
#: ids of `Impatient` parents whose patience ran out (this process only)
GAVE_UP: set[str] = set()
#: set by the worker script: the parent prints its children when it starts waiting
ANNOUNCE = False


@dataclass
class Square(sj.Job):
    """Takes `steps` steps of `delay` s (checkpointing each), then returns n*n (and the step each
    run started from, with `report_starts`) or raises `ValueError(fail)`.

    With a `gate` file it takes step i only once the gate holds a number >= i (`open_gate`); it
    checks for interruption while it waits there, unless it is `stubborn`: then it notices a
    request only when it takes its next step.
    """

    NAME = "children_square"
    n: int
    steps: int = 1
    delay: float = 0.01
    fail: str = ""
    report_starts: bool = False
    gate: str = ""
    stubborn: bool = False
    done: int = 0
    starts: list[int] = field(default_factory=list)

    async def run(self, ctx: sj.JobContext) -> int | list:
        self.starts.append(self.done)  # the step each run started from
        while self.done < self.steps:
            if self.gate and self.done >= gate_value(self.gate):
                if not self.stubborn:
                    await ctx.check_interrupted()
                await asyncio.sleep(GATE_POLL_S)
                continue
            await ctx.check_interrupted()
            await asyncio.sleep(self.delay)
            self.done += 1
            ctx.report_count_progress(self.done, self.steps)
            await ctx.checkpoint()
        if self.fail:
            raise ValueError(self.fail)
        return [self.n * self.n, self.starts] if self.report_starts else self.n * self.n


@dataclass
class FanOut(sj.Job):
    """Spawns its `children` (copies), waits for them, and returns what it saw."""

    NAME = "children_fan_out"
    children: list[Square] = field(default_factory=list)
    catch: bool = False
    runs: int = 0

    async def run(self, ctx: sj.JobContext) -> dict:
        self.runs += 1
        ids = await ctx.spawn_children([dataclasses.replace(c) for c in self.children])
        SPAWNED.setdefault(ctx.job_id, []).append(ids)
        if ANNOUNCE:
            print("WAITING", " ".join(ids), flush=True)
        try:
            results = await ctx.wait_for_children(ids)
        except sj.ChildFailed as e:
            if not self.catch:
                raise
            return {"ids": ids, "failed": e.job_id, "message": e.message, "runs": self.runs}
        return {"ids": ids, "results": results, "runs": self.runs}


@dataclass
class LateSpawn(sj.Job):
    """Busy with other work that never checks for interruption until a pause, cancel or close is
    requested; only then spawns its children and waits for them (a resumed run spawns at once).

    So the request always arrives before `spawn_children`, however fast the machine is.
    """

    NAME = "children_late_spawn"
    children: list[Square] = field(default_factory=list)
    busy: bool = True

    async def run(self, ctx: sj.JobContext) -> list:
        while self.busy and ctx.interrupt_requested is None:
            await asyncio.sleep(GATE_POLL_S)
        self.busy = False
        ids = await ctx.spawn_children([dataclasses.replace(c) for c in self.children])
        SPAWNED.setdefault(ctx.job_id, []).append(ids)
        return await ctx.wait_for_children(ids)


@dataclass
class Impatient(sj.Job):
    """Waits `patience` s for its children, then goes on with its own work; returns when that ran.

    A parent is added to `GAVE_UP` the moment its patience runs out (the wait it abandons then
    still has to take a slot again before it returns).
    """

    NAME = "children_impatient"
    patience: float
    children: list[Square] = field(default_factory=list)

    async def run(self, ctx: sj.JobContext) -> float:
        ids = await ctx.spawn_children([dataclasses.replace(c) for c in self.children])
        SPAWNED.setdefault(ctx.job_id, []).append(ids)
        # as asyncio.wait_for does, but it tells when the patience runs out, before the abandoned
        # wait has taken its slot back
        waiting = asyncio.ensure_future(ctx.wait_for_children(ids))
        try:
            done, _ = await asyncio.wait({waiting}, timeout=self.patience)
        except asyncio.CancelledError:
            waiting.cancel()
            raise
        if not done:
            GAVE_UP.add(ctx.job_id)
            waiting.cancel()
            try:
                await waiting
            except asyncio.CancelledError:
                pass
        return time.time()  # its own work runs now, in a slot


@dataclass
class TwoRounds(sj.Job):
    """Two spawn_children calls in a row: spawn keys '1:i' then '2:i'."""

    NAME = "children_two_rounds"
    first: list[int] = field(default_factory=list)
    second: list[int] = field(default_factory=list)

    async def run(self, ctx: sj.JobContext) -> list[list[int]]:
        a = await ctx.wait_for_children(await ctx.spawn_children([Square(n) for n in self.first]))
        b = await ctx.wait_for_children(await ctx.spawn_children([Square(n) for n in self.second]))
        return [a, b]


@dataclass
class Nested(sj.Job):
    """A parent whose children are parents too (depth levels, `width` children each)."""

    NAME = "children_nested"
    depth: int
    width: int = 2

    async def run(self, ctx: sj.JobContext) -> int:
        if self.depth == 0:
            await asyncio.sleep(0.01)
            return 1
        ids = await ctx.spawn_children([Nested(self.depth - 1, self.width) for _ in range(self.width)])
        return sum(await ctx.wait_for_children(ids))


#: steps of each child of the worker script's parent
WORKER_STEPS = 10


async def _main(library: str, gate: str, ns: list[int]) -> None:
    global ANNOUNCE
    ANNOUNCE = True
    async with sj.JobManager.open(library, max_concurrent=4) as manager:
        children = [Square(n, steps=WORKER_STEPS, delay=0.0, gate=gate, report_starts=True) for n in ns]
        handle = await manager.dispatch(FanOut(children))
        print("PARENT", handle.id, flush=True)
        await handle.wait()
        print("DONE", flush=True)


if __name__ == "__main__":
    _library, _gate, *_ns = sys.argv[1:]
    asyncio.run(_main(_library, _gate, [int(n) for n in _ns]))
