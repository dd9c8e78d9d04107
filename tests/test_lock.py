"""One owner per library: a second owner gets `sj.LibraryLocked` naming the holder, readers still read.

Holders are real processes (killed with SIGKILL) or a second manager in this process.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sdjobs_nb as sj  # noqa: E402
from _workers.jobs import CheckpointJob, expected_outcome  # noqa: E402
from _workers.tally import record as tally  # noqa: E402
from _workers.util import Worker, counts, integrity  # noqa: E402
from jobs_for_tests import open_gate  # noqa: E402


def start_holder(library: Path, tmp_path: Path, dispatch: bool = True) -> tuple[Worker, str]:
    """A process that owns the library; with `dispatch`, it runs a job held at a closed gate until killed."""
    worker = Worker("hold", library, "1" if dispatch else "0", tmp_path / "gate", stderr_path=tmp_path / "holder.err")
    fields = worker.expect("ready").split()
    assert int(fields[0]) == worker.pid
    return worker, (fields[1] if len(fields) > 1 else "")


def test_second_process_is_refused_naming_the_holder_then_takes_over_after_sigkill(tmp_path: Path) -> None:
    library = tmp_path / "library"
    holder, job_id = start_holder(library, tmp_path)
    try:
        async def while_held() -> None:
            with pytest.raises(sj.LibraryLocked) as caught:
                await sj.JobManager.open(library)
            assert caught.value.pid == holder.pid
            assert f"process {holder.pid}" in str(caught.value)
            assert "read_only=True" in str(caught.value)

            async with sj.JobManager.open(library, read_only=True) as view:
                record = await view.record(job_id)
                assert record.name == "rel_ckpt"
                assert record.status is sj.JobStatus.RUNNING
                assert view.get(job_id).current_status is sj.JobStatus.RUNNING
                with pytest.raises(sj.ReadOnlyLibrary):
                    await view.dispatch(CheckpointJob(n=1))
                with pytest.raises(sj.ReadOnlyLibrary):
                    await view.cancel(job_id)

        before = counts(library)
        asyncio.run(while_held())
        assert counts(library) == before  # the refused owner and the reader wrote nothing
    finally:
        holder.kill()

    opener = Worker("try_open", library, "0", stderr_path=tmp_path / "opener.err")
    assert int(opener.expect("opened")) == opener.pid  # a new process takes the dead holder's lock
    assert opener.wait() == 0

    async def after_kill() -> None:
        async with sj.JobManager.open(library) as manager:
            record = await manager.record(job_id)
            assert (record.status, record.pause_reason) == (sj.JobStatus.PAUSED, "interrupted")

    asyncio.run(after_kill())
    assert integrity(library) == "ok"


def test_refusal_names_the_new_owner_not_the_dead_one(tmp_path: Path) -> None:
    library = tmp_path / "library"
    dead, _ = start_holder(library, tmp_path, dispatch=False)
    dead.kill()
    alive, _ = start_holder(library, tmp_path, dispatch=False)
    try:
        async def refused() -> None:
            with pytest.raises(sj.LibraryLocked) as caught:
                await sj.JobManager.open(library)
            assert caught.value.pid == alive.pid != dead.pid

        asyncio.run(refused())
    finally:
        alive.kill()


def test_stale_lock_file_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    library = tmp_path / "library"
    library.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (library / "jobs.lock").write_text(f"{gone.pid}\n")

    async def main() -> None:
        async with sj.JobManager.open(library) as manager:
            assert await (await manager.dispatch(CheckpointJob(n=3, k=1))).wait() > 0

    asyncio.run(main())
    assert integrity(library) == "ok"


@pytest.mark.parametrize("round_", range(3))
def test_processes_racing_for_a_new_library_get_exactly_one_owner(tmp_path: Path, round_: int) -> None:
    """Six processes open one library that does not exist yet, at the same moment: one owns it, the others get LibraryLocked."""
    library = tmp_path / "library"
    go, release = tmp_path / "go", tmp_path / "release"
    # the owner keeps the library until every racer has reported, however long the others take
    racers = [Worker("try_open", library, "0", go, release, stderr_path=tmp_path / f"racer{i}.err") for i in range(6)]
    outcomes = []
    try:
        for racer in racers:
            racer.expect("armed")
        go.touch()  # all six call open() within about a millisecond
        for racer in racers:
            try:
                line = racer.expect("", timeout=30)
            except RuntimeError:
                line = "crashed: " + (tmp_path / f"racer{racers.index(racer)}.err").read_text().strip().splitlines()[-1]
            outcomes.append((racer.pid, line))
    finally:
        release.touch()
        for racer in racers:
            racer.kill()
    tally("lock_race", racers=len(racers))
    crashes = [line.split(": ", 1)[1].replace(str(library), "<library>") for _, line in outcomes if line.startswith("crashed")]
    assert not crashes, f"{len(crashes)} of 6 openers failed with something other than LibraryLocked: {crashes[0]}"
    owners = [pid for pid, line in outcomes if line.startswith("opened")]
    assert len(owners) == 1, outcomes
    refused = [line for _, line in outcomes if line.startswith("locked")]
    assert refused == [f"locked {owners[0]}"] * 5, outcomes
    assert integrity(library) == "ok"


async def _open(library: Path) -> sj.JobManager:
    return await sj.JobManager.open(library)


async def test_two_managers_in_one_process(tmp_path: Path) -> None:
    library, gate = tmp_path / "library", str(tmp_path / "gate")
    first = await sj.JobManager.open(library)
    try:
        handle = await first.dispatch(CheckpointJob(n=600, k=100, gate=gate))  # held at a closed gate
        assert await sj.JobManager.open(library) is first  # on the same loop: the live owner
        with pytest.raises(sj.LibraryLocked) as caught:
            await asyncio.to_thread(asyncio.run, _open(library))  # on another loop: refused
        assert caught.value.pid == os.getpid()
        assert str(os.getpid()) in str(caught.value) and "kernel" not in str(caught.value)
        async with sj.JobManager.open(library, read_only=True) as view:
            assert (await view.record(handle.id)).name == "rel_ckpt"
        assert handle.current_status is sj.JobStatus.RUNNING  # the refused open disturbed nothing
    finally:
        await first.close()
    open_gate(gate, 600)
    async with sj.JobManager.open(library) as second:
        record = await second.record(handle.id)
        assert (record.status, record.pause_reason) == (sj.JobStatus.PAUSED, "interrupted")
        resumed = await second.resume_interrupted()
        assert await resumed[0].wait() == expected_outcome("rel_ckpt", {"n": 600})[1]

