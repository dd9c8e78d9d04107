"""A small synchronous facade for scripts and code that cannot `await`.

With no event loop running in the thread, each call runs a private loop that lives as long as
the thread (so a manager opened with `open_sync` keeps its loop, and its jobs run whenever a
sync call is running the loop). Inside a running loop - a notebook cell - blocking on a
coroutine needs a nested loop, and on ipykernel >= 7.3 widget clicks that arrive during a
nested run are dropped; so there these functions raise `SyncInRunningLoop` (use `await`),
unless you opted in with `allow_nested_loop()`. The loop handling lives in `_loops`.
"""

from __future__ import annotations

import os
from typing import Any

from ._errors import NestedLoopWarning, SyncInRunningLoop
from ._loops import allow_nested_loop, close_at_exit, run_sync, wait_sync
from ._manager import JobManager

__all__ = ("NestedLoopWarning", "SyncInRunningLoop", "allow_nested_loop", "open_sync", "run_sync", "wait_sync")


def open_sync(path: str | os.PathLike[str], **options: Any) -> JobManager:
    """Open a library like `await JobManager.open(path, ...)`, from synchronous code.

    Its jobs run whenever a sync call (`run_sync`, `wait_sync`) runs the loop; close it with
    `run_sync(manager.close())`.
    """
    manager = run_sync(JobManager.open(path, **options))
    close_at_exit(manager)
    return manager
