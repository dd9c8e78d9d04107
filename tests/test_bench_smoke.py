"""Smoke test of the benchmark suite (bench/): the whole suite in quick mode.

Numbers are meaningless here; this checks that every workload runs and shows
its rows (including "not yet implemented" rows for our missing contenders).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WORKLOADS = ["W1", "W2", "W3", "W4", "W5", "W6", "W7", "W7B", "W8"]  # every module in bench.WORKLOAD_MODULES


def _table_rows(md: str) -> list[list[str]]:
    rows = []
    for line in md.splitlines():
        if line.startswith("| W"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_bench_quick_runs_whole_suite(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"

    rows = _table_rows(proc.stdout)
    by_workload = {w: [r for r in rows if r[0] == w] for w in WORKLOADS}
    for w, wl_rows in by_workload.items():
        assert wl_rows, f"no rows for {w} in:\n{proc.stdout}"
        # Our contender always has a row (measured or "not yet implemented").
        assert any("ours" in r[2] for r in wl_rows), f"{w} has no 'ours' row"

    # Peer contenders of W1-W4 are present.
    contenders = {(r[0], r[2].replace("**", "").replace(" (baseline)", "")) for r in rows}
    for expected in [("W1", "huey_default"), ("W1", "huey_fsync_off"),
                     ("W1", "persistqueue_sqlite"), ("W1", "asyncio_bare"),
                     ("W1", "aiosqlite_insert_commit"), ("W2", "tqdm"),
                     ("W2", "method_store"), ("W2", "bare_loop"),
                     ("W3", "raw_aiosqlite"), ("W3", "huey_put_data"),
                     ("W4", "read_sql")]:
        assert expected in contenders, f"missing row {expected}"

    # Results files are written where asked, and agree with stdout.
    md = (tmp_path / "latest.md").read_text(encoding="utf-8")
    assert _table_rows(md) == rows
    data = json.loads((tmp_path / "latest.json").read_text(encoding="utf-8"))
    assert {r["workload"] for r in data["rows"]} == set(WORKLOADS)
    assert data["quick"] is True and data["repeat"] == 1


def test_bench_only_and_repeat(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "W2", "--repeat", "2",
         "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert {r[0] for r in _table_rows(proc.stdout)} == {"W2"}


# --- harness logic, in process ---------------------------------------------

def _harness():
    sys.path.insert(0, str(REPO))
    try:
        from bench import _harness
    finally:
        sys.path.remove(str(REPO))
    return _harness


@pytest.mark.parametrize("text, medians, status", [
    ("ours jobs/s >= 10 x base jobs/s", {("ours", "jobs/s"): 100.0, ("base", "jobs/s"): 10.0}, "PASS"),
    ("ours jobs/s >= 10 x base", {("ours", "jobs/s"): 99.0, ("base", "jobs/s"): 10.0}, "FAIL"),
    ("ours ns/report <= 0.5 x tqdm", {("ours", "ns/report"): 50.0, ("tqdm", "ns/report"): 100.0}, "PASS"),
    ("ours ms < 20", {("ours", "ms"): 19.9}, "PASS"),
    ("ours ms < 20", {("ours", "ms"): 20.0}, "FAIL"),
    ("ours ms < 20", {}, "pending"),
    ("ours s <= 1.2 x read_sql s", {("read_sql", "s"): 1.0}, "pending"),
])
def test_target_evaluation(text, medians, status) -> None:
    h = _harness()
    t = h.Target.parse(text)
    assert t.evaluate(medians, {})[0] == status


def test_harness_interleaves_and_reports_every_row(tmp_path: Path) -> None:
    h = _harness()
    calls: list[str] = []

    def make(name, value):
        def fn(ctx):
            assert ctx.workdir.is_dir() and not any(ctx.workdir.iterdir())
            calls.append(name)
            return value
        return fn

    def missing(ctx):
        h.ours_api("sdjobs_nb", "no_such_api_for_bench_test")

    def broken(ctx):
        raise RuntimeError("boom")

    wl = h.Workload(
        id="WX", title="fake", cases=lambda quick: [h.Case("one", {})],
        contenders=lambda: {
            "ours": h.Contender("ours", missing, "ops/s"),
            "base": h.Contender("base", make("base", 10.0), "ops/s"),
            "fast": h.Contender("fast", make("fast", 30.0), "ops/s"),
            "broken": h.Contender("broken", broken, "ops/s"),
        },
        baseline="base",
        targets=["ours ops/s >= 2 x base ops/s", "fast ops/s >= 2 x base ops/s"],
    )
    rows, md = h.run_suite([wl], quick=True, repeat=3, out_dir=tmp_path, log=lambda s: None)
    assert calls == ["base", "fast", "fast", "base", "base", "fast"]  # rotated order
    by = {r.contender: r for r in rows}
    assert by["ours"].status == h.NOT_IMPLEMENTED and "pending" in by["ours"].verdict
    assert by["fast"].ratio == 3.0 and by["fast"].verdict.startswith("PASS")
    assert by["base"].baseline and by["base"].ratio == 1.0
    assert by["broken"].status == h.ERROR and "boom" in by["broken"].reason
    assert "not yet implemented" in md and "## Errors" in md
