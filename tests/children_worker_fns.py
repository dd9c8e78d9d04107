"""Plain functions for `run_blocking` tests: module level, so process pools and Dask workers import them.

Nothing here imports sdjobs_nb: a worker process only needs this small module.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path


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


# --- calls held until the test releases them (see children_worker_probe.py) ------------------------


def held(folder: str, patience: float = 60.0) -> str:
    """Block until the test releases this call; return its token.

    Leaves `started-<token>` in `folder`, then waits (sleeping) until `folder/release` (every
    call) or `folder/release-<token>` (this one) exists. Raises TimeoutError after `patience`
    seconds, so a call nobody releases fails instead of holding a thread forever.
    """
    token = _start(folder)
    deadline = time.monotonic() + patience
    while not _released(folder, token):
        if time.monotonic() > deadline:
            raise TimeoutError(f"call {token} was not released within {patience:g} s")
        time.sleep(0.002)
    return token


def burn_until_released(folder: str, patience: float = 60.0) -> str:
    """Like `held`, but burns CPU (pure Python, holding the GIL) while it waits; returns its token."""
    token = _start(folder)
    deadline = time.monotonic() + patience
    total = i = 0
    while not _released(folder, token):
        if time.monotonic() > deadline:
            raise TimeoutError(f"call {token} was not released within {patience:g} s")
        for _ in range(20_000):
            total += i * i
            i += 1
    return token


def _start(folder: str) -> str:
    token = uuid.uuid4().hex
    (Path(folder) / f"started-{token}").touch()
    return token


def _released(folder: str, token: str) -> bool:
    return (Path(folder) / "release").exists() or (Path(folder) / f"release-{token}").exists()
