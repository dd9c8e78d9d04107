"""The jobs.db schema: tables, indexes, and its version (`PRAGMA user_version`)."""

from __future__ import annotations

SCHEMA_VERSION = 1

from .._query import ACTIVE_STATUSES  # noqa: E402,F401  re-exported; defined once, from JobStatus

CREATE = """
CREATE TABLE IF NOT EXISTS jobs (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    version       INTEGER NOT NULL,
    status        TEXT NOT NULL,
    data          BLOB NOT NULL,
    progress      BLOB,
    metrics       TEXT,
    priority      INTEGER NOT NULL DEFAULT 0,
    seq           INTEGER NOT NULL,
    parent_id     TEXT,
    spawn_key     TEXT,
    initiated_by  TEXT,
    context       TEXT,
    dedup_key     TEXT,
    pause_reason  TEXT,
    error         TEXT,
    traceback     TEXT,
    result        BLOB,
    created_at    REAL NOT NULL,
    started_at    REAL,
    paused_at     REAL,
    finished_at   REAL,
    updated_at    REAL NOT NULL
);
-- unfinished jobs; finished_at IS NULL is cheap to test on every write (an IN list in a partial
-- index's WHERE costs SQLite a temporary table per written row: 3x slower inserts)
CREATE INDEX IF NOT EXISTS jobs_unfinished ON jobs (status, seq) WHERE finished_at IS NULL;
CREATE INDEX IF NOT EXISTS jobs_by_parent ON jobs (parent_id, spawn_key) WHERE parent_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_by_dedup ON jobs (dedup_key) WHERE dedup_key IS NOT NULL;

CREATE TABLE IF NOT EXISTS job_history (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    version             INTEGER NOT NULL,
    status              TEXT NOT NULL,
    parent_id           TEXT,
    priority            INTEGER NOT NULL,
    initiated_by        TEXT,
    context             TEXT,
    created_at          REAL NOT NULL,
    started_at          REAL,
    finished_at         REAL NOT NULL,
    duration_s          REAL,
    queue_wait_s        REAL,
    progress_kind       TEXT,
    progress_fraction   REAL,
    progress_current    REAL,
    progress_total      REAL,
    progress_phase      TEXT,
    items               INTEGER NOT NULL DEFAULT 0,
    bytes               INTEGER NOT NULL DEFAULT 0,
    checkpoints         INTEGER NOT NULL DEFAULT 0,
    non_critical_errors INTEGER NOT NULL DEFAULT 0,
    memory_mb           REAL,
    error               TEXT,
    metrics             TEXT
);
CREATE INDEX IF NOT EXISTS history_by_finished ON job_history (finished_at);
CREATE INDEX IF NOT EXISTS history_by_name ON job_history (name, finished_at);
-- covers metrics(): per-name counts, duration quantiles from index order, items and queue wait
CREATE INDEX IF NOT EXISTS history_by_name_duration ON job_history (name, duration_s, status, items, queue_wait_s, finished_at);

CREATE TABLE IF NOT EXISTS job_checkpoints (
    job_id      TEXT PRIMARY KEY,
    version     INTEGER NOT NULL,
    data        BLOB NOT NULL,
    count       INTEGER NOT NULL,
    created_at  REAL NOT NULL
);

CREATE TABLE IF NOT EXISTS job_errors (
    job_id   TEXT NOT NULL,
    at       REAL NOT NULL,
    message  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_errors_by_job ON job_errors (job_id, at);
"""

# indexes of earlier releases that open() drops (indexes are not part of SCHEMA_VERSION: the
# tables mean the same with either set, and open() brings them up to date)
OBSOLETE = "DROP INDEX IF EXISTS jobs_active;"

JOB_COLUMNS = (
    "id", "name", "version", "status", "data", "progress", "metrics", "priority", "seq",
    "parent_id", "spawn_key", "initiated_by", "context", "dedup_key", "pause_reason", "error",
    "traceback", "result", "created_at", "started_at", "paused_at", "finished_at", "updated_at",
)

HISTORY_COLUMNS = (
    "id", "name", "version", "status", "parent_id", "priority", "initiated_by", "context",
    "created_at", "started_at", "finished_at", "duration_s", "queue_wait_s", "progress_kind",
    "progress_fraction", "progress_current", "progress_total", "progress_phase", "items", "bytes",
    "checkpoints", "non_critical_errors", "memory_mb", "error", "metrics",
)
