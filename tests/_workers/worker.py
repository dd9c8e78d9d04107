"""A separate process for the crash and lock tests: `python worker.py MODE LIBRARY ARGS...`.

It prints one line per milestone on stdout (flushed) so the test knows when to kill it:
`ready <pid>`, `id <job id>`, `result <value>`, `locked <pid>`, `done`.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/, for `_workers`

import sdjobs_nb as sj  # noqa: E402
from _workers.jobs import BigJob, CheckpointJob, ParentJob  # noqa: E402


def say(*parts: object) -> None:
    print(*parts, flush=True)


async def counted(library: str, n: str, k: str, side: str, delay: str, gate: str = "") -> None:
    """Run one CheckpointJob to the end (the test kills this process somewhere in the middle).

    With a `gate` file the job goes only as far as the test opens the gate (`CheckpointJob.gate`).
    """
    async with sj.JobManager.open(library) as manager:
        say("ready", os.getpid())
        handle = await manager.dispatch(CheckpointJob(n=int(n), k=int(k), delay=float(delay), side=side, gate=gate))
        say("id", handle.id)
        say("result", await handle.wait())


async def resume(library: str) -> None:
    """Open the library, resume interrupted jobs and wait for every unfinished one."""
    async with sj.JobManager.open(library, resume=True) as manager:
        say("ready", os.getpid())
        for handle in manager.handles():
            say("result", handle.id, json.dumps(await handle.wait()))
    say("done")


async def hold(library: str, dispatch: str = "0", gate: str = "") -> None:
    """Own the library (optionally running a job held at the `gate` file) until killed.

    `ready` is printed once jobs.db says that job runs: it stays RUNNING until the test opens the gate.
    """
    async with sj.JobManager.open(library) as manager:
        job_id = ""
        if dispatch == "1":
            job_id = (await manager.dispatch(CheckpointJob(n=10, k=5, gate=gate))).id
            await stored_as_running(library, job_id)
        say("ready", os.getpid(), job_id)
        await asyncio.sleep(3600)


async def stored_as_running(library: str, job_id: str) -> None:
    """Wait until jobs.db, read as another process reads it, says the job is running."""
    while True:
        conn = sqlite3.connect(f"file:{Path(library) / 'jobs.db'}?mode=ro", uri=True, timeout=10)
        try:
            row = conn.execute("SELECT status FROM jobs WHERE id=?", (job_id,)).fetchone()
        finally:
            conn.close()
        if row == ("running",):
            return
        await asyncio.sleep(0.005)


async def try_open(library: str, hold_s: str, go_file: str = "", release_file: str = "") -> None:
    """Race for the library: report whether this process got it, and keep it for `hold_s`.

    With `go_file`, print `armed` once imported and start only when that file appears, so
    racers that took different times to start still reach `open` together. With
    `release_file`, keep the library until that file appears instead.
    """
    if go_file:
        say("armed")
        while not os.path.exists(go_file):
            await asyncio.sleep(0.0005)
    try:
        manager = await sj.JobManager.open(library)
    except sj.LibraryLocked as e:
        say("locked", e.pid)
        return
    say("opened", os.getpid())
    if release_file:
        while not os.path.exists(release_file):
            await asyncio.sleep(0.005)
    else:
        await asyncio.sleep(float(hold_s))
    await manager.close()


def mix_jobs(rng: random.Random, side: str) -> list[sj.Job]:
    """A seeded mix: checkpointing, child-spawning, failing and self-pausing jobs (all `CheckpointJob`s but the parent)."""
    delay = rng.choice((0.015, 0.025, 0.035))
    jobs: list[sj.Job] = [
        CheckpointJob(n=rng.randint(20, 70), k=rng.randint(2, 7), salt=rng.randint(0, 99), delay=delay, side=side)
        for _ in range(rng.randint(2, 3))
    ]
    jobs.append(ParentJob(n_children=rng.randint(2, 3), child_n=rng.randint(8, 25), salt=rng.randint(0, 99),
                          delay=delay, side=side))
    n = rng.randint(10, 40)
    jobs.append(CheckpointJob(n=n, k=2, fail_at=rng.randint(0, n - 1), delay=delay))
    n = rng.randint(10, 40)
    jobs.append(CheckpointJob(n=n, k=4, pause_at=rng.randint(0, n - 1), salt=rng.randint(0, 99), delay=delay))
    rng.shuffle(jobs)
    return jobs


async def mix(library: str, seed: str, side: str) -> None:
    """Run a seeded mix of jobs while pausing, resuming and cancelling some of them at random."""
    rng = random.Random(int(seed))
    async with sj.JobManager.open(library, max_concurrent=3) as manager:
        say("ready", os.getpid())
        handles = []
        for job in mix_jobs(rng, side):
            handles.append(await manager.dispatch(job))
            await asyncio.sleep(rng.uniform(0, 0.05))
        cancel_target = rng.choice(handles) if rng.random() < 0.4 else None
        while any(not h.current_status.is_terminal for h in handles):
            await asyncio.sleep(rng.uniform(0.02, 0.12))
            await drive(manager, handles, rng, cancel_target)
        say("done")


async def drive(manager: sj.JobManager, handles: list, rng: random.Random, cancel_target: object) -> None:
    """One random control action, as a user clicking buttons would do."""
    handle = rng.choice(handles)
    status = handle.current_status
    try:
        if handle is cancel_target and rng.random() < 0.3 and not status.is_terminal:
            await handle.cancel()
        elif status is sj.JobStatus.RUNNING and rng.random() < 0.3:
            await handle.pause()
        elif status is sj.JobStatus.PAUSED:
            await handle.resume()
    except sj.InvalidTransition:
        pass  # it finished between the look and the click


async def fsize(library: str) -> None:
    """Dispatch big jobs under a file size limit until a write fails, then lift the limit and go on."""
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    async with sj.JobManager.open(library) as manager:
        limit = max(p.stat().st_size for p in Path(library).iterdir()) + 64 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        for _ in range(100):
            try:
                handle = await manager.dispatch(BigJob(payload="x" * 20_000))
                say("id", handle.id)
                say("done", handle.id, await asyncio.wait_for(handle.wait(), 30))  # longer: it hung
            except asyncio.TimeoutError:
                say("hung", handle.id)
                break
            except Exception as e:  # noqa: BLE001 - reported to the test
                say("error", json.dumps([type(e).__name__, str(e), isinstance(e, sj.LibraryError)]))
                break
        say("handles", len([h for h in manager.handles() if not h.current_status.is_terminal]))
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        say("recovered", await (await manager.dispatch(BigJob(payload="y" * 100))).wait())
    say("closed")


MODES = {"counted": counted, "resume": resume, "hold": hold, "try_open": try_open, "mix": mix, "fsize": fsize}

if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    asyncio.run(MODES[mode](*args))
