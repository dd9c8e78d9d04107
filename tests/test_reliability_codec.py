"""Job state the codec used to mishandle (issue 17, findings 1, 12 and 13): values nested past the
limit, ints beyond 64 bits, lone surrogates, and values a resume could not rebuild.

A library holding a hand-written blob is opened in a separate process: if decoding ever crashed
the interpreter again (a segfault), that process would die with -11 and the test would say so,
instead of taking pytest down with it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import msgpack
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sdjobs_nb as sj  # noqa: E402
from _workers.util import rows, within, write  # noqa: E402
from jobs_for_tests import GATE_POLL_S, Keeps, gate_value, open_gate, until  # noqa: E402
from sdjobs_nb import _codec  # noqa: E402

TESTS = Path(__file__).resolve().parent


class Point(NamedTuple):
    x: int
    y: float = 0.0


@dataclasses.dataclass
class Spot:
    x: int
    y: int


@dataclasses.dataclass
class Tally(sj.Job):
    """Typed state: a count that outgrows 64 bits, a file name as os.listdir gives it, NamedTuples.

    It waits at its gate file (checking for interruption), then returns its state as it sees it.
    """

    NAME = "rel_codec_tally"
    gate: str
    count: int = 0
    name: str = ""
    sizes: dict[str, int] = dataclasses.field(default_factory=dict)
    at: Point = Point(0)
    trail: list[Point] = dataclasses.field(default_factory=list)

    async def run(self, ctx: sj.JobContext) -> tuple:
        while gate_value(self.gate) < 1:
            await ctx.check_interrupted()
            await asyncio.sleep(GATE_POLL_S)
        return self.count, self.name, self.sizes, self.at, self.trail


@dataclasses.dataclass
class Careless(sj.Job):
    """Puts a bad value (`kind`) into its state and checkpoints, noting what the checkpoint said;
    then puts a good value back and checkpoints again."""

    NAME = "rel_codec_careless"
    kind: str = "float"
    count: int = 0
    anything: Any = None
    caught: str = ""

    async def run(self, ctx: sj.JobContext) -> str:
        if self.kind == "float":
            self.count = 1.5  # type: ignore[assignment]
        elif self.kind == "none":
            self.count = None  # type: ignore[assignment]
        else:
            self.anything = {"spots": [Spot(1, 2)]}
        try:
            await ctx.checkpoint()
        except sj.SerializationError as e:
            self.caught = str(e)
        self.count, self.anything = 7, None
        await ctx.checkpoint()
        return self.caught


@dataclasses.dataclass
class Sloppy(sj.Job):
    """Checkpoints `count` = 1, then leaves a float in its `int` field while it waits at its gate."""

    NAME = "rel_codec_sloppy"
    gate: str
    count: int = 0

    async def run(self, ctx: sj.JobContext) -> float:
        self.count = 1
        await ctx.checkpoint()
        self.count = 2.5  # type: ignore[assignment]  # a pause must not save this
        while gate_value(self.gate) < 1:
            await ctx.check_interrupted()
            await asyncio.sleep(GATE_POLL_S)
        return self.count


def _nested(kind: str, depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = (value,) if kind == "tuple" else [value] if kind == "list" else {"k": value}
    return value


def nested_state(depth: int, kind: str = "tuple") -> bytes:
    """A state blob {"value": v}, v nested `depth` deep: tuples as sdjobs_nb stores them (msgpack
    ext type 4 around the packed items), or plain lists. Built in linear time, whatever the depth."""
    prefixes, length = [], 1  # the innermost value: an empty array
    for _ in range(depth - 1):
        if kind == "tuple":
            prefixes.append(b"\x91\xc9" + length.to_bytes(4, "big") + b"\x04")
            length += 7
        else:
            prefixes.append(b"\x91")
    top = b"\xc9" + length.to_bytes(4, "big") + b"\x04" if kind == "tuple" else b"\x91"
    return b"\x81" + msgpack.packb("value") + top + b"".join(reversed(prefixes)) + b"\x90"


def _run_in_a_process(script: str, *args: Any) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", script, *map(str, args)], cwd=TESTS, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"exit code {done.returncode} (-11 is a segfault)\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


OPEN_AND_RESUME = """
import asyncio, json, sys
import sdjobs_nb as sj
import jobs_for_tests  # registers Keeps: its stored state is decoded, not set aside as of an unknown class

async def main(library):
    async with sj.JobManager.open(library) as manager:
        resumed = await manager.resume_interrupted()
        print(json.dumps({"broken": manager.broken(), "resumed": [h.id for h in resumed]}))

asyncio.run(main(sys.argv[1]))
"""


async def _library_with_an_interrupted_and_a_queued_job(library: Path, gate: str) -> tuple[str, str]:
    async with sj.JobManager.open(library, max_concurrent=1) as manager:
        running = await manager.dispatch(Keeps(value=1, gate=gate))
        queued = await manager.dispatch(Keeps(value=2, gate=gate))  # no slot left: it stays queued
        await until(lambda: running.current_status is sj.JobStatus.RUNNING, what="the first job running")
    return running.id, queued.id


# --- nesting ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, depth", [("tuple", 250), ("list", 1000), ("dict", 5000)])
async def test_state_nested_past_the_limit_is_refused_at_dispatch_naming_the_field(
        manager: sj.JobManager, library: Path, kind: str, depth: int) -> None:
    with pytest.raises(sj.SerializationError) as caught:
        await manager.dispatch(Keeps(value=_nested(kind, depth)))
    text = str(caught.value)
    assert "field 'value' of Keeps" in text and f"limit of {_codec.MAX_DEPTH}" in text
    assert len(text) < 400, "the message names the field, not the path through every level"
    assert rows(library, "SELECT count(*) FROM jobs") == [(0,)]


@pytest.mark.parametrize("blob, loads", [
    pytest.param(lambda: nested_state(250), True, id="tuples-250"),  # within the decode limit: an old version could write it
    pytest.param(lambda: nested_state(100_000), False, id="tuples-100000"),
    pytest.param(lambda: nested_state(100_000, "list"), False, id="lists-100000"),
])
async def test_library_holding_a_deeply_nested_state_opens(tmp_path: Path, blob: Any, loads: bool) -> None:
    """The library opens whatever the nesting; a job whose state is too deep to decode is set aside."""
    library = tmp_path / "library"
    interrupted, queued = await _library_with_an_interrupted_and_a_queued_job(library, str(tmp_path / "gate"))
    write(library, "UPDATE jobs SET data=? WHERE id IN (?, ?)", (blob(), interrupted, queued))
    seen = _run_in_a_process(OPEN_AND_RESUME, library)
    if loads:
        assert seen == {"broken": {}, "resumed": [interrupted]}
    else:
        assert set(seen["broken"]) == {interrupted, queued} and seen["resumed"] == []
        assert all("state" in why for why in seen["broken"].values()), seen["broken"]


LOAD_NESTED = """
import asyncio, json, sys, threading
import sdjobs_nb as sj
import jobs_for_tests  # registers Keeps

def depth(value):
    n = 0
    while isinstance(value, tuple) and value:
        value, n = value[0], n + 1
    return n + (value == ())

async def look(library, job_id):
    async with sj.JobManager.open(library) as manager:
        broken = manager.broken()
        state = None if job_id in broken else await manager.saved_state(job_id)
        return {"broken": list(broken), "depth": None if state is None else depth(state["value"])}

def main(library, job_id, where):
    seen = {}
    def run():
        seen.update(asyncio.run(look(library, job_id)))
    if where == "thread":
        threading.stack_size(512 * 1024)  # macOS's default for threads; Linux gives 8 MiB
        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
    else:
        run()
    print(json.dumps(seen))

main(*sys.argv[1:])
"""


@pytest.mark.parametrize("where", ["main", "thread"])
@pytest.mark.parametrize("past", [0, 1], ids=["at-the-limit", "one-past"])
async def test_tuples_nested_to_the_decode_limit_load_in_any_thread(tmp_path: Path, where: str, past: int) -> None:
    library = tmp_path / "library"
    _, queued = await _library_with_an_interrupted_and_a_queued_job(library, str(tmp_path / "gate"))
    write(library, "UPDATE jobs SET data=? WHERE id=?", (nested_state(_codec.MAX_DECODE_DEPTH + past), queued))
    seen = _run_in_a_process(LOAD_NESTED, library, queued, where)
    if past:
        assert queued in seen["broken"]
    else:
        assert seen == {"broken": [], "depth": _codec.MAX_DECODE_DEPTH}


# --- ints beyond 64 bits, lone surrogates, NamedTuples ------------------------------------------

ODD = {
    "ints": [2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 2**200, -(10**400)],
    "r\udce9sum\udce9.txt": "caf\udce9 \ud800 \udfff",  # names from os.listdir of Latin-1 bytes
    "as a path": Path("/data/r\udce9sum.txt"),
    "in a tuple": (2**100, "\udc80"),
    "in a set": {2**80, "x\udcff"},
    2**70: "a big int key",
}


async def test_big_ints_and_lone_surrogates_round_trip_through_a_reopen(tmp_path: Path) -> None:
    library, gate = tmp_path / "library", str(tmp_path / "gate")
    async with sj.JobManager.open(library) as manager:
        handle = await manager.dispatch(Keeps(value=ODD, gate=gate))
        await until(lambda: handle.current_status is sj.JobStatus.RUNNING, what="the job running")
    async with sj.JobManager.open(library) as manager:  # closed mid-run: paused, its state saved
        assert await manager.saved_state(handle.id) == {"value": ODD, "gate": gate}
        open_gate(gate, 1)
        (resumed,) = await manager.resume_interrupted()
        assert await within(resumed.wait()) == ODD
        assert await manager.result(handle.id) == ODD  # as jobs.db stored it


async def test_typed_state_with_namedtuples_big_ints_and_surrogates_resumes(tmp_path: Path) -> None:
    library, gate = tmp_path / "library", str(tmp_path / "gate")
    state = {"count": 2**64 + 1, "name": "r\udce9sum.txt", "sizes": {"\udce9": 2**65},
             "at": Point(3, 1.5), "trail": [Point(1), Point(2, 0.5)]}
    async with sj.JobManager.open(library) as manager:
        handle = await manager.dispatch(Tally(gate=gate, **state))
        await until(lambda: handle.current_status is sj.JobStatus.RUNNING, what="the job running")
    async with sj.JobManager.open(library) as manager:
        open_gate(gate, 1)
        (resumed,) = await manager.resume_interrupted()
        count, name, sizes, at, trail = await within(resumed.wait())
    assert (count, name, sizes, at, trail) == tuple(state.values())
    assert type(at) is Point and all(type(point) is Point for point in trail)


# --- values a resume could not rebuild: refused when saved --------------------------------------


@pytest.mark.parametrize("kind, field", [("float", "count"), ("none", "count"), ("dataclass", "anything")])
async def test_a_value_that_could_not_be_resumed_is_refused_at_checkpoint(
        manager: sj.JobManager, kind: str, field: str) -> None:
    """The checkpoint raises naming the field; the job catches it, mends its state and goes on."""
    handle = await manager.dispatch(Careless(kind=kind))
    caught = await within(handle.wait())
    assert f"'{field}'" in caught, caught
    record = await manager.record(handle.id)
    assert record.status is sj.JobStatus.COMPLETED
    assert record.metrics["checkpoints"] == 1, "the refused checkpoint saved nothing"


async def test_ill_typed_state_at_pause_resumes_from_the_last_checkpoint(manager: sj.JobManager, tmp_path: Path) -> None:
    gate = str(tmp_path / "gate")
    handle = await manager.dispatch(Sloppy(gate=gate))

    async def checkpointed() -> bool:
        return (await manager.saved_state(handle.id))["count"] == 1

    await until(checkpointed, what="the first checkpoint")
    await handle.pause()
    assert (await manager.saved_state(handle.id))["count"] == 1  # not the float it held
    open_gate(gate, 1)
    await handle.resume()
    assert await within(handle.wait()) == 2.5
    assert manager.broken() == {}


async def test_dataclass_in_an_any_field_is_refused_at_dispatch_naming_the_field(
        manager: sj.JobManager, library: Path) -> None:
    with pytest.raises(sj.InvalidJobData, match=r"field \"value\['where'\]\[0\]\" holds Spot") as caught:
        await manager.dispatch(Keeps(value={"where": [Spot(1, 2)]}))
    assert "would come back as a plain dict" in str(caught.value)
    assert rows(library, "SELECT count(*) FROM jobs") == [(0,)]
