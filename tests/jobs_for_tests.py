"""Job classes shared by the core tests (module level, so every process can import them)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
    """Counts to `total`, checking for interruption and checkpointing every `every` steps.

    With a `gate` file it takes step i only once the gate holds a number >= i (see `open_gate`),
    checking for interruption while it waits: the test decides how far it gets.
    """

    NAME = "test_steps"
    total: int
    every: int = 10
    delay: float = 0.001
    done: int = 0
    seen: list[int] = field(default_factory=list)
    gate: str = ""

    async def run(self, ctx: sj.JobContext) -> int:
        while self.done < self.total:
            await ctx.check_interrupted()
            if self.gate and self.done >= gate_value(self.gate):
                await asyncio.sleep(GATE_POLL_S)
                continue
            await asyncio.sleep(self.delay)
            self.done += 1
            ctx.report_count_progress(self.done, self.total)
            if self.done % self.every == 0:
                await ctx.checkpoint()
        return self.done


@dataclass
class Stubborn(sj.Job):
    """Never checks for interruption; checkpoints every `every` steps.

    With a `gate` file it takes step i only once the gate holds a number >= i, and waits there
    without checking for interruption either: only the grace period's force stops it.
    """

    NAME = "test_stubborn"
    total: int
    every: int = 5
    done: int = 0
    gate: str = ""

    async def run(self, ctx: sj.JobContext) -> int:
        while self.done < self.total:
            if self.gate and self.done >= gate_value(self.gate):
                await asyncio.sleep(GATE_POLL_S)
                continue
            await asyncio.sleep(0.01)
            self.done += 1
            if self.done % self.every == 0:
                await ctx.checkpoint()
        return self.done


@dataclass
class Once(sj.Job):
    """Not resumable; with a `gate` file it takes step i only once the gate holds a number >= i."""

    NAME = "test_not_resumable"
    IS_RESUMABLE = False
    total: int = 1000
    gate: str = ""

    async def run(self, ctx: sj.JobContext) -> int:
        for i in range(self.total):
            await ctx.check_interrupted()
            while self.gate and i >= gate_value(self.gate):
                await ctx.check_interrupted()
                await asyncio.sleep(GATE_POLL_S)
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


GATE_POLL_S = 0.005  # how often a job waiting at a gate looks at it again


def steps_done(handle: sj.JobHandle) -> float:
    """The count a job last reported, as its live progress shows it (0 before its first report)."""
    progress = handle.current_progress
    return 0 if progress is None or progress.current is None else progress.current


async def until(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll `predicate()` (a plain or an async function) every 5 ms until it is true.

    It waits for a condition, not for time: `timeout` only ends a test that is failing.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(GATE_POLL_S)


@dataclass
class Keeps(sj.Job):
    """Keeps any value in its state (`value`, annotated Any) and returns it.

    With a `gate` file it first waits until the gate holds a number >= 1, checking for
    interruption: the test decides when it ends, and it can be closed, paused or set aside meanwhile.
    """

    NAME = "test_keeps"
    value: Any = None
    gate: str = ""

    async def run(self, ctx: sj.JobContext) -> Any:
        while self.gate and gate_value(self.gate) < 1:
            await ctx.check_interrupted()
            await asyncio.sleep(GATE_POLL_S)
        return self.value
