"""Runs that always end: whatever a job's code does, it ends in a defined state and every call about it returns.

Issue 17, findings 3-8 and 10. Each call that used to hang is bounded by `within` (a generous
10 s that only a hang reaches), or runs in a subprocess with a timeout when the job could freeze
the event loop itself (pytest's loop would freeze with it). States are checked in memory and in
jobs.db, as another process reads it.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sdjobs_nb as sj  # noqa: E402
from _workers.util import decode, quiet_dead_tasks, rows, within  # noqa: E402, F401
from jobs_for_tests import GATE_POLL_S, Add, Steps, gate_value, open_gate, steps_done, until  # noqa: E402

S = sj.JobStatus
HANG_S = 10  # only a hang takes this long
SUBPROCESS_S = 60


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def _depth(value: Any) -> int:
    depth = 0
    while isinstance(value, list) and value:
        value, depth = value[0], depth + 1
    return depth


class Exploding(list):
    """A list that cannot be read: whatever the codec tries, it fails with an error of the list's own."""

    def __iter__(self) -> Any:
        raise RuntimeError("this list cannot be read")


#: values a job can hold or return that msgpack could not store (issue 17); the codec now stores the
#: first two, the others are refused: either way the job must end somewhere defined
UNSTORABLE = {"huge_int": lambda: 2**64, "lone_surrogate": lambda: "\ud800", "deep_list": lambda: _nested(10_000),
              "exploding": lambda: Exploding([1])}
NEVER_STORED = ("deep_list", "exploding")


def _same_unstorable(kind: str, value: Any) -> bool:
    if kind == "deep_list":  # `==` on 10,000 levels would itself hit the recursion limit
        return _depth(value) == 10_000
    if kind == "exploding":
        return type(value) is Exploding
    return value == UNSTORABLE[kind]()


def _status_row(library: Path, job_id: str) -> tuple:
    ((status, reason, data),) = rows(library, "SELECT status, pause_reason, data FROM jobs WHERE id=?", (job_id,))
    return status, reason, decode(data)


# --- 3: unstorable state at a pause --------------------------------------------------------------


@dataclass
class BadStateAtPause(sj.Job):
    """Checkpoints once, then puts an unstorable value in its state and waits, checking for a pause."""

    NAME = "rr_bad_state_at_pause"
    kind: str
    value: Any = None
    step: int = 0

    async def run(self, ctx: sj.JobContext) -> str:
        if self.step == 0:
            self.step = 1
            await ctx.checkpoint()
            self.value = UNSTORABLE[self.kind]()
            ctx.report_count_progress(1)
            while True:
                await ctx.check_interrupted()
                await asyncio.sleep(GATE_POLL_S)
        return f"resumed at step {self.step} with {self.value!r}"


@pytest.mark.parametrize("kind", UNSTORABLE)
async def test_pause_with_unstorable_state_pauses_from_the_last_checkpoint(library: Path, kind: str) -> None:
    async with sj.JobManager.open(library, grace_period=0.2) as manager:
        handle = await manager.dispatch(BadStateAtPause(kind))
        await until(lambda: steps_done(handle) == 1, what="the unstorable value in its state")
        await within(handle.pause(), HANG_S)
        # it used to stay RUNNING with no task: cancel() did nothing and wait() never returned
        assert (handle.current_status, handle.pause_reason) == (S.PAUSED, "user")
        assert rows(library, "SELECT status, pause_reason FROM jobs WHERE id=?", (handle.id,)) == [("paused", "user")]
        saved = (await manager.saved_state(handle.id))["value"]
        assert saved is None if kind in NEVER_STORED else saved in (None, UNSTORABLE[kind]())  # else: its last checkpoint
        await within(handle.resume(), HANG_S)
        assert await within(handle.wait(), HANG_S) == f"resumed at step 1 with {saved!r}"


# --- 4: an unstorable result -------------------------------------------------------------------


@dataclass
class ReturnsUnstorable(sj.Job):
    NAME = "rr_returns_unstorable"
    kind: str

    async def run(self, ctx: sj.JobContext) -> Any:
        return UNSTORABLE[self.kind]()


@pytest.mark.parametrize("kind", UNSTORABLE)
async def test_unstorable_result_completes_and_wait_returns_it(library: Path, kind: str) -> None:
    async with sj.JobManager.open(library) as manager:
        handle = await manager.dispatch(ReturnsUnstorable(kind))
        assert _same_unstorable(kind, await within(handle.wait(), HANG_S))  # in this process it still has it
        assert handle.current_status is S.COMPLETED
    assert rows(library, "SELECT status FROM jobs WHERE id=?", (handle.id,)) == [("completed",)]
    assert rows(library, "SELECT status FROM job_history WHERE id=?", (handle.id,)) == [("completed",)]
    async with sj.JobManager.open(library) as manager:
        stored = await within(manager.get(handle.id).wait(), HANG_S)
        assert stored is None if kind in NEVER_STORED else stored in (None, UNSTORABLE[kind]())  # None: not stored


# --- 5: BaseExceptions that are not ours -------------------------------------------------------


class OwnSignal(BaseException):
    """A job's own control-flow exception, outside `Exception`."""


@dataclass
class RaisesBase(sj.Job):
    NAME = "rr_raises_base"
    what: str

    async def run(self, ctx: sj.JobContext) -> None:
        if self.what == "own":
            raise OwnSignal("stop everything")
        raise asyncio.CancelledError("gave up")  # raised by the job itself: nobody cancelled its task


@pytest.mark.parametrize(("what", "error"), [("own", "OwnSignal: stop everything"),
                                             ("cancelled", "CancelledError: gave up")])
async def test_job_raising_a_base_exception_fails(library: Path, what: str, error: str) -> None:
    async with sj.JobManager.open(library, grace_period=0.2) as manager:
        handle = await manager.dispatch(RaisesBase(what))
        with pytest.raises(sj.JobFailed, match=error):
            await within(handle.wait(), HANG_S)
        assert handle.current_status is S.FAILED and handle.error == error
    assert rows(library, "SELECT status, error FROM jobs WHERE id=?", (handle.id,)) == [("failed", error)]
    assert rows(library, "SELECT status FROM job_history WHERE id=?", (handle.id,)) == [("failed",)]


CTRL_C_SCRIPT = r"""
import asyncio, sys
from dataclasses import dataclass
import sdjobs_nb as sj

@dataclass
class CtrlC(sj.Job):
    NAME = "rr_ctrl_c"
    async def run(self, ctx):
        raise KeyboardInterrupt

live = {}

async def start(path):
    live["manager"] = manager = await sj.JobManager.open(path, grace_period=0.2)
    live["handle"] = await manager.dispatch(CtrlC())
    await asyncio.sleep(60)  # the job's KeyboardInterrupt stops the loop long before

async def after():
    manager, handle = live["manager"], live["handle"]
    for _ in range(1000):  # its pause is announced once its write commits
        if handle.current_status is not sj.JobStatus.RUNNING:
            break
        await asyncio.sleep(0.01)
    print("status", handle.current_status.value, handle.pause_reason, flush=True)
    await asyncio.wait_for(handle.cancel(), 10)
    print("after cancel", handle.current_status.value, flush=True)
    await asyncio.wait_for(manager.close(), 10)

loop = asyncio.new_event_loop()
try:
    loop.run_until_complete(start(sys.argv[1]))
except KeyboardInterrupt:
    print("the interrupt reached the caller", flush=True)
loop.run_until_complete(after())
"""


def test_keyboard_interrupt_in_a_job_pauses_it_and_reaches_the_caller(library: Path) -> None:
    done = subprocess.run([sys.executable, "-c", CTRL_C_SCRIPT, str(library)], cwd=library.parent, capture_output=True,
                          text=True, timeout=SUBPROCESS_S)
    assert done.stdout.splitlines() == [
        "the interrupt reached the caller",
        "status paused interrupted",  # as a crash would leave it; it used to stay RUNNING with no task
        "after cancel cancelled",
    ], done.stderr
    assert rows(library, "SELECT status FROM jobs") == [("cancelled",)]


# --- 6: wait() and close() ----------------------------------------------------------------------


async def test_wait_during_and_after_close_raises_manager_closed(library: Path, tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    manager = await sj.JobManager.open(library, max_concurrent=1, grace_period=0.2)
    running = await manager.dispatch(Steps(total=5, every=1, gate=gate))  # waits at the closed gate
    queued = await manager.dispatch(Add(1, 2))  # waits for the only slot
    await until(lambda: running.current_status is S.RUNNING)
    waits = [asyncio.ensure_future(h.wait()) for h in (running, queued)]
    await asyncio.sleep(0)  # both waiters are waiting
    await within(manager.close(), HANG_S)
    for handle, wait, where in [(running, waits[0], "saved PAUSED \\(interrupted\\)"), (queued, waits[1], "stays QUEUED")]:
        with pytest.raises(sj.ManagerClosed, match=where):
            await within(wait, HANG_S)
        with pytest.raises(sj.ManagerClosed, match=where):  # called after close: at once
            await within(handle.wait(), HANG_S)
    assert rows(library, "SELECT status, pause_reason FROM jobs ORDER BY seq") == [("paused", "interrupted"),
                                                                                  ("queued", None)]
    open_gate(gate, 5)
    async with sj.JobManager.open(library, resume=True) as manager:  # both carry on, as the errors said
        assert await within(manager.get(running.id).wait(), HANG_S) == 5
        assert await within(manager.get(queued.id).wait(), HANG_S) == 3


# --- 7: a job that catches Interrupted and loops ---------------------------------------------------


SPIN_SCRIPT = r"""
import asyncio, sys, time
from dataclasses import dataclass
import sdjobs_nb as sj

@dataclass
class Spinner(sj.Job):
    NAME = "rr_spinner"
    caught: int = 0
    async def run(self, ctx):
        ctx.report_count_progress(1)
        while True:
            try:
                await ctx.check_interrupted()  # its only await
            except sj.Interrupted:
                self.caught += 1  # "log and go on"

async def main(path):
    async with sj.JobManager.open(path, grace_period=0.2) as manager:
        handle = await manager.dispatch(Spinner())
        while handle.current_progress is None:
            await asyncio.sleep(0.005)
        started = time.monotonic()
        await asyncio.wait_for(handle.pause(), 10)
        print("pause returned", time.monotonic() - started < 5, flush=True)
        print("status", handle.current_status.value, handle.pause_reason, flush=True)

asyncio.run(main(sys.argv[1]))
"""


def test_job_that_catches_interrupted_in_a_loop_is_force_stopped(library: Path) -> None:
    try:
        done = subprocess.run([sys.executable, "-c", SPIN_SCRIPT, str(library)], cwd=library.parent, capture_output=True,
                              text=True, timeout=SUBPROCESS_S)
    except subprocess.TimeoutExpired:
        pytest.fail("the job spun without yielding once a pause was pending: the event loop (the kernel) froze")
    assert done.stdout.splitlines() == ["pause returned True", "status paused user"], done.stderr
    ((status, reason, data),) = rows(library, "SELECT status, pause_reason, data FROM jobs")
    assert (status, reason, decode(data)) == ("paused", "user", {"caught": 0})  # forced: its dispatched state


# --- 8: a job that swallows cancellation ---------------------------------------------------------


#: (job id, what its run did after it was let go), in this process
AFTERMATH: list[tuple[str, str]] = []


@dataclass
class Swallower(sj.Job):
    """Checkpoints once, then swallows every cancellation while its gate is closed.

    Once let go it tries to checkpoint again and returns: a run that was abandoned meanwhile
    must not get either into jobs.db.
    """

    NAME = "rr_swallower"
    gate: str
    step: int = 0

    async def run(self, ctx: sj.JobContext) -> int:
        if self.step == 0:
            self.step = 1
            await ctx.checkpoint()
            ctx.report_count_progress(1)
        while gate_value(self.gate) < 1:
            try:
                await asyncio.sleep(GATE_POLL_S)
            except asyncio.CancelledError:
                pass  # the fault under test
        self.step += 1
        try:
            await ctx.checkpoint()
        except sj.Interrupted:
            AFTERMATH.append((ctx.job_id, "checkpoint refused"))
        AFTERMATH.append((ctx.job_id, "returned"))
        return self.step


async def _stop_swallower(manager: sj.JobManager, handle: sj.JobHandle, action: str) -> None:
    started = time.monotonic()
    await within(manager.close() if action == "close" else getattr(handle, action)(), HANG_S)
    assert time.monotonic() - started < 5  # grace 0.2 s, then at most 1 s more before it is abandoned


def _stored(library: Path, job_id: str) -> tuple:
    """Everything jobs.db holds of a job that a write would change."""
    return (rows(library, "SELECT status, pause_reason, error, data, progress, metrics, updated_at FROM jobs WHERE id=?",
                 (job_id,)),
            rows(library, "SELECT * FROM job_checkpoints WHERE job_id=?", (job_id,)))


@pytest.mark.parametrize("action", ["cancel", "pause", "close"])
async def test_job_that_swallows_cancellation_is_abandoned(library: Path, tmp_path: Path, action: str,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sdjobs_nb.jobs")
    gate = str(tmp_path / "gate")
    expected = {"cancel": ("cancelled", None), "pause": ("paused", "user"), "close": ("paused", "interrupted")}[action]
    manager = await sj.JobManager.open(library, max_concurrent=1, grace_period=0.2)
    try:
        handle = await manager.dispatch(Swallower(gate))
        behind = await manager.dispatch(Add(1, 2))  # waits for the only slot
        await until(lambda: steps_done(handle) == 1, what="its first checkpoint")
        await _stop_swallower(manager, handle, action)
        assert rows(library, "SELECT status, pause_reason FROM jobs WHERE id=?", (handle.id,)) == [expected]
        assert any(handle.id in r.getMessage() and "abandoned" in r.getMessage() for r in caplog.records)
        if action != "close":
            assert handle.current_status.value == expected[0]
            assert await within(behind.wait(), HANG_S) == 3  # its slot went to the next job
        recorded = _stored(library, handle.id)
        open_gate(gate, 1)  # the abandoned task goes on: it tries to checkpoint, and returns
        await until(lambda: (handle.id, "returned") in AFTERMATH, what="the abandoned task to end")
        assert (handle.id, "checkpoint refused") in AFTERMATH
        assert _stored(library, handle.id) == recorded  # nothing it did reached jobs.db
    finally:
        open_gate(gate, 1)
        await within(manager.close(), 30)
    if action == "cancel":
        assert "abandoned" in rows(library, "SELECT error FROM jobs WHERE id=?", (handle.id,))[0][0]
        return
    async with sj.JobManager.open(library) as manager:  # it resumes from its checkpoint and finishes
        assert (await manager.saved_state(handle.id))["step"] == 1
        await manager.resume(handle.id)
        assert await within(manager.get(handle.id).wait(), HANG_S) == 2


# --- 10: except Exception around check_interrupted ------------------------------------------------


@dataclass
class LogAndGoOn(sj.Job):
    """Processes `total` items, each inside `try: ... except Exception: log and go on` (a common pattern)."""

    NAME = "rr_log_and_go_on"
    gate: str
    total: int = 100
    done: int = 0
    failures: int = 0

    async def run(self, ctx: sj.JobContext) -> int:
        while self.done < self.total:
            try:
                await ctx.check_interrupted()
                if self.done >= gate_value(self.gate):
                    await asyncio.sleep(GATE_POLL_S)
                    continue
            except Exception as e:
                ctx.log.warning("item %d failed: %r", self.done, e)
                self.failures += 1
            self.done += 1
            ctx.report_count_progress(self.done, self.total)
            if self.done % 5 == 0:
                await ctx.checkpoint()
        return self.failures


async def test_except_exception_does_not_swallow_a_pause(library: Path, tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    open_gate(gate, 10)
    async with sj.JobManager.open(library, grace_period=5) as manager:
        handle = await manager.dispatch(LogAndGoOn(gate))
        await until(lambda: steps_done(handle) == 10, what="10 items done")
        await within(handle.pause(), HANG_S)
        # it used to end COMPLETED, the last 90 items each "failed" with Interrupted('pause requested')
        assert handle.current_status is S.PAUSED
        assert _status_row(library, handle.id) == ("paused", "user", {"gate": gate, "total": 100, "done": 10,
                                                                     "failures": 0})
        open_gate(gate, 100)
        await handle.resume()
        assert await within(handle.wait(), HANG_S) == 0
    assert issubclass(sj.Interrupted, BaseException) and not issubclass(sj.Interrupted, Exception)


# --- a run that cannot even start --------------------------------------------------------------


async def test_job_that_cannot_start_fails_and_frees_its_slot(library: Path) -> None:
    library.mkdir()
    (library / "logs").write_text("a file where the job log folder goes")  # the job's log cannot be opened
    async with sj.JobManager.open(library, max_concurrent=1, file_log=True) as manager:
        first, second = await manager.dispatch(Add(1)), await manager.dispatch(Add(2))
        for handle in (first, second):  # the second needs the slot the first held
            with pytest.raises(sj.JobFailed, match="could not start: FileExistsError"):
                await within(handle.wait(), HANG_S)
    assert rows(library, "SELECT status FROM jobs") == [("failed",), ("failed",)]
