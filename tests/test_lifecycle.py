"""A job's life from dispatch to a terminal state, and what each writes (issue 2)."""

from __future__ import annotations

import sqlite3

import pytest

import sdjobs_nb as sj
from sdjobs_nb._status import check_transition
from jobs_for_tests import Add, Fail, FailCritical, InterruptSelf, Steps, open_gate, steps_done, until
from support import db_rows


async def test_open_is_awaitable_and_a_context_manager(library):
    m = await sj.JobManager.open(str(library))
    await m.close()
    await m.close()  # idempotent
    async with sj.JobManager.open(library) as m2:
        assert not m2.closed
    assert m2.closed
    assert (library / "jobs.db").exists()


async def test_dispatch_returns_at_once_and_the_job_completes(manager, library):
    handle = await manager.dispatch(Steps(total=30))
    assert isinstance(handle.id, str) and handle.name == "test_steps"
    assert handle.current_status in (sj.JobStatus.QUEUED, sj.JobStatus.RUNNING)
    assert await handle.wait() == 30
    assert handle.current_status is sj.JobStatus.COMPLETED
    assert db_rows(library, "SELECT status FROM jobs WHERE id=?", (handle.id,)) == [("completed",)]


async def test_failed_job_carries_its_real_message_and_traceback(manager, library):
    handle = await manager.dispatch(Fail("disk on fire"))
    with pytest.raises(sj.JobFailed) as info:
        await handle.wait()
    assert info.value.message == "ValueError: disk on fire"
    assert "raise ValueError(self.message)" in info.value.traceback_text
    assert "Job failed" not in str(info.value)
    error, tb = db_rows(library, "SELECT error, traceback FROM jobs WHERE id=?", (handle.id,))[0]
    assert error == "ValueError: disk on fire" and "Traceback" in tb


async def test_critical_failure_is_failed_and_never_resumes(manager):
    handle = await manager.dispatch(FailCritical())
    with pytest.raises(sj.JobFailed, match="data corruption detected"):
        await handle.wait()
    assert handle.current_status is sj.JobStatus.FAILED
    with pytest.raises(sj.InvalidTransition):
        await handle.resume()


async def test_job_raising_interrupted_is_paused_and_resumable(manager, library):
    handle = await manager.dispatch(InterruptSelf())
    await until(lambda: handle.current_status is sj.JobStatus.PAUSED)
    (reason,) = db_rows(library, "SELECT pause_reason FROM jobs WHERE id=?", (handle.id,))[0]
    assert reason == "job"
    await handle.resume()
    assert await handle.wait() == "done after 2 attempts"  # attempts were saved at pause


async def test_cancelled_job_raises_cancelled_and_is_kept(manager, library):
    handle = await manager.dispatch(Steps(total=10, gate=str(library.parent / "gate")))  # held at a closed gate
    await until(lambda: handle.current_status is sj.JobStatus.RUNNING)
    await handle.cancel()
    with pytest.raises(sj.Cancelled):
        await handle.wait()
    assert db_rows(library, "SELECT status FROM jobs WHERE id=?", (handle.id,)) == [("cancelled",)]


async def test_every_terminal_state_writes_exactly_one_history_row(manager, library):
    ok = await manager.dispatch(Add(1, 2))
    bad = await manager.dispatch(Fail())
    gone = await manager.dispatch(Steps(total=10, gate=str(library.parent / "gate")))  # held at a closed gate
    await ok.wait()
    with pytest.raises(sj.JobFailed):
        await bad.wait()
    await gone.cancel()
    rows = dict(db_rows(library, "SELECT id, status FROM job_history"))
    assert rows == {ok.id: "completed", bad.id: "failed", gone.id: "cancelled"}
    (duration, progress), = db_rows(library, "SELECT duration_s, progress_current FROM job_history WHERE id=?", (ok.id,))
    assert duration >= 0


async def test_history_row_has_final_progress_and_counts(manager, library):
    handle = await manager.dispatch(Steps(total=25, every=10))
    await handle.wait()
    row = db_rows(library, "SELECT progress_current, progress_total, items, checkpoints FROM job_history WHERE id=?",
                  (handle.id,))[0]
    assert row == (25.0, 25.0, 25, 2)


async def test_dispatch_by_name_with_good_data(manager):
    handle = await manager.dispatch_by_name("test_add", {"a": 2, "b": 3})
    assert await handle.wait() == 5


@pytest.mark.parametrize(
    ("name", "data", "error", "text"),
    [
        ("no_such_job", {}, sj.UnknownJob, "test_add"),
        ("test_add", {}, sj.InvalidJobData, "missing field 'a'"),
        ("test_add", {"a": 1, "zzz": 2}, sj.InvalidJobData, "unknown field 'zzz'"),
        ("test_add", {"a": "one"}, sj.InvalidJobData, "field 'a' should be int"),
        ("test_add", [1, 2], sj.InvalidJobData, "must be a dict"),
    ],
)
async def test_dispatch_by_name_with_bad_data_writes_nothing(manager, library, name, data, error, text):
    with pytest.raises(error, match=text):
        await manager.dispatch_by_name(name, data)
    assert db_rows(library, "SELECT count(*) FROM jobs") == [(0,)]


async def test_close_pauses_running_jobs_and_keeps_queued_ones(library):
    gate = str(library.parent / "gate")
    open_gate(gate, 5)  # it runs 5 steps, then waits there until the close
    async with sj.JobManager.open(library, max_concurrent=1) as m:
        running = await m.dispatch(Steps(total=100, every=50, gate=gate))
        queued = await m.dispatch(Add(1, 1))
        await until(lambda: steps_done(running) == 5)
    statuses = dict(db_rows(library, "SELECT id, status FROM jobs"))
    assert statuses == {running.id: "paused", queued.id: "queued"}
    async with sj.JobManager.open(library) as m:
        assert await m.get(queued.id).wait() == 2  # queued jobs run again after open
        paused = m.get(running.id)
        assert paused.current_status is sj.JobStatus.PAUSED
        record = await m.record(running.id)
        assert record.pause_reason == "interrupted"
        assert record.progress is not None and record.progress.current == 5
        assert (await m.saved_state(running.id))["done"] == 5  # saved at the close, before any checkpoint


async def test_newer_schema_is_refused_and_left_untouched(library):
    async with sj.JobManager.open(library):
        pass
    conn = sqlite3.connect(library / "jobs.db")
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    before = (library / "jobs.db").read_bytes()
    with pytest.raises(sj.SchemaTooNew, match="schema version 99"):
        await sj.JobManager.open(library)
    assert (library / "jobs.db").read_bytes() == before


async def test_not_a_database_is_refused(library):
    library.mkdir()
    (library / "jobs.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(sj.LibraryError, match="not a usable SQLite database"):
        await sj.JobManager.open(library)


async def test_library_path_that_is_a_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(sj.LibraryError, match="is a file"):
        await sj.JobManager.open(path)


def test_illegal_transition_raises():
    with pytest.raises(sj.InvalidTransition, match="completed to running"):
        check_transition("x", sj.JobStatus.COMPLETED, sj.JobStatus.RUNNING)
    check_transition("x", sj.JobStatus.PAUSED, sj.JobStatus.QUEUED)


async def test_initiated_by_and_context_are_stored(manager, library):
    handle = await manager.dispatch(Add(1), initiated_by="notebook user", context={"cell": 3})
    await handle.wait()
    record = await manager.record(handle.id)
    assert record.initiated_by == "notebook user" and record.context == {"cell": 3}
    assert db_rows(library, "SELECT initiated_by, context FROM job_history") == [("notebook user", '{"cell": 3}')]


async def test_get_works_for_finished_jobs_in_a_new_manager(library):
    async with sj.JobManager.open(library) as m:
        handle = await m.dispatch(Add(20, 22))
        await handle.wait()
    async with sj.JobManager.open(library) as m:
        again = m.get(handle.id)
        assert again.current_status is sj.JobStatus.COMPLETED
        assert await again.wait() == 42
        with pytest.raises(sj.JobNotFound):
            m.get("00000000-0000-0000-0000-000000000000")


async def test_import_does_not_pull_optional_dependencies():
    import subprocess
    import sys

    code = "import sys, sdjobs_nb; bad = {'ipywidgets', 'pandas', 'matplotlib', 'nest_asyncio', 'dask'} & set(sys.modules); print(sorted(bad))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_script_that_forgets_close_still_exits(tmp_path):
    import subprocess
    import sys

    code = (
        "import asyncio, sdjobs_nb as sj\n"
        f"async def main():\n    await sj.JobManager.open({str(tmp_path / 'lib')!r})\n"
        "asyncio.run(main())\nprint('exited')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "exited" and out.returncode == 0


def test_every_public_module_has_a_tuple_all():
    import importlib
    import pkgutil

    import sdjobs_nb

    assert isinstance(sdjobs_nb.__all__, tuple)
    for name in sdjobs_nb.__all__:
        assert hasattr(sdjobs_nb, name), name
    for info in pkgutil.iter_modules(sdjobs_nb.__path__):
        if info.name.startswith("_") or info.name in ("cli",):
            continue
        module = importlib.import_module(f"sdjobs_nb.{info.name}")
        assert isinstance(getattr(module, "__all__", None), tuple), f"sdjobs_nb.{info.name} needs a tuple __all__"
