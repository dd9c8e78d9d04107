"""Job classes of the reliability tests, shared by the test process and the crash workers.

They live at module level in one importable module (always imported as `_workers.jobs`) so a
worker process that is killed and the process that resumes its jobs both register them.
Every result is a pure function of the job's parameters (`expected_outcome`), so a run that
was killed, paused, forced or resumed any number of times can be checked against the answer
of a run that never was.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

import sdjobs_nb as sj
from jobs_for_tests import GATE_POLL_S, gate_value

__all__ = (
    "BigJob", "CheckpointJob", "ParentJob", "StepJob",
    "item_value", "append_line", "expected_outcome", "ACTIVE", "OVERLAPS", "REFUSED", "REQUESTS",
)


def item_value(salt: int, i: int) -> int:
    """The work of item `i`: any deterministic function will do."""
    return (i * i + 7 * salt + 3) % 1009


def append_line(path: str, line: str) -> None:
    """Append one line with a single O_APPEND write, so a SIGKILL never leaves half a line."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


@dataclass
class CheckpointJob(sj.Job):
    """Processes items 0..n-1, writes `<job id> <item>` to `side` after each, checkpoints every k.

    The reliability tests' one counter; its other parameters (all off by default):
    - `gate`: a gate file (`jobs_for_tests.open_gate`): item i is processed only once the gate
      holds a number > i, and the job checks for interruption while it waits there;
    - `ballast`: dead weight carried in the state, so each checkpoint writes that much;
    - `fail_at`: raise `sj.Critical` at that item, however often the job is resumed;
    - `pause_at`: pause itself (raise `sj.Interrupted`) once, at that item;
    - `retry`: when a checkpoint fails (a full disk), note the error in `REFUSED` and try again
      every 50 ms instead of failing.
    """

    NAME = "rel_ckpt"

    n: int
    k: int = 5
    salt: int = 0
    delay: float = 0.0
    side: str = ""
    gate: str = ""
    ballast: str = ""
    fail_at: int = -1
    pause_at: int = -1
    retry: bool = False
    paused_once: bool = False
    i: int = 0
    acc: int = 0

    async def run(self, ctx: sj.JobContext) -> int:
        while self.i < self.n:
            await ctx.check_interrupted()
            if self.gate and self.i >= gate_value(self.gate):
                await asyncio.sleep(GATE_POLL_S)
                continue
            if self.i == self.pause_at and not self.paused_once:
                self.paused_once = True
                raise sj.Interrupted("taking a break")
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.i == self.fail_at:
                raise sj.Critical(f"boom at item {self.i}")
            self.acc += item_value(self.salt, self.i)
            if self.side:
                append_line(self.side, f"{ctx.job_id} {self.i}")
            self.i += 1
            ctx.report_count_progress(self.i, self.n)
            if self.i % self.k == 0:
                await self._checkpoint(ctx)
        return self.acc

    async def _checkpoint(self, ctx: sj.JobContext) -> None:
        while True:
            try:
                await ctx.checkpoint()
                return
            except Exception as e:
                if not self.retry:
                    raise
                REFUSED.setdefault(ctx.job_id, []).append(f"{type(e).__name__}: {e}")
                await asyncio.sleep(0.05)  # the disk may have room again by then


#: job id -> the errors of the checkpoints a `CheckpointJob(retry=True)` had refused (this process)
REFUSED: dict[str, list[str]] = {}


@dataclass
class ParentJob(sj.Job):
    """Spawns `n_children` CheckpointJobs, waits for them and returns the sum of their results.

    The children share the parent's `gate` (see `CheckpointJob`).
    """

    NAME = "rel_parent"

    n_children: int
    child_n: int
    salt: int = 0
    delay: float = 0.0
    side: str = ""
    gate: str = ""

    def children(self) -> list[CheckpointJob]:
        return [CheckpointJob(n=self.child_n, k=3, salt=self.salt + c, delay=self.delay, side=self.side,
                              gate=self.gate)
                for c in range(self.n_children)]

    async def run(self, ctx: sj.JobContext) -> int:
        ids = await ctx.spawn_children(self.children())
        results = await ctx.wait_for_children(ids)
        return sum(results)


@dataclass
class BigJob(sj.Job):
    """Carries a large payload in its state; returns its length."""

    NAME = "rel_big"

    payload: str = ""

    async def run(self, ctx: sj.JobContext) -> int:
        return len(self.payload)


# --- for the state-machine test: jobs that report overlapping runs of themselves -------------

#: token -> number of `run` calls of that job executing right now
ACTIVE: dict[str, int] = {}
#: tokens whose job was seen running twice at once
OVERLAPS: list[str] = []
#: tokens whose job should call `ctx.checkpoint()` at its next step
REQUESTS: set[str] = set()


@dataclass
class StepJob(sj.Job):
    """Adds 0..steps-1 one step at a time; fails at `fail_at` (if >= 0); checkpoints on request."""

    NAME = "rel_step"

    token: str
    steps: int
    fail_at: int = -1
    delay: float = 0.004
    step: int = 0
    acc: int = 0

    async def run(self, ctx: sj.JobContext) -> int:
        ACTIVE[self.token] = ACTIVE.get(self.token, 0) + 1
        if ACTIVE[self.token] > 1:
            OVERLAPS.append(self.token)
        try:
            while self.step < self.steps:
                await ctx.check_interrupted()
                await asyncio.sleep(self.delay)
                if self.step == self.fail_at:
                    raise ValueError(f"step job {self.token} failed at step {self.step}")
                self.acc += self.step
                self.step += 1
                if self.token in REQUESTS:
                    REQUESTS.discard(self.token)
                    await ctx.checkpoint()
            return self.acc
        finally:
            ACTIVE[self.token] -= 1


def expected_outcome(name: str, fields: dict[str, Any]) -> tuple[str, Any]:
    """Return ("completed", result) or ("failed", error text) of an uninterrupted run."""
    if name == CheckpointJob.NAME:
        if 0 <= fields.get("fail_at", -1) < fields["n"]:
            return "failed", f"boom at item {fields['fail_at']}"
        return "completed", sum(item_value(fields.get("salt", 0), i) for i in range(fields["n"]))
    if name == ParentJob.NAME:
        parent = ParentJob(n_children=fields["n_children"], child_n=fields["child_n"], salt=fields.get("salt", 0))
        return "completed", sum(expected_outcome(CheckpointJob.NAME, {"n": c.n, "salt": c.salt})[1]
                                for c in parent.children())
    if name == StepJob.NAME:
        if 0 <= fields["fail_at"] < fields["steps"]:
            return "failed", f"failed at step {fields['fail_at']}"
        return "completed", sum(range(fields["steps"]))
    raise KeyError(name)
