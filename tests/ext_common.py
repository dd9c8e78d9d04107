"""Helpers of the extension tests: example paths, the counter's expected result, state peeking,
and GATED, a test-only module whose job waits for the test instead of racing it."""

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


# A test-only job that counts like counter.wat (same result, same 16-byte state), but whose first
# run *holds* at step `hold`: it reports that step's progress, then loops on sdjobs.should_stop
# until a pause, cancel or close arrives, saves its state and stops. A resumed run (one that
# starts from a saved state) never holds. So a test can look at the job mid-way for as long as
# it likes, however fast the machine or wasmtime is, and then let it finish (pause + resume).
# Input: 24 bytes, three little-endian i64 (see `gated_input`); result: acc as 8 LE bytes.
GATED_WAT = """
(module
  (import "sdjobs" "input_read" (func $input_read (param i32 i32) (result i32)))
  (import "sdjobs" "state_size" (func $state_size (result i32)))
  (import "sdjobs" "state_read" (func $state_read (param i32 i32) (result i32)))
  (import "sdjobs" "checkpoint" (func $checkpoint (param i32 i32) (result i32)))
  (import "sdjobs" "should_stop" (func $should_stop (result i32)))
  (import "sdjobs" "progress_count" (func $progress_count (param i64 i64)))
  (import "sdjobs" "log" (func $log (param i32 i32)))
  (import "sdjobs" "set_result" (func $set_result (param i32 i32)))

  ;; 0..16 state (i, acc), 16..40 input (n, every, hold), 48..56 result
  (memory (export "memory") 1)
  (data (i32.const 64) "resumed from a checkpoint")

  (func $save (param $i i64) (param $acc i64)
    (i64.store (i32.const 0) (local.get $i))
    (i64.store (i32.const 8) (local.get $acc))
    (drop (call $checkpoint (i32.const 0) (i32.const 16))))

  (func (export "job_count") (result i32)
    (local $i i64) (local $acc i64) (local $n i64) (local $every i64) (local $hold i64)
    (if (i32.ne (call $input_read (i32.const 16) (i32.const 24)) (i32.const 24))
      (then (return (i32.const 2))))
    (local.set $n (i64.load (i32.const 16)))
    (local.set $every (i64.load (i32.const 24)))
    (local.set $hold (i64.load (i32.const 32)))
    (if (i32.eq (call $state_size) (i32.const 16))
      (then
        (drop (call $state_read (i32.const 0) (i32.const 16)))
        (local.set $i (i64.load (i32.const 0)))
        (local.set $acc (i64.load (i32.const 8)))
        (local.set $hold (i64.const 0))  ;; steps start at 1: a resumed run never holds
        (call $log (i32.const 64) (i32.const 25))))
    (block $done
      (loop $step
        (br_if $done (i64.ge_u (local.get $i) (local.get $n)))
        (if (call $should_stop)
          (then
            (call $save (local.get $i) (local.get $acc))
            (return (i32.const 1))))
        (local.set $i (i64.add (local.get $i) (i64.const 1)))
        (local.set $acc (i64.add (i64.mul (local.get $acc) (i64.const 31)) (local.get $i)))
        (call $progress_count (local.get $i) (local.get $n))
        (if (i64.ne (local.get $every) (i64.const 0))
          (then
            (if (i64.eqz (i64.rem_u (local.get $i) (local.get $every)))
              (then (call $save (local.get $i) (local.get $acc))))))
        (if (i64.eq (local.get $i) (local.get $hold))
          (then
            (loop $wait
              (br_if $wait (i32.eqz (call $should_stop))))
            (call $save (local.get $i) (local.get $acc))
            (return (i32.const 1))))
        (br $step)))
    (i64.store (i32.const 48) (local.get $acc))
    (call $set_result (i32.const 48) (i32.const 8))
    (i32.const 0)))
"""


def gated_module(folder: Path, extra: str = "") -> Path:
    """Write GATED_WAT (plus `extra` module fields, to make a different module) to folder/gated.wat."""
    return write_module(folder, "gated.wat" if not extra else "gated_changed.wat",
                        GATED_WAT.rstrip()[:-1] + extra + ")\n")


def gated_input(n: int, every: int = 0, hold: int = 0) -> bytes:
    """The gated job's input: count to n, checkpoint every `every` steps (0: only when stopped),
    and on a first run wait at step `hold` (0: never) until told to stop."""
    return struct.pack("<qqq", n, every, hold)


def gated_result(raw: bytes) -> int:
    """The gated job's result as the number expected_count(n) computes."""
    assert isinstance(raw, bytes) and len(raw) == 8, raw
    return struct.unpack("<Q", raw)[0]


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


def counter_acc(fields: dict[str, Any]) -> int:
    """The running value `acc` in a counter (or gated) job's checkpointed state."""
    return struct.unpack("<Q", fields["state"][8:16])[0]


def write_module(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


async def until(predicate, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def progress_at_least(handle: Any, count: int, timeout: float = 60.0) -> None:
    """Wait until the handle's progress shows `count` items done."""
    def reached() -> bool:
        p = handle.current_progress
        return p is not None and p.current is not None and p.current >= count

    await until(reached, timeout, f"progress >= {count}")
