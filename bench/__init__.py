"""sdjobs_nb benchmark suite: ``python -m bench [--quick] [--only W1,W3] [--repeat N]``.

Each workload lives in its own module (``w1_dispatch`` ... ``w8_blocking``) and
exposes ``WORKLOAD`` (a :class:`bench._harness.Workload`).  Add a workload by
writing a module and listing it in ``WORKLOAD_MODULES``.
"""

from __future__ import annotations

import importlib

WORKLOAD_MODULES = [
    "w1_dispatch",
    "w2_progress",
    "w3_checkpoint",
    "w4_history",
    "w5_pause",      # ours only, reserved
    "w6_loop",       # ours only, reserved
    "w7_memory",     # ours only: memory per queued job, dispatch-rate flatness
    "w7b_reopen",    # ours only: reopening a library with 1M history rows
    "w8_blocking",   # ours only: inline vs run_blocking on threads, a process pool, Dask
]


def all_workloads():
    return [importlib.import_module(f"{__name__}.{m}").WORKLOAD for m in WORKLOAD_MODULES]
