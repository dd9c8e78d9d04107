"""The `sdjobs` command: look at a library's jobs, cancel or resume one, or run a demo.

    sdjobs list LIBRARY                       jobs not finished yet (queued, running, paused)
    sdjobs history LIBRARY [filters] [--csv|--json]
    sdjobs show LIBRARY JOB_ID                everything stored about one job
    sdjobs backup LIBRARY FOLDER [--overwrite]
                                              copies the library consistently, even while in use
    sdjobs cancel LIBRARY JOB_ID              needs the library: fails while a kernel owns it
    sdjobs resume LIBRARY JOB_ID              marks a paused job queued; its next owner runs it
    sdjobs prune LIBRARY [--older-than 30d] [--keep N] [--vacuum]
                                              deletes finished jobs and their history rows
    sdjobs demo [LIBRARY]                     runs three small jobs with live progress (one fails
                                              on purpose); LIBRARY defaults to a folder in your
                                              user cache, e.g. ~/.cache/sdjobs_nb/demo

Reading commands open the library read-only, so they work while a notebook kernel owns it. A
job id may be shortened to any unique prefix (as `list` and `history` print them). Errors go
to stderr with exit status 2. pandas is not needed.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from . import __version__
from ._errors import Critical, InvalidTransition, SdjobsError
from ._job import Job
from ._manager import JobManager
from ._progress import Progress
from ._query import DB_NAME, HISTORY_FIELDS, TERMINAL_STATUSES, HistoryColumns, history_query
from ._records import JobRecord
from ._status import JobStatus, PauseReason, Priority

__all__ = ("main", "CommandError")

EXIT_USAGE = 2
SHORT_ID = 8
TABLE_LIMIT = 20


class CommandError(Exception):
    """A problem the user can fix; printed without a traceback, exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `sdjobs` command line; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return asyncio.run(args.command(args))
    except (CommandError, SdjobsError, ValueError) as e:
        print(f"sdjobs {args.command_name}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sdjobs", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--version", action="version", version=f"sdjobs_nb {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    def command(name: str, fn: Callable[[argparse.Namespace], Any], help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(command=fn, command_name=name)
        return sub

    _add_reading_commands(command)
    _add_changing_commands(command)
    return parser


_Command = Callable[[str, Callable[[argparse.Namespace], Any], str], argparse.ArgumentParser]


def _add_reading_commands(command: _Command) -> None:
    sub = command("list", cmd_list, "list the jobs that are not finished (queued, running, paused)")
    sub.add_argument("library", help="the library folder (the one holding jobs.db)")
    sub.add_argument("--json", action="store_true", help="print a JSON array")

    sub = command("history", cmd_history, "list finished jobs, newest first")
    sub.add_argument("library", help="the library folder")
    sub.add_argument("--name", action="append", help="only jobs of this name (repeat for several)")
    sub.add_argument("--status", action="append", choices=TERMINAL_STATUSES,
                     help="only jobs that ended so (repeat for several)")
    sub.add_argument("--since", help="finished at or after: ISO date/time (local unless it has an "
                                     "offset), or a duration ago such as 2h, 7d")
    sub.add_argument("--until", help="finished before: same forms as --since")
    sub.add_argument("--limit", type=int, help=f"at most this many rows (default {TABLE_LIMIT} for the "
                                               f"table, all for --csv/--json)")
    sub.add_argument("--all", action="store_true", help="every matching row")
    out = sub.add_mutually_exclusive_group()
    out.add_argument("--csv", action="store_true", help="every column as CSV (times in ISO 8601 UTC)")
    out.add_argument("--json", action="store_true", help="every column as a JSON array of objects")

    sub = command("show", cmd_show, "show everything stored about one job")
    sub.add_argument("library", help="the library folder")
    sub.add_argument("job_id", help="a job id, or a unique prefix of one")
    sub.add_argument("--json", action="store_true", help="print one JSON object")

    sub = command("backup", cmd_backup, "copy the library to FOLDER (its jobs.db), consistently even while a "
                                         "kernel runs its jobs; a plain file copy can be torn")
    sub.add_argument("library", help="the library folder")
    sub.add_argument("folder", help="the folder of the copy (created if needed); open it as a library")
    sub.add_argument("--overwrite", action="store_true", help="replace a library already in FOLDER")


def _add_changing_commands(command: _Command) -> None:
    sub = command("cancel", cmd_cancel, "cancel a queued, running or paused job (and its unfinished children)")
    sub.add_argument("library", help="the library folder")
    sub.add_argument("job_id", help="a job id, or a unique prefix of one")

    sub = command("resume", cmd_resume, "mark a paused job queued; the next process that opens the "
                                        "library and defines the job runs it")
    sub.add_argument("library", help="the library folder")
    sub.add_argument("job_id", help="a job id, or a unique prefix of one")

    sub = command("prune", cmd_prune, "delete finished jobs (their records, history rows and errors) that "
                                      "finished longer ago than --older-than and are not among the --keep newest")
    sub.add_argument("library", help="the library folder")
    sub.add_argument("--older-than", metavar="AGE", help="how long ago they finished: 30d, 12h, 90m, 45s, 2w, "
                                                         "or plain seconds")
    sub.add_argument("--keep", type=int, metavar="N", help="keep the N newest finished jobs whatever their age")
    sub.add_argument("--vacuum", action="store_true", help="also shrink jobs.db (rewrites the file; takes a "
                                                           "while on a big library)")

    sub = command("demo", cmd_demo, "run three small jobs with live progress in this terminal; "
                                     "one of them (sdjobs_demo.flaky) fails on purpose")
    sub.add_argument("library", nargs="?",
                     help="the library folder to keep them in; it is kept, so that a run stopped with "
                          "Ctrl-C can be resumed (default: sdjobs_nb/demo in your user cache folder, "
                          "e.g. ~/.cache/sdjobs_nb/demo)")
    sub.add_argument("--items", type=int, default=40, help="items per job (default %(default)s)")
    sub.add_argument("--delay", type=float, default=0.05, help="seconds per item (default %(default)s)")


# --- opening ---------------------------------------------------------------------------------


def _existing_library(path: str) -> Path:
    folder = Path(path).expanduser()
    if not (folder / DB_NAME).is_file():
        what = "is not a folder" if folder.exists() and not folder.is_dir() else f"has no {DB_NAME}"
        raise CommandError(f"no library at {str(folder)!r}: it {what}")
    return folder


def _open_reader(path: str) -> Any:
    return JobManager.open(_existing_library(path), read_only=True)


def _open_owner(path: str) -> Any:
    """Open as owner (raises `LibraryLocked` naming the owner's pid while a kernel holds it)."""
    return JobManager.open(_existing_library(path), grace_period=5.0)


def _resolve(manager: JobManager, text: str) -> str:
    """Return the one job id that `text` is or starts with."""
    text = text.strip()
    ids = manager.queries.find_job_ids(text) if text else []
    if text in ids:
        return text
    if not ids:
        raise CommandError(f"no job with an id starting {text!r} in {str(manager.path)!r}; "
                           f"`sdjobs list` and `sdjobs history` show the ids")
    if len(ids) > 1:
        raise CommandError(f"{text!r} is the start of several job ids ({', '.join(i[:12] for i in ids)}, ...); "
                           f"give more of it")
    return ids[0]


# --- list --------------------------------------------------------------------------------------


async def cmd_list(args: argparse.Namespace) -> int:
    async with _open_reader(args.library) as manager:
        records = manager.queries.active_records()
    if args.json:
        _write_json(sys.stdout, (_record_dict(r) for r in records))
        return 0
    if not records:
        print("no unfinished jobs")
        return 0
    rows = [(r.id[:SHORT_ID], r.name, r.status.value + (f" ({r.pause_reason})" if r.pause_reason else ""),
             _priority(r.priority), _progress_text(r.progress), _stamp(r.created_at)) for r in records]
    _print_table(("id", "name", "status", "priority", "progress", "created (UTC)"), rows)
    return 0


# --- history -----------------------------------------------------------------------------------


async def cmd_history(args: argparse.Namespace) -> int:
    if args.all:
        limit = None
    elif args.limit is not None:
        limit = args.limit
    else:  # a table is for reading: the newest few; an export takes everything
        limit = None if args.csv or args.json else TABLE_LIMIT
    query = history_query(name=args.name, status=args.status, since=args.since, until=args.until, limit=limit)
    async with _open_reader(args.library) as manager:
        rows = await manager.queries.history(query, _plain_rows)
    if args.csv:
        _write_csv(sys.stdout, rows)
    elif args.json:
        _write_json(sys.stdout, rows)
    else:
        _print_history(rows, limit)
    return 0


def _plain_rows(columns: HistoryColumns) -> list[dict[str, Any]]:
    """History rows as dicts of JSON-able values (times as ISO 8601 UTC text)."""
    rows = []
    for row in columns.records():
        code = row["status"]
        row["status"] = TERMINAL_STATUSES[code] if 0 <= code < len(TERMINAL_STATUSES) else None
        row["context"] = None if row["context"] is None else json.loads(row["context"])
        for field in ("created_at", "started_at", "finished_at"):
            row[field] = _iso(row[field])
        rows.append(row)
    return rows


def _print_history(rows: list[dict[str, Any]], limit: int | None) -> None:
    if not rows:
        print("no finished jobs match")
        return
    table = [(r["id"][:SHORT_ID], r["name"], r["status"], r["finished_at"][:19].replace("T", " "),
              _seconds(r["duration_s"]), _clip(r["error"] or "", 60)) for r in rows]
    _print_table(("id", "name", "status", "finished (UTC)", "duration", "error"), table)
    if limit is not None and len(rows) == limit:
        print(f"(the newest {limit}; --limit N or --all for more)")


def _write_csv(out: TextIO, rows: list[dict[str, Any]]) -> None:
    writer = csv.DictWriter(out, fieldnames=HISTORY_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row | {"context": None if row["context"] is None else json.dumps(row["context"])})


def _write_json(out: TextIO, items: Iterable[dict[str, Any]]) -> None:
    """Write a JSON array, one object per line, without building the whole text first."""
    out.write("[")
    for i, item in enumerate(items):
        out.write(",\n" if i else "\n")
        out.write(json.dumps(item, default=str))
    out.write("\n]\n")


# --- show --------------------------------------------------------------------------------------


async def cmd_show(args: argparse.Namespace) -> int:
    async with _open_reader(args.library) as manager:
        job_id = _resolve(manager, args.job_id)
        record = await manager.record(job_id)
        errors = await manager.errors(job_id, limit=20)
        children = manager.queries.children_records(job_id)
        result = await _result_text(manager, record)
    if args.json:
        details = _record_dict(record) | {"traceback": record.traceback, "result": result,
                                          "non_critical_errors": [{"at": _iso(at), "message": m} for at, m in errors],
                                          "children": [c.id for c in children]}
        _write_json_object(sys.stdout, details)
        return 0
    _print_pairs(_show_pairs(record, result, children))
    if errors:
        print("non-critical errors:")
        for at, message in errors:
            print(f"  {_stamp(at)}  {message}")
    if record.traceback:
        print("traceback:")
        print("  " + record.traceback.rstrip().replace("\n", "\n  "))
    return 0


def _show_pairs(record: JobRecord, result: str | None, children: list[JobRecord]) -> list[tuple[str, Any]]:
    ended = record.finished_at or record.paused_at
    pairs: list[tuple[str, Any]] = [
        ("id", record.id), ("name", f"{record.name} (VERSION {record.version})"),
        ("status", record.status.value + (f" ({record.pause_reason})" if record.pause_reason else "")),
        ("priority", _priority(record.priority)), ("parent", record.parent_id),
        ("initiated by", record.initiated_by), ("context", None if record.context is None else json.dumps(record.context)),
        ("created (UTC)", _stamp(record.created_at)), ("started (UTC)", _stamp(record.started_at)),
        ("paused (UTC)", _stamp(record.paused_at)), ("finished (UTC)", _stamp(record.finished_at)),
        ("ran for", _seconds(ended - record.started_at) if ended and record.started_at else None),
        ("progress", _progress_text(record.progress) or None),
        ("metrics", ", ".join(f"{k}={_metric(v)}" for k, v in record.metrics.items()) or None),
        ("error", record.error), ("result", result),
        ("children", ", ".join(f"{c.id[:SHORT_ID]} {c.status.value}" for c in children) or None),
    ]
    return [(k, v) for k, v in pairs if v is not None]


async def _result_text(manager: JobManager, record: JobRecord) -> str | None:
    if record.status is not JobStatus.COMPLETED:
        return None
    try:
        return _clip(repr(await manager.result(record.id)), 300)
    except SdjobsError as e:
        return f"(not readable: {e})"


# --- backup ------------------------------------------------------------------------------------


async def cmd_backup(args: argparse.Namespace) -> int:
    async with _open_reader(args.library) as manager:
        copy = await manager.backup(args.folder, overwrite=args.overwrite)
    print(f"backed up {args.library!r} to {str(copy)!r}; open it with JobManager.open({str(copy.parent)!r})")
    return 0


# --- cancel and resume -------------------------------------------------------------------------


async def cmd_cancel(args: argparse.Namespace) -> int:
    async with _open_owner(args.library) as manager:
        job_id = _resolve(manager, args.job_id)
        record = await manager.record(job_id)
        if record.status is JobStatus.CANCELLED:
            print(f"{record.name} {job_id} was already cancelled")
            return 0
        await manager.cancel(job_id)
    print(f"cancelled {record.name} {job_id}")
    return 0


async def cmd_resume(args: argparse.Namespace) -> int:
    """Mark a paused job queued without running it here.

    The job's class lives in the user's code, not in this process, so the command cannot run
    it; it queues it (and the children paused with it), and the next process that opens the
    library with the class defined starts it like any queued job.
    """
    async with _open_owner(args.library) as manager:
        job_id = _resolve(manager, args.job_id)
        record = await manager.record(job_id)
        if record.status is not JobStatus.PAUSED:
            state = "finished" if record.status.is_terminal else record.status.value
            raise InvalidTransition(f"job {record.name} ({job_id}) is {state}, not paused; only paused jobs can be resumed")
        queued = await _requeue(manager, record)
    more = f" (and {len(queued) - 1} of its children)" if len(queued) > 1 else ""
    print(f"queued {record.name} {job_id}{more}; it runs when a notebook or script that defines "
          f"{record.name!r} opens {args.library!r}")
    return 0


async def _requeue(manager: JobManager, record: JobRecord) -> list[str]:
    """Mark a paused job queued, with the children paused because it was, and commit."""
    ids, pending = [], [record]
    while pending:
        job = pending.pop()
        ids.append(job.id)
        pending.extend(c for c in manager.queries.children_records(job.id)
                       if c.status is JobStatus.PAUSED and c.pause_reason == PauseReason.PARENT)
    await manager.store.requeue(ids, time.time())  # refuses (writing nothing) unless every one is paused
    return ids


# --- prune -------------------------------------------------------------------------------------

_AGE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_AGE_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


async def cmd_prune(args: argparse.Namespace) -> int:
    if args.older_than is None and args.keep is None:
        raise CommandError("give --older-than, --keep or both (--older-than 0 removes every finished job)")
    older_than = None if args.older_than is None else _age_seconds(args.older_than)
    async with _open_owner(args.library) as manager:
        removed = await manager.prune(older_than=older_than, keep=args.keep, vacuum=args.vacuum)
    print(f"removed {removed} finished job{'' if removed == 1 else 's'} from {args.library}")
    return 0


def _age_seconds(text: str) -> float:
    """Seconds of an age such as 30d, 12h, 90m, 45s, 2w or 3600."""
    match = _AGE.match(text)
    if match is None:
        raise CommandError(f"--older-than: cannot read {text!r} as an age; use e.g. 30d, 12h, 90m, 45s, 2w or seconds")
    return float(match.group(1)) * _AGE_UNITS[match.group(2).lower()]


# --- demo --------------------------------------------------------------------------------------


def _demo_library() -> Path:
    """The demo's library when none is given: `sdjobs_nb/demo` in the user's cache folder.

    Per user and at a fixed place, so that a second run finds the jobs a Ctrl-C paused; not in
    the shared temp folder, where a fixed name could belong to another user.
    """
    if sys.platform == "win32":
        cache = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        cache = str(Path.home() / "Library" / "Caches")
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        cache = xdg if os.path.isabs(xdg) else str(Path.home() / ".cache")
    return Path(cache) / "sdjobs_nb" / "demo"


_FLAKY_NOTE = "sdjobs_demo.flaky fails halfway on purpose, to show how a failed job looks: nothing is broken"


async def cmd_demo(args: argparse.Namespace) -> int:
    if args.items < 1 or args.delay < 0:
        raise CommandError("--items must be >= 1 and --delay >= 0")
    jobs = _demo_jobs()  # defined before the library opens, so its queued demo jobs start
    folder = Path(args.library).expanduser() if args.library else _demo_library()
    print(f"library: {folder}")
    print(f"  {_FLAKY_NOTE}")
    print("  Ctrl-C pauses the jobs; run the demo again to resume them; delete the folder when done")
    async with JobManager.open(folder, max_concurrent=2) as manager:
        try:  # a Ctrl-C can come while the jobs are still being dispatched
            resumed = await manager.resume_interrupted()
            handles = manager.handles()
            if resumed:
                print(f"resuming {len(resumed)} job(s) interrupted last time")
            if not handles:
                handles = [await manager.dispatch(job(args.items, args.delay), initiated_by="sdjobs demo")
                           for job in jobs]
            await _watch(handles, sys.stdout)
        except asyncio.CancelledError:
            print("\ninterrupted: the running jobs are paused and saved; run the demo again to resume them",
                  file=sys.stderr)
            raise
    if any(h.name == "sdjobs_demo.flaky" and h.current_status is JobStatus.FAILED for h in handles):
        print("(sdjobs_demo.flaky failed on purpose)")
    print("\nlook at them with:")
    print(f"  sdjobs history {_quote(folder)}")
    print(f"  sdjobs show {_quote(folder)} {handles[-1].id[:SHORT_ID]}")
    return 0


_DEMO_JOBS: list[type] = []


def _demo_jobs() -> list[type]:
    """Define the demo's job classes (once per process, and only when the demo runs)."""
    if not _DEMO_JOBS:
        _DEMO_JOBS.extend(_define_demo_jobs())
    return _DEMO_JOBS


def _define_demo_jobs() -> list[type]:
    return [_count_job(), _download_job(), _flaky_job()]


def _count_job() -> type:
    from dataclasses import dataclass

    @dataclass
    class Count(Job):
        """Counts items one by one, checkpointing every 10."""

        NAME = "sdjobs_demo.count"
        total: int = 40
        delay: float = 0.05
        done: int = 0

        async def run(self, ctx: Any) -> int:
            while self.done < self.total:
                await ctx.check_interrupted()
                await asyncio.sleep(self.delay)
                self.done += 1
                ctx.report_count_progress(self.done, self.total)
                if self.done % 10 == 0:
                    await ctx.checkpoint()
            return self.done

    return Count


def _download_job() -> type:
    from dataclasses import dataclass

    @dataclass
    class Download(Job):
        """Pretends to download a file, reporting bytes."""

        NAME = "sdjobs_demo.download"
        chunks: int = 40
        delay: float = 0.05
        received: int = 0

        async def run(self, ctx: Any) -> int:
            size = self.chunks * 256 * 1024
            while self.received < size:
                await ctx.check_interrupted()
                await asyncio.sleep(self.delay)
                self.received += 256 * 1024
                ctx.report_bytes_progress(self.received, size)
            return self.received

    return Download


def _flaky_job() -> type:
    from dataclasses import dataclass

    @dataclass
    class Flaky(Job):
        """Reports a non-critical error, then fails for good halfway through: on purpose, to show a failure."""

        NAME = "sdjobs_demo.flaky"
        steps: int = 40
        delay: float = 0.05
        done: int = 0

        async def run(self, ctx: Any) -> None:
            while self.done < self.steps:
                await ctx.check_interrupted()
                await asyncio.sleep(self.delay)
                self.done += 1
                ctx.report_structured_progress("checking", {"step": self.done})
                if self.done == self.steps // 4:
                    ctx.report_non_critical_error(f"step {self.done}: skipped one odd record")
                if self.done == self.steps // 2:
                    raise Critical("the source went away halfway through (on purpose: this demo job always fails)")

    return Flaky


async def _watch(handles: list[Any], out: TextIO, interval: float = 0.1) -> None:
    """Show one line per job until all finish: redrawn in place on a terminal, else printed at the end."""
    live = out.isatty() and os.environ.get("TERM") != "dumb"
    drawn = 0
    while True:
        lines = [_job_line(h) for h in handles]
        finished = all(h.current_status.is_terminal for h in handles)
        if live:
            out.write(f"\x1b[{drawn}F" if drawn else "")
            out.write("".join(f"\x1b[2K{line}\n" for line in lines))
            out.flush()
            drawn = len(lines)
        if finished:
            if not live:
                out.write("".join(f"{line}\n" for line in lines))
            return
        await asyncio.sleep(interval)


def _job_line(handle: Any) -> str:
    progress = handle.current_progress
    fraction = progress.fraction if progress is not None else None
    bar = "" if fraction is None else f"[{'#' * round(fraction * 20):<20}] {fraction * 100:3.0f}% "
    text = _progress_text(progress) if progress is not None else ""
    error = f" · {handle.error}" if handle.error else ""
    return f"{handle.name:<22} {handle.current_status.value:<9} {bar}{text}{error}"


# --- formatting --------------------------------------------------------------------------------


def _iso(ts: float | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat()


def _stamp(ts: float | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 60:
        return f"{value:.2f} s"
    minutes, seconds = divmod(round(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


def _metric(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _priority(value: int) -> str:
    try:
        return Priority(value).name.lower()
    except ValueError:
        return str(value)


def _progress_text(progress: Progress | None) -> str:
    return "" if progress is None else progress.describe()


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _quote(path: Path) -> str:
    text = str(path)
    return f"'{text}'" if any(c in text for c in " '\"$") else text


def _record_dict(record: JobRecord) -> dict[str, Any]:
    p = record.progress
    return {
        "id": record.id, "name": record.name, "version": record.version, "status": record.status.value,
        "pause_reason": record.pause_reason, "priority": record.priority, "parent_id": record.parent_id,
        "initiated_by": record.initiated_by, "context": record.context,
        "created_at": _iso(record.created_at), "started_at": _iso(record.started_at),
        "paused_at": _iso(record.paused_at), "finished_at": _iso(record.finished_at),
        "progress": None if p is None else {k: v for k, v in p.to_plain().items() if v not in (None, {})},
        "metrics": record.metrics, "error": record.error,
    }


def _write_json_object(out: TextIO, item: dict[str, Any]) -> None:
    out.write(json.dumps(item, indent=2, default=str) + "\n")


def _print_pairs(pairs: list[tuple[str, Any]]) -> None:
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        print(f"{key + ':':<{width + 1}} {value}")


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())

