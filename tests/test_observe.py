"""Progress, status streams, events, metrics and per-job logs (issue 4)."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

import pytest

import sdjobs_nb as sj
from sdjobs_nb._progress import ProgressMeter
from jobs_for_tests import Add, Fail, Steps, open_gate, steps_done, until
from support import db_rows

S = sj.JobStatus


class TickerClock:
    """Stands in for the `time` module of the progress ticker: its clock moves only when the test moves it."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = 1.7e9

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


@pytest.fixture
def ticker_clock(monkeypatch):
    """Give the progress ticker (rates, and when progress is saved) a clock the test moves."""
    from sdjobs_nb._runtime import progress

    clock = TickerClock()
    monkeypatch.setattr(progress, "time", clock)
    return clock


def _gate(library, name: str = "gate") -> str:
    """A gate file beside the library, closed until the test opens it (`open_gate`)."""
    return str(library.parent / name)


async def _step(handle, gate: str, step: int) -> None:
    """Let a gated `Steps` job take its step `step`, and wait until the ticker has published it."""
    open_gate(gate, step)
    await until(lambda: steps_done(handle) == step, what=f"step {step} published")


@dataclass
class Reporter(sj.Job):
    NAME = "test_reporter"
    kind: str
    steps: int = 5

    async def run(self, ctx):
        for i in range(1, self.steps + 1):
            if self.kind == "count":
                ctx.report_count_progress(i, self.steps)
            elif self.kind == "percentage":
                ctx.report_percentage_progress(i / self.steps)
            elif self.kind == "bytes":
                ctx.report_bytes_progress(i * 1024 * 1024, self.steps * 1024 * 1024)
            else:
                ctx.report_structured_progress("indexing", {"files_found": i * 100})
            await asyncio.sleep(0.12)
        return ctx.get_metrics()


@pytest.mark.parametrize(
    ("kind", "text"),
    [("count", "5 / 5"), ("percentage", "100.0%"), ("bytes", "5.0 MiB / 5.0 MiB"), ("structured", "indexing")],
)
async def test_each_progress_kind_gives_a_snapshot(manager, kind, text):
    handle = await manager.dispatch(Reporter(kind))
    await handle.wait()
    snap = handle.current_progress
    assert snap.kind == kind and text in snap.describe()
    if kind != "structured":
        assert snap.fraction == pytest.approx(1.0)
    else:
        assert snap.data == {"files_found": 500} and snap.phase == "indexing"


async def test_rate_and_eta_are_derived(manager, library, ticker_clock):
    gate = _gate(library)
    handle = await manager.dispatch(Steps(total=100, every=10**9, gate=gate))
    await _step(handle, gate, 1)
    assert handle.current_progress.rate is None  # one snapshot: no rate yet
    ticker_clock.advance(0.5)
    await _step(handle, gate, 2)  # 1 item in 0.5 s
    snap = handle.current_progress
    assert snap.rate == pytest.approx(2.0) and snap.eta_seconds == pytest.approx(98 / 2.0)
    ticker_clock.advance(0.25)
    await _step(handle, gate, 3)  # 1 item in 0.25 s (4 a second), smoothed with the rate before
    snap = handle.current_progress
    assert 2.0 < snap.rate <= 4.0 and snap.eta_seconds == pytest.approx(97 / snap.rate)
    await handle.cancel()


async def test_final_progress_is_saved_even_right_after_a_write(manager, library):
    @dataclass
    class Quick(sj.Job):
        NAME = "test_quick_progress"

        async def run(self, ctx):
            for i in range(1, 10_001):
                ctx.report_count_progress(i, 10_000)
            return None

    handle = await manager.dispatch(Quick())
    await handle.wait()
    record = await manager.record(handle.id)
    assert (record.progress.current, record.progress.total) == (10_000, 10_000)
    assert db_rows(library, "SELECT progress_current FROM job_history") == [(10_000.0,)]


async def test_progress_reaches_the_database_while_running_at_most_every_two_seconds(manager, library, ticker_clock):
    gate = _gate(library)
    handle = await manager.dispatch(Steps(total=100, every=10**9, gate=gate))  # never checkpoints

    async def stored_is(current: float) -> bool:
        progress = (await manager.record(handle.id)).progress
        return progress is not None and progress.current == current

    await _step(handle, gate, 1)
    await until(lambda: stored_is(1), what="the first snapshot in jobs.db")  # saved while running
    await _step(handle, gate, 5)  # published, but within two seconds of the last save (the ticker's clock)
    assert await stored_is(1)  # the live one is newer than the stored one
    ticker_clock.advance(2.0)
    await _step(handle, gate, 6)
    await until(lambda: stored_is(6), what="the snapshot two seconds later in jobs.db")
    assert handle.current_status is S.RUNNING
    await handle.cancel()


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        (("count", -5, 10), (0.0, 10.0)),
        (("count", 50, 10), (10.0, 10.0)),
        (("count", math.nan, 10), (None, 10.0)),
        (("count", "seven", 10), (None, 10.0)),
        (("percentage", 2.5, None), (1.0, None)),
    ],
)
def test_bad_progress_values_are_clamped_or_dropped(report, expected):
    meter = ProgressMeter()
    meter.kind, meter.current, meter.total = report
    snap = meter.snapshot(0.0)
    assert (snap.current if report[0] != "percentage" else snap.fraction, snap.total) == expected
    if expected[0] is None:
        assert meter.invalid


async def test_bad_structured_progress_raises_and_the_job_goes_on(manager):
    @dataclass
    class Structured(sj.Job):
        NAME = "test_structured_bad"

        async def run(self, ctx):
            errors = []
            for data in ({"x": object()}, {"big": "x" * 100_000}):
                try:
                    ctx.report_structured_progress("p", data)
                except ValueError as e:
                    errors.append(str(e))
            ctx.report_structured_progress("p", {"ok": 1})
            return errors

    errors = await (await manager.dispatch(Structured())).wait()
    assert "JSON-able" in errors[0] and "over" in errors[1]


async def test_progress_subscriber_that_never_reads_holds_one_snapshot(manager):
    handle = await manager.dispatch(Steps(total=300, delay=0.001))
    stream = handle.progress()
    first = await stream.__anext__()  # subscribe, then stop reading
    await handle.wait()
    slot = handle._entry._progress_slots[0]
    assert slot.has_value and slot.value.current == 300  # one value: the newest
    rest = [p async for p in stream]
    assert [p.current for p in rest] == [300]
    assert first.current <= 300


async def test_status_stream_sees_every_transition_of_pause_resume_cancel(manager, library):
    handle = await manager.dispatch(Steps(total=10, gate=_gate(library)))  # held at a closed gate
    seen = []

    async def watch():
        async for status in handle.status():
            seen.append(status)

    watcher = asyncio.create_task(watch())
    await until(lambda: handle.current_status is S.RUNNING)
    await handle.pause()
    await handle.resume()
    await until(lambda: handle.current_status is S.RUNNING)
    await handle.pause()
    await handle.cancel()
    await asyncio.wait_for(watcher, 5)
    # dispatch starts a job at once when a slot is free, so the stream opens on RUNNING
    assert seen == [S.RUNNING, S.PAUSED, S.QUEUED, S.RUNNING, S.PAUSED, S.CANCELLED]


async def test_events_cover_every_kind_with_real_errors(manager, library):
    events = []

    async def listen():
        async for event in manager.events():
            events.append(event)

    listener = asyncio.create_task(listen())
    await asyncio.sleep(0)

    @dataclass
    class Noisy(sj.Job):
        NAME = "test_noisy"

        async def run(self, ctx):
            ctx.report_non_critical_error("skipped locked file")
            ctx.report_count_progress(1, 1)
            await asyncio.sleep(0.15)
            return 7

    ok = await manager.dispatch(Noisy())
    await ok.wait()
    bad = await manager.dispatch(Fail("quota exceeded"))
    with pytest.raises(sj.JobFailed):
        await bad.wait()
    slow = await manager.dispatch(Steps(total=10, gate=_gate(library)))  # held at a closed gate
    await until(lambda: slow.current_status is S.RUNNING)
    await slow.pause()
    await slow.resume()
    await slow.cancel()
    await until(lambda: any(e.kind == "cancelled" and e.job_id == slow.id for e in events), what="the last event")
    listener.cancel()
    kinds = {e.kind for e in events}
    assert kinds >= {"queued", "started", "progress", "paused", "resumed", "completed", "failed", "cancelled",
                     "non_critical_error"}
    failed = next(e for e in events if e.kind == "failed")
    assert failed.error == "ValueError: quota exceeded" and failed.job_id == bad.id and failed.name == "test_fail"
    completed = next(e for e in events if e.kind == "completed")
    assert completed.result == 7
    noncritical = next(e for e in events if e.kind == "non_critical_error")
    assert noncritical.error == "skipped locked file"


async def test_slow_event_subscriber_coalesces_progress_but_keeps_state_changes():
    from sdjobs_nb._events import EventBus
    from sdjobs_nb._records import JobEvent

    bus = EventBus()
    stream = bus.subscribe()
    first = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0)
    for job in map(str, range(5)):  # the subscriber gets no turn while these are published
        for kind, status in (("queued", S.QUEUED), ("started", S.RUNNING)):
            bus.publish(JobEvent(kind=kind, job_id=job, name="x", status=status))
        for _ in range(100):
            bus.publish(JobEvent(kind="progress", job_id=job, name="x", status=S.RUNNING))
        bus.publish(JobEvent(kind="completed", job_id=job, name="x", status=S.COMPLETED))
    events = [await first]
    while sum(e.kind == "completed" for e in events) < 5:
        events.append(await stream.__anext__())
    assert sum(e.kind == "progress" for e in events) <= 5  # at most one pending progress event per job
    state_kinds = [(e.job_id, e.kind) for e in events if e.kind != "progress"]
    assert state_kinds == [(j, k) for j in map(str, range(5)) for k in ("queued", "started", "completed")]
    await stream.aclose()


async def test_events_overflow_ends_a_subscriber_instead_of_growing(library):
    from sdjobs_nb._events import EventBus
    from sdjobs_nb._records import JobEvent

    bus = EventBus(max_pending=10)
    stream = bus.subscribe()
    pending = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0)
    for i in range(30):
        bus.publish(JobEvent(kind="queued", job_id=str(i), name="x", status=S.QUEUED))
    with pytest.raises(sj.EventsOverflow, match="fell more than 10"):
        await pending
    assert not bus.has_subscribers  # its memory is gone with it


async def test_metrics_are_reported_and_saved(manager, library):
    @dataclass
    class Measured(sj.Job):
        NAME = "test_measured"

        async def run(self, ctx):
            for i in range(1, 51):
                ctx.report_count_progress(i, 50)
            ctx.report_non_critical_error("one bad row")
            await ctx.checkpoint()
            await asyncio.sleep(0.05)
            return ctx.get_metrics()

    handle = await manager.dispatch(Measured())
    live = await handle.wait()
    assert live["items"] == 50 and live["checkpoints"] == 1 and live["non_critical_errors"] == 1
    assert live["elapsed_seconds"] >= 0.05 and live["memory_mb"] > 1
    row = db_rows(library, "SELECT items, checkpoints, non_critical_errors, memory_mb FROM job_history")[0]
    assert row[:3] == (50, 1, 1) and row[3] > 1
    assert (await manager.errors(handle.id))[0][1] == "one bad row"


async def test_file_log_keeps_lines_across_a_resume(library):
    @dataclass
    class Chatty(Steps):
        """Counts like `Steps`, after a line of its own in its log."""

        NAME = "test_chatty"

        async def run(self, ctx):
            ctx.log.info("starting at %d", self.done)
            return await super().run(ctx)

    gate = _gate(library)
    async with sj.JobManager.open(library, file_log=True) as m:
        handle = await m.dispatch(Chatty(total=10, gate=gate))
        await _step(handle, gate, 2)
        await handle.pause()
        await handle.resume()
        await _step(handle, gate, 4)
        await handle.cancel()
    text = (library / "logs" / f"{handle.id}.log").read_text()
    assert text.count("starting at") == 2 and "paused" in text and "cancelled" in text
    assert text.index("starting at 0") < text.index("paused") < text.index("starting at 2") < text.index("cancelled")
    assert [p.name for p in (library / "logs").iterdir()] == [f"{handle.id}.log"]


async def test_file_log_env_var(library, monkeypatch):
    monkeypatch.setenv("SDJOBS_FILE_LOG", "1")
    async with sj.JobManager.open(library) as m:
        await (await m.dispatch(Add(1))).wait()
    assert len(list((library / "logs").glob("*.log"))) == 1


async def test_progress_reports_do_not_need_await_and_survive_a_tight_loop(manager):
    @dataclass
    class Tight(sj.Job):
        NAME = "test_tight"

        async def run(self, ctx):
            for i in range(200_000):
                ctx.report_count_progress(i + 1, 200_000)
            return "ok"

    handle = await manager.dispatch(Tight())
    assert await handle.wait() == "ok"
    assert handle.current_progress.current == 200_000
