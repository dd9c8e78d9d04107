"""One manager's runtime, wired together: table, scheduler, runs, stored jobs, control, dispatch, children."""

from __future__ import annotations

from collections.abc import Callable

from .._events import EventBus
from .._store.store import Store
from .children import Children
from .control import Control
from .dispatch import Dispatcher
from .loading import StoredJobs
from .run import JobRuns
from .scheduler import Scheduler
from .settings import RunSettings
from .table import JobTable

__all__ = ("Runtime",)


class Runtime:
    """The parts that run one library's jobs on the running loop; the manager is their facade."""

    def __init__(self, store: Store, settings: RunSettings, *, max_concurrent: int,
                 check_open: Callable[[], None], seq: int) -> None:
        self.settings = settings
        self.bus = EventBus()
        self.table = JobTable()
        self.scheduler = Scheduler(self.table, settings, max_concurrent)
        self.runs = JobRuns(store, self.table, self.scheduler, self.bus, settings)
        self.scheduler.starts_with(self.runs.start)
        self.stored = StoredJobs(store, self.table, self.scheduler, self.runs, settings)
        self.control = Control(store, self.table, self.scheduler, self.runs, self.stored, self.bus, settings)
        self.dispatcher = Dispatcher(store, self.table, self.scheduler, self.bus, settings, check_open, seq)
        self.children = Children(store, self.table, self.scheduler, self.dispatcher, self.control, settings)
        self.runs.children = self.children
