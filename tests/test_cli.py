"""The `sdjobs` command (issue 6): a library written by this process, read by the CLI in another."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from importlib import metadata

import pytest

import sdjobs_nb as sj
from sdjobs_nb import cli
from test_frames import HISTORY_COLUMNS, Gate, Tally, finish_three, until


def sdjobs(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `python -m sdjobs_nb ARGS` in a subprocess."""
    return subprocess.run([sys.executable, "-m", "sdjobs_nb", *map(str, args)], capture_output=True,
                          text=True, timeout=120, env=os.environ | {"PYTHONWARNINGS": "ignore"} | (env or {}))


def ok(*args: object, env: dict[str, str] | None = None) -> str:
    done = sdjobs(*args, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def fails(*args: object) -> str:
    done = sdjobs(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert done.stdout == ""
    return done.stderr


async def test_history_while_a_kernel_owns_the_library(manager, library):
    ids = await finish_three(manager)
    rows = json.loads(ok("history", library, "--json"))
    assert [r["id"] for r in rows] == [ids["cancelled"], ids["failed"], ids["completed"]]
    assert list(rows[0]) == HISTORY_COLUMNS
    done = rows[2]
    assert done["status"] == "completed" and done["items"] == 3 and done["context"] == {"batch": 7}
    assert done["finished_at"].endswith("+00:00") and done["duration_s"] > 0
    assert rows[1]["error"] == "ValueError: failed after 2"

    table = list(csv.DictReader(io.StringIO(ok("history", library, "--csv"))))
    assert [r["id"] for r in table] == [r["id"] for r in rows]
    assert list(table[0]) == HISTORY_COLUMNS and json.loads(table[2]["context"]) == {"batch": 7}

    text = ok("history", library)
    assert "finished (UTC)" in text and ids["failed"][:8] in text and "ValueError: failed after 2" in text

    assert [r["id"] for r in json.loads(ok("history", library, "--json", "--status", "failed"))] == [ids["failed"]]
    assert len(json.loads(ok("history", library, "--json", "--name", "frames_test_tally"))) == 2
    assert len(json.loads(ok("history", library, "--json", "--since", "1h"))) == 3
    assert json.loads(ok("history", library, "--json", "--until", "2000-01-01")) == []
    assert [r["id"] for r in json.loads(ok("history", library, "--json", "--limit", "1"))] == [ids["cancelled"]]


async def test_list_and_show(manager, library):
    ids = await finish_three(manager)
    key = str(uuid.uuid4())
    running = await manager.dispatch(Gate(key=key), initiated_by="cli test")
    paused = await manager.dispatch(Gate(key=key + "p"))
    await until(lambda: paused.current_status is sj.JobStatus.RUNNING)
    await paused.pause()
    await until(lambda: running.current_progress is not None)

    text = ok("list", library)
    assert running.id[:8] in text and paused.id[:8] in text and "paused (user)" in text
    listed = {r["id"]: r for r in json.loads(ok("list", library, "--json"))}
    assert listed[running.id]["status"] == "running" and listed[paused.id]["status"] == "paused"
    assert listed[running.id]["initiated_by"] == "cli test"

    shown = ok("show", library, ids["failed"][:6])
    assert ids["failed"] in shown and "ValueError: failed after 2" in shown and "traceback:" in shown
    details = json.loads(ok("show", library, ids["completed"], "--json"))
    assert details["status"] == "completed" and details["result"] == "3" and details["context"] == {"batch": 7}
    assert "paused" in ok("show", library, paused.id)
    for handle in (running, paused):
        await handle.cancel()


async def test_clear_errors_exit_2(manager, library, tmp_path):
    await finish_three(manager)
    assert "no library at" in fails("history", tmp_path / "missing")
    (tmp_path / "a_file").write_text("x")
    assert "is not a folder" in fails("list", tmp_path / "a_file")
    assert "no job with an id starting 'nope'" in fails("show", library, "nope")
    assert "cannot read 'tomorrowish' as a time" in fails("history", library, "--since", "tomorrowish")
    assert "invalid choice" in fails("history", library, "--status", "running")
    assert not (tmp_path / "missing").exists()  # reading never creates a library


async def test_cancel_and_resume_need_the_library(manager, library):
    key = str(uuid.uuid4())
    gate = await manager.dispatch(Gate(key=key))
    await until(lambda: gate.current_status is sj.JobStatus.RUNNING)
    await gate.pause()
    queued = await manager.dispatch(Tally(total=2), priority=sj.Priority.LOW)
    held = fails("cancel", library, gate.id)
    assert f"process {os.getpid()}" in held and "read_only=True" in held
    assert f"process {os.getpid()}" in fails("resume", library, gate.id)
    await queued.wait()
    await manager.close()

    assert "is finished, not paused" in fails("resume", library, queued.id)
    assert "queued frames_test_gate" in ok("resume", library, gate.id[:10])
    async with sj.JobManager.open(library) as again:  # the next owner defines Gate, so runs it
        resumed = again.get(gate.id)
        await until(lambda: resumed.current_status is sj.JobStatus.RUNNING)
        await resumed.pause()
    assert f"cancelled frames_test_gate {gate.id}" in ok("cancel", library, gate.id)
    assert "already cancelled" in ok("cancel", library, gate.id)
    assert "already completed" in fails("cancel", library, queued.id)
    async with sj.JobManager.open(library, read_only=True) as reader:
        assert (await reader.record(gate.id)).status is sj.JobStatus.CANCELLED
        assert list((await reader.history(status="cancelled"))["id"]) == [gate.id]


def test_demo_runs_and_leaves_history(tmp_path):
    library = tmp_path / "demo"
    out = ok("demo", library, "--items", "4", "--delay", "0")
    assert out.startswith(f"library: {library}\n")  # says first where it keeps its jobs
    assert "sdjobs_demo.flaky fails halfway on purpose" in out and "nothing is broken" in out
    assert "sdjobs_demo.count" in out and "completed" in out and "failed" in out
    assert "(sdjobs_demo.flaky failed on purpose)" in out
    assert f"sdjobs history {library}" in out
    rows = json.loads(ok("history", library, "--json"))
    assert sorted(r["status"] for r in rows) == ["completed", "completed", "failed"]
    assert {r["name"] for r in rows} == {"sdjobs_demo.count", "sdjobs_demo.download", "sdjobs_demo.flaky"}
    (flaky,) = [r for r in rows if r["name"] == "sdjobs_demo.flaky"]
    assert "on purpose" in flaky["error"]  # `sdjobs history` and `show` say so too


@pytest.mark.skipif(sys.platform != "linux", reason="the default folder is found through XDG_CACHE_HOME")
def test_demo_without_a_folder_uses_the_user_cache_folder(tmp_path):
    cache = tmp_path / "cache"
    out = ok("demo", "--items", "2", "--delay", "0", env={"XDG_CACHE_HOME": str(cache)})
    library = cache / "sdjobs_nb" / "demo"
    assert out.startswith(f"library: {library}\n")
    assert len(json.loads(ok("history", library, "--json"))) == 3
    # a relative XDG_CACHE_HOME is ignored, as the XDG spec says
    home = tmp_path / "home"
    out = ok("demo", "--items", "2", "--delay", "0", env={"XDG_CACHE_HOME": "relative", "HOME": str(home)})
    assert out.startswith(f"library: {home / '.cache' / 'sdjobs_nb' / 'demo'}\n")


def job_statuses(library) -> list[str]:
    """The statuses in a library's jobs.db, read directly: quick enough to poll without a subprocess."""
    try:
        conn = sqlite3.connect(f"file:{library / 'jobs.db'}?mode=ro", uri=True, timeout=10)
    except sqlite3.OperationalError:  # not created yet
        return []
    try:
        return [status for (status,) in conn.execute("SELECT status FROM jobs")]
    except sqlite3.OperationalError:  # the schema is not written yet
        return []
    finally:
        conn.close()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT")
def test_demo_pauses_on_ctrl_c_and_resumes(tmp_path):
    library = tmp_path / "demo"
    # 400 items of at least 20 ms: the first two jobs run for 8 s or more, however fast the machine,
    # and the third (flaky) waits for one of them (the demo runs two at a time)
    demo = subprocess.Popen([sys.executable, "-m", "sdjobs_nb", "demo", str(library), "--items", "400", "--delay", "0.02"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not ((statuses := job_statuses(library)).count("running") == 2 and len(statuses) == 3):  # all dispatched
        assert time.monotonic() < deadline and demo.poll() is None, (demo.poll(), statuses)
        time.sleep(0.02)
    demo.send_signal(signal.SIGINT)
    out, err = demo.communicate(timeout=60)
    assert demo.returncode == 130 and "interrupted: the running jobs are paused" in err
    paused = json.loads(ok("list", library, "--json"))
    assert {j["status"] for j in paused} <= {"paused", "queued"} and any(j["pause_reason"] == "interrupted" for j in paused)
    out = ok("demo", library, "--delay", "0")
    assert "resuming" in out and out.count("completed") == 2 and "failed" in out
    assert len(json.loads(ok("history", library, "--json"))) == 3


def test_main_runs_in_process(tmp_path, capsys):
    assert cli.main(["history", str(tmp_path)]) == 2
    assert "no library at" in capsys.readouterr().err
    assert cli.main(["demo", str(tmp_path / "lib"), "--items", "2", "--delay", "0"]) == 0
    capsys.readouterr()
    assert cli.main(["history", str(tmp_path / "lib"), "--all"]) == 0
    assert capsys.readouterr().out.count("sdjobs_demo.") == 3
    with pytest.raises(SystemExit):
        cli.main(["--help"])


def test_the_sdjobs_command_is_installed():
    scripts = {ep.name: ep.value for ep in metadata.entry_points(group="console_scripts")}
    assert scripts.get("sdjobs") == "sdjobs_nb.cli:main"
