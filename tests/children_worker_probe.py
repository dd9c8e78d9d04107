"""`LoopProbe`: measures how late the event loop wakes a task that sleeps 1 ms again and again."""

from __future__ import annotations

import asyncio
import time


class LoopProbe:
    """Run as `async with LoopProbe() as probe:`; `probe.worst_ms` is the largest lateness seen.

    Lateness is how much longer than 1 ms each `asyncio.sleep(0.001)` took: a loop blocked by
    synchronous work shows up as one long sleep.
    """

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.worst_ms = 0.0
        self.wakeups = 0
        self.seconds = 0.0  # how long the probe ran
        self._started = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.interval)
            late = (time.perf_counter() - before - self.interval) * 1000
            self.worst_ms = max(self.worst_ms, late)
            self.wakeups += 1

    async def __aenter__(self) -> LoopProbe:
        self._task = asyncio.get_running_loop().create_task(self._run())
        await asyncio.sleep(0)  # started before the measured work
        self._started = time.perf_counter()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self.seconds = time.perf_counter() - self._started
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass

    def half_a_call_ms(self, calls: int) -> float:
        """Half the average length of `calls` calls made one after another while the probe ran.

        A loop blocked by such a call would stall for a whole call; staying under half of one
        proves it was not, however slow a busy machine makes the calls.
        """
        return self.seconds * 1000 / calls / 2
