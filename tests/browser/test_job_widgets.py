"""Job widgets in a real JupyterLab and in Voila: the bar moves on its own, the buttons control the job.

The job runs in the kernel; this test process only reads the library's jobs.db with plain
sqlite3, as any other process may.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import sqlite3
import time
from pathlib import Path

import pytest

import sdjobs_nb as sj

from ._lab import (
    REPO_ROOT,
    IsolatedLab,
    IsolatedVoila,
    artifacts_dir,
    open_notebook,
    run_cell,
    widget_button,
    write_notebook,
)
from ._widget_jobs import SlowCount

pytestmark = pytest.mark.browser

HERE = Path(__file__).resolve().parent
MONITOR = REPO_ROOT / "notebooks" / "monitor.ipynb"

# ~30 s of work: still running whenever the test looks at it
DISPATCH_CELL = """\
import sys
sys.path.insert(0, {here!r})
import sdjobs_nb as sj
from _widget_jobs import SlowCount

manager = await sj.JobManager.open({library!r})
handle = await manager.dispatch(SlowCount(total=1500, delay=0.02))
handle
"""

BAR_WIDTH_JS = "parseFloat(document.querySelector('.widget-hprogress .progress-bar').style.width)"


def stored(library: Path) -> list[tuple[str, str, str | None]]:
    """(id, status, pause_reason) of every job, read as another process would."""
    conn = sqlite3.connect(library / "jobs.db")
    try:
        return conn.execute("SELECT id, status, pause_reason FROM jobs ORDER BY seq").fetchall()
    finally:
        conn.close()


def wait_stored(library: Path, job_id: str, *statuses: str, timeout: float = 30.0) -> tuple:
    deadline = time.monotonic() + timeout
    while True:
        row = next((r for r in stored(library) if r[0] == job_id), None)
        if row is not None and row[1] in statuses:
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} is {row and row[1]!r} in jobs.db, expected one of {statuses}")
        time.sleep(0.1)


def exact(text: str) -> re.Pattern:
    return re.compile(rf"^\s*{re.escape(text)}\s*$")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with IsolatedLab(tmp_path_factory.mktemp("lab")) as lab:
        yield lab


def test_job_widget_in_lab_updates_live_and_its_buttons_control_the_job(lab, page):
    library = lab.root_dir / "library"
    write_notebook(lab.root_dir / "job_widget.ipynb", [DISPATCH_CELL.format(here=str(HERE), library=str(library))])

    open_notebook(page, lab, "job_widget.ipynb")
    run_cell(page, 0)
    [(job_id, status, _)] = stored(library)
    assert status in ("queued", "running")

    # the cell has returned: only the manager's background refresher can move the bar now
    pause = widget_button(page, "Pause")
    pause.wait_for()
    page.wait_for_function(f"{BAR_WIDTH_JS} > 0", timeout=30_000)
    first = page.evaluate(BAR_WIDTH_JS)
    page.wait_for_function(f"{BAR_WIDTH_JS} >= {first} + 1", timeout=30_000)
    assert page.locator(".jp-InputPrompt", has_text="[*]").count() == 0
    assert page.locator(".widget-html", has_text=" / 1,500").count() == 1

    pause.click()
    assert wait_stored(library, job_id, "paused")[2] == "user"
    page.locator(".widget-html", has_text="paused").first.wait_for()
    assert widget_button(page, "Pause").is_disabled()

    widget_button(page, "Resume").click()
    wait_stored(library, job_id, "running")
    page.locator(".widget-html", has_text="running").first.wait_for()
    resumed = page.evaluate(BAR_WIDTH_JS)
    page.wait_for_function(f"{BAR_WIDTH_JS} >= {resumed} + 1", timeout=30_000)
    page.screenshot(path=str(artifacts_dir() / "job_widget_lab_running.png"))

    widget_button(page, "Cancel").click()
    wait_stored(library, job_id, "cancelled")
    page.locator(".widget-html", has_text="cancelled").first.wait_for()
    for text in ("Pause", "Resume", "Cancel"):
        assert widget_button(page, text).is_disabled(), text
    page.screenshot(path=str(artifacts_dir() / "job_widget_lab_cancelled.png"))
    lab.shutdown_kernels()


def interrupted_library(library: Path) -> str:
    """Leave a SlowCount job paused as if its kernel had died: `close()` saves it as interrupted."""

    async def make() -> str:
        async with sj.JobManager.open(library) as manager:
            handle = await manager.dispatch(SlowCount(total=1500, delay=0.02))
            while (handle.current_progress is None or handle.current_progress.current < 20):
                await asyncio.sleep(0.05)
            return handle.id

    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # Playwright's sync API owns this thread's loop
        job_id = pool.submit(asyncio.run, make()).result(60)
    assert stored(library) == [(job_id, "paused", "interrupted")]
    return job_id


def test_monitor_app_in_voila_resumes_interrupted_jobs_and_pauses_one(tmp_path, page, monkeypatch):
    library = tmp_path / "library"
    job_id = interrupted_library(library)
    monkeypatch.setenv("SDJOBS_LIBRARY", str(library))
    monkeypatch.setenv("SDJOBS_JOBS", "_widget_jobs")
    monkeypatch.setenv("PYTHONPATH", str(HERE))

    with IsolatedVoila(MONITOR) as voila:
        page.goto(voila.url())
        resume_all = widget_button(page, "Resume interrupted")
        resume_all.wait_for()
        page.locator(".widget-html", has_text="1 interrupted").first.wait_for()
        page.screenshot(path=str(artifacts_dir() / "monitor_voila_interrupted.png"))

        resume_all.click()
        wait_stored(library, job_id, "running")
        page.locator(".widget-html", has_text="1 running").first.wait_for()
        resume_all.wait_for(state="hidden")

        widget_button(page, "Pause").filter(has_text=exact("Pause")).click()
        assert wait_stored(library, job_id, "paused")[2] == "user"
        page.locator(".widget-html", has_text="1 paused").first.wait_for()
        page.screenshot(path=str(artifacts_dir() / "monitor_voila_paused.png"))
