"""Helpers of the extension tests: example paths, the counter's expected result, state peeking."""

from __future__ import annotations

import asyncio
import sqlite3
import struct
from pathlib import Path
from typing import Any

import msgpack

import sdjobs_nb as sj

EXAMPLES = Path(sj.__file__).resolve().parent / "extensions" / "examples"
COUNTER = EXAMPLES / "counter.wat"
FOREVER = EXAMPLES / "forever.wat"
GREEDY = EXAMPLES / "greedy.wat"
BAD_IMPORT = EXAMPLES / "bad_import.wat"


def expected_count(n: int, work: int = 0) -> int:
    """What counter.wat returns for input [n, every, work], computed in Python."""
    acc, spin = 0, work * (work - 1) // 2
    for i in range(1, n + 1):
        acc = (acc * 31 + i + spin) % 2**64
    return acc


def stored_fields(library: Path, job_id: str) -> tuple[str, dict[str, Any]]:
    """(status, decoded state fields) of a job as another process reads jobs.db."""
    conn = sqlite3.connect(library / "jobs.db")
    try:
        status, blob = conn.execute("SELECT status, data FROM jobs WHERE id=?", (job_id,)).fetchone()
    finally:
        conn.close()
    return status, msgpack.unpackb(blob, raw=False)


def counter_step(fields: dict[str, Any]) -> int:
    """Steps done according to a counter job's checkpointed state (0 when none)."""
    state = fields.get("state")
    return 0 if not state else struct.unpack("<q", state[:8])[0]


def write_module(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


async def until(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def progress_at_least(handle: Any, count: int, timeout: float = 20.0) -> None:
    """Wait until the handle's progress shows `count` items done."""
    def reached() -> bool:
        p = handle.current_progress
        return p is not None and p.current is not None and p.current >= count

    await until(reached, timeout, f"progress >= {count}")
