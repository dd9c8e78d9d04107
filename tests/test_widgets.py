"""Job widgets, headless: a counting dummy comm stands in for the frontend (as in ipywidgets' tests)."""

from __future__ import annotations

import asyncio
import functools
import subprocess
import sys
import time
from dataclasses import dataclass, field

import pytest
from jobs_for_tests import Once, Steps, until
from widget_support import counting_comm  # noqa: F401 - autouse fixture

import sdjobs_nb as sj
from sdjobs_nb import _display
from sdjobs_nb.widgets import MESSAGES_PER_S, JobWidget, job_widget
from sdjobs_nb.widgets import _format as fmt

S = sj.JobStatus

#: counts to `total`, a step every `delay` s, checkpointing every 10 steps
Ticks = functools.partial(Steps, total=1000, delay=0.01)


# --- jobs -------------------------------------------------------------------------------------


@dataclass
class Flood(sj.Job):
    """Reports progress as fast as it can for `seconds`, then its final count once more."""

    NAME = "widget_test_flood"
    seconds: float = 2.0
    reports: int = 0

    async def run(self, ctx: sj.JobContext) -> int:
        end = time.monotonic() + self.seconds
        i = 0
        while True:
            await ctx.check_interrupted()
            i += 1
            ctx.report_count_progress(i, None)
            if not i & 1023 and time.monotonic() >= end:
                break
        self.reports = i
        ctx.report_count_progress(i, i)
        return i


@dataclass
class Kinds(sj.Job):
    NAME = "widget_test_kinds"
    kind: str = "percentage"

    async def run(self, ctx: sj.JobContext) -> None:
        if self.kind == "percentage":
            ctx.report_percentage_progress(0.425)
        elif self.kind == "bytes":
            ctx.report_bytes_progress(3 * 1024 * 1024, 12 * 1024 * 1024)
        else:
            ctx.report_structured_progress("indexing", {"files": 3})
        while True:
            await ctx.check_interrupted()
            await asyncio.sleep(0.01)


@dataclass
class Hiccups(sj.Job):
    NAME = "widget_test_hiccups"
    messages: list[str] = field(default_factory=list)

    async def run(self, ctx: sj.JobContext) -> int:
        for message in self.messages:
            ctx.report_non_critical_error(message)
            await asyncio.sleep(0.01)
        return len(self.messages)


@dataclass
class Boom(sj.Job):
    NAME = "widget_test_boom"

    async def run(self, ctx: sj.JobContext) -> None:
        ctx.report_count_progress(3, 10)
        await asyncio.sleep(0.01)
        raise ValueError("disk <full> & gone")


@dataclass
class Parent(sj.Job):
    NAME = "widget_test_parent"
    steps: int = 20

    async def run(self, ctx: sj.JobContext) -> int:
        ids = await ctx.spawn_children([Ticks(total=self.steps, delay=0.005), Ticks(total=self.steps, delay=0.005)])
        return sum(await ctx.wait_for_children(ids))


# --- helpers ----------------------------------------------------------------------------------


def parts(widget: JobWidget) -> list:
    return [widget, *widget.children]


def messages(widget: JobWidget) -> int:
    """Comm messages the widget and its parts sent so far."""
    return sum(len(p.comm.messages) for p in parts(widget) if p.comm is not None)


def buttons(widget: JobWidget) -> dict[str, bool]:
    """Which of Pause / Resume / Cancel are enabled."""
    return {b.description: not b.disabled for b in (widget.pause_button, widget.resume_button, widget.cancel_button)}


async def stored_status(manager: sj.JobManager, job_id: str) -> S:
    return (await manager.record(job_id)).status


async def until_stored(manager: sj.JobManager, job_id: str, *statuses: S, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (status := await stored_status(manager, job_id)) not in statuses:
        if time.monotonic() > deadline:
            raise AssertionError(f"job stayed {status.value}, expected {[s.value for s in statuses]}")
        await asyncio.sleep(0.02)


async def settled(widget: JobWidget) -> None:
    """Wait until the refresher has rendered the job's current state (not a fixed time).

    Title, bar colour and buttons always; the bar and text too once they are stable (the job
    is paused or finished), and the error count once there is one.
    """
    await until(lambda: shows_current_state(widget), what="the widget to show the job's current state")


def shows_current_state(widget: JobWidget) -> bool:
    handle = widget.handle
    status, progress = handle.current_status, handle.current_progress
    reason = handle.pause_reason if status is S.PAUSED else None
    if widget.title.value != fmt.title_html(handle.name, handle.id, status, widget.pending, reason):
        return False
    if widget.bar.bar_style != fmt.BAR_STYLE[status]:
        return False
    if buttons(widget) != {a.capitalize(): widget.enabled(a) for a in ("pause", "resume", "cancel")}:
        return False
    if widget.error_count and (widget.errors_button is None or widget.errors_button.description != f"{widget.error_count:,}"):
        return False
    if status is S.PAUSED or status.is_terminal:
        elapsed = handle.metrics.get("elapsed_seconds") if status.is_terminal else None
        return (widget.bar.value == fmt.bar_value(progress, status)
                and widget.info.value == fmt.info_html(progress, status, error=handle.error, elapsed=elapsed))
    return True


# --- buttons by state -------------------------------------------------------------------------


async def test_buttons_follow_the_status(manager):
    first = await manager.dispatch(Ticks(total=10_000))
    manager.max_concurrent = 1
    queued = await manager.dispatch(Ticks(total=10))
    running_widget, queued_widget = job_widget(first), job_widget(queued)
    await until(lambda: first.current_status is S.RUNNING, what="running")
    await settled(running_widget)
    await settled(queued_widget)
    assert buttons(running_widget) == {"Pause": True, "Resume": False, "Cancel": True}
    assert buttons(queued_widget) == {"Pause": True, "Resume": False, "Cancel": True}
    assert running_widget.bar.bar_style == "info"

    await first.pause()
    await settled(running_widget)
    assert buttons(running_widget) == {"Pause": False, "Resume": True, "Cancel": True}
    assert running_widget.bar.bar_style == "warning"
    assert "paused" in running_widget.title.value

    await first.cancel()
    await queued.wait()
    await settled(running_widget)
    await settled(queued_widget)
    assert buttons(running_widget) == {"Pause": False, "Resume": False, "Cancel": False}
    assert buttons(queued_widget) == {"Pause": False, "Resume": False, "Cancel": False}
    assert running_widget.bar.bar_style == "warning" and "cancelled" in running_widget.title.value
    assert queued_widget.bar.bar_style == "success" and queued_widget.bar.value == 1.0


async def test_a_job_that_cannot_resume_has_no_pause(manager):
    handle = await manager.dispatch(Once())
    widget = job_widget(handle)
    await until(lambda: handle.current_status is S.RUNNING)
    await settled(widget)
    assert buttons(widget) == {"Pause": False, "Resume": False, "Cancel": True}
    await handle.cancel()


async def test_failed_job_is_red_with_its_message(manager):
    handle = await manager.dispatch(Boom())
    widget = job_widget(handle)
    with pytest.raises(sj.JobFailed):
        await handle.wait()
    await settled(widget)
    assert widget.bar.bar_style == "danger"
    assert "failed" in widget.title.value
    assert "disk &lt;full&gt; &amp; gone" in widget.info.value  # escaped, never raw HTML
    assert buttons(widget) == {"Pause": False, "Resume": False, "Cancel": False}


# --- clicks -----------------------------------------------------------------------------------


async def test_clicks_change_the_stored_status(manager):
    handle = await manager.dispatch(Ticks(total=10_000))
    widget = job_widget(handle)
    await until(lambda: handle.current_status is S.RUNNING)

    widget.pause_button.click()
    await until_stored(manager, handle.id, S.PAUSED)
    await settled(widget)
    assert buttons(widget) == {"Pause": False, "Resume": True, "Cancel": True}

    widget.resume_button.click()
    await until_stored(manager, handle.id, S.QUEUED, S.RUNNING)

    widget.cancel_button.click()
    await until_stored(manager, handle.id, S.CANCELLED)
    await settled(widget)
    assert "cancelled" in widget.title.value
    assert widget._detail is None or "failed" not in widget._detail.value


async def test_a_click_from_another_thread_reaches_the_loop(manager):
    """ipykernel 7.0-7.3 run click handlers on a subshell thread, not on the kernel's loop."""
    handle = await manager.dispatch(Ticks(total=10_000))
    widget = job_widget(handle)
    await until(lambda: handle.current_status is S.RUNNING)
    await asyncio.to_thread(widget.pause_button.click)
    await until_stored(manager, handle.id, S.PAUSED)
    await asyncio.to_thread(widget.cancel_button.click)
    await until_stored(manager, handle.id, S.CANCELLED)


async def test_a_click_never_blocks_the_handler(manager):
    handle = await manager.dispatch(Ticks(total=10_000))
    widget = job_widget(handle)
    await until(lambda: handle.current_status is S.RUNNING)
    started = time.perf_counter()
    widget.pause_button.click()  # the pause itself takes until the job's next check
    assert time.perf_counter() - started < 0.05
    await settled(widget)
    assert "pausing" in widget.title.value or handle.current_status is S.PAUSED
    await until_stored(manager, handle.id, S.PAUSED)


async def test_a_failed_request_shows_its_error(manager):
    handle = await manager.dispatch(Ticks(total=3, delay=0.001))
    widget = job_widget(handle)
    await handle.wait()
    future = widget.request("cancel")  # a finished job cannot be cancelled
    await until(lambda: future.done())
    assert isinstance(future.exception(), sj.InvalidTransition)
    await until(lambda: widget._detail is not None and "Cancel failed" in widget._detail.value, what="the error")
    assert widget._detail.layout.display != "none"


async def test_closed_manager_disables_every_button(tmp_path):
    manager = await sj.JobManager.open(tmp_path / "library")
    handle = await manager.dispatch(Ticks(total=10_000))
    widget = job_widget(handle)
    await until(lambda: handle.current_status is S.RUNNING)
    await manager.close()
    await settled(widget)
    assert handle.current_status is S.PAUSED
    assert buttons(widget) == {"Pause": False, "Resume": False, "Cancel": False}
    future = widget.request("resume")  # a click that raced the close: its error shows, nothing breaks
    if future is not None:
        await until(lambda: future.done())
        assert isinstance(future.exception(), sj.ManagerClosed)
    await until(lambda: widget._detail is not None and "Resume failed" in widget._detail.value, what="the error")


# --- updates: throttled, final state always shown --------------------------------------------


async def test_flood_of_reports_sends_at_most_about_ten_messages_a_second(manager):
    handle = await manager.dispatch(Flood(seconds=3.0))
    widget = job_widget(handle)
    await until(lambda: handle.current_status is S.RUNNING and handle.current_progress is not None)
    await asyncio.sleep(0.3)
    window_start, sent_before = time.monotonic(), messages(widget)
    await asyncio.sleep(2.0)
    window, sent = time.monotonic() - window_start, messages(widget) - sent_before
    reports = await handle.wait()
    assert reports >= 100 * messages(widget), f"not a flood: {reports:,} reports for {messages(widget)} messages"
    assert sent / window <= 10, f"{sent} messages in {window:.2f}s while the job ran"
    assert sent >= 2, f"only {sent} updates in {window:.2f}s while the job ran"
    # the final value shows, though the job's last reports came faster than any refresh
    await settled(widget)
    assert widget.bar.value == 1.0 and widget.bar.bar_style == "success"
    assert f"{reports:,} / {reports:,}" in widget.info.value
    assert "completed" in widget.title.value


async def test_updates_arrive_after_the_cell_returned(manager):
    handle = await manager.dispatch(Ticks(total=200, delay=0.01))
    widget = job_widget(handle)
    seen = set()
    while handle.current_status is not S.COMPLETED:
        seen.add(widget.bar.value)
        await asyncio.sleep(0.05)
    await settled(widget)
    assert len(seen) >= 4, seen
    assert widget.info.value.count("200 / 200") == 1


async def test_only_changed_parts_send_messages(manager):
    handle = await manager.dispatch(Ticks(total=10_000))
    widget = job_widget(handle)
    await until(lambda: handle.current_status is S.RUNNING)
    await settled(widget)
    quiet = [widget, widget.title, widget.pause_button, widget.resume_button, widget.cancel_button]
    before = [len(p.comm.messages) for p in quiet]
    bar_before = len(widget.bar.comm.messages)
    await asyncio.sleep(1.0)
    assert [len(p.comm.messages) for p in quiet] == before  # nothing about them changed
    assert len(widget.bar.comm.messages) > bar_before
    await handle.cancel()


# --- what it shows ----------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "text"), [
    ("percentage", "42.5%"),
    ("bytes", "3.0 MiB / 12.0 MiB"),
    ("structured", "indexing"),
])
async def test_each_progress_kind_has_its_text(manager, kind, text):
    handle = await manager.dispatch(Kinds(kind=kind))
    widget = job_widget(handle)
    await until(lambda: handle.current_progress is not None, what="progress")
    await until(lambda: text in widget.info.value, what=f"{text!r} in the progress text")
    if kind != "structured":
        assert widget.bar.value == pytest.approx(0.25 if kind == "bytes" else 0.425, abs=0.001)
    await handle.cancel()


async def test_count_progress_shows_rate_and_eta(manager):
    handle = await manager.dispatch(Ticks(total=1000, delay=0.005))
    widget = job_widget(handle)
    await until(lambda: "ETA" in widget.info.value, what="an ETA")
    assert "/s" in widget.info.value and " / 1,000" in widget.info.value
    await handle.cancel()


async def test_non_critical_errors_are_counted_and_listed(manager):
    handle = await manager.dispatch(Hiccups(messages=["first <oops>", "second", "third"]))
    widget = job_widget(handle)
    await handle.wait()
    await settled(widget)
    assert widget.errors_button.description == "3" and not widget.errors_button.disabled
    assert widget.children.index(widget.errors_button) == widget.children.index(widget.pause_button) - 1
    widget.errors_button.click()
    await until(lambda: widget._detail is not None and "second" in widget._detail.value, what="the error list")
    assert "first &lt;oops&gt;" in widget._detail.value
    widget.errors_button.click()
    await until(lambda: widget._detail.layout.display == "none", what="the list to fold")


async def test_children_show_under_their_parent(manager):
    parent = await manager.dispatch(Parent(steps=30))
    widget = job_widget(parent)
    await until(lambda: len([c for c in widget.children if isinstance(c, JobWidget)]) == 2, what="child rows")
    rows = [c for c in widget.children if isinstance(c, JobWidget)]
    assert all(row.handle.parent_id == parent.id for row in rows)
    assert all(row.layout.margin == "0 0 0 1.5em" for row in rows)
    assert widget.children.index(rows[0]) > widget.children.index(widget.cancel_button)
    assert await parent.wait() == 60
    await settled(widget)
    assert all("30 / 30" in row.info.value and row.bar.bar_style == "success" for row in rows)
    assert job_widget(rows[0].handle) is not rows[0]  # a child's own widget is not its row in the parent


async def test_one_widget_per_job_while_it_is_live(manager):
    handle = await manager.dispatch(Ticks(total=10_000))
    assert job_widget(handle) is job_widget(manager.get(handle.id))
    await handle.cancel()


async def test_a_finished_job_from_the_library_shows_statically(manager):
    handle = await manager.dispatch(Ticks(total=5, delay=0.001))
    await handle.wait()
    widget = job_widget(manager.get(handle.id))  # from jobs.db, not from memory
    assert widget.finished
    assert "5 / 5" in widget.info.value and widget.bar.bar_style == "success"


async def test_handle_displays_the_widget_inside_a_kernel(manager, monkeypatch):
    handle = await manager.dispatch(Ticks(total=10_000))
    monkeypatch.setattr(_display, "_in_kernel", lambda: True)
    bundle = handle._repr_mimebundle_()
    assert bundle["text/plain"] == handle.describe()
    view = bundle["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] == job_widget(handle).model_id
    await handle.cancel()


async def test_closing_the_widget_stops_its_updates(manager):
    handle = await manager.dispatch(Ticks(total=10_000))
    widget = job_widget(handle)
    widget.close()
    assert widget.comm is None and widget.bar.comm is None
    assert job_widget(handle) is not widget
    await handle.cancel()


def test_format_helpers():
    assert fmt.eta_text(42.4) == "ETA 42s"
    assert fmt.eta_text(205) == "ETA 3:25"
    assert fmt.eta_text(3723) == "ETA 1:02:03"
    assert fmt.eta_text(None) is None and fmt.eta_text(float("nan")) is None
    assert fmt.rate_text(sj.Progress("bytes", 1, 2, rate=2 * 1024 * 1024)) == "2.0 MiB/s"
    assert fmt.rate_text(sj.Progress("count", 1, 2, rate=12.345)) == "12.3/s"
    assert fmt.rate_text(sj.Progress("count", 1, 2, rate=12_345.6)) == "12,346/s"
    assert fmt.bar_value(None, S.COMPLETED) == 1.0
    assert fmt.bar_value(sj.Progress("count", 1, None), S.RUNNING) == 0.0
    assert fmt.BAR_STYLE == {S.QUEUED: "", S.RUNNING: "info", S.PAUSED: "warning", S.COMPLETED: "success",
                             S.FAILED: "danger", S.CANCELLED: "warning"}
    assert "<script>" not in fmt.title_html("<script>", "0123456789", S.RUNNING)


# --- imports ----------------------------------------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_importing_sdjobs_nb_never_imports_ipywidgets():
    result = run_python("import sys, sdjobs_nb; assert 'ipywidgets' not in sys.modules, 'ipywidgets imported'")
    assert result.returncode == 0, result.stderr


def test_widgets_without_ipywidgets_say_which_extra_to_install():
    result = run_python(
        "import sys; sys.modules['ipywidgets'] = None\n"
        "import sdjobs_nb as sj\n"
        "try:\n"
        "    import sdjobs_nb.widgets\n"
        "except sj.MissingExtra as e:\n"
        "    print(e)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'sdjobs-nb[notebook]'" in result.stdout and "ipywidgets" in result.stdout
