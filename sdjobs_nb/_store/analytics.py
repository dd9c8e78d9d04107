"""Bulk reads for DataFrames and the command line: history, metrics, active jobs.

Everything that reads many rows runs off the loop (`Store.run_read`: an owner's own read
connection and thread, so running jobs' commits never wait for it), and inside one read
transaction, so every statement of a read sees the same rows while the owner keeps writing. Results are plain Python (lists of
tuples, dicts): pandas is optional and the DataFrames are built by `sdjobs_nb.frames`.

Reading a large history is mostly the cost of turning SQLite values into Python objects, value
by value. `read_history` therefore fetches row by row only the columns that vary: a column
that holds one value across the selection (often `parent_id`, `context`, `error`, counters
left at 0) is checked in SQL and handed back as that one value.
"""

from __future__ import annotations

import dataclasses
import operator
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from .._query import HISTORY_FIELDS, METRIC_GROUPS, TERMINAL_STATUSES, HistoryColumns, HistoryQuery, MetricsRow, minus
from .._records import JobRecord
from .store import SELECT_ACTIVE, SELECT_RECORD, Store, read_only_uri, record_from_row

__all__ = (
    "HISTORY_FIELDS", "TERMINAL_STATUSES", "METRIC_GROUPS", "HistoryQuery", "HistoryColumns",
    "MetricsRow", "METRICS_INDEX", "history", "read_history", "metrics", "read_metrics", "durations",
    "read_durations", "active_records", "find_job_ids", "children_records",
)

T = TypeVar("T")

# A small int per row costs less to fetch and to make categorical than the status text.
_STATUS_CODE = (
    "CASE status " + " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(TERMINAL_STATUSES)) + " ELSE -1 END"
)
_EXPRESSIONS = {field: field for field in HISTORY_FIELDS} | {"status": _STATUS_CODE}

# Enough rows to tell which columns vary; a selection smaller than this is read in one go.
SAMPLE_ROWS = 1000


def where_clause(query: HistoryQuery) -> tuple[str, list[Any]]:
    """Return the WHERE clause (or "") that selects `query`'s rows, and its parameters."""
    terms: list[str] = []
    params: list[Any] = []
    for column, values in (("name", query.names), ("status", query.statuses)):
        if values is not None:
            terms.append(f"{column} IN ({', '.join('?' * len(values))})" if values else "0")
            params.extend(values)
    if query.since is not None:
        terms.append("finished_at >= ?")
        params.append(query.since)
    if query.until is not None:
        terms.append("finished_at < ?")
        params.append(query.until)
    return (" WHERE " + " AND ".join(terms) if terms else ""), params


# --- history --------------------------------------------------------------------------------


async def history(store: Store, query: HistoryQuery, build: Callable[[HistoryColumns], T]) -> T:
    """Read history rows and return `build(columns)`, both on the read thread."""
    return await store.run_read(_read_then_build, query, build)


def _read_then_build(conn: sqlite3.Connection, query: HistoryQuery, build: Callable[[HistoryColumns], T]) -> T:
    return build(read_history(conn, query))


def read_history(conn: sqlite3.Connection, query: HistoryQuery) -> HistoryColumns:
    """Read the history rows `query` selects, newest first, in one read transaction."""
    where, params = where_clause(query)
    newest_first = f"FROM job_history{where} ORDER BY finished_at DESC, rowid DESC"
    limit = query.limit
    with _snapshot(conn):
        head = SAMPLE_ROWS if limit is None else min(limit, SAMPLE_ROWS)
        sample = conn.execute(f"SELECT {_select(HISTORY_FIELDS)} {newest_first} LIMIT ?", [*params, head]).fetchall()
        if len(sample) < SAMPLE_ROWS or (limit is not None and limit <= SAMPLE_ROWS):
            return HistoryColumns.of_rows(HISTORY_FIELDS, sample)
        if limit is not None:
            selection = f"{newest_first} LIMIT {int(limit)}"
            shortcuts = _Shortcuts.from_sample(sample).confirmed(conn, f"FROM (SELECT * {selection})", params)
            fetched = shortcuts.others()
            rows = conn.execute(f"SELECT {_select(fetched)} {selection}", params).fetchall()
            return HistoryColumns(len(rows), ((fetched, rows),), shortcuts.constants, shortcuts.derived)
        return _read_all(conn, query, _Shortcuts.from_sample(sample))


def _read_all(conn: sqlite3.Connection, query: HistoryQuery, candidates: _Shortcuts) -> HistoryColumns:
    """Read every selected row, confirming the shortcuts on a second connection meanwhile.

    The check is SQLite work alone (no GIL), so it runs beside the fetch, which is mostly
    Python work. Without a name or time filter, rows come from a reverse table scan, newest
    inserted first (see `HistoryColumns.order`); with one, an index picks them in order.
    """
    where, params = where_clause(query)
    source = f"FROM job_history{where}"
    in_insert_order = not (query.names or query.since is not None or query.until is not None)
    order = "ORDER BY rowid DESC" if in_insert_order else "ORDER BY finished_at DESC, rowid DESC"
    check = _ParallelCheck.start(conn, candidates, source, params) if candidates else None
    fetched = candidates.others()
    rows = conn.execute(f"SELECT {_select(fetched)} {source} {order}", params).fetchall()
    parts = [(fetched, rows)]
    shortcuts = candidates
    if check is not None:
        shortcuts = check.result() or candidates.confirmed(conn, source, params)
        broken = tuple(f for f in HISTORY_FIELDS if f in candidates.fields() and f not in shortcuts.fields())
        if broken:
            parts.append((broken, conn.execute(f"SELECT {_select(broken)} {source} {order}", params).fetchall()))
    return HistoryColumns(len(rows), tuple(parts), shortcuts.constants, shortcuts.derived, in_insert_order)


def _select(fields: Sequence[str]) -> str:
    return ", ".join(_EXPRESSIONS[f] for f in fields) or "NULL"


# The manager writes duration_s = finished_at - started_at and queue_wait_s = started_at -
# created_at; where that holds on every row, the difference is computed instead of fetched.
_DIFFERENCES = {"duration_s": ("finished_at", "started_at"), "queue_wait_s": ("started_at", "created_at")}


@dataclasses.dataclass(frozen=True, slots=True)
class _Shortcuts:
    """Fields that need not be fetched row by row: constants, and differences of other fields."""

    constants: dict[str, Any]
    derived: dict[str, tuple[str, str]]

    @classmethod
    def from_sample(cls, sample: list[tuple]) -> _Shortcuts:
        """The candidates: what holds on every row of the sample."""
        columns = dict(zip(HISTORY_FIELDS, zip(*sample)))
        constants = {f: values[0] for f, values in columns.items()
                     if f != "finished_at" and values.count(values[0]) == len(values)}
        derived = {f: (a, b) for f, (a, b) in _DIFFERENCES.items()
                   if f not in constants and all(map(operator.eq, columns[f], map(minus, columns[a], columns[b])))}
        return cls(constants, derived)

    def __bool__(self) -> bool:
        return bool(self.constants or self.derived)

    def fields(self) -> set[str]:
        return {*self.constants, *self.derived}

    def others(self) -> tuple[str, ...]:
        """The fields to fetch."""
        return tuple(f for f in HISTORY_FIELDS if f not in self.constants and f not in self.derived)

    def keep(self, held: set[str]) -> _Shortcuts:
        return _Shortcuts({f: v for f, v in self.constants.items() if f in held},
                          {f: d for f, d in self.derived.items() if f in held})

    def _checks(self) -> tuple[list[str], list[Any], str]:
        """SQL that is true on a row breaking each shortcut, its parameters, and the columns it reads."""
        checks = [f"{f} IS NOT ?" for f in self.constants] + [f"{f} IS NOT {a} - {b}" for f, (a, b) in self.derived.items()]
        names = {*self.fields(), *(c for pair in self.derived.values() for c in pair)}
        columns = ", ".join(f"{_EXPRESSIONS[f]} AS {f}" for f in HISTORY_FIELDS if f in names)
        return checks, list(self.constants.values()), columns

    def confirmed(self, conn: sqlite3.Connection, source: str, params: list[Any]) -> _Shortcuts:
        """Keep the shortcuts that hold on every row of `source`.

        One pass, stopping at the first row that breaks any; only when one breaks, a second
        pass tells which.
        """
        if not self:
            return self
        checks, values, columns = self._checks()
        inner = f"SELECT {columns} {source}"
        any_breaks = f"SELECT EXISTS (SELECT 1 FROM ({inner}) WHERE {' OR '.join(checks)})"
        if not conn.execute(any_breaks, [*params, *values]).fetchone()[0]:
            return self
        per_field = ", ".join(f"count(*) FILTER (WHERE {sql})" for sql in checks)
        counts = conn.execute(f"SELECT {per_field} FROM ({inner})", [*values, *params]).fetchone()  # SQL order
        return self.keep({f for f, n in zip([*self.constants, *self.derived], counts) if n == 0})


# Identifies the table's rows in a snapshot: history rows are inserted (or replaced, which
# gives a new rowid) and never changed in place.
_FINGERPRINT = "SELECT (SELECT count(*) FROM job_history), (SELECT max(rowid) FROM job_history)"


class _ParallelCheck:
    """Confirms shortcuts on a read-only connection of its own, in a thread of its own."""

    def __init__(self, conn: sqlite3.Connection, candidates: _Shortcuts, source: str, params: list[Any]) -> None:
        self._path = conn.execute("PRAGMA database_list").fetchone()[2]
        self._expected = conn.execute(_FINGERPRINT).fetchone()
        self._args = (candidates, source, params)
        self._outcome: _Shortcuts | None = None
        self._thread = threading.Thread(target=self._run, name="sdjobs:history-check", daemon=True)

    @classmethod
    def start(cls, conn: sqlite3.Connection, candidates: _Shortcuts, source: str, params: list[Any]) -> _ParallelCheck:
        check = cls(conn, candidates, source, params)
        check._thread.start()
        return check

    def _run(self) -> None:
        try:
            with _reader(Path(self._path)) as conn:
                with _snapshot(conn):
                    if conn.execute(_FINGERPRINT).fetchone() == self._expected:  # the same rows
                        self._outcome = self._args[0].confirmed(conn, *self._args[1:])
        except sqlite3.Error:  # the caller checks on its own connection instead
            self._outcome = None

    def result(self) -> _Shortcuts | None:
        """The confirmed shortcuts, or None when the check saw other rows or failed."""
        self._thread.join()
        return self._outcome


class _snapshot:
    """A read transaction: every statement inside sees the same committed rows."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._began = not self._conn.in_transaction
        if self._began:
            self._conn.execute("BEGIN")

    def __exit__(self, *exc: Any) -> None:
        if self._began and self._conn.in_transaction:
            self._conn.execute("COMMIT")


# --- metrics --------------------------------------------------------------------------------


async def metrics(store: Store, by: str, query: HistoryQuery, build: Callable[[list[MetricsRow]], T]) -> T:
    """Aggregate history rows per `by` value and return `build(rows)`, on the read thread."""
    return await store.run_read(_metrics_then_build, by, query, build)


def _metrics_then_build(conn: sqlite3.Connection, by: str, query: HistoryQuery, build: Callable[[list[MetricsRow]], T]) -> T:
    return build(read_metrics(conn, by, query))


#: The (optional) index that makes metrics(by="name") one ordered pass: aggregates read it
#: without touching the table, and quantiles are a short walk from either end of a name's
#: durations. Without it, the rows are sorted by name and every duration is returned.
METRICS_INDEX = "history_by_name_duration"
METRICS_INDEX_COLUMNS = ("name", "duration_s", "status", "items", "queue_wait_s", "finished_at")

_AGGREGATES = (
    "count(*), "
    + ", ".join(f"count(*) FILTER (WHERE status = '{s}')" for s in TERMINAL_STATUSES)
    + ", avg(duration_s), max(duration_s), total(items), sum(duration_s), avg(queue_wait_s), count(duration_s)"
)


def read_metrics(conn: sqlite3.Connection, by: str, query: HistoryQuery) -> list[MetricsRow]:
    """Aggregate the rows `query` selects per value of the column `by` (one of METRIC_GROUPS)."""
    if by not in METRIC_GROUPS:
        raise ValueError(f"metrics can be grouped by {', '.join(METRIC_GROUPS)}; not {by!r}")
    where, params = where_clause(query)
    with _snapshot(conn):
        if by == "name" and _has_metrics_index(conn):
            rows = conn.execute(f"SELECT name, {_AGGREGATES} FROM job_history{where} GROUP BY name", params).fetchall()
            return [_with_quantiles(conn, row, where, params) for row in rows]
        # `+by` keeps SQLite from walking an index on `by` with one table lookup per row:
        # sorting the rows is much faster on a large history
        rows = conn.execute(f"SELECT {by}, {_AGGREGATES}, group_concat(duration_s) FROM job_history{where} "
                            f"GROUP BY +{by} ORDER BY +{by}", params).fetchall()
    return [_metrics_row(r[:-1], durations=r[-1]) for r in rows]


def _metrics_row(r: tuple, **extra: Any) -> MetricsRow:
    return MetricsRow(*r[:7], int(r[7]), *r[8:], **extra)


def _has_metrics_index(conn: sqlite3.Connection) -> bool:
    columns = [r[2] for r in conn.execute(f"PRAGMA index_info({METRICS_INDEX})")]
    return tuple(columns) == METRICS_INDEX_COLUMNS


def _with_quantiles(conn: sqlite3.Connection, row: tuple, where: str, params: list[Any]) -> MetricsRow:
    """Add the median and p95 (linear interpolation, as numpy and pandas) from the ordered index."""
    n = row[-1]
    if not n:
        return _metrics_row(row)
    filters = f"{where} AND" if where else " WHERE"
    sql = f"SELECT duration_s FROM job_history{filters} name = ? AND duration_s IS NOT NULL ORDER BY duration_s"
    quantiles = []
    for q in (0.5, 0.95):
        position = q * (n - 1)
        low = int(position)
        if low <= n - 2 - low:  # nearer the short end: the walk is at most half the group
            pair = [v for (v,) in conn.execute(f"{sql} LIMIT 2 OFFSET ?", [*params, row[0], low])]
        else:
            pair = [v for (v,) in conn.execute(f"{sql} DESC LIMIT 2 OFFSET ?", [*params, row[0], max(n - 2 - low, 0)])][::-1]
            pair = pair if low + 1 < n else pair[-1:]
        high = pair[1] if len(pair) > 1 else pair[0]
        quantiles.append(pair[0] + (position - low) * (high - pair[0]))
    return _metrics_row(row, duration_median_s=quantiles[0], duration_p95_s=quantiles[1])


async def durations(store: Store, query: HistoryQuery) -> dict[str, str]:
    """Return {name: durations comma-separated} of the rows `query` selects, by name."""
    return await store.run_read(read_durations, query)


def read_durations(conn: sqlite3.Connection, query: HistoryQuery) -> dict[str, str]:
    """Return {name: durations comma-separated (15 significant digits)}, names in order."""
    where, params = where_clause(query)
    where = f"{where} AND duration_s IS NOT NULL" if where else " WHERE duration_s IS NOT NULL"
    with _snapshot(conn):
        rows = conn.execute(f"SELECT name, group_concat(duration_s) FROM job_history{where} GROUP BY +name "
                            f"ORDER BY +name", params).fetchall()
    return dict(rows)


# --- single jobs ----------------------------------------------------------------------------


def active_records(store: Store) -> list[JobRecord]:
    """Read the queued, running and paused jobs now, without awaiting (a small indexed read)."""
    with _reader(store.path) as conn:
        return [record_from_row(r) for r in conn.execute(SELECT_ACTIVE)]


def find_job_ids(store: Store, prefix: str, limit: int = 2) -> list[str]:
    """Return up to `limit` job ids that start with `prefix` (a full id matches itself)."""
    if not prefix:
        return []
    with _reader(store.path) as conn:
        rows = conn.execute("SELECT id FROM jobs WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
                            (prefix, prefix + "\U0010ffff", limit)).fetchall()
    return [r[0] for r in rows]


def children_records(store: Store, parent_id: str) -> list[JobRecord]:
    """Read the children of a job, in spawn order."""
    with _reader(store.path) as conn:
        return [record_from_row(r) for r in conn.execute(f"{SELECT_RECORD} WHERE parent_id=? ORDER BY seq", (parent_id,))]


class _reader:
    """A short-lived read-only connection (WAL readers never wait for the writer)."""

    def __init__(self, db_path: Path) -> None:
        self._path = db_path

    def __enter__(self) -> sqlite3.Connection:
        self._conn = sqlite3.connect(read_only_uri(self._path), uri=True, timeout=10.0)
        return self._conn

    def __exit__(self, *exc: Any) -> None:
        self._conn.close()
