"""Turn user filters (names, statuses, dates, limits) into an analytics `HistoryQuery`.

No pandas here: the command line parses its options with the same rules.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
import re
import time
from collections.abc import Iterable
from typing import Any

from .._store.analytics import TERMINAL_STATUSES, HistoryQuery

__all__ = ("history_query", "to_epoch", "as_strings", "check_limit")

_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|secs|m|min|mins|h|hr|hrs|d|day|days|w|wk|wks|week|weeks)\s*(?:ago)?\s*$", re.I)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DATE_HELP = (
    "use a datetime, a pandas Timestamp, an ISO 8601 string such as '2024-05-01' or "
    "'2024-05-01T12:30:00+02:00', epoch seconds, a timedelta (that long ago), or a duration "
    "such as '90s', '15m', '2h', '7d' (that long ago)"
)


def to_epoch(value: Any, what: str = "time", *, now: float | None = None) -> float | None:
    """Return `value` as epoch seconds (UTC), or None for None.

    Naive datetimes and ISO strings without an offset are local time, as Python's own
    `datetime.timestamp()` reads them. A timedelta, or a string like '2h', means that long
    before now. Raise ValueError with the accepted forms otherwise.
    """
    if value is None:
        return None
    now = time.time() if now is None else now
    if isinstance(value, dt.timedelta):
        return now - value.total_seconds()
    if isinstance(value, dt.datetime):
        return _datetime_epoch(value, what)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day).timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError(f"{what}: {value!r} is not a finite number; {_DATE_HELP}")
        return float(value)
    if isinstance(value, str):
        return _text_epoch(value, what, now)
    if getattr(getattr(value, "dtype", None), "kind", None) == "M":  # numpy datetime64: UTC
        micros = value.astype("datetime64[us]").astype("int64")
        if value != value:
            raise ValueError(f"{what}: NaT is not a time; {_DATE_HELP}")
        return int(micros) / 1e6
    raise ValueError(f"{what}: cannot use a {type(value).__name__} ({value!r}) as a time; {_DATE_HELP}")


def _datetime_epoch(value: dt.datetime, what: str) -> float:
    if value != value:  # pandas NaT is a datetime that equals nothing
        raise ValueError(f"{what}: NaT is not a time; {_DATE_HELP}")
    if value.tzinfo is None or value.utcoffset() is None:
        # pandas reads a naive Timestamp as UTC, Python a naive datetime as local time: use local
        value = dt.datetime(*value.timetuple()[:6], value.microsecond).astimezone()
    return (value - _EPOCH).total_seconds()


def _text_epoch(text: str, what: str, now: float) -> float:
    match = _AGO.match(text)
    if match:
        amount, unit = float(match.group(1)), match.group(2).lower()
        return now - amount * _UNIT_S[unit[0] if unit not in ("min", "mins") else "m"]
    try:
        parsed = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{what}: cannot read {text!r} as a time; {_DATE_HELP}") from None
    return _datetime_epoch(parsed, what)


def as_strings(value: Any, what: str) -> tuple[str, ...] | None:
    """Return a str or an iterable of str as a tuple (None stays None); raise ValueError otherwise."""
    if value is None:
        return None
    if isinstance(value, str):
        return (str(value),)  # a JobStatus is a str too; str() gives its value
    if isinstance(value, Iterable):
        items = tuple(value)
        if all(isinstance(v, str) for v in items):
            return tuple(str(v) for v in items)
    raise ValueError(f"{what} must be a str or a list of str, got {value!r}")


def _statuses(value: Any, allowed: tuple[str, ...]) -> tuple[str, ...] | None:
    statuses = as_strings(value, "status")
    if statuses is None:
        return None
    out = []
    for s in statuses:
        text = s.lower()
        if text not in allowed:
            raise ValueError(f"status {s!r} is not one of {', '.join(allowed)}")
        out.append(text)
    return tuple(out)


def check_limit(limit: Any) -> int | None:
    """Return `limit` as an int >= 0 or None; raise ValueError otherwise."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 0:
        raise ValueError(f"limit must be an int >= 0 or None, got {limit!r}")
    return int(limit)


def history_query(name: Any = None, status: Any = None, since: Any = None, until: Any = None,
                  limit: Any = None) -> HistoryQuery:
    """Check the filters of `history()` and return the query they describe."""
    now = time.time()
    return HistoryQuery(
        names=as_strings(name, "name"),
        statuses=_statuses(status, TERMINAL_STATUSES),
        since=to_epoch(since, "since", now=now),
        until=to_epoch(until, "until", now=now),
        limit=check_limit(limit),
    )
