"""Helpers of the reliability tests: worker processes, and reading jobs.db as an outsider would."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent
WORKER = Path(__file__).resolve().parent / "worker.py"
TABLES = ("jobs", "job_history", "job_checkpoints", "job_errors")
TERMINAL = ("completed", "failed", "cancelled")


class Worker:
    """A separate Python process running `worker.py MODE ARGS...`; its stdout lines are queued."""

    def __init__(self, *args: Any, stderr_path: Path | None = None, env: dict[str, str] | None = None) -> None:
        self._stderr = open(stderr_path, "wb") if stderr_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, str(WORKER), *map(str, args)], cwd=REPO, stdout=subprocess.PIPE,
            stderr=self._stderr, text=True, bufsize=1, env={**os.environ, **(env or {})},
        )
        self.pid = self.proc.pid
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, prefix: str, timeout: float = 20.0) -> str:
        """Return the first stdout line starting with `prefix` (skipping others)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"worker {self.pid} printed no {prefix!r} line within {timeout} s")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"worker {self.pid} exited ({self.proc.wait()}) before printing {prefix!r}")
            if line.startswith(prefix):
                return line[len(prefix):].strip()

    def kill(self) -> None:
        """SIGKILL the worker and reap it."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.close()

    def wait(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout=timeout)
        self.close()
        return code

    def close(self) -> None:
        if self._stderr is not subprocess.DEVNULL:
            self._stderr.close()
        if self.proc.stdout is not None:
            self._reader.join(timeout=5)
            self.proc.stdout.close()


def connect_ro(library: Path) -> sqlite3.Connection:
    """A plain read-only sqlite3 connection on the library's jobs.db, like another tool would open."""
    conn = sqlite3.connect(f"file:{library / 'jobs.db'}?mode=ro", uri=True, timeout=10)
    return conn


def rows(library: Path, sql: str, params: tuple = ()) -> list[tuple]:
    conn = connect_ro(library)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def write(library: Path, sql: str, params: tuple = ()) -> None:
    """Change jobs.db behind the library's back (the library must be closed)."""
    conn = sqlite3.connect(library / "jobs.db")
    try:
        with conn:
            conn.execute(sql, params)
    finally:
        conn.close()


def counts(library: Path) -> dict[str, int]:
    """Row count of every table (empty dict when jobs.db does not exist)."""
    if not (library / "jobs.db").exists():
        return {}
    return {t: rows(library, f"SELECT count(*) FROM {t}")[0][0] for t in TABLES}


def integrity(library: Path) -> str:
    return ";".join(r[0] for r in rows(library, "PRAGMA integrity_check"))


def decode(blob: bytes) -> Any:
    return msgpack.unpackb(blob, raw=False, strict_map_key=False)


def terminal_snapshot(library: Path) -> dict[str, tuple]:
    """id -> (status, result blob, error, finished_at, history row count) of every finished job."""
    if not (library / "jobs.db").exists():
        return {}
    try:
        found = rows(library, f"SELECT id, status, result, error, finished_at FROM jobs "
                              f"WHERE status IN {TERMINAL}")
        history = dict(rows(library, "SELECT id, count(*) FROM job_history GROUP BY id"))
    except sqlite3.OperationalError:  # the worker has not created the tables yet
        return {}
    return {r[0]: (r[1], r[2], r[3], r[4], history.get(r[0], 0)) for r in found}


def side_lines(path: Path) -> list[tuple[str, int]]:
    """(job id, item) pairs written by CheckpointJob, in order."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        job_id, item = line.split()
        out.append((job_id, int(item)))
    return out


def wait_for(predicate: Any, timeout: float, interval: float = 0.002, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout} s")
        time.sleep(interval)


async def within(awaitable: Any, seconds: float = 20.0) -> Any:
    """Await with a bound, so a job that never finishes fails its test instead of hanging the run."""
    return await asyncio.wait_for(awaitable, seconds)


#: (message, exception repr) of every job task that died with an error nobody retrieved
DEAD_TASKS: list[tuple[str, str]] = []


def _remember_dead_task(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    DEAD_TASKS.append((str(context.get("message")), repr(context.get("exception"))))


@pytest.fixture(autouse=True)
async def quiet_dead_tasks() -> Any:
    """Record a dying task's error instead of logging its traceback.

    asyncio logs "Task exception was never retrieved" with a formatted traceback whenever the
    garbage collector frees such a task; on Python 3.11 formatting a traceback calls
    `ast.parse`, and if the collection happens inside pytest's own `ast.parse` (assertion
    rewriting, failure reports) CPython raises "SystemError: AST constructor recursion depth
    mismatch" and the whole session dies. The error itself is a library bug that a test
    reports; this keeps one such bug from taking every other test down with it.
    """
    asyncio.get_running_loop().set_exception_handler(_remember_dead_task)
    yield
