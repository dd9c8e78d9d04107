"""Plain functions for `run_blocking` tests: module level, so process pools and Dask workers import them.

Nothing here imports sdjobs_nb: a worker process only needs this small module.
"""

from __future__ import annotations

import os
import time


def square(x: int) -> int:
    return x * x


def burn(n: int) -> int:
    """CPU-bound work holding the GIL: a sum of squares, returned so it cannot be skipped."""
    total = 0
    for i in range(n):
        total += i * i
    return total


def whoami() -> int:
    return os.getpid()


def scaled(x: int, *, factor: int = 1, offset: int = 0) -> int:
    return x * factor + offset


def labelled(x: int, *, key: str, priority: int = 0) -> str:
    """Has keyword arguments named like `Client.submit`'s own (key, priority): they must reach here."""
    return f"{key}:{x}:{priority}"


def boom(message: str) -> None:
    raise ValueError(message)


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
