"""Job classes shared by the core tests (module level, so every process can import them)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import sdjobs_nb as sj


@dataclass
class Add(sj.Job):
    NAME = "test_add"
    a: int
    b: int = 0

    async def run(self, ctx: sj.JobContext) -> int:
        return self.a + self.b


@dataclass
class Fail(sj.Job):
    NAME = "test_fail"
    message: str = "boom"

    async def run(self, ctx: sj.JobContext) -> None:
        raise ValueError(self.message)


@dataclass
class FailCritical(sj.Job):
    NAME = "test_critical"

    async def run(self, ctx: sj.JobContext) -> None:
        raise sj.Critical("data corruption detected")


@dataclass
class InterruptSelf(sj.Job):
    NAME = "test_interrupt_self"
    attempts: int = 0

    async def run(self, ctx: sj.JobContext) -> str:
        self.attempts += 1
        if self.attempts == 1:
            raise sj.Interrupted("network unavailable")
        return f"done after {self.attempts} attempts"


@dataclass
class Steps(sj.Job):
    """Counts to `total`, checking for interruption and checkpointing every `every` steps."""

    NAME = "test_steps"
    total: int
    every: int = 10
    delay: float = 0.001
    done: int = 0
    seen: list[int] = field(default_factory=list)

    async def run(self, ctx: sj.JobContext) -> int:
        while self.done < self.total:
            await ctx.check_interrupted()
            await asyncio.sleep(self.delay)
            self.done += 1
            ctx.report_count_progress(self.done, self.total)
            if self.done % self.every == 0:
                await ctx.checkpoint()
        return self.done


@dataclass
class Stubborn(sj.Job):
    """Never checks for interruption; checkpoints every `every` steps."""

    NAME = "test_stubborn"
    total: int
    every: int = 5
    done: int = 0

    async def run(self, ctx: sj.JobContext) -> int:
        while self.done < self.total:
            await asyncio.sleep(0.01)
            self.done += 1
            if self.done % self.every == 0:
                await ctx.checkpoint()
        return self.done


@dataclass
class Once(sj.Job):
    NAME = "test_not_resumable"
    IS_RESUMABLE = False
    total: int = 1000

    async def run(self, ctx: sj.JobContext) -> int:
        for i in range(self.total):
            await ctx.check_interrupted()
            await asyncio.sleep(0.005)
        return self.total


@dataclass
class Recorder(sj.Job):
    """Appends its tag to a shared list when it starts (for ordering tests)."""

    NAME = "test_recorder"
    tag: str

    async def run(self, ctx: sj.JobContext) -> str:
        ORDER.append(self.tag)
        await asyncio.sleep(0.005)
        return self.tag


ORDER: list[str] = []


@dataclass
class Gated(sj.Job):
    """Takes step i only once the file `gate` holds a number >= i, and checkpoints after each step.

    The test opens the gate step by step (`open_gate`), so it never guesses how fast the job
    runs; a file works across processes and kernels.
    """

    NAME = "test_gated"
    gate: str
    total: int
    done: int = 0

    async def run(self, ctx: sj.JobContext) -> int:
        while self.done < self.total:
            await ctx.check_interrupted()
            if self.done >= gate_value(self.gate):
                await asyncio.sleep(0.005)
                continue
            self.done += 1
            ctx.report_count_progress(self.done, self.total)
            await ctx.checkpoint()
        return self.done


def open_gate(path: str, steps: int) -> None:
    """Let `Gated` jobs on `path` take up to `steps` steps."""
    with open(path, "w") as f:
        f.write(str(steps))


def gate_value(path: str) -> int:
    try:
        with open(path) as f:
            return int(f.read() or 0)
    except (OSError, ValueError):
        return 0
