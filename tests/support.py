"""Helpers for tests that read jobs.db as another process would."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def db_rows(library: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Read jobs.db with plain sqlite3."""
    conn = sqlite3.connect(library / "jobs.db")
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()
