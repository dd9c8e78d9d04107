"""The sync facade: runs its own loop in scripts, refuses inside a running loop unless opted in."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from dataclasses import dataclass

import pytest

import sdjobs_nb as sj
from sdjobs_nb import _loops, _sync
from sdjobs_nb._sync import SyncInRunningLoop, open_sync, run_sync, wait_sync


@dataclass
class Count(sj.Job):
    NAME = "sync_test_count"
    total: int = 20
    done: int = 0

    async def run(self, ctx: sj.JobContext) -> int:
        while self.done < self.total:
            await ctx.check_interrupted()
            await asyncio.sleep(0.001)
            self.done += 1
            ctx.report_count_progress(self.done, self.total)
        return self.done


def in_fresh_thread(fn):
    """Run `fn` in a new thread (its own private loop, closed after) and return its result."""
    out: dict = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised in the test's thread
            out["error"] = e
        finally:
            runner = getattr(_loops._local, "runner", None)
            if runner is not None:
                runner.close()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(60)
    if "error" in out:
        raise out["error"]
    return out["value"]


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


# --- no running loop: the helpers run one themselves --------------------------------------


def test_run_sync_without_a_loop_returns_the_result():
    assert in_fresh_thread(lambda: run_sync(asyncio.sleep(0.01, result=42))) == 42


def test_run_sync_times_out():
    with pytest.raises(TimeoutError):
        in_fresh_thread(lambda: run_sync(asyncio.sleep(5), timeout=0.05))


def test_a_script_opens_dispatches_and_waits_without_await(tmp_path):
    def script():
        manager = open_sync(tmp_path / "library")
        try:
            handle = run_sync(manager.dispatch(Count(total=20)))
            result = wait_sync(handle, timeout=30)
            return result, handle.current_status
        finally:
            run_sync(manager.close())

    assert in_fresh_thread(script) == (20, sj.JobStatus.COMPLETED)


def test_wait_sync_timeout_leaves_the_job_going(tmp_path):
    def script():
        manager = open_sync(tmp_path / "library")
        handle = run_sync(manager.dispatch(Count(total=100_000)))
        try:
            wait_sync(handle, timeout=0.05)
        except TimeoutError:
            status = handle.current_status
        run_sync(manager.close())
        return status, handle.current_status

    assert in_fresh_thread(script) == (sj.JobStatus.RUNNING, sj.JobStatus.PAUSED)


async def test_wait_sync_from_another_thread_waits_on_the_managers_loop(tmp_path):
    async with sj.JobManager.open(tmp_path / "library") as manager:
        handle = await manager.dispatch(Count(total=30))
        assert await asyncio.to_thread(wait_sync, handle, 30) == 30


def test_a_script_that_forgets_to_close_saves_its_running_job(tmp_path):
    library = tmp_path / "library"
    result = run_python(f"""
        import asyncio, sys
        sys.path.insert(0, {str(__file__.rsplit('/', 1)[0])!r})
        from test_sync import Count
        from sdjobs_nb._sync import open_sync, run_sync, wait_sync
        manager = open_sync({str(library)!r})
        handle = run_sync(manager.dispatch(Count(total=1_000_000)))
        try:
            wait_sync(handle, timeout=0.1)
        except TimeoutError:
            print("left running")
    """)
    assert (result.returncode, result.stderr) == (0, "")
    assert "left running" in result.stdout
    import sqlite3

    rows = sqlite3.connect(library / "jobs.db").execute("SELECT status, pause_reason FROM jobs").fetchall()
    assert rows == [("paused", "interrupted")]


def test_wait_sync_on_a_manager_whose_loop_is_gone_says_so(tmp_path):
    async def script():
        manager = await sj.JobManager.open(tmp_path / "library")
        handle = await manager.dispatch(Count(total=100_000))
        await manager.close()
        return handle

    handle = in_fresh_thread(lambda: asyncio.run(script()))
    with pytest.raises(sj.ManagerClosed, match="open the library again"):
        in_fresh_thread(lambda: wait_sync(handle))


# --- inside a running loop: refused unless opted in ----------------------------------------


async def test_run_sync_inside_a_running_loop_is_refused():
    coro = asyncio.sleep(0)
    with pytest.raises(SyncInRunningLoop, match="use `await"):
        run_sync(coro)
    assert coro.cr_frame is None  # closed, so no "never awaited" warning


async def test_wait_sync_inside_a_running_loop_is_refused(tmp_path):
    async with sj.JobManager.open(tmp_path / "library") as manager:
        handle = await manager.dispatch(Count(total=5))
        with pytest.raises(SyncInRunningLoop, match="allow_nested_loop"):
            wait_sync(handle)
        assert await handle.wait() == 5


async def test_open_sync_inside_a_running_loop_is_refused(tmp_path):
    with pytest.raises(SyncInRunningLoop):
        open_sync(tmp_path / "library")
    assert not (tmp_path / "library").exists()


def test_opt_in_applies_nest_asyncio_and_warns(tmp_path):
    # a subprocess: nest_asyncio patches asyncio for the whole process
    result = run_python(f"""
        import asyncio, sys, warnings
        sys.path.insert(0, {str(__file__.rsplit('/', 1)[0])!r})
        import sdjobs_nb as sj
        from test_sync import Count
        from sdjobs_nb._sync import NestedLoopWarning, allow_nested_loop, run_sync, wait_sync

        async def cell():
            manager = await sj.JobManager.open({str(tmp_path / "library")!r})
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                allow_nested_loop()
            assert [w.category for w in caught] == [NestedLoopWarning], caught
            assert "ipykernel >= 7.3" in str(caught[0].message) and "dropped" in str(caught[0].message)
            print("nested run:", run_sync(asyncio.sleep(0.01, result=42)))
            handle = await manager.dispatch(Count(total=15))
            print("nested wait:", wait_sync(handle, timeout=30))
            await manager.close()

        asyncio.run(cell())
    """)
    assert result.returncode == 0, result.stderr
    assert "nested run: 42" in result.stdout and "nested wait: 15" in result.stdout
    assert (tmp_path / "library" / "jobs.db").exists()


def test_importing_never_applies_nest_asyncio():
    result = run_python("""
        import asyncio, sys
        run = asyncio.run
        import sdjobs_nb, sdjobs_nb._sync
        assert "nest_asyncio" not in sys.modules
        assert asyncio.run is run
        print("clean")
    """)
    assert result.returncode == 0, result.stderr
    assert "clean" in result.stdout


def test_allow_nested_loop_without_a_running_loop_does_nothing():
    def outside():
        _sync.allow_nested_loop()
        return set(_loops._NESTED)

    assert in_fresh_thread(outside) == set()


def test_handle_result_in_a_script(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "import sdjobs_nb as sj\n"
        "from jobs_for_tests import Add\n"
        "m = sj.open_sync(%r)\n"
        "h = sj.run_sync(m.dispatch(Add(40, 2)))\n"
        "print(h.result(timeout=30))\n"
    ) % (str(Path(__file__).parent), str(tmp_path / "lib"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "42", out.stderr
    assert out.stderr == ""  # nothing at exit either
