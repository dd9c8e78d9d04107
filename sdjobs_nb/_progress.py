"""Progress snapshots, and the cheap per-job meter that jobs report into.

Reports are plain attribute stores (no clock, no validation, no allocation) so a job can call
them on every item. The manager's ticker turns the meter into a frozen `Progress` snapshot at
most ~10 times a second, sanitizing values there: negatives become 0, `current` above
`total` is clamped to `total`, fractions are clamped to 0..1, and NaN or non-numbers are
dropped (the previous value stays) with a logged warning.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from typing import Any

__all__ = ("Progress", "ProgressMeter", "MAX_STRUCTURED_BYTES")

MAX_STRUCTURED_BYTES = 64 * 1024

KINDS = ("count", "percentage", "bytes", "structured")


@dataclasses.dataclass(frozen=True, slots=True)
class Progress:
    """A read-only snapshot of a job's progress."""

    kind: str
    current: float | None = None
    total: float | None = None
    fraction: float | None = None
    phase: str | None = None
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    message: str | None = None
    rate: float | None = None
    eta_seconds: float | None = None
    updated_at: float = 0.0

    def to_plain(self) -> dict[str, Any]:
        """Return a dict of plain values for storage."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_plain(cls, data: dict[str, Any]) -> Progress:
        """Rebuild a snapshot from `to_plain` output, ignoring unknown keys."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def describe(self) -> str:
        """Return short human text: '37 / 100', '42.0%', '1.2 MiB / 3.0 MiB', or the phase."""
        parts = []
        if self.phase:
            parts.append(self.phase)
        if self.kind == "bytes" and self.current is not None:
            total = f" / {human_bytes(self.total)}" if self.total else ""
            parts.append(f"{human_bytes(self.current)}{total}")
        elif self.kind == "count" and self.current is not None:
            total = f" / {_num(self.total)}" if self.total is not None else ""
            parts.append(f"{_num(self.current)}{total}")
        elif self.fraction is not None:
            parts.append(f"{self.fraction * 100:.1f}%")
        if self.message:
            parts.append(self.message)
        return " · ".join(parts)


def _num(value: float | None) -> str:
    return "?" if value is None else (f"{int(value):,}" if float(value).is_integer() else f"{value:,.2f}")


def human_bytes(n: float | None) -> str:
    """Format a byte count in binary units."""
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _number(value: Any) -> float | None:
    """Return value as a finite float >= 0, or None when it is not usable."""
    if type(value) is bool or not isinstance(value, (int, float)):
        return None
    value = float(value)
    if not math.isfinite(value):
        return None
    return max(value, 0.0)


class ProgressMeter:
    """Mutable progress a job reports into; `snapshot()` is called by the ticker only."""

    __slots__ = (
        "kind", "current", "total", "phase", "data", "message", "dirty", "invalid",
        "_last", "_rate", "_rate_at", "_rate_value",
    )

    def __init__(self, last: Progress | None = None) -> None:
        self.kind = last.kind if last else None
        self.current: Any = last.current if last else None
        self.total: Any = last.total if last else None
        self.phase = last.phase if last else None
        self.data: dict[str, Any] = dict(last.data) if last else {}
        self.message: str | None = last.message if last else None
        self.dirty = False
        self.invalid: str | None = None
        self._last = last
        self._rate: float | None = None
        self._rate_at: float | None = None
        self._rate_value: float | None = None

    def set_structured(self, phase: str, data: dict[str, Any]) -> None:
        """Validate and store structured progress (eagerly: it is not a hot path)."""
        if not isinstance(phase, str):
            raise TypeError(f"phase must be a str, got {type(phase).__name__}")
        if not isinstance(data, dict):
            raise TypeError(f"structured progress data must be a dict, got {type(data).__name__}")
        try:
            size = len(json.dumps(data))
        except (TypeError, ValueError) as e:
            raise ValueError(f"structured progress data must be JSON-able: {e}") from None
        if size > MAX_STRUCTURED_BYTES:
            raise ValueError(
                f"structured progress data is {size:,} bytes as JSON, over {MAX_STRUCTURED_BYTES:,}; "
                f"report a summary, not the data itself"
            )
        self.kind, self.phase, self.data, self.dirty = "structured", phase, data, True

    def snapshot(self, now: float) -> Progress:
        """Build a sanitized snapshot, with rate and ETA, and clear the dirty flag."""
        self.dirty = False
        prev = self._last
        current, total = _number(self.current), _number(self.total)
        if self.current is not None and current is None:
            self.invalid = f"progress value {self.current!r} is not a finite number; kept the previous value"
            current = prev.current if prev else None
        if self.total is not None and total is None:
            self.invalid = f"progress total {self.total!r} is not a finite number; kept the previous value"
            total = prev.total if prev else None
        fraction = self._fraction(current, total)
        if total is not None and current is not None and current > total:
            current = total
        rate = self._update_rate(current, now)
        eta = (total - current) / rate if rate and total is not None and current is not None else None
        snap = Progress(
            kind=self.kind or "count", current=current, total=total, fraction=fraction,
            phase=self.phase, data=self.data, message=self.message, rate=rate,
            eta_seconds=eta, updated_at=time.time(),
        )
        self._last = snap
        return snap

    def _fraction(self, current: float | None, total: float | None) -> float | None:
        if self.kind == "percentage":
            return None if current is None else min(current, 1.0)
        if current is None or not total:
            return None
        return min(current / total, 1.0)

    def _update_rate(self, current: float | None, now: float) -> float | None:
        """Exponentially smoothed items per second, from successive snapshots."""
        if current is None or self.kind == "percentage":
            return None
        if self._rate_at is None or self._rate_value is None or current < self._rate_value:
            self._rate_at, self._rate_value = now, current
            return self._rate
        elapsed = now - self._rate_at
        if elapsed < 0.05:
            return self._rate
        instant = (current - self._rate_value) / elapsed
        self._rate = instant if self._rate is None else 0.3 * instant + 0.7 * self._rate
        self._rate_at, self._rate_value = now, current
        return self._rate
