"""`JobContext`: what a running job uses to report progress, save state and cooperate."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .._errors import Interrupted
from .._joblog import close_logger, job_logger
from .._progress import ProgressMeter

if TYPE_CHECKING:
    from .._job import Job
    from .entry import JobEntry

__all__ = ("JobContext", "RunHost")

_YIELD_EVERY_S = 0.01
_ABANDONED_PAUSE_S = 0.1  # an abandoned run's calls wait this long before they raise, so it cannot spin the loop
_LIFECYCLE = logging.getLogger("sdjobs_nb.jobs")


_memory_cache = [0.0, None]


def _memory_mb() -> float | None:
    """Resident memory of this process in MiB, sampled at most once a second."""
    now = time.monotonic()
    if now - _memory_cache[0] >= 1.0:
        _memory_cache[0], _memory_cache[1] = now, _read_memory_mb()
    return _memory_cache[1]


def _read_memory_mb() -> float | None:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        try:
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        except Exception:  # pragma: no cover - no way to tell
            return None


class RunHost(Protocol):
    """What a `JobContext` asks of the run that made it: everything that touches jobs.db or the loop."""

    def record_non_critical(self, entry: JobEntry, message: str) -> None:
        """Save and announce an error the job recovered from."""

    async def breathe(self) -> None:
        """Give the event loop a turn."""

    async def checkpoint(self, entry: JobEntry, ctx: JobContext) -> None:
        """Save the job's fields now; return once committed."""

    async def run_blocking(self, fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Any:
        """Run `fn` on the configured executor."""

    async def spawn_children(self, parent: JobEntry, jobs: list[Job], call: int) -> list[str]:
        """Dispatch children of `parent` (the `call`-th spawn of this run); return their ids."""

    async def wait_for_children(self, parent: JobEntry, ids: list[str]) -> list[Any]:
        """Wait for the children's results without holding a slot."""


class JobContext:
    """Given to `Job.run`; one per run of a job.

    Progress methods are plain calls that only store numbers: call them on every item.
    """

    __slots__ = (
        "job_id", "name", "_log", "_log_dir", "_raw", "_seen", "meter", "_host", "_entry",
        "_started", "_last_yield", "_spawn_calls", "checkpoints", "non_critical_errors",
        "_elapsed_before", "items", "bytes", "_abandoned",
    )

    def __init__(self, host: RunHost, entry: JobEntry, log_dir: Path | None) -> None:
        self.job_id = entry.id
        self.name = entry.name
        self._log_dir = log_dir
        # with file logging the logger exists from the start so lifecycle lines reach the file
        self._log: logging.Logger | None = job_logger(entry.id, entry.name, log_dir) if log_dir else None
        self._host = host
        self._entry = entry
        self.meter = ProgressMeter(entry.progress)
        self._raw: tuple | None = None
        self._seen: tuple | None = None
        self._started = time.monotonic()
        self._last_yield = self._started
        self._spawn_calls = 0
        m = entry.metrics
        if m:  # a resumed run counts on from what was saved
            self.checkpoints = _stored_number(m, "checkpoints")
            self.non_critical_errors = _stored_number(m, "non_critical_errors")
            self._elapsed_before = _stored_number(m, "elapsed_seconds", float)
            self.items = _stored_number(m, "items")
            self.bytes = _stored_number(m, "bytes")
        else:  # a first run (most runs): nothing to read
            self.checkpoints = self.non_critical_errors = self.items = self.bytes = 0
            self._elapsed_before = 0.0
        self._abandoned: str | None = None  # the request this run was abandoned on (see `abandon`)

    @property
    def log(self) -> logging.Logger:
        """This job's `logging.Logger` (records also go to `<library>/logs/<id>.log` with file logging)."""
        if self._log is None:
            self._log = job_logger(self.job_id, self.name, self._log_dir)
        return self._log

    def lifecycle(self, level: int, message: str, *args: Any) -> None:
        """Log a state change: to the job's logger when it exists, else to `sdjobs_nb.jobs`."""
        if self._log is not None:
            self._log.log(level, message, *args)
        elif _LIFECYCLE.isEnabledFor(level):
            _LIFECYCLE.log(level, f"{self.name} {self.job_id}: {message}", *args)

    def close(self) -> None:
        if self._log is not None:
            close_logger(self._log)

    def abandon(self, request: str) -> None:
        """Cut this run off from its job (the manager does this, not jobs): its task would not stop.

        The job was recorded without it; from now on every call that would reach the job or
        jobs.db raises `sj.Interrupted`.
        """
        self._abandoned = request

    @property
    def abandoned(self) -> bool:
        """True once the run was abandoned (nothing it does counts any more)."""
        return self._abandoned is not None

    def _refuse_if_abandoned(self) -> None:
        if self._abandoned is not None:
            raise Interrupted(f"{self._abandoned} requested; this run was abandoned because it did not stop")

    async def _stop_if_abandoned(self) -> None:
        if self._abandoned is not None:
            await asyncio.sleep(_ABANDONED_PAUSE_S)
            self._refuse_if_abandoned()

    # --- progress: hot path, no clock, no await ------------------------------------------

    def report_count_progress(self, current: int, total: int | None = None) -> None:
        """Report `current` of `total` items done."""
        self._raw = ("count", current, total)

    def report_percentage_progress(self, fraction: float) -> None:
        """Report progress as a fraction from 0.0 to 1.0 (clamped)."""
        self._raw = ("percentage", fraction, None)

    def report_bytes_progress(self, done: int, total: int | None = None) -> None:
        """Report `done` of `total` bytes processed."""
        self._raw = ("bytes", done, total)

    def report_structured_progress(self, phase: str, data: dict[str, Any] | None = None) -> None:
        """Report a named phase with JSON-able details (validated now; raises on bad data)."""
        self.meter.set_structured(phase, data or {})
        self._raw = ("structured", phase, self.meter.data)

    def report_non_critical_error(self, message: str) -> None:
        """Record an error the job recovered from; it is saved, counted and shown."""
        self._refuse_if_abandoned()
        self.non_critical_errors += 1
        self._host.record_non_critical(self._entry, str(message))

    # --- cooperation -------------------------------------------------------------------------

    @property
    def interrupt_requested(self) -> str | None:
        """'pause' or 'cancel' while such a request is pending, else None (safe to read from any thread)."""
        return self._abandoned or self._entry.interrupt

    async def check_interrupted(self) -> None:
        """Raise `sj.Interrupted` if a pause or cancel is pending; otherwise let the loop breathe.

        It yields to the loop before it raises, so a job that catches the error and loops back
        here still lets the grace period's forced stop happen.
        """
        request = self._abandoned or self._entry.interrupt
        if request is not None:
            await self._stop_if_abandoned()
            await self._host.breathe()
            raise Interrupted(f"{request} requested")
        now = time.monotonic()
        if now - self._last_yield >= _YIELD_EVERY_S:
            self._last_yield = now
            await self._host.breathe()

    async def checkpoint(self) -> None:
        """Save this job's dataclass fields now; a resume starts from the newest checkpoint."""
        await self._stop_if_abandoned()
        self.checkpoints += 1  # counted in the row being written
        try:
            await self._host.checkpoint(self._entry, self)
        except BaseException:
            self.checkpoints -= 1  # nothing was saved
            raise

    async def run_blocking(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run synchronous `fn(*args, **kwargs)` off the event loop (the manager's executor)."""
        await self._stop_if_abandoned()
        return await self._host.run_blocking(fn, args, kwargs)

    async def spawn_children(self, jobs: Sequence[Job]) -> list[str]:
        """Dispatch child jobs of this one; a resumed parent gets the same children back."""
        await self._stop_if_abandoned()
        self._spawn_calls += 1
        return await self._host.spawn_children(self._entry, list(jobs), self._spawn_calls)

    async def wait_for_children(self, ids: Sequence[str]) -> list[Any]:
        """Wait for children and return their results in order; raise `sj.ChildFailed` on failure."""
        await self._stop_if_abandoned()
        return await self._host.wait_for_children(self._entry, list(ids))

    # --- metrics ---------------------------------------------------------------------------

    def get_metrics(self) -> dict[str, Any]:
        """Return elapsed_seconds, memory_mb, items, bytes, checkpoints, non_critical_errors."""
        self._take_counts()
        return {
            "elapsed_seconds": self._elapsed_before + time.monotonic() - self._started,
            "memory_mb": _memory_mb(),
            "items": self.items,
            "bytes": self.bytes,
            "checkpoints": self.checkpoints,
            "non_critical_errors": self.non_critical_errors,
        }

    def _take_counts(self) -> None:
        raw = self._raw
        if raw is None:
            return
        kind, current = raw[0], raw[1]
        if type(current) in (int, float) and 0 <= current < float("inf"):
            if kind == "count":
                self.items = int(current)
            elif kind == "bytes":
                self.bytes = int(current)

    def take_snapshot_if_changed(self, now: float):
        """Return a new `Progress` when reports arrived since the last call, else None (ticker only)."""
        raw = self._raw
        if raw is None or raw is self._seen:
            return None
        self._seen = raw
        meter = self.meter
        kind = raw[0]
        if kind == "structured":
            meter.kind = kind
        else:
            meter.kind, meter.current, meter.total = kind, raw[1], raw[2]
        snap = meter.snapshot(now)
        if meter.invalid:
            self.lifecycle(logging.WARNING, "%s", meter.invalid)
            meter.invalid = None
        return snap


def _stored_number(metrics: Any, key: str, kind: type = int) -> Any:
    """A count saved in a job's metrics, or 0 if it is missing or not a finite number (a hand-edited jobs.db)."""
    value = metrics.get(key, 0) if isinstance(metrics, dict) else 0
    try:
        number = kind(value) if type(value) in (int, float) else kind(0)
    except (OverflowError, ValueError):  # int(inf), int(nan), float(10**400)
        return kind(0)
    return number if number >= 0 and (kind is int or math.isfinite(number)) else kind(0)
