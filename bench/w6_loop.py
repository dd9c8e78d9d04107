"""W6 event-loop health (ours only - reserved slot).

Planned measurement: run ``jobs`` concurrent jobs with live widgets for
``seconds`` while a probe coroutine sleeps 1 ms in a loop on the same event
loop; report the worst probe overshoot (``stall_ms``, target < 50 ms) and the
widget comm messages sent per second per job (``msgs/s/job``, target <= ~10,
checked as <= 10).  Return ``{"stall_ms": ..., "msgs/s/job": ...}``.
"""

from __future__ import annotations

from ._harness import Case, Contender, Ctx, NotYetImplemented, Workload, ours_api


def cases(quick: bool) -> list[Case]:
    if quick:
        return [Case("4 jobs x 0.5 s", {"jobs": 4, "seconds": 0.5})]
    return [Case("20 jobs x 5 s", {"jobs": 20, "seconds": 5.0})]


# --- REGISTRATION POINT: our contender -------------------------------------
# Return {"stall_ms": worst_probe_overshoot_ms, "msgs/s/job": widget_msgs_rate}.

async def ours(ctx: Ctx) -> dict[str, float]:
    ours_api("sdjobs_nb")
    raise NotYetImplemented("W6 contender not written yet: loop stall + widget msg rate")


def contenders() -> dict[str, Contender]:
    return {"ours": Contender("ours", ours, "stall_ms",
                              "worst loop stall and widget msgs/s/job under load")}


WORKLOAD = Workload(
    id="W6", title="loop health", contenders=contenders, cases=cases,
    baseline=None, targets=["ours stall_ms < 50", "ours msgs/s/job <= 10"],
    description=__doc__ or "",
)
