"""Write the example notebooks from the Python source below and execute them to store outputs.

    .venv/bin/python tools/build_notebooks.py                 # every notebook
    .venv/bin/python tools/build_notebooks.py 02_phased       # some of them
    .venv/bin/python tools/build_notebooks.py --no-execute    # write without outputs

Each notebook is a list of markdown and code cells. Cell ids are derived from the notebook
name and the cell's position, and no timing metadata is kept, so a rebuild changes only what
really changed. The notebooks run in notebooks/ (the kernel's working directory), exactly as
nbval runs them.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
IGNORE = "# NBVAL_IGNORE_OUTPUT"  # nbval: run the cell, do not compare its output
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def md(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(textwrap.dedent(text).strip())


def code(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(textwrap.dedent(text).strip())


# --- 01 quick start ------------------------------------------------------------------------------

QUICKSTART = [
    md("""
    # Quick start

    A *job* is a dataclass with an `async def run(self, ctx)`. You dispatch it from a cell, the
    cell returns at once, and the job runs in the background on the kernel's own event loop,
    with a live progress bar and **Pause / Resume / Cancel** buttons. Its state lives in one
    SQLite file per *library* folder, so it survives the kernel.

    Every notebook here uses its own library under `libraries/` and deletes it first, so each
    run starts from nothing.
    """),
    code("""
    import asyncio
    import shutil
    from dataclasses import dataclass
    from pathlib import Path

    import sdjobs_nb as sj

    LIBRARY = Path("libraries/quickstart")
    shutil.rmtree(LIBRARY, ignore_errors=True)
    """),
    md("""
    ## Define a job

    The dataclass fields are the job's state. `NAME` is how the library finds the class again
    when it resumes the job; `VERSION` is stored with the state. Inside `run`:

    - `ctx.check_interrupted()` is where a pause or cancel takes effect,
    - `ctx.report_count_progress(...)` feeds the progress bar (a cheap call, use it freely),
    - `ctx.checkpoint()` saves the fields now; a resume starts from the newest save.

    `done` is part of the state, so a resumed job skips the lines it already counted.
    """),
    code("""
    @dataclass
    class CountWords(sj.Job):
        NAME = "count_words"
        VERSION = 1

        lines: list[str]
        done: int = 0
        words: int = 0

        async def run(self, ctx: sj.JobContext) -> int:
            for line in self.lines[self.done:]:
                await ctx.check_interrupted()
                await asyncio.sleep(0.01)  # stands in for real I/O
                self.words += len(line.split())
                self.done += 1
                ctx.report_count_progress(self.done, len(self.lines))
                if self.done % 25 == 0:
                    await ctx.checkpoint()
            return self.words


    lines = [f"line {i} " + "word " * (i % 7) for i in range(150)]
    """),
    md("""
    ## Open a library and dispatch

    `JobManager.open` creates the folder and its `jobs.db` if needed. Awaiting it works in a
    notebook because Jupyter runs cells on an event loop (top-level `await`).
    """),
    code("""
    manager = await sj.JobManager.open(LIBRARY)
    sorted(path.name for path in LIBRARY.glob("*.db"))
    """),
    md("""
    `dispatch` stores the job and returns its handle at once. A handle as the last expression
    of a cell shows the live widget: progress, rate, ETA, and the buttons. (The widget's
    numbers change while it runs, so this is the one cell whose output the notebook test
    does not compare.)
    """),
    code(f"""
    {IGNORE}
    handle = await manager.dispatch(CountWords(lines), initiated_by="quick start")
    handle
    """),
    md("""
    The kernel is free while the job runs: other cells execute, and the job advances whenever
    a cell awaits or the kernel is idle. `await handle.wait()` returns the job's result (or
    raises its error).
    """),
    code("""
    words = await handle.wait()
    print(words, handle.current_status.value)
    """),
    code("""
    assert words == sum(len(line.split()) for line in lines)
    """),
    md("""
    ## History

    Every finished job leaves one row in the library's history, returned as a pandas
    DataFrame, newest first. A few of its columns:
    """),
    code("""
    history = await manager.history()
    history[["name", "status", "initiated_by", "items", "checkpoints", "non_critical_errors"]]
    """),
    md("""
    Timing columns (`created_at`, `started_at`, `finished_at`, `duration_s`, `queue_wait_s`)
    are there too:
    """),
    code(f"""
    {IGNORE}
    history[["name", "started_at", "duration_s", "queue_wait_s"]]
    """),
    md("""
    Close the manager when you are done. A job still running would be paused and saved first,
    and resume the next time the library is opened.
    """),
    code("""
    await manager.close()
    """),
]


# --- 02 phased ------------------------------------------------------------------------------------

PHASED = [
    md("""
    # Phased execution: pause in the middle, resume in the right phase

    Many jobs run in phases: first find the work, then do it, then tidy up. Keep the phase in
    the job's state (a dataclass field) and `run` simply continues from whichever phase was
    saved. This notebook pauses such a job in the middle of its processing phase and resumes
    it there, without discovering again.
    """),
    code("""
    import asyncio
    import contextlib
    import shutil
    import sqlite3
    import zlib
    from dataclasses import dataclass, field
    from pathlib import Path

    import sdjobs_nb as sj

    LIBRARY = Path("libraries/phased")
    INBOX = Path("libraries/phased-inbox")
    shutil.rmtree(LIBRARY, ignore_errors=True)
    shutil.rmtree(INBOX, ignore_errors=True)
    INBOX.mkdir(parents=True)
    for i in range(40):
        (INBOX / f"report-{i:02d}.txt").write_text(f"report {i}\\n" * (i + 1))
    """),
    md("""
    ## The job

    `phase` is a field, so it is saved with every checkpoint and at the pause. Each phase ends
    by naming the next one and checkpointing. `phases_entered` records each time `run` enters
    a phase: it will show where the resumed run picked up.
    """),
    code("""
    @dataclass
    class FileReports(sj.Job):
        NAME = "file_reports"

        inbox: str
        phase: str = "discovery"
        found: list[str] = field(default_factory=list)
        processed: int = 0
        checksum: int = 0
        phases_entered: list[str] = field(default_factory=list)

        async def run(self, ctx: sj.JobContext) -> dict:
            steps = {"discovery": self.discover, "processing": self.process, "cleanup": self.clean_up}
            while self.phase != "done":
                self.phases_entered.append(self.phase)
                await steps[self.phase](ctx)
            return {"files": len(self.found), "checksum": self.checksum}

        async def discover(self, ctx: sj.JobContext) -> None:
            self.found = sorted(str(p) for p in Path(self.inbox).glob("*.txt"))
            ctx.report_structured_progress("discovery", {"found": len(self.found)})
            await self.next_phase(ctx, "processing")

        async def process(self, ctx: sj.JobContext) -> None:
            while self.processed < len(self.found):
                await ctx.check_interrupted()
                data = await ctx.run_blocking(Path(self.found[self.processed]).read_bytes)
                await asyncio.sleep(0.03)  # stands in for slow work on each file
                self.checksum = zlib.crc32(data, self.checksum)
                self.processed += 1
                ctx.report_structured_progress("processing", {"processed": self.processed, "of": len(self.found)})
                await ctx.checkpoint()
            await self.next_phase(ctx, "cleanup")

        async def clean_up(self, ctx: sj.JobContext) -> None:
            for path in self.found:
                Path(path).unlink(missing_ok=True)
            ctx.report_structured_progress("cleanup", {"removed": len(self.found)})
            await self.next_phase(ctx, "done")

        async def next_phase(self, ctx: sj.JobContext, phase: str) -> None:
            self.phase = phase
            await ctx.checkpoint()
    """),
    md("""
    The library keeps each job's saved fields in `jobs.db` as a msgpack map of field names.
    Any process may read that file; `sj.registry.create` turns a stored row back into the job
    object, so we can look at exactly what a resume would start from.
    """),
    code("""
    def stored_state(job_id: str) -> sj.Job:
        \"\"\"The job as last saved in jobs.db (read-only; the manager keeps running).\"\"\"
        uri = f"file:{LIBRARY / 'jobs.db'}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            name, version, data = db.execute("SELECT name, version, data FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return sj.registry.create(name, version, data)
    """),
    md("""
    ## Run it, and pause it while it processes

    `handle.progress()` yields progress snapshots as they come (a slow reader only skips
    snapshots, it never falls behind). We wait for the tenth file of the processing phase,
    then pause. `pause()` returns once the job has stopped at its next `check_interrupted()`
    and its state is saved.
    """),
    code(f"""
    {IGNORE}
    manager = await sj.JobManager.open(LIBRARY)
    handle = await manager.dispatch(FileReports(str(INBOX)))
    handle
    """),
    code("""
    async for progress in handle.progress():
        if progress.phase == "processing" and progress.data["processed"] >= 10:
            break
    await handle.pause()

    saved = stored_state(handle.id)
    print("status:", handle.current_status.value, "| reason:", handle.pause_reason)
    print("saved phase:", saved.phase)
    print("phases entered so far:", saved.phases_entered)
    print("part-way through the files:", 10 <= saved.processed < len(saved.found))
    """),
    md("""
    While it is paused nothing runs; the files not yet processed are still in the inbox.

    ## Resume

    `resume()` re-creates the job from its saved fields, so `run` starts again with
    `phase == "processing"` and `processed` where it stopped.
    """),
    code("""
    await handle.resume()
    result = await handle.wait()
    print(result)
    """),
    code("""
    saved = stored_state(handle.id)
    print("saved phase:", saved.phase)
    print("phases entered:", saved.phases_entered)
    print("files left in the inbox:", len(list(INBOX.iterdir())))
    """),
    md("""
    Discovery ran once. Processing was entered twice: once before the pause and once by the
    resumed run, which went on from the saved file count. The checksum equals that of one
    uninterrupted pass over the files:
    """),
    code("""
    expected = 0
    for i in range(40):
        expected = zlib.crc32((f"report {i}\\n" * (i + 1)).encode(), expected)
    print(result["checksum"] == expected)
    """),
    code("""
    await manager.close()
    """),
]


# --- 03 batched -----------------------------------------------------------------------------------

BATCHED = [
    md("""
    # Batched processing: thousands of items, a checkpoint per batch

    Saving state after every item of a big job costs more than the item itself. The usual
    shape is batches: take a batch, do its work off the event loop with `ctx.run_blocking`,
    update the counters, checkpoint. A pause or a crash then loses at most one batch.

    Items that cannot be processed should not fail the whole job: report them with
    `ctx.report_non_critical_error(message)`. They are stored, counted and shown on the
    widget, and the job goes on.
    """),
    code("""
    import asyncio
    import itertools
    import shutil
    from dataclasses import dataclass
    from pathlib import Path

    import sdjobs_nb as sj

    LIBRARY = Path("libraries/batched")
    SOURCE = Path("libraries/batched-readings.csv")
    shutil.rmtree(LIBRARY, ignore_errors=True)
    SOURCE.parent.mkdir(exist_ok=True)
    """),
    md("""
    The input: a CSV of 5,000 sensor readings, ten of which are broken.
    """),
    code("""
    rows = []
    for i in range(5000):
        value = "n/a" if i % 500 == 123 else f"{(i * 37) % 1000 / 10:.1f}"
        rows.append(f"sensor-{i % 8},{value}")
    SOURCE.write_text("\\n".join(rows) + "\\n")
    print(len(rows), "rows,", sum("n/a" in row for row in rows), "broken")
    """),
    md("""
    ## The job

    `parse_batch` is ordinary blocking code: it reads one slice of the file and parses it.
    The job sends it to a thread with `ctx.run_blocking`, so the notebook stays responsive
    however heavy the batch is. The state is just the position in the file and the running
    totals.
    """),
    code("""
    def parse_batch(path: str, start: int, size: int) -> tuple[int, float, list[tuple[int, str]]]:
        \"\"\"Parse rows [start, start + size) of the CSV: (good rows, sum of values, bad rows).\"\"\"
        good, total, bad = 0, 0.0, []
        with open(path) as f:
            for number, line in enumerate(itertools.islice(f, start, start + size), start + 1):
                try:
                    total += float(line.rsplit(",", 1)[1])
                    good += 1
                except ValueError:
                    bad.append((number, line.strip()))
        return good, total, bad


    @dataclass
    class ImportReadings(sj.Job):
        NAME = "import_readings"

        path: str
        rows: int
        batch_size: int = 250
        position: int = 0
        imported: int = 0
        total: float = 0.0

        async def run(self, ctx: sj.JobContext) -> dict:
            while self.position < self.rows:
                await ctx.check_interrupted()
                size = min(self.batch_size, self.rows - self.position)
                good, total, bad = await ctx.run_blocking(parse_batch, self.path, self.position, size)
                for number, line in bad:
                    ctx.report_non_critical_error(f"row {number}: cannot parse {line!r}")
                self.imported += good
                self.total += total
                self.position += size
                ctx.report_count_progress(self.position, self.rows)
                await ctx.checkpoint()
                await asyncio.sleep(0.05)  # stands in for writing the batch somewhere
            return {"imported": self.imported, "mean": round(self.total / self.imported, 3)}
    """),
    md("""
    ## Run it

    The widget shows the count, the rate, the ETA and the number of non-critical errors so
    far.
    """),
    code(f"""
    {IGNORE}
    manager = await sj.JobManager.open(LIBRARY)
    handle = await manager.dispatch(ImportReadings(str(SOURCE), rows=len(rows)))
    handle
    """),
    code("""
    result = await handle.wait()
    print(result)
    """),
    md("""
    ## What went wrong, and how fast it went

    The broken rows were recorded, not fatal. `manager.errors(job_id)` returns them as
    `(time, message)` pairs, oldest first:
    """),
    code("""
    errors = await manager.errors(handle.id)
    print(len(errors), "non-critical errors")
    for _, message in errors[:3]:
        print(message)
    """),
    md("""
    The job's metrics count the items (from the count progress), the checkpoints (one per
    batch) and the non-critical errors:
    """),
    code("""
    metrics = handle.metrics
    print({key: metrics[key] for key in ("items", "checkpoints", "non_critical_errors")})
    """),
    md("""
    Its throughput is items over elapsed time. (The numbers depend on the machine, so the
    notebook test does not compare this cell.)
    """),
    code(f"""
    {IGNORE}
    print(f"{{metrics['items']:,}} items in {{metrics['elapsed_seconds']:.2f}} s: "
          f"{{metrics['items'] / metrics['elapsed_seconds']:,.0f}} items/s")
    """),
    md("""
    The same numbers are in the library's history (one row per finished job):
    """),
    code(f"""
    {IGNORE}
    row = (await manager.history(name="import_readings")).iloc[0]
    print(f"{{row['items']:,}} items in {{row['duration_s']:.2f}} s: {{row['items'] / row['duration_s']:,.0f}} items/s")
    """),
    code("""
    await manager.close()
    """),
]


# --- 04 children ----------------------------------------------------------------------------------

CHILDREN = [
    md("""
    # Child jobs: fan out, gather

    A job can split its work into child jobs with `ctx.spawn_children([...])` and collect their
    results, in order, with `ctx.wait_for_children(ids)`. Children are ordinary jobs: each has
    its own progress, state and checkpoints, and can be paused or cancelled on its own. A
    parent that waits does not hold one of the manager's `max_concurrent` slots, so children
    never wait for a slot their parent keeps.

    The dashboard shows every job of a library, each child indented under its parent.
    """),
    code("""
    import asyncio
    import collections
    import shutil
    from dataclasses import dataclass, field
    from pathlib import Path

    import sdjobs_nb as sj

    LIBRARY = Path("libraries/children")
    shutil.rmtree(LIBRARY, ignore_errors=True)

    VOCABULARY = "alpha beta gamma delta epsilon zeta eta theta".split()
    documents = [
        " ".join(VOCABULARY[(i * j) % len(VOCABULARY)] for j in range(40 + i % 13))
        for i in range(200)
    ]
    """),
    md("""
    ## The jobs

    `CountShard` counts the words of some documents, checkpointing every ten. `WordCount`
    splits the documents into shards, spawns one `CountShard` per shard, waits for them and
    adds up their counts, most frequent first. If the parent is paused or interrupted and later resumed, its second
    run calls `spawn_children` again and gets the same children back, not new ones.
    """),
    code("""
    @dataclass
    class CountShard(sj.Job):
        NAME = "count_shard"

        documents: list[str]
        done: int = 0
        counts: dict[str, int] = field(default_factory=dict)

        async def run(self, ctx: sj.JobContext) -> dict[str, int]:
            for text in self.documents[self.done:]:
                await ctx.check_interrupted()
                await asyncio.sleep(0.01)  # stands in for fetching the document
                for word in text.split():
                    self.counts[word] = self.counts.get(word, 0) + 1
                self.done += 1
                ctx.report_count_progress(self.done, len(self.documents))
                if self.done % 10 == 0:
                    await ctx.checkpoint()
            return self.counts


    @dataclass
    class WordCount(sj.Job):
        NAME = "word_count"

        documents: list[str]
        shards: int = 4

        async def run(self, ctx: sj.JobContext) -> dict[str, int]:
            size = -(-len(self.documents) // self.shards)
            shards = [CountShard(self.documents[i:i + size]) for i in range(0, len(self.documents), size)]
            ids = await ctx.spawn_children(shards)
            ctx.report_structured_progress("waiting for shards", {"shards": len(ids)})
            results = await ctx.wait_for_children(ids)
            total = collections.Counter()
            for counts in results:
                total.update(counts)
            return dict(sorted(total.items(), key=lambda item: (-item[1], item[0])))
    """),
    md("""
    ## The dashboard

    `manager.dashboard()` is one widget for the whole library. It gets a row for every job
    dispatched while it is shown, children under their parent, and a summary of how many jobs
    are in each state. *All* keeps finished jobs in the list (*Active* shows only unfinished
    ones). With `max_concurrent=2`, two shards run at a time while the other two wait in the
    queue.
    """),
    code(f"""
    {IGNORE}
    manager = await sj.JobManager.open(LIBRARY, max_concurrent=2)
    board = manager.dashboard()
    board.filter.value = "all"
    board
    """),
    code("""
    handle = await manager.dispatch(WordCount(documents))
    counts = await handle.wait()
    print(counts)
    """),
    md("""
    The dashboard above now shows the finished tree. The same tree is in the history: each
    child's `parent_id` is its parent's id.
    """),
    code("""
    history = await manager.history()
    names = dict(zip(history["id"], history["name"]))
    history[["name", "status", "items"]].assign(parent=history["parent_id"].map(names))
    """),
    md("""
    The parent's result equals a count done in one go:
    """),
    code("""
    expected = collections.Counter(word for text in documents for word in text.split())
    print(counts == expected)
    """),
    code("""
    await manager.close()
    """),
]


# --- 05 crash and resume --------------------------------------------------------------------------

CRASH = [
    md("""
    # Crash and resume

    A job's state is in `jobs.db`, not in the process that runs it. Here a separate Python
    process (`worker.py`, next to this notebook) runs a checkpointing job on a library; we
    kill that process with `SIGKILL` in the middle of the job, then open the same library in
    this notebook and resume the job from its last checkpoint.

    `worker.py` defines the job, `SumOfSquares`: it adds up `i * i` for `i` below `n`, a
    hundredth of a second per number, and checkpoints every 25 numbers. Importing it here
    registers the class, which the library needs to re-create the job.
    """),
    code("""
    import asyncio
    import shutil
    import signal
    import subprocess
    import sys
    from pathlib import Path

    import sdjobs_nb as sj
    from worker import SumOfSquares

    LIBRARY = Path("libraries/crash")
    shutil.rmtree(LIBRARY, ignore_errors=True)
    """),
    md("""
    ## Start the worker

    It opens the library, dispatches `SumOfSquares(n=400)`, prints the job id and waits for
    the job.
    """),
    code("""
    worker = subprocess.Popen(
        [sys.executable, "worker.py", str(LIBRARY), "400"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    job_id = worker.stdout.readline().split()[-1]
    print("worker running:", worker.poll() is None)
    """),
    md("""
    While the worker owns the library, this kernel cannot open it to run jobs; the error names
    the process that holds it. A read-only view works, and lets us watch the job's progress as
    the worker saves it.
    """),
    code("""
    try:
        await sj.JobManager.open(LIBRARY)
    except sj.LibraryLocked as error:
        print("LibraryLocked, held by the worker:", str(worker.pid) in str(error))
    """),
    code("""
    async with sj.JobManager.open(LIBRARY, read_only=True) as view:
        while True:
            record = await view.record(job_id)
            if record.progress is not None and record.progress.current >= 100:
                break
            await asyncio.sleep(0.05)
    print(record.name, record.status.value)
    """),
    md("""
    ## Kill it

    `SIGKILL` gives the worker no chance to clean up or save anything: this is what a crash,
    an out-of-memory kill or a pulled plug looks like to the library.
    """),
    code("""
    worker.send_signal(signal.SIGKILL)
    print("exit code:", worker.wait())
    """),
    md("""
    ## Open the library here

    The owner lock died with the worker, so this kernel can open the library now. At open, a
    job recorded as running is one whose process died: it is marked **paused**, with the
    reason `interrupted`.
    """),
    code("""
    manager = await sj.JobManager.open(LIBRARY)
    handle = manager.get(job_id)
    print(handle.current_status.value, handle.pause_reason)
    print("progress saved before the kill:", 0 < handle.current_progress.current < 400)
    """),
    md("""
    `resume_interrupted()` resumes every job a crash (or a `close()`) left paused; jobs a user
    paused stay paused. The job continues from its last checkpoint: the numbers after it
    were lost with the worker, and are counted again.
    """),
    code("""
    resumed = await manager.resume_interrupted()
    print("resumed:", [h.name for h in resumed])
    total = await handle.wait()
    print(total)
    """),
    md("""
    The result is what an uninterrupted run returns, the plain sum: nothing was lost and
    nothing was counted twice.
    """),
    code("""
    print(total == sum(i * i for i in range(400)))
    """),
    code("""
    await manager.close()
    """),
]


# --- 06 history -----------------------------------------------------------------------------------

HISTORY = [
    md("""
    # History analysis: DataFrames and plots

    Every finished job (completed, failed or cancelled) leaves one row in the library's
    `job_history` table. The manager returns it as typed pandas DataFrames and matplotlib
    figures. The queries run in SQLite, so they stay quick on a library with a million rows.
    """),
    code("""
    %matplotlib inline
    import asyncio
    import shutil
    from dataclasses import dataclass
    from pathlib import Path

    import sdjobs_nb as sj

    LIBRARY = Path("libraries/history")
    shutil.rmtree(LIBRARY, ignore_errors=True)
    """),
    md("""
    ## Some history to look at

    Three kinds of job: quick image resizes, page fetches of which every fourth fails, and
    model trainings that take a few epochs. One more training is cancelled while it runs.
    """),
    code("""
    @dataclass
    class ResizeImage(sj.Job):
        NAME = "resize_image"
        image: int

        async def run(self, ctx: sj.JobContext) -> int:
            await asyncio.sleep(0.02 + 0.01 * (self.image % 5))
            ctx.report_count_progress(1, 1)
            return self.image


    @dataclass
    class FetchPage(sj.Job):
        NAME = "fetch_page"
        page: int

        async def run(self, ctx: sj.JobContext) -> str:
            await asyncio.sleep(0.05)
            if self.page % 4 == 3:
                raise ConnectionError(f"page {self.page}: server returned 503")
            ctx.report_count_progress(1, 1)
            return f"page {self.page}"


    @dataclass
    class TrainModel(sj.Job):
        NAME = "train_model"
        epochs: int
        done: int = 0

        async def run(self, ctx: sj.JobContext) -> int:
            while self.done < self.epochs:
                await ctx.check_interrupted()
                await asyncio.sleep(0.1)
                self.done += 1
                ctx.report_count_progress(self.done, self.epochs)
                await ctx.checkpoint()
            return self.done
    """),
    code("""
    manager = await sj.JobManager.open(LIBRARY, max_concurrent=4)
    handles = await manager.dispatch_many(
        [ResizeImage(i) for i in range(24)]
        + [FetchPage(i) for i in range(12)]
        + [TrainModel(epochs) for epochs in (3, 5, 8)],
        initiated_by="notebook",
    )
    endless = await manager.dispatch(TrainModel(epochs=1000), initiated_by="scheduler")
    outcomes = await asyncio.gather(*(h.wait() for h in handles), return_exceptions=True)
    await endless.cancel()
    print(sum(not isinstance(o, Exception) for o in outcomes), "completed,",
          sum(isinstance(o, sj.JobFailed) for o in outcomes), "failed")
    """),
    md("""
    ## `history()`

    One row per finished job, newest first, with typed columns: ids and names as strings,
    the status as a category, times as timezone-aware datetimes, durations in seconds, and the
    job's final counts.
    """),
    code("""
    history = await manager.history()
    print(len(history), "rows")
    history.dtypes
    """),
    code("""
    history["status"].value_counts()
    """),
    md("""
    Filters are keyword arguments: `name`, `status` (one or a list), `since` and `until`
    (datetimes, or epoch seconds), and `limit`.
    """),
    code("""
    failed = await manager.history(name="fetch_page", status="failed")
    failed[["name", "status", "error"]].sort_values("error", ignore_index=True)
    """),
    code("""
    latest = await manager.history(status=["completed", "cancelled"], limit=5)
    print(len(latest), "rows;", "newest first:", latest["finished_at"].is_monotonic_decreasing)
    """),
    code("""
    cancelled = await manager.history(status="cancelled")
    cancelled[["name", "status", "initiated_by", "error"]]
    """),
    md("""
    It is an ordinary DataFrame, so pandas does the rest. Here, the slowest jobs (their
    durations depend on the machine, so this output is not compared):
    """),
    code(f"""
    {IGNORE}
    history.nlargest(5, "duration_s")[["name", "status", "started_at", "duration_s", "queue_wait_s"]]
    """),
    md("""
    ## `metrics()`

    One row per job name: counts by outcome, the failure rate, duration statistics (mean,
    median, 95th percentile, max), throughput in items per second, and the mean time spent
    queued. `by=` groups by another column, such as `status` or `initiated_by`.
    """),
    code("""
    metrics = await manager.metrics()
    metrics[["count", "completed", "failed", "cancelled", "failure_rate"]]
    """),
    code(f"""
    {IGNORE}
    metrics[["duration_mean_s", "duration_median_s", "duration_p95_s", "duration_max_s", "items_per_s", "queue_wait_mean_s"]]
    """),
    code("""
    (await manager.metrics(by="initiated_by"))[["count", "completed", "failed", "cancelled"]]
    """),
    md("""
    ## Plots

    `plot_timeline()` draws one bar per job from its start to its end, coloured by status
    (green completed, red failed, grey cancelled), children under their parent. It returns a
    matplotlib `Figure`, which the notebook shows.
    """),
    code("""
    await manager.plot_timeline()
    """),
    md("""
    `plot_durations()` draws the distribution of durations per job name (completed jobs by
    default; `kind="hist"` for histograms).
    """),
    code("""
    await manager.plot_durations()
    """),
    code("""
    await manager.close()
    """),
]


# --- 07 scale out ---------------------------------------------------------------------------------

SCALE_OUT = [
    md("""
    # Scale out: `run_blocking` on a Dask cluster

    The manager and its library stay in the notebook; heavy work goes elsewhere. Whatever a
    job passes to `ctx.run_blocking(fn, *args)` runs on the manager's executor: a thread pool
    by default, or any `concurrent.futures.Executor`, or a `dask.distributed.Client`.

    Here a local cluster of two worker processes stands in for a real one; with a remote
    cluster only the `Client(...)` line changes.
    """),
    code("""
    import asyncio
    import os
    import shutil
    from dataclasses import dataclass, field
    from pathlib import Path

    from dask.distributed import Client, LocalCluster

    import sdjobs_nb as sj

    LIBRARY = Path("libraries/scale-out")
    shutil.rmtree(LIBRARY, ignore_errors=True)
    """),
    code("""
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None,
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},  # its small HTTP server: any free port
    )
    client = Client(cluster)
    print(len(client.scheduler_info()["workers"]), "workers")
    """),
    md("""
    ## A CPU-bound job

    `count_primes` is plain blocking Python. Run in the kernel, it would freeze the notebook
    (the event loop cannot run widgets or other jobs while it computes). The job sends one
    chunk per call to `run_blocking`, several at once with `asyncio.gather`, and checkpoints
    the finished chunks, so a pause or crash loses at most the chunks in flight.
    """),
    code("""
    def count_primes(lo: int, hi: int) -> tuple[int, int]:
        \"\"\"Count the primes in [lo, hi) by trial division; also return the worker's pid.\"\"\"
        count = 0
        for n in range(max(lo, 2), hi):
            if all(n % d for d in range(2, int(n**0.5) + 1)):
                count += 1
        return count, os.getpid()


    @dataclass
    class PrimeCount(sj.Job):
        NAME = "prime_count"

        limit: int
        chunk: int
        counts: dict[int, int] = field(default_factory=dict)  # chunk start -> primes in it
        pids: list[int] = field(default_factory=list)  # the processes that computed them

        async def run(self, ctx: sj.JobContext) -> dict:
            starts = [lo for lo in range(0, self.limit, self.chunk) if lo not in self.counts]
            for i in range(0, len(starts), 4):  # four chunks in flight at a time
                await ctx.check_interrupted()
                batch = starts[i:i + 4]
                results = await asyncio.gather(*(ctx.run_blocking(count_primes, lo, lo + self.chunk) for lo in batch))
                for lo, (count, pid) in zip(batch, results):
                    self.counts[lo] = count
                    self.pids.append(pid)
                ctx.report_count_progress(len(self.counts), -(-self.limit // self.chunk))
                await ctx.checkpoint()
            return {"primes": sum(self.counts.values()), "pids": sorted(set(self.pids))}
    """),
    md("""
    Pass the client as the manager's executor:
    """),
    code(f"""
    {IGNORE}
    manager = await sj.JobManager.open(LIBRARY, executor=client)
    handle = await manager.dispatch(PrimeCount(limit=200_000, chunk=12_500))
    handle
    """),
    code("""
    result = await handle.wait()
    print(result["primes"], "primes below 200,000")
    """),
    md("""
    The chunks ran in the cluster's worker processes, not in this kernel:
    """),
    code("""
    worker_pids = set(client.run(os.getpid).values())
    print("computed by cluster workers:", set(result["pids"]) <= worker_pids)
    print("computed in this kernel:", os.getpid() in result["pids"])
    """),
    code("""
    await manager.close()
    client.close()
    cluster.close()
    """),
]


BOOKS = {
    "01_quickstart": QUICKSTART,
    "02_phased": PHASED,
    "03_batched": BATCHED,
    "04_children": CHILDREN,
    "05_crash_resume": CRASH,
    "06_history": HISTORY,
    "07_scale_out": SCALE_OUT,
}


# The widgets' final state, saved in the notebook so a viewer without a kernel shows the finished
# bars and dashboard. (nbclient alone would save only what changed while each widget's own cell
# ran, and these widgets keep changing from background tasks after their cell returns.)
WIDGET_STATE_PROBE = "import ipywidgets, json; print(json.dumps(ipywidgets.Widget.get_manager_state(drop_defaults=True)))"


def build(name: str, cells: list[nbformat.NotebookNode], execute: bool) -> float:
    """Write notebooks/<name>.ipynb, executed unless `execute` is False; return the seconds taken."""
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": KERNELSPEC, "language_info": {"name": "python"}})
    for index, cell in enumerate(cells):
        cell = nbformat.from_dict(dict(cell))
        cell["id"] = f"{name.split('_')[0]}-{index:02d}"
        nb.cells.append(cell)
    started = time.monotonic()
    if execute:
        nb.cells.append(code(WIDGET_STATE_PROBE))
        client = NotebookClient(nb, timeout=120, kernel_name="python3", record_timing=False,
                                store_widget_state=False, resources={"metadata": {"path": str(NOTEBOOKS)}})
        client.execute()
        probe = nb.cells.pop()
        state = json.loads("".join(out.text for out in probe.outputs if out.output_type == "stream"))
        if state["state"]:
            nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": state}
    nb.metadata["language_info"] = {"name": "python"}  # the exact Python version is noise here
    nbformat.validate(nb)
    nbformat.write(nb, NOTEBOOKS / f"{name}.ipynb")
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebooks to build (default: all)")
    parser.add_argument("--no-execute", action="store_true", help="write the cells without running them")
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(BOOKS)
    if unknown:
        parser.error(f"unknown notebooks: {', '.join(sorted(unknown))}; known: {', '.join(BOOKS)}")
    for name in args.names or BOOKS:
        seconds = build(name, BOOKS[name], execute=not args.no_execute)
        print(f"{name}.ipynb: {seconds:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
