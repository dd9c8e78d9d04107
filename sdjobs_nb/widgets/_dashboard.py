"""`Dashboard`: one widget with a row per job of a library, children under their parent."""

from __future__ import annotations

import asyncio
import concurrent.futures
import html
from typing import TYPE_CHECKING

import ipywidgets as w

from .._records import JobEvent, JobRecord
from .._status import JobStatus
from ._job import JobWidget, _error_of, row_layout
from ._refresh import call_on_loop, existing_refresher, live_loop, refresher_for

if TYPE_CHECKING:
    from .._handle import JobHandle
    from .._manager import JobManager

__all__ = ("Dashboard", "dashboard")

S = JobStatus
INTERRUPTED = "interrupted"  # the pause reason of a crash or close(); resume_interrupted() takes these
#: finished rows kept for the "All" filter; older ones are closed
MAX_FINISHED_ROWS = 500
#: a dashboard re-renders its list and summary at most this often (its rows have their own budget)
BOARD_MESSAGES_PER_S = 8.0


class Dashboard(w.VBox):
    """Every job of one library in one widget: a row per job (children indented under their
    parent), a filter for active or all jobs, and "Resume interrupted" when a crash or a
    `close()` left jobs paused.

    New jobs get a row when they are dispatched; rows are added and updated in place, never
    rebuilt, so it stays responsive with hundreds of jobs. "All" adds the jobs that finished
    while the dashboard was open. On a read-only view of a library that another process runs,
    it re-reads the unfinished jobs from jobs.db every `poll_seconds`, with every button
    disabled.
    """

    #: how often a read-only dashboard re-reads jobs.db
    poll_seconds = 2.0

    def __init__(self, manager: JobManager) -> None:
        self.manager = manager
        self.not_before = 0.0
        self.messages_per_s = BOARD_MESSAGES_PER_S
        self.job_id = None
        self._rows: dict[str, JobWidget] = {}
        self._parents: dict[str, str | None] = {}
        self._new: dict[str, None] = {}  # job ids seen in events, rows not built yet
        self._structure_changed = True
        self._closed = False
        self._depth_layouts: dict[int, w.Layout] = {}
        self.summary = w.HTML(layout=w.Layout(flex="1 1 auto"))
        self.filter = w.ToggleButtons(options=[("Active", "active"), ("All", "all")], value="active",
                                      tooltips=["queued, running and paused jobs", "finished jobs too"],
                                      style=w.ToggleButtonsStyle(button_width="5em"))
        self.resume_button = w.Button(description="Resume interrupted", icon="play", button_style="info",
                                      tooltip="resume every job a crash or close() left paused",
                                      layout=w.Layout(width="auto", display="none"))
        self.message = w.HTML()
        self.rows = w.VBox()
        self.filter.observe(lambda _: call_on_loop(manager, self._refilter), names="value")
        self.resume_button.on_click(lambda _: self.resume_interrupted())
        self.header = w.HBox([self.summary, self.resume_button, self.filter],
                             layout=w.Layout(width="100%", align_items="center"))
        super().__init__([self.header, self.message, self.rows])
        self._poll_task: asyncio.Task[None] | None = None
        self._polled: dict[str, JobRecord] = {}  # a read-only view's last poll: rows to re-read when they change
        for handle in manager.handles(active_only=True):
            self._add_row(handle)
        self.render()
        call_on_loop(manager, self._watch)

    # --- events (from the refresher, on the loop) --------------------------------------------

    def note_event(self, event: JobEvent) -> None:
        """Remember a job the dashboard has no row for yet; structure changes show at the next render."""
        if event.job_id not in self._rows:
            self._new[event.job_id] = None
        self._structure_changed = True

    @property
    def finished(self) -> bool:
        return self._closed or live_loop(self.manager) is None

    # --- rendering -------------------------------------------------------------------------

    def render(self, deadline: float = float("inf")) -> tuple[int, bool]:
        """Build rows for new jobs (until `deadline`), then the list and the summary."""
        if self._closed:
            return 0, False
        more = self._build_new_rows(deadline)
        if more:  # show the new rows together, once all are built
            return 0, True
        sent = 0
        if self._structure_changed:
            self._structure_changed = False
            self._prune()
            sent += self._render_list()
        sent += self._render_header()
        return sent, False

    def _build_new_rows(self, deadline: float) -> bool:
        loop = self.manager.loop
        while self._new:
            job_id = next(iter(self._new))
            del self._new[job_id]
            try:
                handle = self.manager.get(job_id)
            except Exception:  # closed meanwhile, or not in this library
                continue
            self._add_row(handle)
            if loop is not None and loop.time() >= deadline:
                return bool(self._new)
        return False

    def _add_row(self, handle: JobHandle) -> None:
        if handle.id in self._rows:
            return
        self._parents[handle.id] = handle.parent_id
        self._rows[handle.id] = JobWidget(handle, row=True, layout=self._depth_layout(self._depth(handle.id)))
        self._structure_changed = True

    def _depth(self, job_id: str) -> int:
        depth, parent = 0, self._parents.get(job_id)
        while parent in self._rows and depth < 100:
            depth, parent = depth + 1, self._parents.get(parent)
        return depth

    def _prune(self) -> None:
        """Close the oldest finished rows beyond `MAX_FINISHED_ROWS` (bounded memory)."""
        finished = [job_id for job_id, row in self._rows.items() if row.status.is_terminal]
        excess = len(finished) - MAX_FINISHED_ROWS
        if excess <= 0:
            return
        parents = set(self._parents.values())
        for job_id in finished:
            if excess <= 0:
                break
            if job_id in parents:
                continue
            self._rows.pop(job_id).close()
            del self._parents[job_id]
            excess -= 1

    def _visible(self, row: JobWidget) -> bool:
        return self.filter.value == "all" or not row.status.is_terminal

    def _ordered(self) -> list[tuple[JobWidget, int]]:
        """Rows to show, each child right under its parent, with its indentation depth."""
        children: dict[str | None, list[str]] = {}
        for job_id, parent in self._parents.items():
            children.setdefault(parent if parent in self._rows else None, []).append(job_id)
        shown: list[tuple[JobWidget, int]] = []
        stack = [(job_id, 0) for job_id in reversed(children.get(None, []))]
        while stack:
            job_id, depth = stack.pop()
            row = self._rows[job_id]
            visible = self._visible(row)
            if visible:
                shown.append((row, depth))
            below = depth + 1 if visible else depth
            stack.extend((child, below) for child in reversed(children.get(job_id, [])))
        return shown

    def _render_list(self) -> int:
        sent = 0
        ordered = self._ordered()
        for row, depth in ordered:
            layout = self._depth_layout(depth)
            if row.layout is not layout:
                row.layout = layout
                sent += 1
        children = tuple(row for row, _ in ordered)
        if children != self.rows.children:
            self.rows.children = children
            sent += 1
        return sent

    def _depth_layout(self, depth: int) -> w.Layout:
        layout = self._depth_layouts.get(depth)
        if layout is None:
            layout = self._depth_layouts[depth] = row_layout(depth)
        return layout

    def _render_header(self) -> int:
        counts: dict[JobStatus, int] = {}
        interrupted = 0
        for row in self._rows.values():
            status = row.status
            counts[status] = counts.get(status, 0) + 1
            if status is S.PAUSED and row.handle.pause_reason == INTERRUPTED:
                interrupted += 1
        total = len(self._rows)
        parts = [f"<b>{html.escape(self.manager.path.name)}</b>", f"{total:,} job{'' if total == 1 else 's'}"]
        parts += [f"{counts[s]:,} {s.value}" for s in S if counts.get(s)]
        if interrupted:
            parts.append(f"{interrupted:,} interrupted")
        if live_loop(self.manager) is None:
            parts.append("<i>read-only</i>" if self.manager.read_only else "<i>closed</i>")
        sent = _set_value(self.summary, " · ".join(parts))
        show = interrupted > 0 and live_loop(self.manager) is not None
        if (self.resume_button.layout.display != "none") != show:
            self.resume_button.layout.display = "" if show else "none"
            sent += 1
        return sent

    def refresh(self) -> None:
        """Bring every row and the summary up to date now, whatever the budgets (a full update)."""
        if self._closed:
            return
        self._structure_changed = True
        self.render()
        for row in self._rows.values():
            row.render()

    def _refilter(self) -> None:
        self._structure_changed = True
        self._mark()

    def _mark(self) -> None:
        refresher = existing_refresher(self.manager)
        if refresher is not None:
            refresher.mark(self)
        else:
            self.render()

    # --- the Resume interrupted button -------------------------------------------------------

    def resume_interrupted(self) -> concurrent.futures.Future | None:
        """Ask the manager to resume every interrupted job; never blocks (safe from any thread)."""
        loop = live_loop(self.manager)
        if loop is None:
            call_on_loop(self.manager, self._show, "the library is closed or read-only; nothing to resume")
            return None
        try:
            future = asyncio.run_coroutine_threadsafe(self.manager.resume_interrupted(), loop)
        except RuntimeError as e:  # the loop closed meanwhile
            call_on_loop(self.manager, self._show, f"Resume interrupted failed: {e}")
            return None
        future.add_done_callback(lambda f: call_on_loop(self.manager, self._resumed, f))
        return future

    def _resumed(self, future: concurrent.futures.Future) -> None:
        error = _error_of(future)
        if error is not None:
            self._show(f"Resume interrupted failed: {type(error).__name__}: {error}")
        else:
            count = len(future.result())
            self._show(f"resumed {count:,} interrupted job{'' if count == 1 else 's'}")
        self._structure_changed = True
        self._mark()

    def _show(self, text: str) -> None:
        self.message.value = f"<i>{html.escape(text)}</i>"

    # --- lifetime --------------------------------------------------------------------------

    def _watch(self) -> None:
        refresher = refresher_for(self.manager)
        if refresher is not None and not self._closed:
            refresher.add_board(self)
        elif self.manager.read_only and not self.manager.closed and self._poll_task is None:
            self._poll_task = asyncio.ensure_future(self._poll(), loop=self.manager.loop)

    async def _poll(self) -> None:
        """Read-only view: show what the owning process wrote to jobs.db, every `poll_seconds`."""
        while not self._closed and not self.manager.closed:
            try:
                records = await self.manager.queries.active_jobs()
            except Exception as e:  # the library was closed or removed under us
                self._show(f"cannot read the library: {e}")
                return
            self._apply_records(records)
            await asyncio.sleep(self.poll_seconds)

    def _apply_records(self, records: list[JobRecord]) -> None:
        polled, self._polled = self._polled, {record.id: record for record in records}
        for record in records:
            if record.id not in self._rows or polled.get(record.id) != record:
                self._update_from_library(record.id)
        for job_id, row in list(self._rows.items()):
            if job_id not in self._polled and not row.status.is_terminal:
                self._update_from_library(job_id)  # finished: its final record
        self._structure_changed = True
        self.render()

    def _update_from_library(self, job_id: str) -> None:
        try:
            handle = self.manager.get(job_id)  # a read-only view's handles hold the job's record as read now
        except Exception:  # closed meanwhile
            return
        self._update_row(handle)

    def _update_row(self, handle: JobHandle) -> None:
        row = self._rows.get(handle.id)
        if row is None:
            self._add_row(handle)
        else:
            row.handle = handle
            row.render()

    def _unwatch(self) -> None:
        refresher = existing_refresher(self.manager)
        if refresher is not None:
            refresher.remove_board(self)

    def close(self) -> None:
        """Stop updating; close the dashboard, its rows and its parts."""
        if not self._closed:
            self._closed = True
            call_on_loop(self.manager, self._unwatch)
            for row in self._rows.values():
                row.close()
            if self._poll_task is not None:
                self._poll_task.cancel()
            for part in (self.summary, self.filter, self.resume_button, self.message, self.rows, self.header,
                         *self._depth_layouts.values()):
                part.close()
        super().close()


def _set_value(widget: w.Widget, value: str) -> int:
    if widget.value == value:
        return 0
    widget.value = value
    return 1


def dashboard(manager: JobManager) -> Dashboard:
    """Return a live dashboard of every job of `manager`'s library."""
    return Dashboard(manager)
