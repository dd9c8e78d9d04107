"""Timeline and duration plots (issue 6): figures built headless, one bar per job."""

from __future__ import annotations

import io
import sys
import uuid

import pytest
from matplotlib.figure import Figure

import sdjobs_nb as sj
from sdjobs_nb.frames import STATUS_COLORS
from test_frames import Gate, Parent, Tally, add_history, history_row, until


def bar_labels(figure: Figure) -> list[str]:
    return [t.get_text() for t in figure.axes[0].get_yticklabels()]


def bar_colors(figure: Figure) -> list[str]:
    from matplotlib.colors import to_hex

    return [to_hex(p.get_facecolor()) for p in figure.axes[0].patches]


async def test_timeline_has_one_bar_per_job_coloured_by_status(manager):
    for n in (1, 2):
        await (await manager.dispatch(Tally(total=n))).wait()
    failed = await manager.dispatch(Tally(total=1, fail=True))
    with pytest.raises(sj.JobFailed):
        await failed.wait()
    running = await manager.dispatch(Gate(key=str(uuid.uuid4())))
    await until(lambda: running.current_status is sj.JobStatus.RUNNING)
    figure = await manager.plot_timeline()
    assert isinstance(figure, Figure)
    assert len(figure.axes[0].patches) == 4 == len(bar_labels(figure))
    assert sorted(bar_colors(figure)) == sorted(
        [STATUS_COLORS["completed"]] * 2 + [STATUS_COLORS["failed"], STATUS_COLORS["running"]])
    assert [t.get_text() for t in figure.axes[0].get_legend().get_texts()] == ["completed", "failed", "running"]
    finished_only = await manager.plot_timeline(active=False)
    assert len(finished_only.axes[0].patches) == 3
    just_failed = await manager.plot_timeline(status="failed")
    assert bar_colors(just_failed) == [STATUS_COLORS["failed"]]
    await running.cancel()
    png = io.BytesIO()
    figure.savefig(png, format="png")
    assert png.getvalue().startswith(b"\x89PNG")


async def test_timeline_draws_children_under_their_parent(manager):
    first = await manager.dispatch(Tally(total=1))
    await first.wait()
    parent = await manager.dispatch(Parent(children=2))
    assert await parent.wait() == 4
    figure = await manager.plot_timeline()
    labels = bar_labels(figure)
    assert len(labels) == 4 == len(figure.axes[0].patches)
    assert labels[0].startswith("frames_test_tally") and labels[1].startswith("frames_test_parent")
    assert all(label.startswith("  └ frames_test_tally") for label in labels[2:])


async def test_timeline_limit_and_filters(manager):
    await add_history(manager, [history_row(name="a" if i % 2 else "b", created_at=1e9 + i) for i in range(30)])
    assert len((await manager.plot_timeline(limit=10)).axes[0].patches) == 10
    assert len((await manager.plot_timeline(name="a", limit=None)).axes[0].patches) == 15
    assert len((await manager.plot_timeline(until=1e9 + 5, limit=None)).axes[0].patches) == 0
    with pytest.raises(ValueError, match="status 'sleeping' is not one of"):
        await manager.plot_timeline(status="sleeping")


async def test_an_empty_library_still_plots(manager):
    figure = await manager.plot_timeline()
    assert len(figure.axes[0].patches) == 0
    figure = await manager.plot_durations()
    assert figure.axes[0].get_title() == "no finished jobs with a duration"


async def test_durations_has_one_box_per_name(manager):
    rows = [history_row(name=name, created_at=1e9, started_at=1e9 + 1, finished_at=1e9 + 1 + d)
            for name, durations in (("fast", [1, 2, 3]), ("slow", [10, 20, 40, 80]), ("one", [5]))
            for d in durations]
    rows.append(history_row(name="never", started_at=None))
    rows.append(history_row(name="broken", status="failed", created_at=1e9, started_at=1e9 + 1, finished_at=1e9 + 2))
    await add_history(manager, rows)
    figure = await manager.plot_durations()
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["fast", "one", "slow"]  # completed ones only
    assert len(ax.patches) == 3  # one box each
    medians = sorted(line.get_ydata()[0] for line in ax.lines if line.get_gid() == "median")
    assert medians == pytest.approx([2.0, 5.0, 30.0])
    every = await manager.plot_durations(status=None, kind="hist")
    assert {t.get_text() for t in every.axes[0].get_legend().get_texts()} == {"fast", "slow", "one", "broken"}
    with pytest.raises(ValueError, match="kind must be 'box' or 'hist'"):
        await manager.plot_durations(kind="violin")


async def test_plots_draw_into_a_given_axes(manager):
    await (await manager.dispatch(Tally(total=1))).wait()
    figure = Figure()
    left, right = figure.subplots(1, 2)
    assert await manager.plot_timeline(ax=left) is figure
    assert await manager.plot_durations(ax=right) is figure
    assert len(left.patches) == 1


async def test_plots_never_touch_pyplot(manager):
    await (await manager.dispatch(Tally(total=1))).wait()
    had_pyplot = "matplotlib.pyplot" in sys.modules
    await manager.plot_timeline()
    await manager.plot_durations()
    assert ("matplotlib.pyplot" in sys.modules) == had_pyplot


async def test_without_matplotlib_the_error_names_the_extra(manager, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(sj.MissingExtra, match="matplotlib"):
        await manager.plot_timeline()
    with pytest.raises(sj.MissingExtra, match="frames"):
        await manager.plot_durations()
