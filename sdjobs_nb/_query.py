"""The query interface's values: what a history read selects and returns, and the user filters.

Frontends (DataFrames, the command line, widgets) describe a read with these and hand it to
`JobManager.queries` (see `sdjobs_nb._store.queries.Queries`); the store runs it. Nothing here
talks to SQLite or needs pandas, so every layer may import it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import numbers
import operator
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice, repeat
from operator import itemgetter
from typing import Any

from ._status import ACTIVE, TERMINAL, JobStatus

__all__ = (
    "DB_NAME", "TERMINAL_STATUSES", "ACTIVE_STATUSES", "HISTORY_FIELDS", "METRIC_GROUPS", "HistoryQuery",
    "HistoryColumns", "MetricsRow", "history_query", "to_epoch", "as_strings", "check_limit",
)

#: The file in a library folder that holds its jobs.
DB_NAME = "jobs.db"

#: Status values of finished jobs, in `JobStatus` order: a history read's `status` column holds
#: an index into this tuple.
TERMINAL_STATUSES = tuple(s.value for s in JobStatus if s in TERMINAL)
#: Status values of unfinished jobs (queued, running, paused), in `JobStatus` order.
ACTIVE_STATUSES = tuple(s.value for s in JobStatus if s in ACTIVE)

#: Columns of a history read, in order. `status` comes as an index into TERMINAL_STATUSES.
HISTORY_FIELDS = (
    "id", "name", "version", "status", "parent_id", "priority", "initiated_by", "context",
    "created_at", "started_at", "finished_at", "duration_s", "queue_wait_s", "progress_fraction",
    "progress_current", "progress_total", "progress_kind", "progress_phase", "items", "bytes",
    "checkpoints", "non_critical_errors", "memory_mb", "error",
)

#: Columns that `metrics(by=...)` may group on.
METRIC_GROUPS = ("name", "status", "version", "priority", "initiated_by", "parent_id")


@dataclasses.dataclass(frozen=True, slots=True)
class HistoryQuery:
    """Which history rows to read: all filters are ANDed; times are epoch seconds on finished_at."""

    names: tuple[str, ...] | None = None
    statuses: tuple[str, ...] | None = None
    since: float | None = None   # finished_at >= since
    until: float | None = None   # finished_at < until
    limit: int | None = None     # newest rows first


@dataclasses.dataclass(frozen=True, slots=True)
class HistoryColumns:
    """History rows column by column: newest first, or newest-inserted first (see `order`).

    Each of `parts` is (fields, rows): tuples of those fields' values, all parts in the same
    row order. Every other field of HISTORY_FIELDS is either the single value
    `constants[field]` on all `length` rows, or `derived[field] = (a, b)`: the difference of
    the fields a - b on every row.
    """

    length: int
    parts: tuple[tuple[tuple[str, ...], Sequence[tuple]], ...]
    constants: dict[str, Any] = dataclasses.field(default_factory=dict)
    derived: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    in_insert_order: bool = False

    @classmethod
    def of_rows(cls, fields: tuple[str, ...], rows: Sequence[tuple]) -> HistoryColumns:
        return cls(len(rows), ((fields, rows),))

    def fetched_values(self, field: str) -> Iterator[Any]:
        """Iterate over one column in fetched order (see `order`)."""
        if field in self.constants:
            return repeat(self.constants[field], self.length)
        if field in self.derived:
            a, b = self.derived[field]
            return map(minus, self.fetched_values(a), self.fetched_values(b))
        for fields, rows in self.parts:
            if field in fields:
                return map(itemgetter(fields.index(field)), rows)
        raise KeyError(field)

    def order(self) -> list[int] | None:
        """Return the permutation that puts fetched rows newest-finished first, or None if they are.

        Rows of a full read come newest-inserted first (a reverse table scan is much cheaper
        than walking the finished_at index); jobs are inserted as they finish, so this is
        nearly always None. Ties keep newest-inserted first.
        """
        if not self.in_insert_order:
            return None
        finished = list(self.fetched_values("finished_at"))
        if not any(map(operator.lt, finished, islice(finished, 1, None))):
            return None
        return sorted(range(len(finished)), key=finished.__getitem__, reverse=True)  # stable

    def records(self) -> Iterator[dict[str, Any]]:
        """Iterate over rows, newest first, as dicts of every field (for small reads, e.g. the CLI)."""
        columns = [list(self.fetched_values(field)) for field in HISTORY_FIELDS]
        order = self.order()
        for i in range(self.length) if order is None else order:
            yield {field: column[i] for field, column in zip(HISTORY_FIELDS, columns)}


def minus(a: float | None, b: float | None) -> float | None:
    """a - b, or None when either is None (how derived columns are computed)."""
    return None if a is None or b is None else a - b


@dataclasses.dataclass(frozen=True, slots=True)
class MetricsRow:
    """Aggregates of one group of history rows.

    The duration quantiles come either computed (`duration_median_s`, `duration_p95_s`) or,
    when no index orders durations, as `durations`: every known duration, comma-separated as
    SQLite writes REALs (15 significant digits), for the caller to compute them.
    """

    key: Any
    count: int
    completed: int
    failed: int
    cancelled: int
    duration_mean_s: float | None
    duration_max_s: float | None
    items: int
    busy_s: float | None          # sum of the durations of the rows that have one
    queue_wait_mean_s: float | None
    duration_count: int
    duration_median_s: float | None = None
    duration_p95_s: float | None = None
    durations: str | None = None


# --- user filters (DataFrames and the command line parse them with the same rules) ----------

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
