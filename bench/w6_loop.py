"""W6 event-loop health with live widgets (ours only).

Busy case: ``jobs`` jobs run at once, each reporting progress as fast as it can (calling
``check_interrupted`` on every step), with a dashboard attached whose widgets talk to a
dummy comm that counts messages. A probe coroutine sleeps 1 ms in a loop on the same event
loop and records how late it wakes. Over ``seconds`` (after a warm-up) we report the worst
lateness (``stall_ms``, target < 50 ms) and the widget comm messages sent per second per job
(``msgs/s/job``, target <= ~10, checked as <= 10).

Dashboard case: ``jobs`` = 200 jobs run at once, each stepping every 50 ms. ``render_ms`` is
the time ``manager.dashboard()`` takes to build its 200 rows (what the cell that shows it
costs); ``update_ms`` is the time to bring all 200 rows up to date once every row has
changed (bar and text of each, about 400 messages; ``update_rows_changed`` is the share of rows that
really changed in the timed pass): the cost of one full refresh, which the live refresher
spreads over 5 ms slices. Budgets (documented here, checked on every case):
``render_ms < 2000`` and ``update_ms < 150`` for 200 rows. Both numbers are also reported,
scaled to its row count, for the busy case.

``ours`` returns ``{"stall_ms", "msgs/s/job", "render_ms", "update_ms", "update_rows_changed"}``
for every case. ``no_widgets`` (the baseline) runs the same jobs without a dashboard, so the
ratio column shows how much of the stall the widgets add.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from ._harness import Case, Contender, Ctx, Workload, ours_api


def cases(quick: bool) -> list[Case]:
    if quick:
        return [
            Case("10 busy jobs x 0.5 s", {"jobs": 10, "seconds": 0.5, "busy": True}),
            Case("dashboard 20 jobs", {"jobs": 20, "seconds": 0.5, "busy": False, "step": 0.05}),
        ]
    return [
        Case("100 busy jobs x 5 s", {"jobs": 100, "seconds": 5.0, "busy": True}),
        Case("dashboard 200 jobs", {"jobs": 200, "seconds": 3.0, "busy": False, "step": 0.05}),
    ]


class _CountingComm:
    """Stands in for the frontend: counts what widgets send (as ipywidgets' own tests do)."""

    kernel = "bench"  # widgets only send through a comm that has a kernel

    def __init__(self, made: list[_CountingComm]) -> None:
        self.comm_id = f"bench-{len(made)}"
        self.sent = 0
        made.append(self)

    def open(self, *args: Any, **kwargs: Any) -> None:
        pass

    def on_msg(self, *args: Any, **kwargs: Any) -> None:
        pass

    def send(self, *args: Any, **kwargs: Any) -> None:
        self.sent += 1

    def close(self, *args: Any, **kwargs: Any) -> None:
        pass


def _job_classes(sj: Any) -> tuple[type, type]:
    """Define (once per process) a job that reports as fast as it can, and one that steps every 10 ms."""
    if "bench_w6_busy" in sj.registry:
        return sj.registry.get("bench_w6_busy"), sj.registry.get("bench_w6_steady")

    @dataclass
    class Busy(sj.Job):
        NAME = "bench_w6_busy"
        done: int = 0

        async def run(self, ctx: Any) -> int:
            while True:
                await ctx.check_interrupted()
                self.done += 1
                ctx.report_count_progress(self.done, None)

    @dataclass
    class Steady(sj.Job):
        NAME = "bench_w6_steady"
        total: int = 1_000  # the bar moves visibly at every 2 steps
        step: float = 0.05
        done: int = 0

        async def run(self, ctx: Any) -> int:
            while self.done < self.total:
                await ctx.check_interrupted()
                await asyncio.sleep(self.step)
                self.done += 1
                ctx.report_count_progress(self.done, self.total)
            return self.done

    return Busy, Steady


async def _probe(stop: asyncio.Event, worst: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        started = loop.time()
        await asyncio.sleep(0.001)
        worst[0] = max(worst[0], loop.time() - started - 0.001)


async def _full_update(manager: Any, board: Any) -> tuple[float, float]:
    """Time one full update right after a progress tick; return (ms per 200 rows, share of rows changed)."""
    async for event in manager.events():  # the ticker publishes every job's progress in one go
        if event.kind == "progress":
            break
    rows = list(board.rows.children)
    before = [row.info.comm.sent + row.bar.comm.sent for row in rows]
    started = time.perf_counter()
    board.refresh()
    elapsed = time.perf_counter() - started
    changed = sum(row.info.comm.sent + row.bar.comm.sent > sent for row, sent in zip(rows, before))
    return elapsed * 1000 * 200 / max(len(rows), 1), changed / max(len(rows), 1)


# --- REGISTRATION POINT: our contender -------------------------------------
# Return {"stall_ms": worst_probe_overshoot_ms, "msgs/s/job": widget_msgs_rate, ...}.

async def ours(ctx: Ctx) -> dict[str, float]:
    return await _contender(ctx, widgets=True)


async def no_widgets(ctx: Ctx) -> dict[str, float]:
    """The same jobs without a dashboard: how much of the stall is the jobs' own."""
    return await _contender(ctx, widgets=False)


async def _contender(ctx: Ctx, widgets: bool) -> dict[str, float]:
    ours_api("sdjobs_nb", "JobManager")
    ours_api("sdjobs_nb.widgets", "dashboard")
    import comm

    import sdjobs_nb as sj

    made: list[_CountingComm] = []
    create_comm = comm.create_comm
    comm.create_comm = lambda **kwargs: _CountingComm(made)
    try:
        return await _measure(sj, ctx, made, widgets)
    finally:
        comm.create_comm = create_comm


async def _measure(sj: Any, ctx: Ctx, made: list[_CountingComm], widgets: bool) -> dict[str, float]:
    from sdjobs_nb.widgets import dashboard

    jobs, seconds = ctx["jobs"], ctx["seconds"]
    busy, steady = _job_classes(sj)
    new_job = busy if ctx["busy"] else (lambda: steady(step=ctx["step"]))
    async with sj.JobManager.open(ctx.workdir / "library", max_concurrent=jobs) as manager:
        await manager.dispatch_many([new_job() for _ in range(jobs)])
        started = time.perf_counter()
        board = dashboard(manager) if widgets else None
        render_ms = (time.perf_counter() - started) * 1000 * 200 / jobs
        await asyncio.sleep(0.5)  # warm-up: every job running and reporting
        if board is not None:
            update_ms, changed = await _full_update(manager, board)

        stop, worst = asyncio.Event(), [0.0]
        probe = asyncio.get_running_loop().create_task(_probe(stop, worst))
        sent_before, window_start = sum(c.sent for c in made), time.perf_counter()
        await asyncio.sleep(seconds)
        window = time.perf_counter() - window_start
        sent = sum(c.sent for c in made) - sent_before
        stop.set()
        await probe
        if board is not None:
            board.close()
    result = {"stall_ms": worst[0] * 1000, "msgs/s/job": sent / window / jobs}
    if board is not None:
        result.update(render_ms=render_ms, update_ms=update_ms, update_rows_changed=changed)
    return result


def contenders() -> dict[str, Contender]:
    return {
        "no_widgets": Contender("no_widgets", no_widgets, "stall_ms", "the same jobs, no dashboard"),
        "ours": Contender("ours", ours, "stall_ms",
                          "worst loop stall, widget msgs/s/job, dashboard render and full update (per 200 rows)"),
    }


WORKLOAD = Workload(
    id="W6", title="loop health", contenders=contenders, cases=cases,
    baseline="no_widgets",
    targets=["ours stall_ms < 50", "ours msgs/s/job <= 10", "ours render_ms < 2000", "ours update_ms < 150"],
    description=__doc__ or "",
)
