"""``python -m bench [--quick] [--only W1,W3] [--repeat N] [--out DIR] [--strict]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import all_workloads
from ._harness import ERROR, run_suite

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true",
                    help="smoke mode: tiny sizes, 1 repetition (numbers are meaningless)")
    ap.add_argument("--only", default="",
                    help="comma-separated workload ids, e.g. W1,W3")
    ap.add_argument("--repeat", type=int, default=None,
                    help="interleaved repetitions per contender (default 3, quick 1)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help=f"where latest.md / latest.json go (default {DEFAULT_OUT})")
    ap.add_argument("--strict", action="store_true",
                    help="exit 2 if any target is FAIL or pending")
    ap.add_argument("--list", action="store_true", help="list workloads and exit")
    args = ap.parse_args(argv)

    workloads = all_workloads()
    if args.list:
        for wl in workloads:
            print(f"{wl.id}\t{wl.title}\tbaseline={wl.baseline}\ttargets={wl.targets}")
        return 0
    if args.only:
        wanted = {w.strip().upper() for w in args.only.split(",") if w.strip()}
        unknown = wanted - {wl.id for wl in workloads}
        if unknown:
            ap.error(f"unknown workload(s): {', '.join(sorted(unknown))}")
        workloads = [wl for wl in workloads if wl.id in wanted]
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    if repeat < 1:
        ap.error("--repeat must be >= 1")

    rows, md = run_suite(workloads, quick=args.quick, repeat=repeat, out_dir=args.out)
    print(md)
    if any(r.status == ERROR for r in rows):
        print("some contenders raised errors (see the Errors section)", file=sys.stderr)
        return 1
    if args.strict and any(("FAIL" in r.verdict or "pending" in r.verdict) for r in rows):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
