"""One refresher per manager: a single task on the manager's loop keeps every widget current.

It reads `manager.events()` and marks the widgets of the job an event is about as dirty; a
timer then renders dirty widgets in slices of at most `SLICE_S`, each widget no more often
than its message budget allows (`MESSAGES_PER_S`), and all widgets of a manager together
within `TOTAL_MESSAGES_PER_S`. A render only touches traits whose value changed, so a
refresh costs one comm message per sub-widget that really changed.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .._errors import EventsOverflow

if TYPE_CHECKING:
    from .._manager import JobManager
    from .._records import JobEvent

__all__ = (
    "MESSAGES_PER_S", "MIN_INTERVAL_S", "Refresher", "TOTAL_MESSAGES_PER_S", "call_on_loop",
    "existing_refresher", "live_loop", "refresher_for",
)

log = logging.getLogger("sdjobs_nb.widgets")

#: comm messages a second one widget may send (a running job's bar and text are two)
MESSAGES_PER_S = 8.0
#: no widget refreshes more often than this, whatever its messages cost
MIN_INTERVAL_S = 0.1
#: comm messages a second all widgets of one manager may send together (a dashboard of
#: hundreds of running jobs refreshes each row less often instead of flooding the frontend)
TOTAL_MESSAGES_PER_S = 400.0
#: the longest a refresh may hold the loop before letting other tasks run
SLICE_S = 0.005


class View(Protocol):
    """What the refresher renders: a job widget or a dashboard."""

    not_before: float
    messages_per_s: float

    def note_event(self, event: JobEvent) -> None:
        """Take note of a state change (not progress) of the job shown."""

    def note_child(self, job_id: str) -> None:
        """Take note of a new child of the job shown."""

    def render(self, deadline: float) -> tuple[int, bool]:
        """Bring the widget up to date; return (comm messages sent, whether work is left)."""

    @property
    def finished(self) -> bool:
        """True once the view shows a final state and needs no more refreshes."""


class Refresher:
    """Keeps one manager's widgets up to date; lives on (and is only touched from) its loop."""

    def __init__(self, manager: JobManager, loop: asyncio.AbstractEventLoop) -> None:
        self.manager = manager
        self.loop = loop
        self._views: dict[str, list[View]] = {}
        self._boards: list[Any] = []
        self._dirty: dict[View, None] = {}
        self._urgent: set[View] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._tokens = TOTAL_MESSAGES_PER_S * MIN_INTERVAL_S
        self._tokens_at = loop.time()

    # --- registration (loop thread) ---------------------------------------------------------

    def watch(self, job_id: str, view: View) -> None:
        """Keep `view` current with job `job_id` until it shows a final state."""
        views = self._views.setdefault(job_id, [])
        if view not in views:
            views.append(view)
        self.mark(view)
        self._ensure_task()

    def unwatch(self, job_id: str, view: View) -> None:
        views = self._views.get(job_id)
        if views and view in views:
            views.remove(view)
            if not views:
                del self._views[job_id]
        self._dirty.pop(view, None)
        self._urgent.discard(view)
        self._stop_if_idle()

    def watched(self, job_id: str) -> list[View]:
        return list(self._views.get(job_id, ()))

    def add_board(self, board: Any) -> None:
        """Tell `board` (a dashboard) about every job event that is not progress."""
        if board not in self._boards:
            self._boards.append(board)
        self.mark(board)
        self._ensure_task()

    def remove_board(self, board: Any) -> None:
        if board in self._boards:
            self._boards.remove(board)
        self._dirty.pop(board, None)
        self._urgent.discard(board)
        self._stop_if_idle()

    def mark(self, view: View, urgent: bool = False) -> None:
        """Render `view` as soon as its budget allows, or at the next slice if `urgent`.

        Progress is not urgent; a state change is (there are a handful per job, and a
        click should show its effect at once). Urgent renders still use up the budget.
        """
        if urgent:
            self._urgent.add(view)
        if view in self._dirty and not urgent:
            return
        self._dirty[view] = None
        self._arm(self.loop.time() if urgent else max(self.loop.time(), view.not_before))

    def mark_all(self) -> None:
        for views in list(self._views.values()):
            for view in views:
                self.mark(view, urgent=True)
        for board in self._boards:
            self.mark(board, urgent=True)

    # --- the one task: events -> dirty marks ------------------------------------------------

    def _ensure_task(self) -> None:
        if self._task is None or self._task.done():
            self._task = self.loop.create_task(self._consume(), name="sdjobs:widgets")

    async def _consume(self) -> None:
        try:
            while True:
                # anything that happened before this subscription shows at the next render
                self.mark_all()
                try:
                    async for event in self.manager.events():
                        self._on_event(event)
                    return  # the manager closed
                except EventsOverflow:
                    log.info("widget refresher fell behind on job events; repainting every widget")
        finally:
            if self._task is asyncio.current_task():
                self._task = None
            self.mark_all()  # show the final state (e.g. PAUSED after close())
            if self.manager.closed:
                _REFRESHERS.pop(self.manager, None)

    def _on_event(self, event: JobEvent) -> None:
        if event.kind == "progress":
            for view in self._views.get(event.job_id, ()):
                self.mark(view)
            return
        for view in self._views.get(event.job_id, ()):
            view.note_event(event)
            self.mark(view, urgent=True)
        if event.kind == "queued" and event.parent_id is not None:
            for view in self._views.get(event.parent_id, ()):
                view.note_child(event.job_id)
                self.mark(view, urgent=True)
        for board in self._boards:
            board.note_event(event)
            self.mark(board)

    def _stop_if_idle(self) -> None:
        if self._views or self._boards or self._task is None:
            return
        self._task.cancel()
        self._task = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if _REFRESHERS.get(self.manager) is self:
            del _REFRESHERS[self.manager]

    # --- rendering, in slices, within budgets -----------------------------------------------

    def _arm(self, when: float) -> None:
        timer = self._timer
        if timer is not None:
            if timer.when() <= when:
                return
            timer.cancel()
        self._timer = self.loop.call_at(when, self._flush)

    def _refill(self, now: float) -> None:
        cap = TOTAL_MESSAGES_PER_S * MIN_INTERVAL_S
        self._tokens = min(cap, self._tokens + (now - self._tokens_at) * TOTAL_MESSAGES_PER_S)
        self._tokens_at = now

    def _flush(self) -> None:
        self._timer = None
        now = self.loop.time()
        self._refill(now)
        deadline = now + SLICE_S
        wake: float | None = None
        for view in list(self._dirty):
            if view.not_before > now and view not in self._urgent:
                wake = view.not_before if wake is None else min(wake, view.not_before)
                continue
            if self._tokens < 1:
                wake = now + (1 - self._tokens) / TOTAL_MESSAGES_PER_S
                break
            del self._dirty[view]
            self._urgent.discard(view)
            sent, more = self._render(view, deadline)
            self._tokens -= sent
            if sent:
                view.not_before = max(view.not_before, now) + max(MIN_INTERVAL_S, sent / view.messages_per_s)
            if more:
                self._dirty[view] = None
                wake = now
            elif view.finished:
                self._retire(view)
            if self.loop.time() >= deadline:
                wake = now  # the rest after other callbacks had their turn
                break
        if self._dirty:
            self._arm(now if wake is None else wake)

    def _render(self, view: View, deadline: float) -> tuple[int, bool]:
        try:
            return view.render(deadline)
        except Exception:  # a broken widget must not stop the others from updating
            log.exception("rendering a job widget failed")
            return 0, False

    def _retire(self, view: View) -> None:
        job_id = getattr(view, "job_id", None)
        if job_id is not None:
            self.unwatch(job_id, view)


_REFRESHERS: weakref.WeakKeyDictionary[Any, Refresher] = weakref.WeakKeyDictionary()


def live_loop(manager: JobManager) -> asyncio.AbstractEventLoop | None:
    """Return the manager's loop if its jobs can still change, else None."""
    loop = manager.loop
    if manager.closed or manager.read_only or loop is None or loop.is_closed():
        return None
    return loop


def refresher_for(manager: JobManager) -> Refresher | None:
    """Return the manager's refresher (made on first use), or None when nothing can change.

    Call it on the manager's loop thread.
    """
    loop = live_loop(manager)
    if loop is None:
        return None
    refresher = _REFRESHERS.get(manager)
    if refresher is None:
        refresher = _REFRESHERS[manager] = Refresher(manager, loop)
    return refresher


def existing_refresher(manager: JobManager) -> Refresher | None:
    """Return the manager's refresher if it has one (never makes one)."""
    return _REFRESHERS.get(manager)


def call_on_loop(manager: JobManager, fn: Callable[..., Any], *args: Any) -> None:
    """Run `fn(*args)` on the manager's loop thread: now if this is it, else soon (thread-safe).

    Click handlers run on another thread under ipykernel 7.0-7.3; this is how they reach
    widget state that the loop owns. With the loop gone, `fn` runs here.
    """
    loop = manager.loop
    if loop is None or loop.is_closed():
        fn(*args)
        return
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        fn(*args)
    else:
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # closed between the check and the call
            fn(*args)
