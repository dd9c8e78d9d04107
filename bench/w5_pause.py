"""W5 pause latency (ours only - reserved slot): ms from ``pause()`` to paused.

Planned measurement: start a running job that reports progress in a loop,
call our pause API, and time until the job is observed paused (its loop has
stopped advancing and the store says ``paused``); median over ``pauses``
attempts inside one call.  Absolute target: < 20 ms.  No peer: Huey/tqdm have
no pause.
"""

from __future__ import annotations

from ._harness import Case, Contender, Ctx, NotYetImplemented, Workload, ours_api


def cases(quick: bool) -> list[Case]:
    return [Case("3 pauses" if quick else "20 pauses", {"pauses": 3 if quick else 20})]


# --- REGISTRATION POINT: our contender -------------------------------------
# Return the median pause latency in ms over ctx["pauses"] pause/resume cycles.

async def ours(ctx: Ctx) -> dict[str, float]:
    """Median ms from pause() to PAUSED-and-saved; resume_ms: resume() to RUNNING again."""
    ours_api("sdjobs_nb", "JobManager")
    from ._ours import pause_latency

    return await pause_latency(ctx.workdir, ctx["pauses"])

def contenders() -> dict[str, Contender]:
    return {"ours": Contender("ours", ours, "ms", "pause() -> job observed paused")}


WORKLOAD = Workload(
    id="W5", title="pause latency", contenders=contenders, cases=cases,
    baseline=None, targets=["ours ms < 20"], description=__doc__ or "",
)
