"""Write many rows of one statement with a few SQL statements instead of one call per row.

Why: the sqlite3 module lets go of the GIL for every statement it steps and must win it back
from the event loop's thread. A busy loop hands it over only at the interpreter's switch
interval (5 ms), so `executemany` of 2,000 rows can take seconds while jobs compute. One
`INSERT ... VALUES (...), (...), ...` or `UPDATE ... FROM (VALUES ...)` of 256 rows needs one
hand-off, and SQLite writes those rows while the loop keeps running.

Rows whose statement is neither form, short runs, and updates that touch one job twice in a
run (the order of those matters) still go through `executemany`.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Sequence
from itertools import chain
from typing import Any

__all__ = ("write_run",)

CHUNK_SIZES = (256, 64, 16)  # rows per statement; few sizes keep the statement cache small

_INSERT = re.compile(r"^(INSERT (?:OR REPLACE )?INTO \w+ \([\w, ]+\) VALUES )(\(.*?\))(.*)$", re.S)
_UPDATE = re.compile(r"^UPDATE (\w+) SET (.*) WHERE id=\?$", re.S)
_DELETE = re.compile(r"^(DELETE FROM \w+ WHERE \w+) *= *\?$")


def write_run(conn: sqlite3.Connection, sql: str, rows: Sequence[Sequence[Any]], keys: Sequence[str]) -> None:
    """Execute `sql` once per row of `rows` (each row writes job `keys[i]`), in order."""
    if len(rows) == 1:
        conn.execute(sql, rows[0])
        return
    nparams = len(rows[0])
    shape = _shape(sql)
    if (shape is None or len(rows) < CHUNK_SIZES[-1] or nparams == 0
            or (shape[0] == "update" and len(set(keys)) < len(keys))):
        conn.executemany(sql, rows)
        return
    max_rows = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // nparams
    done = 0
    for size in CHUNK_SIZES:
        if size > max_rows:
            continue
        while len(rows) - done >= size:
            conn.execute(_many(sql, size), list(chain.from_iterable(rows[done:done + size])))
            done += size
    if done < len(rows):
        conn.executemany(sql, rows[done:])


@functools.lru_cache(maxsize=256)
def _shape(sql: str) -> tuple[str, ...] | None:
    """Split a statement we know how to repeat: ("insert", head, values, tail), ("update", table, sets)
    or ("delete", head)."""
    m = _INSERT.match(sql)
    if m is not None and "?" not in m.group(3):
        return ("insert", m.group(1), m.group(2), m.group(3))
    m = _UPDATE.match(sql)
    if m is not None:
        return ("update", m.group(1), m.group(2))
    m = _DELETE.match(sql)
    if m is not None:
        return ("delete", m.group(1))
    return None


@functools.lru_cache(maxsize=256)
def _many(sql: str, size: int) -> str:
    """The statement that writes `size` rows of `sql` at once (same meaning, row by row in order)."""
    shape = _shape(sql)
    if shape[0] == "delete":  # deleting a row twice is deleting it once: order does not matter
        return f"{shape[1]} IN ({', '.join(['?'] * size)})"
    if shape[0] == "insert":
        _, head, values, tail = shape
        return head + ", ".join([values] * size) + tail
    _, table, sets = shape
    numbered = iter(range(1, sets.count("?") + 2))
    sets = re.sub(r"\?", lambda _: f"v.column{next(numbered)}", sets)
    row = "(" + ", ".join(["?"] * (sets.count("v.column") + 1)) + ")"
    return (f"UPDATE {table} SET {sets} FROM (VALUES {', '.join([row] * size)}) AS v "
            f"WHERE {table}.id = v.column{next(numbered)}")
