"""W7 queue scaling and library growth (ours only).

Planned measurement: queue ``queued`` jobs (not yet running) and report the
resident memory added per queued job (``bytes/job``, target < 2 KB = 2048),
plus the dispatch rate with a deep queue divided by the rate with a shallow one
(``rate_ratio`` = jobs/s with ``queued`` jobs waiting / jobs/s with 1,000
waiting; "flat" is checked as >= 0.8).  Return
``{"bytes/job": ..., "rate_ratio": ...}``.  Memory is best measured in a child
process (``tracemalloc`` or RSS delta) so earlier workloads do not skew it.

Library growth (issue 17): ``ours_growth`` runs ``finished`` jobs with a 50 KB state that
checkpoint 3 times, twice into one library, and reports the bytes jobs.db grew by per finished
job in the second run (``bytes/job``) and the file size per job at the end
(``library_bytes/job``); ``plain_states`` stores the same states once each in a plain SQLite
table (``bytes/job``). A finished job should cost a history row, not its state: target
``ours_growth bytes/job <= 0.1 x plain_states bytes/job`` (it was about 2x when finished jobs
kept their state and checkpoint).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ._harness import Case, Contender, Ctx, Workload, ours_api


def cases(quick: bool) -> list[Case]:
    n = 2_000 if quick else 100_000
    finished = 30 if quick else 200
    return [Case(f"{n:,} queued; {finished} finished x 50 KB", {"queued": n, "finished": finished})]


def child(mode: str, workdir, size: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench._w7_child", mode, str(workdir), str(size)],
                         capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ours(ctx: Ctx) -> dict[str, float]:
    """Queued jobs (one slot held by a running job): RSS added per job, last/first 10k dispatch rate."""
    ours_api("sdjobs_nb", "JobManager")
    return child("queue", ctx.workdir, ctx["queued"])


async def ours_growth(ctx: Ctx) -> dict[str, float]:
    """jobs.db bytes per finished job whose state is 50 KB (3 checkpoints each)."""
    ours_api("sdjobs_nb", "JobManager")
    from ._w7_growth import growth

    return await growth(ctx.workdir, ctx["finished"])


def plain_states(ctx: Ctx) -> float:
    from ._w7_growth import plain_states as measure

    return measure(ctx.workdir, ctx["finished"])


def contenders() -> dict[str, Contender]:
    return {"ours": Contender("ours", ours, "bytes/job",
                              "memory per queued job and dispatch-rate flatness"),
            "ours_growth": Contender("ours_growth", ours_growth, "bytes/job",
                                     "jobs.db growth per finished job with a 50 KB state, 3 checkpoints"),
            "plain_states": Contender("plain_states", plain_states, "bytes/job",
                                      "the same 50 KB states stored once in a plain SQLite table")}


WORKLOAD = Workload(
    id="W7", title="queue scaling and library growth", contenders=contenders, cases=cases,
    baseline=None, targets=["ours bytes/job < 2048", "ours rate_ratio >= 0.8",
                            "ours_growth bytes/job <= 0.1 x plain_states bytes/job"],
    description=__doc__ or "",
)
