"""W7b reopen: seconds for `JobManager.open` on a long-lived library.

The library holds ``history`` finished jobs and ``history / 100`` jobs that were RUNNING when
their process died (built with plain sqlite3 in a child process); opening it must find and
mark the interrupted ones PAUSED without reading the finished ones. Target: under 2 s for
1,000,000 history rows and 10,000 interrupted jobs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ._harness import Case, Contender, Ctx, Workload, ours_api
from .w7_memory import child


def cases(quick: bool) -> list[Case]:
    history = 20_000 if quick else 1_000_000
    return [Case(f"{history:,} history + {history // 100:,} interrupted", {"history": history})]


def build(ctx: Ctx) -> Path:
    """Write the big library once per case; each repetition opens a fresh copy of it."""
    child("build", ctx.root / "big", ctx["history"])
    return ctx.root / "big"


def ours(ctx: Ctx) -> dict[str, float]:
    """Seconds for JobManager.open to recover the interrupted jobs of a big library after its owner died."""
    ours_api("sdjobs_nb", "JobManager")
    library = _copy(ctx)
    # what an owner killed while using this very jobs.db leaves in jobs.lock: its pid, then the
    # file's device and inode (sdjobs_nb._store.lock); SQLite's WAL recovers such a file, no check
    st = (library / "jobs.db").stat()
    (library / "jobs.lock").write_text(f"999999\n{st.st_dev} {st.st_ino}\n")
    return child("reopen", library, ctx["history"])


def ours_unknown_file(ctx: Ctx) -> dict[str, float]:
    """The same library with no jobs.lock (copied, or from an older version): open checks it first."""
    ours_api("sdjobs_nb", "JobManager")
    return child("reopen", _copy(ctx), ctx["history"])


def _copy(ctx: Ctx) -> Path:
    library = ctx.workdir / "big"
    shutil.copytree(ctx.fixture, library)
    return library


def contenders() -> dict[str, Contender]:
    return {
        "ours": Contender("ours", ours, "s", ours.__doc__),
        "ours_unknown_file": Contender("ours_unknown_file", ours_unknown_file, "s", ours_unknown_file.__doc__),
    }


WORKLOAD = Workload(
    id="W7B", title="reopen a big library", contenders=contenders, cases=cases, fixture=build,
    baseline=None, targets=["ours s < 2"], description=__doc__ or "",
)
