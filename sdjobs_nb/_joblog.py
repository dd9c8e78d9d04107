"""Per-job loggers, optionally mirrored to `<library>/logs/<job_id>.log`."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

_PARENT = logging.getLogger("sdjobs_nb.jobs")
_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(message)s")


def job_logger(job_id: str, name: str, log_dir: Path | None) -> logging.Logger:
    """Return a logger for one run of a job; it propagates to `sdjobs_nb.jobs`.

    The logger is not registered in `logging`'s global table, so finished jobs leave nothing
    behind. The file name is derived from the job id only, after checking it is a UUID.
    """
    log = logging.Logger(f"sdjobs_nb.jobs.{name}.{job_id[:8]}")
    log.parent = _PARENT
    if log_dir is not None:
        try:
            file_name = f"{uuid.UUID(job_id)}.log"
        except ValueError:  # a tampered id never names a file
            log.warning("job id %.80r is not a UUID; its records are not written to a file", job_id)
            return log
        log_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_dir / file_name, encoding="utf-8", delay=True)
        handler.setFormatter(_FORMAT)
        log.addHandler(handler)
        log.setLevel(logging.DEBUG)
    return log


def close_logger(log: logging.Logger) -> None:
    for handler in list(log.handlers):
        handler.close()
        log.removeHandler(handler)
