"""Extension jobs in a WebAssembly sandbox (issue 11): load, run, control, limits, refusals."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("wasmtime")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sdjobs_nb as sj  # noqa: E402
from sdjobs_nb import extensions as ext  # noqa: E402
from ext_common import (  # noqa: E402
    BAD_IMPORT, COUNTER, FOREVER, GREEDY, counter_acc, counter_step, expected_count, gated_input, gated_module,
    gated_result, progress_at_least, stored_fields, until, write_module,
)

S = sj.JobStatus
ENDLESS = 2**62  # steps or fuel no machine gets through: such a guest only ends when it is stopped

# No test here assumes how fast wasm runs. A test that must see a job mid-way runs the gated
# module (ext_common.GATED_WAT), whose job waits at a given step until the test pauses or
# cancels it, or a job that cannot end by itself (ENDLESS steps or fuel).


@pytest.fixture
def library(tmp_path: Path) -> Path:
    return tmp_path / "lib"


@pytest.fixture
async def manager(library: Path):
    # generous: the jobs paused or cancelled through this manager answer at their next check, and a
    # busy machine must not turn that into a forced stop; forced stops are tested with their own manager
    async with sj.JobManager.open(library, grace_period=30.0) as m:
        yield m


def wasm_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("sdjobs-wasm:")]


async def failure(handle) -> str:
    with pytest.raises(sj.JobFailed) as info:
        await asyncio.wait_for(handle.wait(), 60)
    assert handle.current_status is S.FAILED
    return info.value.message


# --- loading -------------------------------------------------------------------------------------


def test_public_module_has_a_tuple_all():
    assert isinstance(ext.__all__, tuple)
    assert all(hasattr(ext, name) for name in ext.__all__)


async def test_load_registers_one_job_class_per_declared_job(manager):
    loaded = manager.load_extension(COUNTER, "demo")
    assert loaded.jobs == ("count",)
    assert len(loaded.sha256) == 64
    cls = sj.registry.get("demo:count")
    assert issubclass(cls, sj.Job) and cls.NAME == "demo:count"
    assert ext.loaded_extensions()["demo"] is loaded

    both = manager.load_extension(FOREVER, "spin")
    assert set(both.jobs) == {"forever", "polite"}
    assert {"spin:forever", "spin:polite"} <= set(sj.registry.names())


async def test_loading_again_under_the_same_id_replaces_the_jobs(manager):
    manager.load_extension(COUNTER, "swap")
    manager.load_extension(FOREVER, "swap")
    assert "swap:count" not in sj.registry
    assert "swap:polite" in sj.registry
    with pytest.raises(ext.UnknownExtension, match="declares no job 'count'"):
        await manager.dispatch_extension_job("swap", "count", 3)


async def test_a_wasm_binary_loads_like_text(manager, tmp_path):
    import wasmtime

    binary = tmp_path / "counter.wasm"
    binary.write_bytes(wasmtime.wat2wasm(COUNTER.read_text()))
    loaded = manager.load_extension(binary, "binary")
    assert loaded.sha256 == manager.load_extension(COUNTER, "text").sha256
    assert await (await manager.dispatch_extension_job("binary", "count", [50, 7])).wait() == expected_count(50)


async def test_an_import_the_host_does_not_provide_is_refused_and_named(manager):
    before = sj.registry.names()
    with pytest.raises(ext.InvalidExtension) as info:
        manager.load_extension(BAD_IMPORT, "bad")
    text = str(info.value)
    assert "sdjobs.open_file" in text and "wasi_snapshot_preview1.fd_write" in text
    assert "sdjobs.should_stop" in text  # says what is available
    assert sj.registry.names() == before
    assert "bad" not in ext.loaded_extensions()


BAD_MODULES = {
    "garbage.wasm": (b"\0asm\x01\0\0\0\xff\xff\xff", "malformed"),
    "text.wasm": (b"(module)", "not a WebAssembly binary"),
    "syntax.wat": ("(module (func (export \"job_x\") (result i32) i32.const))", "not valid WebAssembly text"),
    "invalid.wat": ("(module (func (export \"job_x\") (result i32) i64.const 1))", "malformed"),
    "nojobs.wat": ("(module (func (export \"run\") (result i32) i32.const 0))", "declares no jobs"),
    "signature.wat": ("(module (func (export \"job_x\") (param i32) (result i32) i32.const 0))",
                      "must be a function of type () -> (i32)"),
    "import_type.wat": ("(module (import \"sdjobs\" \"log\" (func (param i32))) (memory (export \"memory\") 1)"
                        " (func (export \"job_x\") (result i32) i32.const 0))",
                        "sdjobs.log has signature (i32) -> (), expected (i32, i32) -> ()"),
    "import_memory.wat": ("(module (import \"sdjobs\" \"memory\" (memory 1))"
                          " (func (export \"job_x\") (result i32) i32.const 0))", "sdjobs.memory"),
    "no_memory.wat": ("(module (import \"sdjobs\" \"log\" (func (param i32 i32)))"
                      " (func (export \"job_x\") (result i32) i32.const 0))", "does not export"),
}


@pytest.mark.parametrize("filename", sorted(BAD_MODULES))
async def test_a_malformed_module_is_refused_with_a_clear_error(manager, tmp_path, filename):
    content, message = BAD_MODULES[filename]
    path = tmp_path / filename
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = sj.registry.names()
    with pytest.raises(ext.InvalidExtension, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        manager.load_extension(path, "broken")
    assert str(path) in str(info.value)
    assert sj.registry.names() == before


async def test_bad_ids_and_missing_files_are_refused(manager, tmp_path):
    with pytest.raises(ext.InvalidExtension, match="extension_id"):
        manager.load_extension(COUNTER, "a:b")
    with pytest.raises(ext.InvalidExtension, match="cannot read"):
        manager.load_extension(tmp_path / "missing.wat", "missing")


async def test_dispatching_an_unknown_extension_or_job_says_what_is_loaded(manager):
    manager.load_extension(COUNTER, "demo")
    with pytest.raises(ext.UnknownExtension, match="no extension 'nope' is loaded") as info:
        await manager.dispatch_extension_job("nope", "count")
    assert isinstance(info.value, sj.UnknownJob)
    with pytest.raises(ext.UnknownExtension, match="its jobs are: count"):
        await manager.dispatch_extension_job("demo", "other")


# --- running -------------------------------------------------------------------------------------


async def test_dispatch_returns_an_ordinary_handle_and_the_result(manager):
    manager.load_extension(COUNTER, "demo")
    handle = await manager.dispatch_extension_job("demo", "count", [1000, 100], initiated_by="test")
    assert isinstance(handle, sj.JobHandle) and handle.name == "demo:count"
    assert await asyncio.wait_for(handle.wait(), 30) == expected_count(1000)
    record = await manager.record(handle.id)
    assert record.status is S.COMPLETED and record.initiated_by == "test"
    assert record.metrics["checkpoints"] == 10
    assert record.progress.current == 1000 and record.progress.total == 1000


async def test_progress_reaches_subscribers_while_the_job_runs(manager, tmp_path):
    manager.load_extension(gated_module(tmp_path), "gated")
    handle = await manager.dispatch_extension_job("gated", "count", gated_input(400, hold=150))
    seen: list[tuple[sj.Progress, sj.JobStatus]] = []  # each snapshot, and the job's status when it came
    mid_way = asyncio.Event()

    async def subscriber() -> None:
        async for p in handle.progress():
            seen.append((p, handle.current_status))
            if p.current == 150:
                mid_way.set()

    reader = asyncio.create_task(subscriber())
    await asyncio.wait_for(mid_way.wait(), 60)  # the guest waits at step 150 until it is paused
    assert handle.current_status is S.RUNNING and wasm_threads()
    await handle.pause()
    await handle.resume()
    assert gated_result(await asyncio.wait_for(handle.wait(), 60)) == expected_count(400)
    await asyncio.wait_for(reader, 10)  # the stream ends with the job

    assert all(p.kind == "count" and p.total == 400 for p, _ in seen)
    currents = [p.current for p, _ in seen]
    assert currents == sorted(currents) and currents[-1] == 400
    assert (150, S.RUNNING) in [(p.current, status) for p, status in seen]  # mid-way, while it ran


async def test_the_event_loop_stays_free_while_wasm_runs(library):
    async with sj.JobManager.open(library, grace_period=0.3) as m:
        ext.load_extension(m, FOREVER, "spin", fuel=ENDLESS)  # spins in wasm, never calls the host
        handle = await m.dispatch_extension_job("spin", "forever")
        await until(lambda: handle.current_status is S.RUNNING and wasm_threads())
        # the guest cannot end by itself: if it held the loop, this test would not get here
        for _ in range(20):
            await asyncio.sleep(0.001)
        assert handle.current_status is S.RUNNING and wasm_threads()
        await asyncio.wait_for(handle.cancel(), 60)
        assert handle.current_status is S.CANCELLED


async def test_json_in_json_out_and_bytes_in_bytes_out(manager, tmp_path):
    echo = write_module(tmp_path, "echo.wat", """
    (module
      (import "sdjobs" "input_size" (func $size (result i32)))
      (import "sdjobs" "input_read" (func $read (param i32 i32) (result i32)))
      (import "sdjobs" "set_result" (func $result (param i32 i32)))
      (memory (export "memory") 1)
      (func (export "job_echo") (result i32)
        (call $result (i32.const 0) (call $read (i32.const 0) (call $size)))
        (i32.const 0)))""")
    manager.load_extension(echo, "echo")
    data = {"a": [1, 2.5, "x"], "b": None}
    assert await (await manager.dispatch_extension_job("echo", "echo", data)).wait() == data
    assert await (await manager.dispatch_extension_job("echo", "echo", b"\x00\xffraw")).wait() == b"\x00\xffraw"
    with pytest.raises(sj.SerializationError):
        await manager.dispatch_extension_job("echo", "echo", {1, 2})


async def test_log_lines_and_non_critical_errors_reach_the_job(manager, tmp_path, caplog):
    noisy = write_module(tmp_path, "noisy.wat", """
    (module
      (import "sdjobs" "log" (func $log (param i32 i32)))
      (import "sdjobs" "report_error" (func $error (param i32 i32)))
      (import "sdjobs" "progress_fraction" (func $fraction (param f64)))
      (memory (export "memory") 1)
      (data (i32.const 0) "hello from wasm")
      (data (i32.const 32) "row 7 was unreadable")
      (func (export "job_noisy") (result i32)
        (call $log (i32.const 0) (i32.const 15))
        (call $fraction (f64.const 0.5))
        (call $error (i32.const 32) (i32.const 20))
        (call $fraction (f64.const 1))
        (i32.const 0)))""")
    manager.load_extension(noisy, "noisy")
    with caplog.at_level(logging.INFO, logger="sdjobs_nb.jobs"):
        handle = await manager.dispatch_extension_job("noisy", "noisy")
        assert await handle.wait() is None
    assert any(r.getMessage() == "hello from wasm" for r in caplog.records)
    assert [m for _, m in await manager.errors(handle.id)] == ["row 7 was unreadable"]
    record = await manager.record(handle.id)
    assert record.metrics["non_critical_errors"] == 1
    assert record.progress.kind == "percentage" and record.progress.fraction == 1.0


async def test_concurrent_runs_do_not_disturb_each_other(manager):
    manager.load_extension(COUNTER, "demo")
    sizes = [300, 500, 700, 900]
    handles = [await manager.dispatch_extension_job("demo", "count", [n, 25, 20_000]) for n in sizes]
    results = await asyncio.wait_for(asyncio.gather(*(h.wait() for h in handles)), 60)
    assert results == [expected_count(n, 20_000) for n in sizes]


# --- pause, resume, cancel -----------------------------------------------------------------------


async def test_pause_then_resume_gives_the_uninterrupted_result(manager, library, tmp_path):
    manager.load_extension(gated_module(tmp_path), "gated")
    n = 3000
    handle = await manager.dispatch_extension_job("gated", "count", gated_input(n, every=50, hold=230))
    await progress_at_least(handle, 230)  # it waits there until paused
    await handle.pause()
    assert handle.current_status is S.PAUSED
    status, fields = stored_fields(library, handle.id)
    assert status == "paused" and counter_step(fields) == 230  # saved at the stop, not at a multiple of 50
    assert counter_acc(fields) == expected_count(230)
    assert fields["module_sha256"] == ext.loaded_extensions()["gated"].sha256
    assert not wasm_threads()

    await handle.resume()
    assert gated_result(await asyncio.wait_for(handle.wait(), 60)) == expected_count(n)


async def test_the_counter_example_resumes_from_its_checkpoint(manager, library, caplog):
    manager.load_extension(COUNTER, "demo")
    work = 20_000  # busy-loop iterations per step: keeps the steps done before a pause lands few
    handle = await manager.dispatch_extension_job("demo", "count", [ENDLESS, 0, work])  # saves only when stopped
    await progress_at_least(handle, 100)
    await handle.pause()
    _, fields = stored_fields(library, handle.id)
    first = counter_step(fields)
    assert first >= 100 and counter_acc(fields) == expected_count(first, work)

    with caplog.at_level(logging.INFO, logger="sdjobs_nb.jobs"):
        await handle.resume()
        await progress_at_least(handle, first + 100)
        await handle.pause()
    _, fields = stored_fields(library, handle.id)
    second = counter_step(fields)
    assert second >= first + 100 and counter_acc(fields) == expected_count(second, work)  # went on from `first`
    assert any(r.getMessage() == "resumed from a checkpoint" for r in caplog.records)
    await handle.cancel()


async def test_close_saves_a_running_job_and_a_new_manager_resumes_it(library, tmp_path):
    n = 3000
    gated = gated_module(tmp_path)
    async with sj.JobManager.open(library, grace_period=30.0) as m:
        m.load_extension(gated, "gated")
        handle = await m.dispatch_extension_job("gated", "count", gated_input(n, every=1000, hold=170))
        await progress_at_least(handle, 170)  # it waits there until the manager closes
    status, fields = stored_fields(library, handle.id)
    assert status == "paused" and counter_step(fields) == 170  # saved at the stop, not at a multiple of 1000

    async with sj.JobManager.open(library) as m:
        m.load_extension(gated, "gated")
        (resumed,) = await m.resume_interrupted()
        assert gated_result(await asyncio.wait_for(resumed.wait(), 60)) == expected_count(n)


async def test_cancel_of_a_polite_endless_job(manager):
    manager.load_extension(FOREVER, "spin")
    handle = await manager.dispatch_extension_job("spin", "polite")
    await until(lambda: handle.current_status is S.RUNNING)
    await handle.cancel()  # answered whether or not the guest has reached its loop yet
    assert handle.current_status is S.CANCELLED
    with pytest.raises(sj.Cancelled):
        await handle.wait()
    assert not wasm_threads()


async def test_cancel_of_a_guest_waiting_in_its_should_stop_loop(manager, tmp_path):
    manager.load_extension(gated_module(tmp_path), "gated")
    handle = await manager.dispatch_extension_job("gated", "count", gated_input(10, hold=1))
    await progress_at_least(handle, 1)  # from now on it only asks should_stop
    await handle.cancel()
    assert handle.current_status is S.CANCELLED
    with pytest.raises(sj.Cancelled):
        await handle.wait()
    assert not wasm_threads()


async def test_a_guest_that_never_checks_is_stopped_by_epoch_after_the_grace_period(library):
    async with sj.JobManager.open(library, grace_period=0.3) as m:
        ext.load_extension(m, FOREVER, "spin", fuel=ENDLESS)  # only a forced stop can end it
        handle = await m.dispatch_extension_job("spin", "forever")
        await until(lambda: handle.current_status is S.RUNNING)
        await asyncio.wait_for(handle.pause(), 60)
        assert handle.current_status is S.PAUSED
        await until(lambda: not wasm_threads(), what="the wasm thread to end")

        await handle.resume()
        await until(lambda: handle.current_status is S.RUNNING)
        await asyncio.wait_for(handle.cancel(), 60)
        assert handle.current_status is S.CANCELLED
        await until(lambda: not wasm_threads(), what="the wasm thread to end")


async def test_a_guest_that_stops_by_itself_is_paused(manager, tmp_path):
    quitter = write_module(tmp_path, "quit.wat", '(module (func (export "job_quit") (result i32) i32.const 1))')
    manager.load_extension(quitter, "quit")
    handle = await manager.dispatch_extension_job("quit", "quit")
    await until(lambda: handle.current_status is S.PAUSED)


async def test_resume_on_a_different_module_is_refused_and_the_job_kept(manager, tmp_path):
    gated = gated_module(tmp_path)
    manager.load_extension(gated, "gated")
    n = 2000
    handle = await manager.dispatch_extension_job("gated", "count", gated_input(n, every=50, hold=100))
    await progress_at_least(handle, 100)
    await handle.pause()

    changed = gated_module(tmp_path, '\n  (func (export "job_extra") (result i32) i32.const 0)')
    manager.load_extension(changed, "gated")
    with pytest.raises(ext.ExtensionMismatch, match="load the module it started with"):
        await handle.resume()
    assert handle.current_status is S.PAUSED

    manager.load_extension(gated, "gated")
    await handle.resume()
    assert gated_result(await asyncio.wait_for(handle.wait(), 60)) == expected_count(n)


# --- limits and failures --------------------------------------------------------------------------


async def test_an_endless_loop_is_stopped_by_the_fuel_limit(manager):
    ext.load_extension(manager, FOREVER, "spin", fuel=50_000_000)
    handle = await manager.dispatch_extension_job("spin", "forever")
    message = await failure(handle)
    assert "fuel limit" in message and "50,000,000" in message and "should_stop" in message
    assert not wasm_threads()
    await assert_still_healthy(manager)


async def test_fuel_is_per_should_stop_call_so_cooperative_jobs_run_long(manager):
    ext.load_extension(manager, COUNTER, "tight", fuel=2_000_000)  # far less than the whole run needs
    handle = await manager.dispatch_extension_job("tight", "count", [2000, 500, 100_000])
    assert await asyncio.wait_for(handle.wait(), 60) == expected_count(2000, 100_000)


async def test_an_endless_loop_is_stopped_by_the_time_limit(manager):
    ext.load_extension(manager, FOREVER, "spin", fuel=ENDLESS, time_limit=0.3)  # only the time limit can end it
    handle = await manager.dispatch_extension_job("spin", "forever")
    message = await failure(handle)
    assert "time limit of 0.3 s" in message
    await assert_still_healthy(manager)


async def test_growing_memory_past_the_cap_fails_the_job(manager):
    ext.load_extension(manager, GREEDY, "greedy", memory_bytes=2 * 2**20)
    message = await failure(await manager.dispatch_extension_job("greedy", "grow"))
    assert "unreachable" in message and "memory had reached the cap of 2 MiB" in message
    await assert_still_healthy(manager)


async def test_a_module_needing_more_memory_than_the_cap_cannot_start(manager, tmp_path):
    big = write_module(tmp_path, "big.wat", '(module (memory (export "memory") 100)'
                                            ' (func (export "job_x") (result i32) i32.const 0))')
    ext.load_extension(manager, big, "big", memory_bytes=2**20)
    message = await failure(await manager.dispatch_extension_job("big", "x"))
    assert "could not start" in message and "exceeds memory limits" in message and "1 MiB" in message


async def test_a_trap_fails_the_job_with_the_trap_text(manager, tmp_path):
    divide = write_module(tmp_path, "div.wat", '(module (func (export "job_div") (result i32)'
                                               ' i32.const 1 i32.const 0 i32.div_u))')
    manager.load_extension(divide, "div")
    handle = await manager.dispatch_extension_job("div", "div")
    assert await failure(handle) == "extension job div:div trapped: integer divide by zero"
    record = await manager.record(handle.id)
    assert "wasm backtrace" in record.traceback
    await assert_still_healthy(manager)


async def test_an_error_code_fails_the_job(manager, tmp_path):
    seven = write_module(tmp_path, "seven.wat", '(module (func (export "job_seven") (result i32) i32.const 7))')
    manager.load_extension(seven, "seven")
    message = await failure(await manager.dispatch_extension_job("seven", "seven"))
    assert message == "extension job seven:seven returned error code 7"


async def test_a_pointer_outside_memory_fails_the_job(manager, tmp_path):
    wild = write_module(tmp_path, "wild.wat", """
    (module
      (import "sdjobs" "log" (func $log (param i32 i32)))
      (memory (export "memory") 1)
      (func (export "job_wild") (result i32)
        (call $log (i32.const 65530) (i32.const 100))
        (loop $forever (br $forever))
        (i32.const 0)))""")
    manager.load_extension(wild, "wild")
    message = await failure(await manager.dispatch_extension_job("wild", "wild"))
    assert "called sdjobs.log with bytes 65530..65630 outside its 65536-byte memory" in message


async def test_a_result_that_is_not_json_fails_the_job(manager, tmp_path):
    text = write_module(tmp_path, "text.wat", """
    (module
      (import "sdjobs" "set_result" (func $result (param i32 i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "not json")
      (func (export "job_text") (result i32)
        (call $result (i32.const 0) (i32.const 8))
        (i32.const 0)))""")
    manager.load_extension(text, "text")
    assert "not JSON" in await failure(await manager.dispatch_extension_job("text", "text", {"x": 1}))
    assert await (await manager.dispatch_extension_job("text", "text", b"")).wait() == b"not json"


async def test_failures_show_in_history_and_metrics(manager, tmp_path):
    pytest.importorskip("pandas")
    pytest.importorskip("sdjobs_nb.frames")
    ext.load_extension(manager, FOREVER, "spin", fuel=10_000_000)
    manager.load_extension(COUNTER, "demo")
    await failure(await manager.dispatch_extension_job("spin", "forever"))
    await (await manager.dispatch_extension_job("demo", "count", [10])).wait()
    history = await manager.history()
    assert set(history["name"]) == {"spin:forever", "demo:count"}
    metrics = await manager.metrics()
    metrics = metrics if "name" in metrics.columns else metrics.reset_index()
    (failed,) = metrics.loc[metrics["name"] == "spin:forever", "failed"]
    assert failed == 1


async def assert_still_healthy(manager) -> None:
    manager.load_extension(COUNTER, "healthy")
    handle = await manager.dispatch_extension_job("healthy", "count", [100, 10])
    assert await asyncio.wait_for(handle.wait(), 30) == expected_count(100)


async def test_a_state_over_the_library_limit_fails_the_job(library, tmp_path):
    hoarder = write_module(tmp_path, "hoard.wat", """
    (module
      (import "sdjobs" "checkpoint" (func $checkpoint (param i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "job_hoard") (result i32)
        (drop (call $checkpoint (i32.const 0) (i32.const 60000)))
        (i32.const 0)))""")
    async with sj.JobManager.open(library, max_state_bytes=10_000) as m:
        m.load_extension(hoarder, "hoard")
        message = await failure(await m.dispatch_extension_job("hoard", "hoard"))
    assert "could not checkpoint its state: StateTooLarge" in message


@dataclasses.dataclass
class ParentOfExtensionJobs(sj.Job):
    NAME = "test_ext_parent"
    sizes: list[int]

    async def run(self, ctx: sj.JobContext) -> list[int]:
        ids = await ctx.spawn_children([ext.extension_job("demo", "count", [n, 10]) for n in self.sizes])
        return await ctx.wait_for_children(ids)


async def test_extension_jobs_can_be_children_of_python_jobs(manager):
    manager.load_extension(COUNTER, "demo")
    handle = await manager.dispatch(ParentOfExtensionJobs([30, 60]))
    assert await asyncio.wait_for(handle.wait(), 30) == [expected_count(30), expected_count(60)]


async def test_queued_extension_jobs_start_at_open_when_loaded_before(library):
    async with sj.JobManager.open(library, max_concurrent=1) as m:
        m.load_extension(FOREVER, "spin")
        m.load_extension(COUNTER, "demo")
        blocker = await m.dispatch_extension_job("spin", "polite")
        queued = await m.dispatch_extension_job("demo", "count", [40, 10])
        await until(lambda: blocker.current_status is S.RUNNING)
        assert queued.current_status is S.QUEUED
    ext.load_extension(None, COUNTER, "demo")
    async with sj.JobManager.open(library) as m:
        assert await asyncio.wait_for(m.get(queued.id).wait(), 30) == expected_count(40)
