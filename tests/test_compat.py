"""A library written by sdjobs_nb 0.1.0 (tests/fixtures/library-0.1.0, made by
tests/fixtures/make_library_0_1_0.py on the code of that release) opens, reads and resumes."""

from __future__ import annotations

import shutil
from pathlib import Path

import msgpack

import sdjobs_nb as sj
from jobs_for_tests import open_gate
from support import db_rows

FIXTURE = Path(__file__).parent / "fixtures" / "library-0.1.0"
S = sj.JobStatus
IDS = {
    "done": "2265ef4c-6874-4d9e-8b7e-6844fe142346",
    "failed": "0034f999-433d-42a3-98aa-009fc12b9f4e",
    "paused": "8df04377-e9b6-4889-af82-ba0e083d1ef9",
    "interrupted": "036b8bb0-40b4-4e3b-b2c9-99d1b0f2c486",
    "queued": "3f7277e6-dc4a-4f64-bb93-a5fb51763b4b",
}


async def test_a_library_of_0_1_0_opens_and_resumes(tmp_path):
    library = tmp_path / "library"
    shutil.copytree(FIXTURE, library)
    stored = msgpack.unpackb(db_rows(library, "SELECT data FROM jobs WHERE id=?", (IDS["paused"],))[0][0])
    open_gate("/tmp/fixture-gate", 3)  # the gate its Gated jobs were written with
    try:
        async with sj.JobManager.open(library) as manager:
            assert await manager.result(IDS["done"]) == 5
            assert (await manager.record(IDS["failed"])).error == "ValueError: kaput"
            paused = await manager.record(IDS["paused"])
            assert (paused.status, paused.pause_reason, paused.dedup_key) == (S.PAUSED, "user", "fixture:paused")
            assert (await manager.saved_state(IDS["paused"]))["done"] == stored["done"] >= 15  # saved at its pause
            assert await manager.get(IDS["queued"]).wait() == 30
            resumed = await manager.resume_interrupted()
            assert len(resumed) == 2 and [await h.wait() for h in resumed] == [3, 3]
            assert manager.get(IDS["paused"]).current_status is S.PAUSED  # a user's pause stays
            await manager.resume(IDS["paused"])
            assert await manager.get(IDS["paused"]).wait() == 40
            history = await manager.history()
            assert sorted(history["status"].astype(str)) == ["completed"] * 5 + ["failed"]
            assert set(IDS.values()) <= set(history["id"])
    finally:
        Path("/tmp/fixture-gate").unlink(missing_ok=True)
