"""Cancelling a parent cancels its unfinished children with it: no window where jobs.db shows the
parent CANCELLED while children wait to run, not even for a process killed mid-cancel, and a
cancelled parent ends CANCELLED in every state it can be in (here: queued behind another job).
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sdjobs_nb as sj  # noqa: E402
from _workers.cascade import Family  # noqa: E402, F401  (registered: the killed worker's parent job)
from _workers.jobs import ParentJob  # noqa: E402
from _workers.tally import record as tally  # noqa: E402
from _workers.util import REPO, integrity, quiet_dead_tasks, rows, wait_for, within  # noqa: E402, F401
from jobs_for_tests import open_gate, until  # noqa: E402

CASCADE_WORKER = Path(__file__).resolve().parent / "_workers" / "cascade.py"
S = sj.JobStatus


class Snapshots:
    """Reads (parent status, statuses of its children) from jobs.db in a loop, as another process would."""

    def __init__(self, library: Path, parent_id: str) -> None:
        self._library, self._parent_id = library, parent_id
        self.seen: list[tuple[str, list[str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        conn = sqlite3.connect(f"file:{self._library / 'jobs.db'}?mode=ro", uri=True, timeout=10,
                               isolation_level=None)
        try:
            while not self._stop.is_set():
                conn.execute("BEGIN")  # one read transaction: one consistent snapshot
                parent = conn.execute("SELECT status FROM jobs WHERE id=?", (self._parent_id,)).fetchone()[0]
                children = [r[0] for r in conn.execute("SELECT status FROM jobs WHERE parent_id=?", (self._parent_id,))]
                conn.execute("COMMIT")
                self.seen.append((parent, children))
                time.sleep(0.001)  # leave the GIL to the manager now and then
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


async def test_cancel_marks_a_parent_and_its_waiting_children_in_one_transaction(tmp_path: Path) -> None:
    """A running parent with 200 children, 2 running and 198 queued: no snapshot shows it cancelled with a child queued."""
    library, gate = tmp_path / "library", str(tmp_path / "gate")
    open_gate(gate, 0)  # children hold at item 0 (checking for interruptions) until cancelled
    async with sj.JobManager.open(library, max_concurrent=2, grace_period=10) as manager:
        parent = await manager.dispatch(ParentJob(n_children=200, child_n=5, gate=gate))

        def children() -> list[sj.JobHandle]:
            return [h for h in manager.handles() if h.parent_id == parent.id]

        await until(lambda: len(children()) == 200 and sum(h.current_status is S.RUNNING for h in children()) == 2,
                    what="200 children spawned, 2 of them running")
        snapshots = Snapshots(library, parent.id)
        try:
            await within(manager.cancel(parent.id), 30)
            await until(lambda: len(snapshots.seen) > 0 and snapshots.seen[-1][0] == "cancelled", what="a last look")
        finally:
            snapshots.stop()
        assert parent.current_status is S.CANCELLED
    torn = [(p, sorted(set(c))) for p, c in snapshots.seen if p == "cancelled" and {"queued", "paused"} & set(c)]
    assert not torn, f"{len(torn)} snapshots showed the parent cancelled with children still to run, e.g. {torn[0]}"
    assert rows(library, "SELECT DISTINCT status FROM jobs WHERE parent_id=?", (parent.id,)) == [("cancelled",)]
    tally("cancel_cascade_snapshots", snapshots=len(snapshots.seen))


def test_sigkill_mid_cancel_leaves_no_child_to_run(tmp_path: Path) -> None:
    """Kill the process while its cancel waits for a child that ignores interruptions; reopen: no child runs."""
    library, gate = tmp_path / "library", str(tmp_path / "gate")
    open_gate(gate, 0)
    proc = subprocess.Popen([sys.executable, str(CASCADE_WORKER), str(library), gate, "5"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        parent_id, *children = _line(proc, "ids").split()
        _line(proc, "cancelling")
        # the kill lands once jobs.db says the parent is cancelled; the stubborn child still runs
        wait_for(lambda: rows(library, "SELECT status FROM jobs WHERE id=?", (parent_id,)) == [("cancelled",)], 30,
                 what="the parent's CANCELLED row")
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert integrity(library) == "ok"
    open_gate(gate, 100)  # any child that ran again would now run to the end

    async def next_kernel() -> dict[str, S]:
        async with sj.JobManager.open(library, resume=True) as manager:
            assert [h.id for h in manager.handles()] == [], "children of a cancelled parent were loaded to run"
            return {c: (await manager.record(c)).status for c in children}

    statuses = asyncio.run(next_kernel())
    assert statuses == {c: S.CANCELLED for c in children}
    tally("sigkill_mid_cancel", children=len(children))


def _line(proc: subprocess.Popen, prefix: str) -> str:
    """The rest of the worker's first stdout line that starts with `prefix` (its milestones)."""
    for line in proc.stdout:  # type: ignore[union-attr]
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    raise AssertionError(f"the worker exited ({proc.wait()}) before printing {prefix!r}")


async def test_cancelling_a_queued_parent_ends_cancelled(tmp_path: Path) -> None:
    """A parent resumed after a close is QUEUED behind its own running child: cancelled, it stays CANCELLED."""
    library, gate = tmp_path / "library", str(tmp_path / "gate")
    open_gate(gate, 0)
    async with sj.JobManager.open(library, max_concurrent=1, grace_period=10) as manager:
        parent = await manager.dispatch(ParentJob(n_children=6, child_n=5, gate=gate))
        await until(lambda: sum(h.current_status is S.RUNNING for h in manager.handles()) == 2,
                    what="the parent waiting and its first child running")
    # closed: the parent and its first child are PAUSED (interrupted), the other children QUEUED

    async with sj.JobManager.open(library, max_concurrent=1, grace_period=10) as manager:
        handles = {h.id: h for h in manager.handles()}
        children = [h for h in handles.values() if h.parent_id == parent.id]
        await until(lambda: children[1].current_status is S.RUNNING, what="the second child running")
        await manager.resume_interrupted()
        handle = manager.get(parent.id)
        # the running child holds the only slot; the ones after it wait, as the parent does
        assert [h.current_status for h in [handle, *children]] == [S.QUEUED, S.QUEUED, S.RUNNING] + [S.QUEUED] * 4
        await within(manager.cancel(parent.id), 30)
        assert handle.current_status is S.CANCELLED
        assert [h.current_status for h in children] == [S.CANCELLED] * 6
        with_error = await manager.record(parent.id)
        assert (with_error.status, with_error.error) == (S.CANCELLED, "cancelled by request")
    assert rows(library, "SELECT status FROM jobs WHERE id=?", (parent.id,)) == [("cancelled",)]
    assert rows(library, "SELECT DISTINCT status FROM jobs WHERE parent_id=?", (parent.id,)) == [("cancelled",)]
    tally("cancel_queued_parent")
