"""A notebook user's habits in a real ipykernel: re-running cells, and "restart kernel and run all".

The cells are sent to a real kernel with jupyter_client, as JupyterLab sends them. Jobs wait
for the test at a gate file (tests/jobs_for_tests.py `Gated`), so nothing depends on speed.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from jobs_for_tests import open_gate
from support import db_rows

jupyter_client = pytest.importorskip("jupyter_client", reason="the test extra installs jupyter_client")

TESTS = Path(__file__).parent

# the notebook under test: a class cell, an open cell, a dispatch cell, a wait cell
CLASS_CELL = """
import asyncio, sys
from dataclasses import dataclass
from pathlib import Path
import sdjobs_nb as sj

@dataclass
class Steps(sj.Job):
    NAME = "habit_steps"
    gate: str
    total: int
    done: int = 0

    async def run(self, ctx):
        while self.done < self.total:
            await ctx.check_interrupted()
            if self.done >= int(Path(self.gate).read_text() or 0):
                await asyncio.sleep(0.005)
                continue
            self.done += 1
            with open(self.gate + ".steps", "a") as log:
                log.write(f"{self.done}\\n")
            ctx.report_count_progress(self.done, self.total)
            await ctx.checkpoint()
        return self.done
"""
OPEN_CELL = "manager = await sj.JobManager.open(LIBRARY)"
WAIT_UNTIL = """
async def until(predicate):
    for _ in range(6000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise TimeoutError("the job did not get there")
"""


class Kernel:
    """A real ipykernel running this interpreter, fed cells like a notebook frontend."""

    def __init__(self, cwd: Path) -> None:
        self.manager = jupyter_client.KernelManager(kernel_name="python3")
        self.manager.start_kernel(cwd=str(cwd))
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=120)

    def run(self, code: str) -> str:
        """Execute one cell; return its stdout, or fail the test with the cell's error."""
        out: list[str] = []
        errors: list[str] = []

        def collect(message: dict) -> None:
            kind, content = message["msg_type"], message["content"]
            if kind == "stream" and content["name"] == "stdout":
                out.append(content["text"])
            elif kind == "error":
                errors.append("\n".join(content["traceback"]))

        reply = self.client.execute_interactive(textwrap.dedent(code), timeout=120, output_hook=collect)
        assert reply["content"]["status"] == "ok", "\n".join(errors) or reply["content"]
        return "".join(out)

    def value(self, expression: str):
        return json.loads(self.run(f"print(__import__('json').dumps({expression}))"))

    def restart(self) -> None:
        """Kill the kernel process at once (like a crash or "Restart kernel") and start a new one."""
        self.manager.restart_kernel(now=True)
        self.client.wait_for_ready(timeout=120)

    def shutdown(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@pytest.fixture
def kernel(tmp_path):
    k = Kernel(tmp_path)
    yield k
    k.shutdown()


def _setup(kernel: Kernel, library: Path) -> None:
    kernel.run(f"LIBRARY = {str(library)!r}\n{WAIT_UNTIL}")
    kernel.run(CLASS_CELL)
    kernel.run(OPEN_CELL)


def test_rerunning_the_open_and_class_cells_keeps_jobs_going(kernel, tmp_path):
    library, running_gate, paused_gate = tmp_path / "library", str(tmp_path / "a"), str(tmp_path / "b")
    open_gate(running_gate, 1)
    open_gate(paused_gate, 1)
    _setup(kernel, library)
    kernel.run(f"""
        running = await manager.dispatch(Steps(gate={running_gate!r}, total=4))
        paused = await manager.dispatch(Steps(gate={paused_gate!r}, total=4))
        await until(lambda: running.current_progress and paused.current_progress)
        await paused.pause()
        first_manager = manager
    """)
    kernel.run(CLASS_CELL)  # the user edits nothing and runs the cells again
    kernel.run(OPEN_CELL)
    assert kernel.value("manager is first_manager") is True
    assert kernel.value("[running.current_status.value, paused.current_status.value]") == ["running", "paused"]
    open_gate(running_gate, 4)
    open_gate(paused_gate, 4)
    kernel.run("await paused.resume()")
    assert kernel.value("[await running.wait(), await paused.wait()]") == [4, 4]
    assert db_rows(library, "SELECT status, count(*) FROM job_history GROUP BY status") == [("completed", 2)]


def test_restart_and_run_all_finishes_the_job_from_its_checkpoint_once(kernel, tmp_path):
    library, gate = tmp_path / "library", str(tmp_path / "gate")
    dispatch_cell = f"handle = await manager.dispatch(Steps(gate={gate!r}, total=6), dedup_key='steps:demo')"
    open_gate(gate, 3)
    _setup(kernel, library)
    kernel.run(dispatch_cell)
    kernel.run("await until(lambda: handle.current_progress and handle.current_progress.current == 3)")
    job_id = kernel.value("handle.id")
    kernel.restart()  # the kernel that ran the job is gone mid-job
    open_gate(gate, 6)
    _setup(kernel, library)  # "run all": the same cells, in a new kernel
    kernel.run(dispatch_cell)
    assert kernel.value("handle.id") == job_id
    assert kernel.value("await handle.wait()") == 6
    assert Path(gate + ".steps").read_text().split() == ["1", "2", "3", "4", "5", "6"]  # each step once
    assert db_rows(library, "SELECT id, status FROM jobs") == [(job_id, "completed")]
    assert db_rows(library, "SELECT count(*) FROM job_history") == [(1,)]
