"""A process running an extension job is SIGKILLed mid-run; this process loads the extension and resumes it.

The job (ext_common.GATED_WAT) waits at step HOLD in the worker, so the kill always lands mid-run
with the checkpoint of step HOLD saved, however fast the machine runs wasm.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("wasmtime")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sdjobs_nb as sj  # noqa: E402
from ext_common import counter_step, expected_count, gated_module, gated_result, stored_fields  # noqa: E402

WORKER = Path(__file__).resolve().parent / "ext_worker.py"
N, EVERY, HOLD = 3000, 20, 100


def start_worker(module: Path, library: Path, stderr: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(WORKER), str(module), str(library), str(N), str(EVERY), str(HOLD)],
                            stdout=subprocess.PIPE, stderr=open(stderr, "wb"), text=True)
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if not line.startswith("id "):
        proc.kill()
        raise RuntimeError(f"worker printed {line!r}; stderr: {stderr.read_text()}")
    return proc, line.split()[1]


def wait_for_checkpoint(library: Path, job_id: str, at_least: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while counter_step(stored_fields(library, job_id)[1]) < at_least:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no checkpoint past step {at_least} within {timeout} s")
        time.sleep(0.02)


def test_sigkill_mid_run_then_resume_in_another_process(tmp_path: Path) -> None:
    library = tmp_path / "lib"
    module = gated_module(tmp_path)
    proc, job_id = start_worker(module, library, tmp_path / "worker.err")
    try:
        wait_for_checkpoint(library, job_id, HOLD)  # then the job waits there for a stop
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL

    status, fields = stored_fields(library, job_id)
    checkpointed = counter_step(fields)
    assert status == "running"  # what the dead process left behind
    assert checkpointed == HOLD

    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    jobs_log = logging.getLogger("sdjobs_nb.jobs")
    jobs_log.addHandler(handler)
    old_level, jobs_log.level = jobs_log.level, logging.INFO
    try:
        assert gated_result(asyncio.run(resume_here(module, library, job_id))) == expected_count(N)
    finally:
        jobs_log.removeHandler(handler)
        jobs_log.setLevel(old_level)
    assert "resumed from a checkpoint" in lines  # the module read its saved state back


async def resume_here(module: Path, library: Path, job_id: str) -> bytes:
    async with sj.JobManager.open(library) as manager:
        assert manager.broken() == {}  # a RUNNING row is turned PAUSED at open
        record = await manager.record(job_id)
        assert record.status is sj.JobStatus.PAUSED and record.pause_reason == "interrupted"

        manager.load_extension(module, "gated")
        (handle,) = await manager.resume_interrupted()
        assert handle.id == job_id
        return await asyncio.wait_for(handle.wait(), 60)
