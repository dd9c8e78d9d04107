"""The jobs a manager holds in memory (queued, running, paused), with parent and dedup links."""

from __future__ import annotations

import logging

from .._errors import InvalidTransition
from .entry import JobEntry

__all__ = ("JobTable",)

log = logging.getLogger("sdjobs_nb")


class JobTable:
    """Unfinished jobs by id; finished ones are forgotten (jobs.db keeps them)."""

    def __init__(self) -> None:
        self._entries: dict[str, JobEntry] = {}
        self._children: dict[str, set[str]] = {}  # parent id -> ids of its unfinished children
        self._dedup: dict[str, str] = {}
        self._broken: dict[str, str] = {}  # id -> why it cannot be loaded

    def get(self, job_id: str) -> JobEntry | None:
        return self._entries.get(job_id)

    def in_order(self) -> list[JobEntry]:
        """Every entry, oldest dispatch first."""
        return sorted(self._entries.values(), key=lambda e: e.seq)

    def active(self, job_id: str, action: str) -> JobEntry:
        """Return the unfinished job `job_id`, or raise `InvalidTransition` naming `action`."""
        entry = self._entries.get(job_id)
        if entry is not None:
            return entry
        raise InvalidTransition(f"cannot {action} job {job_id}: it is finished or not in this library")

    def remember(self, entry: JobEntry) -> None:
        self._entries[entry.id] = entry
        if entry.dedup_key is not None:
            self._dedup[entry.dedup_key] = entry.id
        if entry.parent_id is not None:
            self._children.setdefault(entry.parent_id, set()).add(entry.id)

    def forget(self, entry: JobEntry) -> None:
        self._entries.pop(entry.id, None)
        self._broken.pop(entry.id, None)
        if entry.dedup_key is not None and self._dedup.get(entry.dedup_key) == entry.id:
            del self._dedup[entry.dedup_key]
        siblings = self._children.get(entry.parent_id) if entry.parent_id else None
        if siblings is not None:
            siblings.discard(entry.id)
            if not siblings:
                del self._children[entry.parent_id]

    def with_dedup_key(self, key: str) -> JobEntry | None:
        job_id = self._dedup.get(key)
        return None if job_id is None else self._entries.get(job_id)

    def children_of(self, parent_id: str) -> list[JobEntry]:
        """The unfinished children of `parent_id`, oldest first."""
        ids = self._children.get(parent_id, ())
        return sorted((self._entries[i] for i in ids if i in self._entries), key=lambda e: e.seq)

    # --- jobs that cannot be loaded ------------------------------------------------------------

    def set_aside(self, entry: JobEntry, error: Exception) -> None:
        self._broken[entry.id] = str(error)
        log.warning("job %s (%s) cannot be loaded and stays %s: %s", entry.id, entry.name, entry.status.value, error)

    def mended(self, job_id: str) -> None:
        self._broken.pop(job_id, None)

    def broken(self) -> dict[str, str]:
        return dict(self._broken)

    def broken_named(self, name: str) -> list[JobEntry]:
        return [self._entries[i] for i in self._broken if i in self._entries and self._entries[i].name == name]
