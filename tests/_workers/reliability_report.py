"""Run the reliability tests and write their counts into RELIABILITY.md.

    .venv/bin/python tests/_workers/reliability_report.py          # everything, slow tests too
    .venv/bin/python tests/_workers/reliability_report.py --quick  # without the 50-kill loop

Each row of the table is one test function: how many times its fault was tried (its
parametrized cases, or the facts the tests tallied, such as kills and interrupted jobs) and how
many of those the library survived (cases that passed). Nothing in the table is typed by hand.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "RELIABILITY.md"
START, END = "<!-- reliability-table:start -->", "<!-- reliability-table:end -->"
FILES = ("test_crash*.py", "test_lock*.py", "test_bad_input*.py", "test_reliability*.py",
         "test_security*.py", "test_stateful*.py", "test_backup.py", "test_prune.py", "test_codec_property.py")

#: test function -> the fault it injects (rows appear in this order; unknown tests are appended)
FAULTS = {
    "test_sigkill_mid_run_resumes_from_last_checkpoint": "SIGKILL of the process running a checkpointing job, at a set item (1, 4, 5, 6, 13, 22, 37 of 40; checkpoint every 5)",
    "test_killed_twice_then_resumed": "SIGKILL mid-run, then SIGKILL of the process that resumed it",
    "test_crash_between_resuming_a_parent_and_its_children": "Kill between resume(parent)'s commit and its children's",
    "test_crash_between_pausing_a_parent_and_its_children": "Kill between pause(parent)'s commit and its children's",
    "test_random_kills": "SIGKILL at a random moment of a seeded job mix (default run)",
    "test_random_kills_full": "SIGKILL at a random moment of a seeded job mix (slow run, 50 seeds)",
    "test_second_process_is_refused_naming_the_holder_then_takes_over_after_sigkill": "Second owner process while the first runs a job; then the first is SIGKILLed",
    "test_refusal_names_the_new_owner_not_the_dead_one": "Owner killed, a new owner, a third opener",
    "test_stale_lock_file_of_a_dead_process_is_taken_over": "Lock file left by a dead process",
    "test_processes_racing_for_a_new_library_get_exactly_one_owner": "6 processes racing to create and own one new library (3 rounds)",
    "test_two_managers_in_one_process": "Second manager on the same library in one process",
    "test_unknown_job_name_lists_the_known_names": "Unknown job name",
    "test_bad_data_names_the_field_and_writes_nothing": "Job data with missing, extra or ill-typed fields",
    "test_data_that_is_not_a_dict": "Job data that is not a dict",
    "test_ill_typed_instance_is_refused_or_resumable": "Job instance with an ill-typed field (float for int)",
    "test_unserializable_state_names_the_field": "Unstorable state (files, locks, lambdas, events, objects)",
    "test_unserializable_context_is_refused": "Unstorable dispatch context",
    "test_bad_state_at_checkpoint_keeps_the_previous_checkpoint": "Unstorable or too large state at a checkpoint",
    "test_refused_checkpoint_is_not_counted": "Refused checkpoint and the checkpoint count",
    "test_state_too_large_at_dispatch": "State over max_state_bytes",
    "test_corrupt_state_blob_only_breaks_that_job": "Corrupt state blob (not msgpack, list, wrong fields, trailing bytes, empty, pickle)",
    "test_corrupt_stored_column_only_affects_that_job": "Corrupt progress / metrics / context value of one job",
    "test_library_path_is_a_file": "Library path that is a file",
    "test_read_only_view_of_a_missing_library": "Read-only view of a library that does not exist",
    "test_jobs_db_from_a_newer_schema_is_refused_and_untouched": "jobs.db from a newer schema",
    "test_jobs_db_that_is_not_sqlite": "jobs.db that is not SQLite (text, random bytes, bad header)",
    "test_sqlite_database_of_something_else": "jobs.db that is another application's SQLite file",
    "test_truncated_jobs_db": "jobs.db truncated to half",
    "test_progress_out_of_range_is_clamped_or_ignored": "Progress out of range (negative, NaN, inf, strings, bools, over total, fraction 2.5)",
    "test_bad_structured_progress_raises_and_the_job_goes_on": "Huge, deep or non-JSON structured progress",
    "test_structured_progress_phase_must_be_text": "Structured progress with a non-text phase",
    "test_not_writable_folder_is_refused_for_writing": "Library folder not writable (as user nobody)",
    "test_not_writable_folder_can_be_read_read_only": "Read-only view of a folder that is not writable",
    "test_full_disk_at_dispatch": "Full disk (16 MiB tmpfs) at dispatch",
    "test_full_disk_during_checkpoint_loses_nothing": "Disk fills up while a job checkpoints",
    "test_job_that_retries_survives_a_full_disk": "Disk full for 0.5 s under a job that retries its checkpoint",
    "test_file_size_limit_refuses_writes_and_loses_nothing": "Writes refused by RLIMIT_FSIZE (worker process)",
    "test_close_while_jobs_are_mid_checkpoint": "close() while jobs are inside checkpoints (100 KB state)",
    "test_closed_mid_checkpoint_jobs_resume_to_the_right_result": "Resume after close() mid-checkpoint",
    "test_close_twice": "close() twice",
    "test_concurrent_closes_both_wait_until_closed": "Two concurrent close() calls",
    "test_close_with_jobs_that_ignore_check_interrupted": "close() with jobs that never check for interruption (grace 0.2 s)",
    "test_close_with_a_job_blocked_in_run_blocking": "close() with a job blocked in run_blocking",
    "test_close_while_a_parent_waits_for_children": "close() while a parent waits for its children",
    "test_close_racing_pause_and_cancel": "close() racing a pause and a cancel",
    "test_pickle_payloads_in_stored_blobs_never_run": "Armed pickles (protocols 0-5) in jobs.data / result / progress",
    "test_hostile_msgpack_state_is_reported_broken": "Hostile msgpack state (dunder keys, unknown ext, huge length claims, 100k nesting)",
    "test_stored_job_names_are_never_imported": "Stored job names naming importable modules",
    "test_hostile_strings_round_trip_and_drop_nothing": "SQL-injection strings as name, ids, initiated_by, context, dedup_key",
    "test_hostile_non_critical_error_messages": "SQL-injection strings as non-critical error messages",
    "test_log_files_are_named_by_job_id_only": "Job names that look like paths, with file logging on",
    "test_crafted_job_id_never_names_a_file": "Tampered job id (a path) in jobs.db, with file logging on",
    "runTest": "Random sequences of dispatch, pause, resume, cancel, checkpoint, close/reopen, failure (hypothesis)",
    "test_a_latin1_file_name_in_one_job_costs_no_other_job_its_end": "Latin-1 file name (lone surrogate) in a non-critical error / failure message of 1 of 41 jobs finishing in one transaction",
    "test_free_text_that_is_not_utf8_is_stored_readable": "Latin-1 file name in initiated_by, a pause reason and a progress phase",
    "test_a_dispatch_value_jobs_db_cannot_hold_is_refused_and_costs_no_other_job": "Latin-1 file name in a dedup_key, or a 2**70 priority, dispatched in the same transaction as another job",
    "test_a_value_sqlite_cannot_bind_fails_only_its_own_jobs_waiters": "A value sqlite3 cannot bind among good writes of other jobs in one group commit",
    "test_a_batch_where_every_job_is_refused_or_the_file_fails_tells_everyone": "A group commit whose only job is refused, or that fails for the file (no such table)",
    "test_pause_with_unstorable_state_pauses_from_the_last_checkpoint": "pause() of a job whose state holds an unstorable value (int >= 2**64, lone surrogate, 10,000-deep list)",
    "test_unstorable_result_completes_and_wait_returns_it": "A job that returns an unstorable value (int >= 2**64, lone surrogate, 10,000-deep list)",
    "test_job_raising_a_base_exception_fails": "A job that raises its own BaseException subclass, or asyncio.CancelledError itself",
    "test_keyboard_interrupt_in_a_job_pauses_it_and_reaches_the_caller": "KeyboardInterrupt raised inside a job (worker process)",
    "test_wait_during_and_after_close_raises_manager_closed": "handle.wait() on a running and a queued job, during and after close()",
    "test_job_that_catches_interrupted_in_a_loop_is_force_stopped": "A job that catches sj.Interrupted in a loop whose only await is check_interrupted() (worker process, grace 0.2 s)",
    "test_job_that_swallows_cancellation_is_abandoned": "A job that swallows asyncio.CancelledError, at cancel(), pause() and close() (grace 0.2 s)",
    "test_except_exception_does_not_swallow_a_pause": "pause() of a job that wraps each item in `except Exception: log and go on`",
    "test_job_that_cannot_start_fails_and_frees_its_slot": "A job whose run cannot even start (its log file cannot be opened), with one slot",
    "test_state_nested_past_the_limit_is_refused_at_dispatch_naming_the_field": "State nested past the depth limit at dispatch (250 tuples, 1,000 lists, 5,000 dicts)",
    "test_library_holding_a_deeply_nested_state_opens": "Hand-written state blobs nested 250 and 100,000 tuples deep, 100,000 lists deep, in a queued and an interrupted job (opened in a separate process)",
    "test_tuples_nested_to_the_decode_limit_load_in_any_thread": "State blob of tuples nested to the decode limit and one past it, opened in the main thread and in a thread with a 512 KiB stack",
    "test_big_ints_and_lone_surrogates_round_trip_through_a_reopen": "Ints beyond 64 bits and strings with lone surrogates (os.listdir of Latin-1 names) in state, through close and reopen",
    "test_typed_state_with_namedtuples_big_ints_and_surrogates_resumes": "NamedTuple, big-int and surrogate-string typed fields, resumed after a reopen",
    "test_a_value_that_could_not_be_resumed_is_refused_at_checkpoint": "A float or None in an int field, a dataclass in an Any field, set by run() before a checkpoint",
    "test_ill_typed_state_at_pause_resumes_from_the_last_checkpoint": "A float in an int field when the job is paused",
    "test_dataclass_in_an_any_field_is_refused_at_dispatch_naming_the_field": "A dataclass inside an Any field at dispatch",
    "test_bad_stored_metrics_never_stop_the_library": "Stored metrics that are not finite numbers (1e400, text, 1e30 bytes, a list) on a paused and a queued job, one slot, open(resume=True)",
    "test_an_open_that_fails_lets_go_of_the_library": "open(resume=True) interrupted by the user's BaseException after it took the library; then open on another loop",
    "test_a_damaged_row_sets_only_that_job_aside": "One job's row altered: metrics or context JSON nested 100,000 deep, priority / seq / created_at stored as text",
    "test_a_damaged_jobs_db_is_refused_with_what_to_do": "jobs.db with a damaged b-tree page (jobs or job_history), with each kind of jobs.lock a previous owner leaves",
    "test_a_file_copy_torn_by_a_live_owner_is_refused": "Plain file copies of jobs.db taken while its owner writes and checkpoints, until some fail quick_check",
    "test_backup_while_a_job_checkpoints_is_consistent_and_opens": "manager.backup() 5 times while a job checkpoints as fast as it can",
    "test_backup_round_trip_keeps_every_job": "Backup of completed, failed, cancelled, user-paused, running and queued jobs, opened and run on",
    "test_backup_refuses_what_it_must_not_replace": "Backup onto a file, onto the library itself, onto a library in use, and over a killed owner's library with its WAL",
    "test_sdjobs_backup_while_a_kernel_owns_the_library": "sdjobs backup while another process owns the library and runs a job",
    "test_cancel_marks_a_parent_and_its_waiting_children_in_one_transaction": "cancel() of a running parent with 200 children (2 running, 198 queued), read by another connection throughout",
    "test_sigkill_mid_cancel_leaves_no_child_to_run": "SIGKILL mid-cancel, while a child that ignores interruptions still runs (grace 600 s)",
    "test_cancelling_a_queued_parent_ends_cancelled": "cancel() of a parent QUEUED after close, reopen and resume_interrupted(), behind its own running child",
    "test_finished_jobs_drop_their_state_and_checkpoints_so_the_library_stays_small": "200 finished jobs with 50 KB states that checkpointed: library size (was 19.4 MB)",
    "test_a_batch_of_finishes_drops_every_checkpoint_in_it": "300 jobs finishing in one transaction drop every checkpoint",
    "test_the_saved_state_of_a_finished_job_is_gone_and_says_why": "Reading the saved state of a finished job",
    "test_non_critical_errors_stored_per_job_are_capped": "1,500 non-critical errors from one job (stored rows capped)",
    "test_prune_never_removes_unfinished_jobs_or_what_they_still_read": "prune() with unfinished parents and children, across a reopen",
    "test_prune_keeps_the_newest_and_counts_what_it_removed": "prune(keep=..., older_than=...) alone and together",
    "test_prune_walks_a_large_library_in_chunks": "prune() of 1,200 finished jobs, in chunks",
    "test_prune_arguments_are_checked_before_anything_is_written": "prune() with bad arguments (negative, wrong types)",
    "test_a_read_only_view_cannot_prune": "prune() on a read-only view",
    "test_sdjobs_prune": "sdjobs prune, and while a kernel owns the library",
    "test_a_value_round_trips_or_is_refused_naming_its_field": "Arbitrary nested state (depth up to 1,000, big ints, lone surrogates, NaN) round-trips or is refused naming the field (hypothesis)",
    "test_no_byte_string_crashes_the_decoder": "Arbitrary and deeply nested byte strings decoded in a subprocess never crash it (hypothesis)",
    "test_a_kill_while_the_library_is_created_leaves_a_file_any_reader_can_open": "SIGKILL while a new library is being created (4 MiB in its first transaction)",
}


def run_tests(quick: bool, log: Path, junit: Path) -> int:
    files = sorted({str(p.relative_to(REPO)) for pattern in FILES for p in (REPO / "tests").glob(pattern)})
    cmd = [sys.executable, "-m", "pytest", *files, "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
    if quick:
        cmd += ["-m", "not slow"]
    env = {**os.environ, "SDJOBS_RELIABILITY_LOG": str(log)}
    return subprocess.run(cmd, cwd=REPO, env=env).returncode


def outcomes(junit: Path) -> dict[str, list[tuple[str, str]]]:
    """test function -> [(outcome, first line of the failure)] per case."""
    found: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
    for case in ET.parse(junit).iter("testcase"):
        function = re.sub(r"\[.*$", "", case.get("name", ""))
        bad = next((c for c in case if c.tag in ("failure", "error")), None)
        skipped = next((c for c in case if c.tag == "skipped"), None)
        if bad is not None:
            found[function].append(("failed", (bad.get("message") or "").splitlines()[0][:160]))
        elif skipped is not None:
            found[function].append(("skipped", skipped.get("message") or ""))
        else:
            found[function].append(("passed", ""))
    return found


def tallies(log: Path) -> dict[str, list[dict]]:
    facts: dict[str, list[dict]] = collections.defaultdict(list)
    if log.exists():
        for line in log.read_text().splitlines():
            item = json.loads(line)
            facts[item.pop("fault")].append(item)
    return facts


def details(function: str, facts: dict[str, list[dict]], cases: int) -> str:
    def total(fault: str, key: str, items: list[dict] | None = None) -> int:
        return sum(f.get(key, 0) for f in (items if items is not None else facts.get(fault, [])))

    if function.startswith("test_random_kills"):
        seeds = range(1000, 1050) if function.endswith("_full") else range(0, 8)
        items = [f for f in facts.get("random_kill", []) if f["seed"] in seeds]
        return (f"{len(items)} kills; at the kill {total('', 'interrupted', items)} jobs were running "
                f"(all found PAUSED/interrupted and resumed), {total('', 'paused', items)} paused, "
                f"{total('', 'queued', items)} queued, {total('', 'terminal', items)} finished (none changed); "
                f"{total('', 'redone_items', items)} items re-done after a last save")
    if function == "test_sigkill_mid_run_resumes_from_last_checkpoint":
        items = facts.get("sigkill_checkpointing_job", [])
        return f"{total('', 'redone_items', items)} items re-done in all (max {max((f['redone_items'] for f in items), default=0)} per kill, bound 5)"
    if function == "runTest":
        items = facts.get("stateful_sequence", [])
        return (f"{len(items)} sequences of up to 20 steps, {total('', 'jobs', items)} jobs, "
                f"{total('', 'reopens', items)} close/reopen cycles")
    if function == "test_pickle_payloads_in_stored_blobs_never_run":
        return f"{cases} columns x 6 pickle protocols"
    return ""


def table(found: dict[str, list[tuple[str, str]]], facts: dict[str, list[dict]]) -> str:
    order = list(FAULTS) + sorted(set(found) - set(FAULTS))
    lines = ["| Fault tried | Times | Survived | Notes |", "|---|---:|---:|---|"]
    totals = collections.Counter()
    for function in order:
        cases = found.get(function)
        if not cases:
            continue
        passed = sum(1 for outcome, _ in cases if outcome == "passed")
        skipped = sum(1 for outcome, _ in cases if outcome == "skipped")
        tried = len(cases) - skipped
        totals["tried"] += tried
        totals["passed"] += passed
        notes = details(function, facts, len(cases))
        failures = sorted({why for outcome, why in cases if outcome == "failed"})
        if failures:
            notes = "; ".join(filter(None, [notes, "FAILS: " + " / ".join(failures)]))
        if skipped:
            notes = "; ".join(filter(None, [notes, f"{skipped} skipped: {cases[0][1] if cases[0][0] == 'skipped' else ''}"]))
        survived = f"{passed}" if passed == tried else f"**{passed}**"
        lines.append(f"| {FAULTS.get(function, function)} | {tried} | {survived} | {notes.replace('|', '/')} |")
    lines.append(f"| **All** | **{totals['tried']}** | **{totals['passed']}** | |")
    return "\n".join(lines)


def main() -> int:
    quick = "--quick" in sys.argv
    with tempfile.TemporaryDirectory() as tmp:
        log, junit = Path(tmp) / "tally.jsonl", Path(tmp) / "junit.xml"
        code = run_tests(quick, log, junit)
        found, facts = outcomes(junit), tallies(log)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    scope = "default run (no slow tests)" if quick else "full run, slow tests included"
    block = f"{START}\n_Generated by `tests/_workers/reliability_report.py` on {stamp} at commit {commit} ({scope})._\n\n{table(found, facts)}\n{END}"
    text = DOC.read_text() if DOC.exists() else f"# Reliability\n\n{START}\n{END}\n"
    DOC.write_text(re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S))
    print(f"wrote {DOC} (pytest exit code {code})")
    return code


if __name__ == "__main__":
    sys.exit(main())
