"""The dashboard, headless: rows per job, children under parents, filter, Resume interrupted, 200 jobs."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass

import pytest
from jobs_for_tests import Steps, until
from widget_support import counting_comm  # noqa: F401 - autouse fixture

import sdjobs_nb as sj
from sdjobs_nb.widgets import Dashboard, dashboard

S = sj.JobStatus

#: counts slowly to `total`, checking for interruption at each step, checkpointing every 10
Hold = functools.partial(Steps, total=100_000, delay=0.01)


@dataclass
class Parent(sj.Job):
    NAME = "board_test_parent"
    children: int = 2
    steps: int = 5

    async def run(self, ctx: sj.JobContext) -> int:
        ids = await ctx.spawn_children([Hold(total=self.steps, delay=0.005) for _ in range(self.children)])
        return sum(await ctx.wait_for_children(ids))


def names_in_order(board: Dashboard) -> list[str]:
    return [row.handle.id for row in board.rows.children]


async def test_a_row_per_active_job_and_new_jobs_appear(manager):
    first = await manager.dispatch(Hold())
    board = dashboard(manager)
    assert names_in_order(board) == [first.id]
    second = await manager.dispatch(Hold())
    await until(lambda: len(board.rows.children) == 2, what="the new job's row")
    assert names_in_order(board) == [first.id, second.id]
    assert "2 jobs" in board.summary.value
    await until(lambda: "2 running" in board.summary.value, what="the summary")
    await first.cancel()
    await second.cancel()


async def test_rows_update_like_job_widgets_and_their_buttons_work(manager):
    handle = await manager.dispatch(Hold())
    board = dashboard(manager)
    [row] = board.rows.children
    await until(lambda: "/ 100,000" in row.info.value, what="progress text")
    row.pause_button.click()
    await until(lambda: handle.current_status is S.PAUSED, what="paused")
    assert (await manager.record(handle.id)).status is S.PAUSED
    await until(lambda: not row.resume_button.disabled, what="Resume enabled")
    row.cancel_button.click()
    await until(lambda: handle.current_status is S.CANCELLED, what="cancelled")


async def test_children_are_indented_under_their_parent(manager):
    other = await manager.dispatch(Hold())
    board = dashboard(manager)
    parent = await manager.dispatch(Parent(children=2, steps=1000))
    await until(lambda: len(board.rows.children) == 4, what="parent and children rows")
    rows = board.rows.children
    assert rows[0].handle.id == other.id and rows[1].handle.id == parent.id
    children = [row.handle for row in rows[2:]]
    assert all(child.parent_id == parent.id for child in children)
    assert rows[1].layout.margin == "0 0 0 0em" and rows[1].layout.flex_flow == "row wrap"
    assert all(row.layout.margin == "0 0 0 1.5em" for row in rows[2:])
    await parent.cancel()
    await other.cancel()


async def test_filter_shows_finished_jobs_only_under_all(manager):
    done = await manager.dispatch(Hold(total=3, delay=0.001))
    running = await manager.dispatch(Hold())
    board = dashboard(manager)
    await done.wait()
    await until(lambda: names_in_order(board) == [running.id], what="the finished job to leave 'Active'")
    board.filter.value = "all"
    await until(lambda: names_in_order(board) == [done.id, running.id], what="'All' to show it")
    [finished_row, _] = board.rows.children
    assert "completed" in finished_row.title.value and finished_row.bar.value == 1.0
    board.filter.value = "active"
    await until(lambda: names_in_order(board) == [running.id], what="'Active' again")
    await running.cancel()


async def test_resume_interrupted_shows_only_when_a_crash_left_jobs_paused(tmp_path):
    library = tmp_path / "library"
    async with sj.JobManager.open(library) as manager:
        interrupted = await manager.dispatch(Hold())
        await asyncio.sleep(0.1)
    # close() paused the running job as interrupted, as a crash would
    async with sj.JobManager.open(library, grace_period=2.0) as manager:
        user_paused = await manager.dispatch(Hold())
        await user_paused.pause()
        board = dashboard(manager)
        assert board.resume_button.layout.display != "none"
        assert "1 interrupted" in board.summary.value
        [interrupted_row, _] = board.rows.children
        assert "paused</span> (interrupted)" in interrupted_row.title.value

        board.resume_button.click()
        await until(lambda: manager.get(interrupted.id).current_status is S.RUNNING, what="resumed")
        await until(lambda: board.resume_button.layout.display == "none", what="the button to hide")
        assert "resumed 1 interrupted job" in board.message.value
        assert manager.get(user_paused.id).current_status is S.PAUSED  # a user's pause stays


async def test_a_click_on_resume_interrupted_from_another_thread(tmp_path):
    library = tmp_path / "library"
    async with sj.JobManager.open(library) as manager:
        job = await manager.dispatch(Hold())
        await asyncio.sleep(0.05)
    async with sj.JobManager.open(library) as manager:
        board = dashboard(manager)
        await asyncio.to_thread(board.resume_button.click)
        await until(lambda: manager.get(job.id).current_status is S.RUNNING, what="resumed")


async def test_a_closed_library_disables_the_dashboard(tmp_path):
    manager = await sj.JobManager.open(tmp_path / "library")
    handle = await manager.dispatch(Hold())
    board = dashboard(manager)
    await manager.close()
    await until(lambda: "closed" in board.summary.value, what="the summary to say closed")
    [row] = board.rows.children
    await until(lambda: row.pause_button.disabled and row.cancel_button.disabled, what="disabled buttons")
    assert handle.current_status is S.PAUSED


async def test_closing_the_dashboard_stops_its_updates(manager):
    await manager.dispatch(Hold())
    board = dashboard(manager)
    board.close()
    assert board.comm is None and all(row.comm is None for row in board._rows.values())
    await manager.dispatch(Hold())
    await asyncio.sleep(0.3)
    assert len(board._rows) == 1


# --- hundreds of jobs ---------------------------------------------------------------------------


async def test_two_hundred_jobs_are_added_and_updated_in_place(manager):
    manager.max_concurrent = 8
    handles = await manager.dispatch_many([Hold(total=40, delay=0.005) for _ in range(100)])
    board = dashboard(manager)
    assert len(board.rows.children) == 100
    rows_before = dict(board._rows)
    more = await manager.dispatch_many([Hold(total=40, delay=0.005) for _ in range(100)])
    await until(lambda: len(board.rows.children) == 200, what="200 rows")
    assert all(board._rows[job_id] is row for job_id, row in rows_before.items())  # never rebuilt
    list_messages = len(board.rows.comm.messages)
    assert list_messages <= 10, f"the row list was re-sent {list_messages} times"

    board.filter.value = "all"
    await asyncio.gather(*(h.wait() for h in handles + more))
    await until(lambda: all(row.bar.bar_style == "success" for row in board.rows.children), timeout=30,
                what="every row to show its final state")
    assert all("40 / 40" in row.info.value for row in board.rows.children)
    await until(lambda: "200 completed" in board.summary.value, what="the summary")
    per_row = [sum(len(p.comm.messages) for p in (row.bar, row.info, row.title)) for row in board.rows.children]
    assert max(per_row) <= 40, f"a row sent {max(per_row)} messages for a job of 40 steps"


async def test_a_read_only_view_follows_the_owner_through_jobs_db(manager, monkeypatch):
    monkeypatch.setattr(Dashboard, "poll_seconds", 0.1)
    running = await manager.dispatch(Hold())
    async with sj.JobManager.open(manager.path, read_only=True) as viewer:
        board = dashboard(viewer)
        await until(lambda: len(board.rows.children) == 1, what="the owner's job")
        [row] = board.rows.children
        assert "read-only" in board.summary.value
        assert row.pause_button.disabled and row.cancel_button.disabled
        await running.pause()
        await until(lambda: "paused" in row.title.value, what="the pause written by the owner")
        await running.cancel()
        await until(lambda: "cancelled" in row.title.value, what="the final state")
        await until(lambda: len(board.rows.children) == 0, what="the finished job to leave 'Active'")
        board.close()
