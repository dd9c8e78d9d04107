"""`JobWidget`: one job's name, status, progress bar and text, errors, and its control buttons."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import TYPE_CHECKING, Any

import ipywidgets as w
from ipywidgets.widgets.widget_int import ProgressStyle
from ipywidgets.widgets.widget_string import HTMLStyle

from .._job import registry
from .._records import JobEvent
from .._status import JobStatus, can_transition
from . import _format as fmt
from ._refresh import MESSAGES_PER_S, call_on_loop, existing_refresher, live_loop, refresher_for

if TYPE_CHECKING:
    from .._handle import JobHandle

__all__ = ("JobWidget", "job_widget")

log = logging.getLogger("sdjobs_nb.widgets")

S = JobStatus

#: children shown under a parent's widget (the dashboard shows every one)
MAX_CHILD_ROWS = 50
#: the status each button asks for; a button is enabled only where that transition is allowed
_TARGET = {"pause": S.PAUSED, "resume": S.QUEUED, "cancel": S.CANCELLED}


class _Shared:
    """Layouts and styles every job widget shares: fewer comm models for hundreds of rows."""

    _instance: _Shared | None = None

    def __init__(self) -> None:
        # In a wrapping line, items wrap when their bases do not fit and only then grow:
        # small bases keep one line in a narrow notebook; growth (the bar most) fills a wide page.
        self.row = row_layout()
        self.title = w.Layout(flex="1 1 15em", max_width="24em", min_width="6em")
        self.bar = w.Layout(flex="4 1 6em", width="auto", min_width="4em")
        self.info = w.Layout(flex="1 1 12em", max_width="22em", min_width="6em")
        self.button = w.Layout(width="auto", flex="0 0 auto")
        self.child = row_layout(depth=1)
        self.html_style = HTMLStyle()
        self.bar_style = ProgressStyle()
        self.button_style = w.ButtonStyle()

    @classmethod
    def get(cls) -> _Shared:
        shared = cls._instance
        if shared is None or shared.row.comm is None:  # closed, e.g. by Widget.close_all()
            shared = cls._instance = cls()
        return shared


def _resumable(name: str) -> bool:
    try:
        return bool(registry.get(name).IS_RESUMABLE)
    except Exception:  # not registered in this process: it cannot be run here either
        return False


def _set(widget: w.Widget, **values: Any) -> int:
    """Set the traits whose value differs; return 1 if that sent a comm message, else 0."""
    changed = {k: v for k, v in values.items() if getattr(widget, k) != v}
    if not changed:
        return 0
    with widget.hold_sync():
        for name, value in changed.items():
            setattr(widget, name, value)
    return 1


def row_layout(depth: int = 0) -> w.Layout:
    """The layout of a job widget indented `depth` levels: one line that wraps (details and
    children go below it)."""
    indent = f"{1.5 * depth:g}em"
    return w.Layout(width=f"calc(100% - {indent})" if depth else "100%", margin=f"0 0 0 {indent}",
                    align_items="center", flex_flow="row wrap")


class JobWidget(w.HBox):
    """Live view of one job: name, status, progress bar and text, rate and ETA, non-critical
    errors (click to list them), and Pause / Resume / Cancel buttons enabled by state.

    Build it with `job_widget(handle)`; a manager-wide refresher updates it at most
    `MESSAGES_PER_S` comm messages a second, and always to the final state.
    """

    def __init__(self, handle: JobHandle, *, layout: w.Layout | None = None, row: bool = False,
                 nested: bool = False) -> None:
        self._closed = True  # until built: close() from __del__ of a failed __init__ skips the parts
        shared = _Shared.get()
        self.handle = handle
        self.row = row  # a dashboard's row, not the widget job_widget() hands out
        self.nested = nested  # a child's row inside its parent's widget
        self._child_rows: dict[str, JobWidget] = {}
        self._new_children: dict[str, None] = {}  # children seen in events, rows not built yet
        self.job_id = handle.id
        self.not_before = 0.0
        self.messages_per_s = MESSAGES_PER_S
        self._pending: str | None = None
        self._request_error: str | None = None
        self._errors_base = int(handle.metrics.get("non_critical_errors", 0) or 0)
        self._errors_seen = 0
        self._expanded = False
        self._error_list: list[tuple[float, str]] | None = None
        self._error_list_stale = False
        self._fetching = False
        self._detail: w.HTML | None = None
        self._shown_final = False
        self.title = w.HTML(layout=shared.title, style=shared.html_style)
        self.bar = w.FloatProgress(value=0.0, min=0.0, max=1.0, layout=shared.bar, style=shared.bar_style)
        self.info = w.HTML(layout=shared.info, style=shared.html_style)
        self.errors_button: w.Button | None = None  # made at the first non-critical error
        self.pause_button = self._button("Pause", "pause", "pause the job; it resumes from its saved state", shared)
        self.resume_button = self._button("Resume", "play", "resume the paused job", shared)
        self.cancel_button = self._button("Cancel", "stop", "cancel the job for good", shared)
        self.pause_button.on_click(lambda _: self.request("pause"))
        self.resume_button.on_click(lambda _: self.request("resume"))
        self.cancel_button.on_click(lambda _: self.request("cancel"))
        super().__init__([self.title, self.bar, self.info, self.pause_button, self.resume_button, self.cancel_button],
                         layout=layout if layout is not None else shared.row)
        self._closed = False
        if not row:  # a dashboard shows children itself
            self._new_children.update((h.id, None) for h in handle.manager.handles(active_only=False)
                                      if h.parent_id == self.job_id)
        self.render()
        self._on_loop(self._watch)

    @staticmethod
    def _button(description: str, icon: str, tooltip: str, shared: _Shared) -> w.Button:
        return w.Button(description=description, icon=icon, tooltip=tooltip, disabled=True,
                        layout=shared.button, style=shared.button_style)

    # --- state -----------------------------------------------------------------------------

    @property
    def status(self) -> JobStatus:
        return self.handle.current_status

    @property
    def error_count(self) -> int:
        stored = int(self.handle.metrics.get("non_critical_errors", 0) or 0)
        return max(stored, self._errors_base + self._errors_seen)

    @property
    def pending(self) -> str | None:
        """The clicked request still being carried out ('pause', 'resume', 'cancel'), else None."""
        return self._pending

    @property
    def finished(self) -> bool:
        """True once the final state is shown: the job ended or its manager closed."""
        return self._shown_final

    def enabled(self, action: str) -> bool:
        """Tell whether the `action` button ('pause', 'resume', 'cancel') may be clicked now."""
        if self._pending is not None or live_loop(self.handle.manager) is None:
            return False
        status = self.status
        if action != "cancel" and not _resumable(self.handle.name):
            return False
        return can_transition(status, _TARGET[action])

    def note_child(self, job_id: str) -> None:
        """Show child job `job_id` under this one (the refresher calls this when it is queued)."""
        if not self.row and job_id not in self._child_rows:
            self._new_children[job_id] = None

    def note_event(self, event: JobEvent) -> None:
        """Count a non-critical error (the refresher calls this for state events of this job)."""
        if event.kind == "non_critical_error":
            self._errors_seen += 1
        if self._expanded:  # the shown list may lack the newest errors: read it again
            self._load_errors()

    # --- rendering -------------------------------------------------------------------------

    def render(self, deadline: float = 0.0) -> tuple[int, bool]:
        """Set every sub-widget whose value changed; return (comm messages sent, False)."""
        if self._closed:
            return 0, False
        handle = self.handle
        status, progress = handle.current_status, handle.current_progress
        elapsed = handle.metrics.get("elapsed_seconds") if status.is_terminal else None
        count = self.error_count
        reason = handle.pause_reason if status is S.PAUSED else None
        sent = _set(self.title, value=fmt.title_html(handle.name, handle.id, status, self._pending, reason))
        sent += _set(self.bar, value=fmt.bar_value(progress, status), bar_style=fmt.BAR_STYLE[status])
        sent += _set(self.info, value=fmt.info_html(progress, status, error=handle.error, elapsed=elapsed))
        if count:
            sent += _set(self._errors(), description=f"{count:,}")
        for action in _TARGET:
            sent += _set(getattr(self, f"{action}_button"), disabled=not self.enabled(action))
        sent += self._render_detail()
        sent += self._render_children()
        self._shown_final = self._pending is None and (status.is_terminal or live_loop(handle.manager) is None)
        return sent, False

    def _errors(self) -> w.Button:
        """Return the errors button, adding it (before Pause) at the first error."""
        if self.errors_button is None:
            tooltip = "non-critical errors: click to list them"
            button = self.errors_button = self._button("", "exclamation-triangle", tooltip, _Shared.get())
            button.disabled, button.button_style = False, "warning"
            button.on_click(lambda _: self._on_loop(self._toggle_errors))
            self._relayout()
        return self.errors_button

    def _relayout(self) -> int:
        """Put the parts in order: the line, the detail line, then children's rows."""
        line = (self.title, self.bar, self.info, self.errors_button, self.pause_button, self.resume_button,
                self.cancel_button, self._detail)
        rows = tuple(self._child_rows.values())[:MAX_CHILD_ROWS]
        children = tuple(part for part in line if part is not None) + rows
        if children == self.children:
            return 0
        self.children = children
        return 1

    def _render_children(self) -> int:
        if not self._new_children:
            return 0
        layout = _Shared.get().child
        while self._new_children and len(self._child_rows) < MAX_CHILD_ROWS:
            job_id = next(iter(self._new_children))
            del self._new_children[job_id]
            try:
                handle = self.handle.manager.get(job_id)
            except Exception:  # closed meanwhile
                continue
            self._child_rows[job_id] = JobWidget(handle, layout=layout, nested=True)
        self._new_children.clear()  # beyond MAX_CHILD_ROWS: the dashboard shows them all
        return self._relayout()

    def _render_detail(self) -> int:
        parts = []
        if self._request_error:
            parts.append(f"<div>{fmt.error_html(self._request_error)}</div>")
        if self._expanded:
            errors = self._error_list
            parts.append("<i>loading…</i>" if errors is None else fmt.error_list_html(errors))
        if not parts and self._detail is None:
            return 0
        sent = 0
        if self._detail is None:
            self._detail = w.HTML(layout=w.Layout(width="100%", max_height="16em", overflow="auto"))
            sent += self._relayout()
        value = "".join(parts)
        return sent + _set(self._detail, value=value) + _set(self._detail.layout, display="" if value else "none")

    def _render_now(self) -> None:
        self.render()
        refresher = refresher_for(self.handle.manager)
        if refresher is not None and not self.finished and not self._closed:
            refresher.watch(self.job_id, self)

    # --- clicks: only record the request, thread-safely --------------------------------------

    def request(self, action: str) -> concurrent.futures.Future | None:
        """Ask the manager to `pause`, `resume` or `cancel` this job; never blocks.

        Safe from any thread (ipykernel 7.0-7.3 run click handlers off the loop). An error of
        the request shows under the widget. Returns the request's future, or None if the
        manager could not take it.
        """
        manager = self.handle.manager
        try:
            future = manager.submit(action, self.job_id)
        except Exception as e:
            self._on_loop(self._request_finished, action, e)
            return None
        self._on_loop(self._request_started, action)
        future.add_done_callback(lambda f: self._on_loop(self._request_finished, action, _error_of(f)))
        return future

    def _request_started(self, action: str) -> None:
        self._pending = action
        self._request_error = None
        self._render_now()

    def _request_finished(self, action: str, error: BaseException | None) -> None:
        if self._pending == action:
            self._pending = None
        if error is not None:
            self._request_error = f"{action.capitalize()} failed: {type(error).__name__}: {error}"
        self._render_now()

    def _toggle_errors(self) -> None:
        self._expanded = not self._expanded
        if self._expanded:
            self._load_errors()
        self._render_now()

    def _load_errors(self) -> None:
        """Read the job's errors from jobs.db; one read at a time, again if more errors came meanwhile."""
        if self._fetching:
            self._error_list_stale = True
            return
        manager = self.handle.manager
        try:
            task = asyncio.ensure_future(manager.errors(self.job_id), loop=manager.loop)
        except Exception as e:  # the loop or the store is gone
            self._error_list = [(0.0, f"cannot read errors: {e}")]
            return
        self._fetching, self._error_list_stale = True, False
        task.add_done_callback(self._errors_loaded)

    def _errors_loaded(self, task: asyncio.Future[list[tuple[float, str]]]) -> None:
        self._fetching = False
        if task.cancelled():
            return
        error = task.exception()
        self._error_list = [(0.0, f"cannot read errors: {error}")] if error else task.result()
        if self._error_list_stale and self._expanded:
            self._load_errors()
        self._render_now()

    def _on_loop(self, fn: Any, *args: Any) -> None:
        call_on_loop(self.handle.manager, fn, *args)

    # --- lifetime --------------------------------------------------------------------------

    def _watch(self) -> None:
        if self.finished:
            return
        refresher = refresher_for(self.handle.manager)
        if refresher is not None:
            refresher.watch(self.job_id, self)

    def _unwatch(self) -> None:
        refresher = existing_refresher(self.handle.manager)
        if refresher is not None:
            refresher.unwatch(self.job_id, self)

    def close(self) -> None:
        """Stop updating and close this widget and its parts (shared layouts stay)."""
        if getattr(self, "_closed", True):  # closed already, or __init__ failed half-way
            return super().close()
        self._closed = True
        self._on_loop(self._unwatch)
        for part in (self.title, self.bar, self.info, self.errors_button, self.pause_button,
                     self.resume_button, self.cancel_button, self._detail, *self._child_rows.values()):
            if part is not None:
                part.close()
        super().close()


def _error_of(future: concurrent.futures.Future) -> BaseException | None:
    if future.cancelled():
        return concurrent.futures.CancelledError()
    return future.exception()


def job_widget(handle: JobHandle) -> JobWidget:
    """Return the live widget of `handle`'s job; the same widget while one is being kept current."""
    refresher = refresher_for(handle.manager) if _on_manager_loop(handle) else None
    if refresher is not None:
        for view in refresher.watched(handle.id):
            if isinstance(view, JobWidget) and not (view.row or view.nested or view._closed):
                return view
    return JobWidget(handle)


def _on_manager_loop(handle: JobHandle) -> bool:
    try:
        return asyncio.get_running_loop() is handle.manager.loop
    except RuntimeError:
        return False
