"""W2 progress: cost of one progress report inside a hot loop, ns/report.

Every reporting contender times, in the same call, a bare
``for i in range(m): pass`` loop and the same loop with one report per
iteration, interleaved in 10 chunk pairs (see :func:`added_ns`), and returns
``(t_report - t_bare) / n`` in ns: the cost *added* per report.  ``bare_loop`` shows the absolute loop cost (ns/iter) for scale.

* ``method_store`` - a method that only stores two numbers (``done``, ``total``):
  the floor any Python-level reporting API can reach.
* ``tqdm`` (baseline) - ``bar.update(1)`` on an enabled tqdm writing to an
  ``io.StringIO``, default ``mininterval`` (0.1 s) and miniters behaviour.
"""

from __future__ import annotations

import io
import time
from typing import Callable

from ._harness import Case, Contender, Ctx, NotYetImplemented, Workload, ours_api, peer


def cases(quick: bool) -> list[Case]:
    n = 20_000 if quick else 1_000_000
    return [Case(f"{n:,} reports", {"n": n})]


CHUNKS = 10


def _bare(m: int) -> None:
    for i in range(m):
        pass


def added_ns(n: int, report_loop: Callable[[int], None], chunks: int = CHUNKS) -> float:
    """ns added per report: ``report_loop(m)`` vs the bare loop, interleaved.

    The n iterations are split into ``chunks`` pairs (bare chunk, reporting
    chunk) timed back to back, so a noise burst hits both sides alike.
    ``report_loop(m)`` must be ``for i in range(m): <one report>`` and nothing
    else (same shape as :func:`_bare`).
    """
    m = max(1, n // chunks)
    bare = rep = 0.0
    for _ in range(chunks):
        t0 = time.perf_counter()
        _bare(m)
        t1 = time.perf_counter()
        report_loop(m)
        t2 = time.perf_counter()
        bare += t1 - t0
        rep += t2 - t1
    return (rep - bare) / (m * chunks) * 1e9


def bare_loop(ctx: Ctx) -> float:
    n = ctx["n"]
    t0 = time.perf_counter()
    _bare(n)
    return (time.perf_counter() - t0) / n * 1e9


class _Store:
    __slots__ = ("done", "total")

    def __init__(self) -> None:
        self.done = 0
        self.total = 0

    def report(self, done: int, total: int) -> None:
        self.done = done
        self.total = total


def method_store(ctx: Ctx) -> float:
    n = ctx["n"]
    r = _Store()

    def loop(m: int) -> None:
        for i in range(m):
            r.report(i, n)

    return added_ns(n, loop)


def tqdm_update(ctx: Ctx) -> float:
    tqdm = peer("tqdm").tqdm
    n = ctx["n"]
    bar = tqdm(total=n, file=io.StringIO())

    def loop(m: int) -> None:
        for i in range(m):
            bar.update(1)

    try:
        return added_ns(n, loop)
    finally:
        bar.close()


# --- REGISTRATION POINT: our contender -------------------------------------
# Replace the body with: create a job/progress handle from sdjobs_nb (untimed),
# then
#     def loop(m):
#         for i in range(m):
#             handle.<report>(i, n)
#     return added_ns(n, loop)
# Widgets/persistence may be wired as in a real job: the point is what a
# user's loop pays per report.  If the handle needs a running event loop,
# make ``ours`` an ``async def`` (the harness runs it with asyncio.run).

async def ours(ctx: Ctx) -> float:
    """ctx.report_count_progress(i, n) inside a real running job."""
    ours_api("sdjobs_nb", "JobManager")
    from ._ours import progress_cost

    return await progress_cost(ctx.workdir, ctx["n"])

def contenders() -> dict[str, Contender]:
    u = "ns/report"
    return {
        "ours": Contender("ours", ours, u, "sdjobs_nb progress report in a hot loop"),
        "tqdm": Contender("tqdm", tqdm_update, u, "tqdm.update(1), file=StringIO, defaults"),
        "method_store": Contender("method_store", method_store, u,
                                  "method storing two numbers (floor)"),
        "bare_loop": Contender("bare_loop", bare_loop, "ns/iter", "for i in range(n): pass"),
    }


WORKLOAD = Workload(
    id="W2", title="progress", contenders=contenders, cases=cases,
    baseline="tqdm",
    targets=["ours ns/report <= 0.5 x tqdm ns/report"],
    description=__doc__ or "",
)
