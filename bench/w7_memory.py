"""W7 queue scaling (ours only - reserved slot).

Planned measurement: queue ``queued`` jobs (not yet running) and report the
resident memory added per queued job (``bytes/job``, target < 2 KB = 2048),
plus the dispatch rate with a deep queue divided by the rate with a shallow one
(``rate_ratio`` = jobs/s with ``queued`` jobs waiting / jobs/s with 1,000
waiting; "flat" is checked as >= 0.8).  Return
``{"bytes/job": ..., "rate_ratio": ...}``.  Memory is best measured in a child
process (``tracemalloc`` or RSS delta) so earlier workloads do not skew it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ._harness import Case, Contender, Ctx, Workload, ours_api


def cases(quick: bool) -> list[Case]:
    n = 2_000 if quick else 100_000
    return [Case(f"{n:,} queued", {"queued": n})]


def child(mode: str, workdir, size: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench._w7_child", mode, str(workdir), str(size)],
                         capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ours(ctx: Ctx) -> dict[str, float]:
    """Queued jobs (one slot held by a running job): RSS added per job, last/first 10k dispatch rate."""
    ours_api("sdjobs_nb", "JobManager")
    return child("queue", ctx.workdir, ctx["queued"])


def contenders() -> dict[str, Contender]:
    return {"ours": Contender("ours", ours, "bytes/job",
                              "memory per queued job and dispatch-rate flatness")}


WORKLOAD = Workload(
    id="W7", title="queue scaling", contenders=contenders, cases=cases,
    baseline=None, targets=["ours bytes/job < 2048", "ours rate_ratio >= 0.8"],
    description=__doc__ or "",
)
