"""The options a manager's runtime parts share, changed in place when an `open` is repeated."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .._executors import BlockingRunner

__all__ = ("RunSettings",)


@dataclass
class RunSettings:
    """Options of a manager that its scheduler, runs and controls read at the moment they act."""

    grace_period: float
    max_state_bytes: int
    log_dir: Path | None
    blocking: BlockingRunner
    #: set once `close()` starts: nothing new starts or spawns
    closing: bool = False
