"""Storage that refuses writes: a folder that is not writable, a full disk, a file size limit.

Permissions: tests run as root here, and root ignores file modes, so the checks run in a forked
child that drops to user `nobody` (when not root, the modes alone do it).
Full disk: a 16 MiB tmpfs mounted for the test (needs root; skipped otherwise) filled to the last
byte. `PRAGMA max_page_count` cannot stand in for it: it limits only the connection that sets
it, not the library's own. File size limit: a worker process under `RLIMIT_FSIZE` (no root needed).
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sdjobs_nb as sj  # noqa: E402
from _workers.jobs import REFUSED, BigJob, CheckpointJob, expected_outcome  # noqa: E402
from _workers.tally import record as tally  # noqa: E402
from _workers.util import Worker, counts, integrity, rows, terminal_snapshot, quiet_dead_tasks, within  # noqa: E402, F401
from jobs_for_tests import open_gate, steps_done, until  # noqa: E402

NOBODY = 65534


# --- a folder that is not writable ----------------------------------------------------------------


def as_unprivileged(fn: Callable[[], Any]) -> Any:
    """Return fn() run where file modes apply: in a child process as `nobody` when we are root."""
    if os.geteuid() != 0:
        return fn()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.close(read_end)
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            outcome = ["ok", fn()]
        except BaseException as e:  # noqa: BLE001 - everything goes back to the parent
            outcome = ["error", f"{type(e).__name__}: {e}"]
        os.write(write_end, json.dumps(outcome, default=str).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    kind, value = json.loads(data)
    if kind == "error":
        raise AssertionError(f"unprivileged check raised {value}")
    return value


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder `nobody` can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="sdjobs-ro-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for p in [path, *path.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        shutil.rmtree(path)


def _read_only_library(folder: Path) -> tuple[Path, str]:
    """A library with one finished job, then made read-only (folder and files)."""
    library = folder / "library"

    async def make() -> str:
        async with sj.JobManager.open(library) as manager:
            handle = await manager.dispatch(CheckpointJob(n=5, k=2))
            await within(handle.wait())
            return handle.id

    job_id = asyncio.run(make())
    for p in library.iterdir():
        p.chmod(0o444)
    library.chmod(0o555)
    return library, job_id


def _files(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}


def test_not_writable_folder_is_refused_for_writing(shared_dir: Path) -> None:
    library, _ = _read_only_library(shared_dir)
    before = _files(library)

    def try_open() -> str:
        async def main() -> str:
            try:
                await sj.JobManager.open(library)
            except sj.LibraryError as e:
                return str(e)
            return "opened"

        return asyncio.run(main())

    message = as_unprivileged(try_open)
    assert "not writable" in message and "read_only=True" in message
    assert _files(library) == before
    tally("folder_not_writable")


def test_not_writable_folder_can_be_read_read_only(shared_dir: Path) -> None:
    """The refusal above says 'open read_only=True'; that view must then work on the same folder."""
    library, job_id = _read_only_library(shared_dir)
    before = _files(library)

    def read() -> str:
        async def main() -> str:
            try:
                async with sj.JobManager.open(library, read_only=True) as view:
                    return (await view.record(job_id)).status.value
            except sj.LibraryError as e:
                return f"LibraryError: {e}"

        return asyncio.run(main())

    assert as_unprivileged(read) == "completed"
    assert _files(library) == before
    tally("folder_not_writable_read_only_view")


# --- a full disk ------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs, mounted for this test."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (the RLIMIT_FSIZE test covers write failures without it)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path) -> Path:
    """Fill the disk to the last byte; return the filler file (delete it to free the space)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as e:
                assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


async def _seeded(manager: sj.JobManager) -> None:
    for salt in range(3):
        await within((await manager.dispatch(CheckpointJob(n=6, k=2, salt=salt))).wait())


async def test_full_disk_at_dispatch(small_disk: Path) -> None:
    library = small_disk / "library"
    async with sj.JobManager.open(library) as manager:
        await _seeded(manager)
        finished = terminal_snapshot(library)
        before = counts(library)
        filler = fill(small_disk)
        error: BaseException | None = None
        try:
            await manager.dispatch(BigJob(payload="x" * 300_000))
        except Exception as e:  # noqa: BLE001 - checked below, after the other checks
            error = e
        assert error is not None, "dispatch succeeded on a full disk"
        assert manager.handles() == []  # no phantom job in memory
        filler.unlink()
        assert counts(library) == before  # nothing half-written
        assert terminal_snapshot(library) == finished
        assert await within((await manager.dispatch(BigJob(payload="y" * 1000))).wait()) == 1000  # recovered
    assert integrity(library) == "ok"
    tally("full_disk_dispatch")
    assert isinstance(error, sj.LibraryError) and "full" in str(error).lower(), f"unclear error: {error!r}"


def _gate_beside(disk: Path) -> str:
    """A gate file (`jobs_for_tests.open_gate`) off the small disk, so the test can open it when the disk is full."""
    return str(disk.parent / "gate")


async def test_full_disk_during_checkpoint_loses_nothing(small_disk: Path) -> None:
    library, gate = small_disk / "library", _gate_beside(small_disk)
    open_gate(gate, 5)
    manager = await sj.JobManager.open(library, grace_period=1.0)
    await _seeded(manager)
    finished = terminal_snapshot(library)
    handle = await manager.dispatch(CheckpointJob(n=400, k=1, gate=gate))
    await until(lambda: steps_done(handle) == 5, what="5 items checkpointed")
    filler = fill(small_disk)
    open_gate(gate, 400)  # the next checkpoint meets the full disk
    outcome: BaseException | None = None
    try:
        await within(handle.wait(), 30)
    except asyncio.TimeoutError:
        outcome = None
    except Exception as e:  # noqa: BLE001 - the job may fail with the disk-full error
        outcome = e
    filler.unlink()
    await within(manager.close(), 15)

    async with sj.JobManager.open(library) as manager:
        record = await manager.record(handle.id)
        assert record.status in (sj.JobStatus.PAUSED, sj.JobStatus.FAILED), record.status
        if record.status is sj.JobStatus.PAUSED:  # the failure could not be written: resume from the last checkpoint
            await manager.resume(handle.id)
            assert await within(manager.get(handle.id).wait()) == expected_outcome("rel_ckpt", {"n": 400})[1]
    assert terminal_snapshot(library).items() >= finished.items()
    assert integrity(library) == "ok"
    tally("full_disk_checkpoint")
    assert outcome is not None, "handle.wait() hung after the job's checkpoint hit a full disk"
    assert "full" in str(outcome).lower(), f"unclear error: {outcome!r}"


async def test_job_that_retries_survives_a_full_disk(small_disk: Path) -> None:
    library, gate = small_disk / "library", _gate_beside(small_disk)
    open_gate(gate, 5)
    async with sj.JobManager.open(library) as manager:
        await _seeded(manager)
        finished = terminal_snapshot(library)
        # checkpoints after every item and, when a checkpoint fails, waits and tries again
        handle = await manager.dispatch(CheckpointJob(n=60, k=1, gate=gate, retry=True))
        await until(lambda: steps_done(handle) == 5, what="5 items checkpointed")
        filler = fill(small_disk)
        open_gate(gate, 60)
        await until(lambda: REFUSED.get(handle.id), what="a checkpoint refused by the full disk")
        filler.unlink()
        result = await within(handle.wait())
        assert result == expected_outcome("rel_ckpt", {"n": 60})[1]
        assert REFUSED[handle.id], "the disk never filled up during the job"
    assert terminal_snapshot(library).items() >= finished.items()
    assert integrity(library) == "ok"
    tally("full_disk_retrying_job")


# --- a file size limit (no root needed) -------------------------------------------------------------


def test_file_size_limit_refuses_writes_and_loses_nothing(tmp_path: Path) -> None:
    """A worker under RLIMIT_FSIZE dispatches until a write fails, then the limit is lifted."""
    library = tmp_path / "library"

    async def seed() -> None:
        async with sj.JobManager.open(library) as manager:
            await _seeded(manager)

    asyncio.run(seed())
    finished = terminal_snapshot(library)
    worker = Worker("fsize", library, stderr_path=tmp_path / "worker.err")
    lines = []
    while not lines or lines[-1] != "closed":
        lines.append(worker.expect("", timeout=60))  # longer than the worker takes to call a write hung
    assert worker.wait() == 0
    dispatched = [line.split()[1] for line in lines if line.startswith("id ")]
    hung = [line.split()[1] for line in lines if line.startswith("hung ")]
    errors = [json.loads(line[len("error "):]) for line in lines if line.startswith("error ")]
    assert errors or hung, f"no write failed under the file size limit: {lines}"
    assert "recovered 100" in lines  # the same manager works again once writes succeed
    assert integrity(library) == "ok"
    assert terminal_snapshot(library).items() >= finished.items()
    assert set(dispatched) <= {r[0] for r in rows(library, "SELECT id FROM jobs")}  # dispatched = stored

    async def finish_the_rest() -> None:
        async with sj.JobManager.open(library) as manager:
            await manager.resume_interrupted()
            for job_id in dispatched:
                assert await within(manager.get(job_id).wait()) == 20_000

    asyncio.run(finish_the_rest())
    tally("file_size_limit")
    assert not hung, f"handle.wait() never returned after the job's final write failed: {lines}"
    name, message, is_library_error = errors[0]
    assert is_library_error and "rollback" not in message, f"unclear error: {name}: {message}"
