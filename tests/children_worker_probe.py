"""The test's side of `children_worker_fns.held` calls: see which started, release them, prove the loop was free.

A held call waits until the test releases it. `release_after_turns` releases each call only
after this coroutine has taken a number of turns of the event loop *while the call was held*:
if the call blocked the loop, no turn could be taken, nobody would release it, and the call
would give up (TimeoutError). So a call that returns shows the loop stayed free, however fast
or slow the machine is.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

DEADLINE_S = 60.0  # only a failing test waits this long


def started(folder: Path) -> set[str]:
    """Tokens of the held calls that have started in `folder`."""
    return {p.name[len("started-"):] for p in Path(folder).glob("started-*")}


def release(folder: Path, token: str | None = None) -> None:
    """Release one held call (by token), or every call, past and future, of `folder`."""
    (Path(folder) / ("release" if token is None else f"release-{token}")).touch()


async def until_started(folder: Path, count: int) -> set[str]:
    """Wait until `count` held calls have started in `folder`; return their tokens."""
    deadline = time.monotonic() + DEADLINE_S
    while len(tokens := started(folder)) < count:
        assert time.monotonic() < deadline, f"fewer than {count} held calls started within {DEADLINE_S:g} s"
        await asyncio.sleep(0.002)
    return tokens


async def release_after_turns(folder: Path, calls: int, turns: int = 50) -> list[str]:
    """Release `calls` held calls one after another, each after `turns` loop turns taken while it was held.

    Returns the tokens in the order they were released.
    """
    released: list[str] = []
    while len(released) < calls:
        new = started(folder) - set(released)
        if not new:
            await until_started(folder, len(released) + 1)
            continue
        for token in sorted(new):
            for _ in range(turns):
                await asyncio.sleep(0.001)  # one turn of the loop while the call is held
            release(folder, token)
            released.append(token)
    return released
