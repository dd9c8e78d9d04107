"""Matplotlib figures of a library's jobs: a timeline (Gantt chart) and duration distributions.

Figures are built with `matplotlib.figure.Figure`, never pyplot, so no global state changes
and any backend (Agg included) works; a notebook shows a returned Figure as its cell output.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from .._query import TERMINAL_STATUSES, as_strings, history_query
from . import _deps
from ._history import active_jobs_frame, check_open, history_frame

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .._manager import JobManager

__all__ = ("plot_timeline", "plot_durations", "STATUS_COLORS", "timeline_rows")

#: Bar colour per status (finished ones follow the outcome, like a progress bar).
STATUS_COLORS = {
    "completed": "#2ca02c", "failed": "#d62728", "cancelled": "#7f7f7f",
    "running": "#1f77b4", "paused": "#ff7f0e", "queued": "#c7c7c7",
}
TIMELINE_LIMIT = 100


async def plot_timeline(manager: JobManager, *, name: Any = None, status: Any = None, since: Any = None,
                        until: Any = None, limit: int | None = TIMELINE_LIMIT, active: bool = True,
                        ax: Axes | None = None) -> Figure:
    """Return a Gantt-style Figure: one bar per job from its start to its end, coloured by status.

    Finished jobs come from `history(name, status, since, until, limit)` (the newest `limit`,
    100 by default); with `active=True` the unfinished ones are added (`name` and `status`
    apply to them too, `since`/`until` do not): running jobs up to now, paused ones up to
    their pause, queued ones from their creation (hatched). A job that never started is
    drawn from its creation. Children are drawn under their parent. Pass `ax` to draw into
    an existing Axes.
    """
    _deps.figure_class()
    frame = await _timeline_frame(manager, name, status, since, until, limit, active)
    return draw_timeline(frame, ax=ax, now=time.time())


async def _timeline_frame(manager: JobManager, name: Any, status: Any, since: Any, until: Any,
                          limit: Any, active: bool) -> pd.DataFrame:
    """The jobs to draw: finished ones from history, then (with `active`) the unfinished ones."""
    pd = _deps.pandas()
    wanted = as_strings(status, "status")
    unknown = sorted(set(wanted or ()) - set(STATUS_COLORS))
    if unknown:
        raise ValueError(f"status {unknown[0]!r} is not one of {', '.join(STATUS_COLORS)}")
    finished = None if wanted is None else [s for s in wanted if s in TERMINAL_STATUSES]
    unfinished = None if wanted is None else [s for s in wanted if s not in TERMINAL_STATUSES]
    parts = []
    if finished != []:
        parts.append(await history_frame(manager, name=name, status=finished, since=since, until=until, limit=limit))
    if active and unfinished != []:
        jobs = active_jobs_frame(manager)
        names = as_strings(name, "name")
        keep = jobs["status"].isin(unfinished if unfinished is not None else list(STATUS_COLORS))
        if names is not None:
            keep &= jobs["name"].isin(names)
        parts.append(jobs[keep])
    columns = ["id", "name", "status", "parent_id", "created_at", "started_at", "finished_at", "paused_at"]
    frames = [p.reindex(columns=columns).astype({"status": "object"}) for p in parts]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def timeline_rows(frame: pd.DataFrame) -> list[tuple[int, int]]:
    """Return (row position in `frame`, depth) in drawing order: by start, children under parents."""
    starts = frame["started_at"].fillna(frame["created_at"])
    order = sorted(range(len(frame)), key=lambda i: (starts.iloc[i], i))
    ids = set(frame["id"])
    children: dict[str, list[int]] = defaultdict(list)
    roots = []
    for i in order:
        parent = frame["parent_id"].iloc[i]
        if isinstance(parent, str) and parent in ids:
            children[parent].append(i)
        else:
            roots.append(i)
    out: list[tuple[int, int]] = []

    def visit(i: int, depth: int) -> None:
        out.append((i, depth))
        for child in children.get(frame["id"].iloc[i], ()):
            visit(child, depth + 1)

    for root in roots:
        visit(root, 0)
    return out


def draw_timeline(frame: pd.DataFrame, *, ax: Axes | None = None, now: float | None = None) -> Figure:
    """Draw the timeline of `frame` (history/jobs columns) and return its Figure."""
    from matplotlib import dates as mdates
    from matplotlib.patches import Patch

    figure, ax = _figure_and_axes(ax, height=max(2.0, 0.28 * len(frame) + 1.2))
    now_utc = dt.datetime.fromtimestamp(time.time() if now is None else now, dt.timezone.utc)
    rows = timeline_rows(frame)
    labels, seen = [], set()
    for y, (i, depth) in enumerate(rows):
        job = frame.iloc[i]
        start, end = _span(job, now_utc)
        status = str(job["status"])
        left = mdates.date2num(start)
        ax.barh(y, max(mdates.date2num(end) - left, 0.0), left=left, height=0.7,
                color=STATUS_COLORS.get(status, "#bcbd22"), hatch="//" if status == "queued" else None,
                edgecolor="white", linewidth=0.5)
        labels.append(f"{'  ' * depth}{'└ ' if depth else ''}{job['name']} {str(job['id'])[:8]}")
        seen.add(status)
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()  # the earliest job on top
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=dt.timezone.utc))
    ax.set_xlabel("time (UTC)")
    ax.set_title(f"{len(rows)} job{'s' if len(rows) != 1 else ''}")
    if seen:
        ax.legend(handles=[Patch(color=STATUS_COLORS[s], label=s) for s in STATUS_COLORS if s in seen],
                  loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return figure


def _span(job: Any, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    start = _when(job["started_at"]) or _when(job["created_at"]) or now
    end = _when(job["finished_at"]) or _when(job.get("paused_at")) or now
    return start, max(end, start)


def _when(value: Any) -> dt.datetime | None:
    if value is None or value != value:  # None, NaN, NaT
        return None
    return value.to_pydatetime() if hasattr(value, "to_pydatetime") else value


async def plot_durations(manager: JobManager, *, name: Any = None, status: Any = "completed", since: Any = None,
                         until: Any = None, kind: str = "box", ax: Axes | None = None) -> Figure:
    """Return a Figure of duration distributions per job name (`kind` "box" or "hist").

    Durations of finished jobs that match the filters (completed ones by default; pass
    `status=None` for all) are read in one SQL pass per call, without loading whole rows.
    """
    if kind not in ("box", "hist"):
        raise ValueError(f"kind must be 'box' or 'hist', not {kind!r}")
    _deps.figure_class()
    _deps.pandas()
    check_open(manager)
    query = history_query(name=name, status=status, since=since, until=until)
    durations = await manager.queries.durations(query)
    return draw_durations({name: _parse(text) for name, text in durations.items()}, kind=kind, ax=ax)


def _parse(text: str) -> Any:
    import numpy as np

    return np.array(text.split(","), dtype=np.float64) if text else np.empty(0)


def draw_durations(durations: dict[str, Any], *, kind: str = "box", ax: Axes | None = None) -> Figure:
    """Draw one distribution per name from {name: array of seconds} and return its Figure."""
    named = {k: v for k, v in durations.items() if len(v)}
    figure, ax = _figure_and_axes(ax, height=4.0, width=max(6.0, 0.9 * len(named) + 2))
    if kind == "box":
        if named:
            parts = ax.boxplot(list(named.values()), showfliers=True, patch_artist=True)
            for box in parts["boxes"]:
                box.set(facecolor="#aec7e8", edgecolor="#1f77b4")
            for line in parts["medians"]:
                line.set(color="#1f77b4", gid="median")
            ax.set_xticks(range(1, len(named) + 1), list(named), rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("duration (s)")
    else:
        for label, values in named.items():
            ax.hist(values, bins=min(50, max(5, len(values) // 5)), alpha=0.5, label=label)
        ax.set_xlabel("duration (s)")
        ax.set_ylabel("jobs")
        if named:
            ax.legend(fontsize=8)
    ax.set_title("duration per job name" if named else "no finished jobs with a duration")
    ax.grid(axis="y" if kind == "box" else "x", alpha=0.3)
    return figure


def _figure_and_axes(ax: Axes | None, *, height: float, width: float = 10.0) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    figure = _deps.figure_class()(figsize=(width, min(height, 40.0)), layout="constrained")
    return figure, figure.add_subplot()
