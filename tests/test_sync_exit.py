"""Scripts on the sync facade exit quietly, however they end, and their running jobs are saved.

Each script runs in a real interpreter: what is checked happens at interpreter exit, where the
facade closes managers left open after `threading` has shut the thread pools down.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from support import db_rows
from test_sync import run_python

# Jobs defined in the script itself. On its first run Hold counts to `hold_at`, then says so
# (HOLDING, and the marker file once the script waits in h.result()) and waits at
# check_interrupted until it is paused; a later run finishes. Flush runs blocking calls until
# asked to stop, then makes one more (as a job saving its work would). Their results tell that
# the state saved at the pause was the one resumed.
PRELUDE = '''
import asyncio, sys, time
from dataclasses import dataclass
from pathlib import Path
import sdjobs_nb as sj

LIBRARY = {library!r}
MARKER = Path({marker!r})
HOLDING = asyncio.Event()
IN_RESULT = False  # set just before h.result(): the marker then says the loop runs inside it


@dataclass
class Hold(sj.Job):
    NAME = "exit_test_hold"
    total: int = 10
    hold_at: int = 5
    done: int = 0
    runs: int = 0

    async def run(self, ctx):
        self.runs += 1
        while self.done < self.total:
            await ctx.check_interrupted()
            if self.runs == 1 and self.done == self.hold_at:
                HOLDING.set()
                if IN_RESULT and not MARKER.exists():
                    MARKER.write_text("holding")
                await asyncio.sleep(0.005)
                continue
            self.done += 1
        return f"{{self.done}} after {{self.runs}} runs"


@dataclass
class Flush(sj.Job):
    """Runs blocking calls until asked to stop, then saves its work with one more blocking call."""

    NAME = "exit_test_flush"
    done: int = 0
    runs: int = 0
    flushed: int = 0

    async def run(self, ctx):
        self.runs += 1
        if self.runs > 1:
            return f"flushed {{self.flushed == self.done >= 3}} after {{self.runs}} runs"
        while ctx.interrupt_requested is None:
            self.done += 1
            if self.done == 3:
                HOLDING.set()
            await ctx.run_blocking(time.sleep, 0.001)
        self.flushed = await ctx.run_blocking(int, self.done)
        await ctx.check_interrupted()
'''


def script(tmp_path: Path, body: str) -> str:
    prelude = PRELUDE.format(library=str(tmp_path / "library"), marker=str(tmp_path / "holding"))
    return prelude + textwrap.dedent(body)


def stored(tmp_path: Path) -> list[tuple]:
    return db_rows(tmp_path / "library", "SELECT status, pause_reason FROM jobs")


def assert_resumes_to_the_right_result(tmp_path: Path, expected: str = "10 after 2 runs") -> None:
    """Another process reopens the library, finds the job interrupted, and finishes it from its saved state."""
    result = run_python(script(tmp_path, """
        m = sj.open_sync(LIBRARY)
        [h] = m.handles()
        print(h.current_status.value, h.pause_reason)
        sj.run_sync(m.resume_interrupted())
        print(h.result(timeout=60))
        sj.run_sync(m.close())
    """))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == ["paused interrupted", expected]


def test_the_readme_example_exits_quietly(tmp_path):
    result = run_python(script(tmp_path, """
        m = sj.open_sync(LIBRARY)
        h = sj.run_sync(m.dispatch(Hold(hold_at=-1)))
        print(h.result(timeout=None))
    """))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "10 after 1 runs\n"
    assert stored(tmp_path) == [("completed", None)]


def test_a_script_that_forgets_close_exits_quietly_and_its_running_job_is_saved(tmp_path):
    result = run_python(script(tmp_path, """
        m = sj.open_sync(LIBRARY)
        h = sj.run_sync(m.dispatch(Hold()))
        sj.run_sync(HOLDING.wait())
        print(h.current_status.value)
    """))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "running\n"
    assert stored(tmp_path) == [("paused", "interrupted")]
    assert_resumes_to_the_right_result(tmp_path)


def test_a_job_stopping_at_exit_can_still_run_blocking_work(tmp_path):
    # the thread pools are shut down before atexit callbacks; the job must be saved, not failed
    result = run_python(script(tmp_path, """
        m = sj.open_sync(LIBRARY)
        h = sj.run_sync(m.dispatch(Flush()))
        sj.run_sync(HOLDING.wait())
    """))
    assert (result.returncode, result.stderr) == (0, "")
    assert stored(tmp_path) == [("paused", "interrupted")]
    assert_resumes_to_the_right_result(tmp_path, expected="flushed True after 2 runs")


def test_a_script_that_closes_exits_quietly(tmp_path):
    result = run_python(script(tmp_path, """
        m = sj.open_sync(LIBRARY)
        h = sj.run_sync(m.dispatch(Hold()))
        sj.run_sync(HOLDING.wait())
        sj.run_sync(m.close())
        print(h.current_status.value, h.pause_reason)
    """))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "paused interrupted\n"
    assert stored(tmp_path) == [("paused", "interrupted")]
    assert_resumes_to_the_right_result(tmp_path)


def test_a_script_that_raises_shows_only_its_own_traceback(tmp_path):
    code = script(tmp_path, """
        m = sj.open_sync(LIBRARY)
        h = sj.run_sync(m.dispatch(Hold()))
        sj.run_sync(HOLDING.wait())
        raise ValueError("the script's own error")
    """)
    line = code.splitlines().index('raise ValueError("the script\'s own error")') + 1
    result = run_python(code)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "Traceback (most recent call last):",
        f'  File "<string>", line {line}, in <module>',
        "ValueError: the script's own error",
    ], result.stderr
    assert stored(tmp_path) == [("paused", "interrupted")]
    assert_resumes_to_the_right_result(tmp_path)


def test_a_script_that_used_history_exits_quietly(tmp_path):
    # history() runs on the bulk reader's own thread and connection, which are then left open
    result = run_python(script(tmp_path, """
        m = sj.open_sync(LIBRARY)
        h = sj.run_sync(m.dispatch(Hold(hold_at=-1)))
        h.result(timeout=60)
        frame = sj.run_sync(m.history())
        print(list(frame["status"]))
        h = sj.run_sync(m.dispatch(Hold()))
        sj.run_sync(HOLDING.wait())
    """))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "['completed']\n"
    assert sorted(stored(tmp_path)) == [("completed", None), ("paused", "interrupted")]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT")
def test_ctrl_c_while_waiting_pauses_and_saves_the_job(tmp_path):
    marker = tmp_path / "holding"
    code = script(tmp_path, """
        m = sj.open_sync(LIBRARY)
        h = sj.run_sync(m.dispatch(Hold()))
        IN_RESULT = True
        h.result(timeout=None)
    """)
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}  # a hang is reported with every thread's stack
    # Ctrl-C as a terminal delivers it: a suite started in the background (`cmd &`) ignores SIGINT,
    # and a child would inherit that (Python then installs no KeyboardInterrupt handler)
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        # the marker is written from inside h.result(), whose loop run handles Ctrl-C (asyncio.Runner)
        deadline = time.monotonic() + 120
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)  # polling for the job's marker, not timing the test
        assert marker.exists(), process.communicate(timeout=60)
        process.send_signal(signal.SIGINT)
        try:
            stdout, stderr = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGABRT)  # faulthandler prints where each thread is stuck
            raise AssertionError(f"no exit after Ctrl-C:\n{process.communicate(timeout=60)[1]}") from None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # an uncaught KeyboardInterrupt ends Python by SIGINT (a shell shows exit status 130)
    assert process.returncode == -signal.SIGINT, stderr
    # Python's usual traceback for Ctrl-C in asyncio.Runner.run: the cancelled wait, then KeyboardInterrupt
    lines = stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):", stderr
    assert lines[-1] == "KeyboardInterrupt", stderr
    assert "Exception ignored" not in stderr, stderr
    raised = [x for x in lines if x and not x.startswith((" ", "Traceback", "During handling"))]
    assert raised == ["asyncio.exceptions.CancelledError", "KeyboardInterrupt"], stderr
    assert stdout == ""
    assert stored(tmp_path) == [("paused", "interrupted")]
    assert_resumes_to_the_right_result(tmp_path)
