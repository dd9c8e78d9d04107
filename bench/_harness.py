"""Benchmark harness: interleaved repetitions, medians, ratios, targets.

Vocabulary
----------
*Workload*   one question we ask ("how fast do jobs dispatch?"), e.g. ``W1``.
*Case*       one size of that question ("2,000 jobs", "1M history rows").
*Contender*  one implementation answering it (``huey_default``, ``ours``).

Every contender of a case is run ``repeat`` times **round-robin** (A B C, B C A,
C A B, ...) so that machine noise (2 noisy cores here) hits every contender
alike; the table reports the **median** of each, and the **ratio** to the
case's baseline contender: the median over rounds of ``contender / baseline``
within the same round (paired, so slow drifts of the machine cancel).  Absolute numbers drift
from run to run; the ratios are what we track and what targets are checked on.

A contender is a plain callable ``fn(ctx) -> float | dict[str, float]`` (or an
``async def``).  It times its own critical section (setup/teardown it does not
want measured stays outside) and returns either one number in the contender's
``unit`` or a ``{unit: value}`` dict when it reports several metrics.  Each
call gets a fresh, empty temporary directory in ``ctx.workdir``.

Raise :class:`NotYetImplemented` (or use :func:`ours_api`) for a contender that
cannot run yet: the table shows a ``not yet implemented`` row, never hides it.

Targets are strings checked against the medians of the same run::

    "ours jobs/s >= 10 x huey_default jobs/s"    # relative to another contender
    "ours ns/report <= 0.5 x tqdm"               # unit defaults to the lhs unit
    "ours ms < 20"                               # absolute threshold
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import gc
import importlib
import inspect
import json
import math
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

# Row statuses that mean "no number".
NOT_IMPLEMENTED = "not yet implemented"
UNAVAILABLE = "unavailable"
ERROR = "error"


class NotYetImplemented(Exception):
    """Raised by a contender whose implementation does not exist yet."""


class Unavailable(Exception):
    """Raised by a contender whose peer library is not installed."""


def ours_api(module: str = "sdjobs_nb", *attrs: str) -> Any:
    """Import ``module`` and return ``module.attr1.attr2...`` (or the module).

    Any ImportError / missing attribute becomes :class:`NotYetImplemented`
    with a message naming what is missing, so our contenders show up as
    ``not yet implemented`` rows until the library grows the API.
    """
    try:
        obj = importlib.import_module(module)
    except ImportError as exc:
        raise NotYetImplemented(f"cannot import {module}: {exc}") from None
    path = module
    for attr in attrs:
        path += "." + attr
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise NotYetImplemented(f"{path} does not exist yet") from None
    return obj


def peer(module: str) -> Any:
    """Import a peer library, turning ImportError into :class:`Unavailable`."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise Unavailable(f"{module} not installed ({exc}); "
                          "install with: pip install -e '.[bench]'") from None


@contextlib.contextmanager
def timer() -> Iterable[Callable[[], float]]:
    """``with timer() as t: ...`` then ``t()`` is the elapsed seconds."""
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


# --------------------------------------------------------------------------
# Registry objects
# --------------------------------------------------------------------------

@dataclass
class Contender:
    name: str
    fn: Callable[["Ctx"], Any]
    unit: str = ""
    """Unit of a bare float returned by ``fn``."""
    note: str = ""
    """One line shown in the JSON / README: what exactly is measured."""
    setup: Callable[["Ctx"], Any] | None = None
    """Untimed, once per case before the first repetition; result in ctx.state."""
    teardown: Callable[["Ctx"], None] | None = None


@dataclass
class Case:
    label: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Workload:
    id: str
    title: str
    contenders: Callable[[], dict[str, Contender]]
    """Called once per case; returns name -> Contender, in table order."""
    cases: Callable[[bool], list[Case]]
    """``cases(quick)``: sizes to run (tiny ones when quick)."""
    baseline: str | None = None
    targets: list[str] = field(default_factory=list)
    fixture: Callable[["Ctx"], Any] | None = None
    """Untimed, once per case, shared by all contenders (e.g. a prebuilt DB)."""
    description: str = ""


@dataclass
class Ctx:
    """What a contender gets.  ``workdir`` is fresh and empty for each call."""
    workload: str
    case: Case
    quick: bool
    root: Path              # per-case temp root (fixture lives here)
    fixture: Any = None     # result of Workload.fixture
    state: Any = None       # result of this contender's setup
    workdir: Path | None = None

    @property
    def params(self) -> dict[str, Any]:
        return self.case.params

    def __getitem__(self, key: str) -> Any:
        return self.case.params[key]


# --------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------

_NAME = r"[A-Za-z_][\w.\-]*"
_UNIT = r"[^\s<>=]+"
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_TARGET_RE = re.compile(
    rf"^\s*(?P<lhs>{_NAME})(?:\s+(?P<lunit>{_UNIT}))?\s*(?P<op><=|>=|<|>)\s*"
    rf"(?:(?P<factor>{_NUM})\s*[x×*]\s*(?P<rhs>{_NAME})(?:\s+(?P<runit>{_UNIT}))?"
    rf"|(?P<num>{_NUM})(?:\s+(?P<nunit>{_UNIT}))?)\s*$"
)
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b, ">": lambda a, b: a > b,
}


@dataclass
class Target:
    text: str
    lhs: str
    lunit: str | None
    op: str
    factor: float | None = None
    rhs: str | None = None
    runit: str | None = None
    number: float | None = None

    @classmethod
    def parse(cls, text: str) -> "Target":
        m = _TARGET_RE.match(text)
        if not m:
            raise ValueError(f"cannot parse target {text!r}")
        g = m.groupdict()
        if g["num"] is not None:
            return cls(text, g["lhs"], g["lunit"] or g["nunit"], g["op"],
                       number=float(g["num"]))
        return cls(text, g["lhs"], g["lunit"], g["op"],
                   factor=float(g["factor"]), rhs=g["rhs"],
                   runit=g["runit"] or g["lunit"])

    def evaluate(self, medians: dict[tuple[str, str], float],
                 default_units: dict[str, str],
                 ratio: Callable[[str, str, str, str], float | None] | None = None,
                 ) -> tuple[str, str]:
        """Return (status, detail); status in PASS / FAIL / pending.

        Relative targets compare ``ratio(lhs, lunit, rhs, runit)`` (by default
        the ratio of medians; the runner passes the median of per-round
        ratios) with the factor.
        """
        lunit = self.lunit or default_units.get(self.lhs, "")
        lval = medians.get((self.lhs, lunit))
        if self.number is not None:
            if lval is None:
                return "pending", f"{self.lhs} not measured"
            ok = _OPS[self.op](lval, self.number)
            return ("PASS" if ok else "FAIL"), f"{_fmt(lval)} {self.op} {_fmt(self.number)}"
        runit = self.runit or default_units.get(self.rhs, lunit)
        rval = medians.get((self.rhs, runit))
        missing = [n for n, v in ((self.lhs, lval), (self.rhs, rval)) if v is None]
        if missing:
            return "pending", " and ".join(missing) + " not measured"
        r = ratio(self.lhs, lunit, self.rhs, runit) if ratio is not None else None
        if r is None:
            r = lval / rval if rval else math.inf
        ok = _OPS[self.op](r, self.factor)
        return ("PASS" if ok else "FAIL"), f"{r:.2f}x {self.op} {_fmt(self.factor)}x"


# --------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------

@dataclass
class ContenderResult:
    name: str
    status: str = "ok"                     # ok / not yet implemented / unavailable / error
    reason: str = ""
    samples: dict[str, dict[int, float]] = field(default_factory=dict)
    """unit -> {repetition index: value}; the index pairs samples of a round."""
    note: str = ""
    unit: str = ""

    def medians(self) -> dict[str, float]:
        return {u: statistics.median(v.values()) for u, v in self.samples.items() if v}


@dataclass
class CaseResult:
    workload: Workload
    case: Case
    results: dict[str, ContenderResult]
    seconds: float


def _call(fn: Callable, ctx: Ctx) -> Any:
    if inspect.iscoroutinefunction(fn):
        return asyncio.run(fn(ctx))
    out = fn(ctx)
    if inspect.isawaitable(out):
        async def _await() -> Any:
            return await out
        return asyncio.run(_await())
    return out


def _normalize(value: Any, unit: str) -> dict[str, float]:
    if isinstance(value, dict):
        return {str(k): float(v) for k, v in value.items()}
    return {unit: float(value)}


def _classify(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, NotYetImplemented):
        return NOT_IMPLEMENTED, str(exc)
    if isinstance(exc, (Unavailable, ImportError)):
        return UNAVAILABLE, str(exc)
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" at {Path(last[0].filename).name}:{last[0].lineno}" if last else ""
    return ERROR, f"{type(exc).__name__}: {exc}{where}"


def run_case(wl: Workload, case: Case, *, quick: bool, repeat: int,
             log: Callable[[str], None]) -> CaseResult:
    t0 = time.perf_counter()
    contenders = wl.contenders()
    results = {n: ContenderResult(n, note=c.note, unit=c.unit)
               for n, c in contenders.items()}
    root = Path(tempfile.mkdtemp(prefix=f"sdjobs-bench-{wl.id}-"))
    try:
        base_ctx = Ctx(wl.id, case, quick, root)
        if wl.fixture is not None:
            log(f"  [{wl.id} {case.label}] building fixture ...")
            try:
                base_ctx.fixture = wl.fixture(base_ctx)
            except BaseException as exc:  # noqa: BLE001 - reported in the table
                if isinstance(exc, KeyboardInterrupt):
                    raise
                status, reason = _classify(exc)
                for r in results.values():
                    r.status, r.reason = status, f"fixture: {reason}"
                return CaseResult(wl, case, results, time.perf_counter() - t0)

        states: dict[str, Any] = {}
        for name, c in contenders.items():
            if c.setup is None:
                continue
            try:
                states[name] = c.setup(_ctx_for(base_ctx, None))
            except Exception as exc:  # noqa: BLE001
                results[name].status, results[name].reason = _classify(exc)

        for rep in range(repeat):
            live = [n for n in contenders if results[n].status == "ok"]
            k = rep % len(live) if live else 0
            for name in live[k:] + live[:k]:  # rotate: no fixed position bias
                res = results[name]
                c = contenders[name]
                workdir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
                ctx = _ctx_for(base_ctx, states.get(name), workdir)
                gc.collect()
                try:
                    value = _call(c.fn, ctx)
                    for unit, v in _normalize(value, c.unit).items():
                        res.samples.setdefault(unit, {})[rep] = v
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # noqa: BLE001 - reported in the table
                    res.status, res.reason = _classify(exc)
                    if res.status == ERROR:
                        res.reason += "\n" + traceback.format_exc()
                finally:
                    shutil.rmtree(workdir, ignore_errors=True)
            log(f"  [{wl.id} {case.label}] repetition {rep + 1}/{repeat} done")

        for name, c in contenders.items():
            if c.teardown is not None:
                with contextlib.suppress(Exception):
                    c.teardown(_ctx_for(base_ctx, states.get(name)))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return CaseResult(wl, case, results, time.perf_counter() - t0)


def _ctx_for(base: Ctx, state: Any, workdir: Path | None = None) -> Ctx:
    return Ctx(base.workload, base.case, base.quick, base.root,
               fixture=base.fixture, state=state, workdir=workdir)


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------

def _fmt(x: float | None) -> str:
    if x is None:
        return "—"
    if x == 0 or not math.isfinite(x):
        return str(x)
    ax = abs(x)
    if ax >= 1e5:
        return f"{x:,.0f}"
    if ax >= 100:
        return f"{x:.0f}" if ax >= 1000 else f"{x:.1f}"
    if ax >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


@dataclass
class Row:
    workload: str
    case: str
    contender: str
    median: float | None
    unit: str
    ratio: float | None
    target: str
    verdict: str
    samples: list[float] = field(default_factory=list)
    status: str = "ok"
    reason: str = ""
    baseline: bool = False


def build_rows(cr: CaseResult) -> list[Row]:
    wl = cr.workload
    medians: dict[tuple[str, str], float] = {}
    default_units: dict[str, str] = {}
    contenders_units: dict[str, list[str]] = {}
    for name, res in cr.results.items():
        m = res.medians()
        contenders_units[name] = list(m)
        for unit, v in m.items():
            medians[(name, unit)] = v
        if m:
            default_units[name] = next(iter(m))
    # Units we expect ours to report even when it has not run yet.
    targets = [Target.parse(t) for t in wl.targets]
    for t in targets:
        if t.lunit and t.lhs not in default_units:
            default_units.setdefault(t.lhs, t.lunit)

    def paired_ratio(a: str, aunit: str, b: str, bunit: str) -> float | None:
        """Median over rounds of a/b, using only rounds where both ran."""
        sa = cr.results[a].samples.get(aunit, {}) if a in cr.results else {}
        sb = cr.results[b].samples.get(bunit, {}) if b in cr.results else {}
        rs = [sa[k] / sb[k] for k in sa.keys() & sb.keys() if sb[k]]
        return statistics.median(rs) if rs else None

    by_row: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
    for t in targets:
        status, detail = t.evaluate(medians, default_units, paired_ratio)
        lunit = t.lunit or default_units.get(t.lhs, "")
        by_row.setdefault((t.lhs, lunit), []).append((t.text, status, detail))

    rows: list[Row] = []
    for name, res in cr.results.items():
        units = contenders_units[name] or [
            u for (n, u) in by_row if n == name] or [res.unit]
        for unit in units:
            med = medians.get((name, unit))
            ratio = (paired_ratio(name, unit, wl.baseline, unit)
                     if (med is not None and wl.baseline) else None)
            tgts = by_row.pop((name, unit), [])
            target = "; ".join(t for t, _, _ in tgts)
            verdicts = [f"{s} ({d})" if s != "pending" else f"pending ({d})"
                        for _, s, d in tgts]
            rows.append(Row(
                wl.id, cr.case.label, name, med, unit, ratio, target,
                "; ".join(verdicts), list(res.samples.get(unit, {}).values()),
                res.status, res.reason, baseline=(name == wl.baseline)))
    # Targets naming a contender that does not exist (should not happen).
    for (name, unit), tgts in by_row.items():
        rows.append(Row(wl.id, cr.case.label, name, None, unit, None,
                        "; ".join(t for t, _, _ in tgts),
                        "; ".join(f"{s} ({d})" for _, s, d in tgts),
                        status=ERROR, reason="target names an unknown contender"))
    return rows


def _status_cell(row: Row) -> str:
    if row.status == "ok":
        return _fmt(row.median)
    first = row.reason.strip().splitlines()[0] if row.reason.strip() else ""
    return f"*{row.status}*: {first}".replace("|", "\\|")


def _spread(row: Row) -> str:
    """Median absolute deviation of the samples, relative to the median."""
    if len(row.samples) < 2 or not row.median:
        return ""
    mad = statistics.median(abs(x - row.median) for x in row.samples)
    return f"±{mad / abs(row.median) * 100:.0f}%"


def markdown_table(rows: list[Row]) -> str:
    head = ("| workload | case | contender | median | spread | unit | ratio vs baseline "
            "| target | pass/fail |")
    sep = "|---|---|---|---:|---:|---|---:|---|---|"
    lines = [head, sep]
    for r in rows:
        name = f"**{r.contender}**" if r.contender == "ours" else r.contender
        if r.baseline:
            name += " (baseline)"
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else ""
        lines.append(
            f"| {r.workload} | {r.case} | {name} | {_status_cell(r)} | {_spread(r)} | {r.unit} "
            f"| {ratio} | {r.target} | {r.verdict} |")
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "when": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    for mod in ("sqlite3", "aiosqlite", "huey", "persistqueue", "tqdm", "pandas"):
        try:
            m = importlib.import_module(mod)
            info[mod] = getattr(m, "sqlite_version", None) or getattr(m, "__version__", "?")
        except ImportError:
            info[mod] = None
    return info


def write_results(rows: list[Row], case_results: list[CaseResult], *, out_dir: Path,
                  quick: bool, repeat: int, elapsed: float) -> tuple[str, Path, Path]:
    env = environment()
    header = (
        f"# sdjobs_nb benchmark — {'QUICK (smoke, numbers meaningless)' if quick else 'full'}\n\n"
        f"{env['when']} · Python {env['python']} · {env['cpus']} CPUs · SQLite {env['sqlite3']} · "
        f"repeat={repeat} (interleaved round-robin, medians) · {elapsed:.1f}s total\n\n"
        "Ratios are against the workload's baseline measured in the same run; "
        "absolute numbers drift between runs, ratios hold. "
        "ratio = median over rounds of (contender / baseline) within the same round; "
        "spread = median absolute deviation of the repetitions, relative to the median.\n\n")
    md = header + markdown_table(rows) + "\n"
    errors = [r for r in rows if r.status == ERROR]
    if errors:
        md += "\n## Errors\n\n" + "\n".join(
            f"### {r.workload} / {r.case} / {r.contender}\n\n```\n{r.reason.strip()}\n```\n"
            for r in errors)
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, json_path = out_dir / "latest.md", out_dir / "latest.json"
    md_path.write_text(md, encoding="utf-8")
    payload = {
        "quick": quick, "repeat": repeat, "elapsed_s": elapsed, "environment": env,
        "rows": [r.__dict__ for r in rows],
        "cases": [{"workload": c.workload.id, "title": c.workload.title,
                   "case": c.case.label, "params": c.case.params,
                   "baseline": c.workload.baseline, "targets": c.workload.targets,
                   "seconds": c.seconds,
                   "notes": {n: r.note for n, r in c.results.items()}}
                  for c in case_results],
    }
    json_path.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    return md, md_path, json_path


def run_suite(workloads: list[Workload], *, quick: bool, repeat: int, out_dir: Path,
              log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
              ) -> tuple[list[Row], str]:
    t0 = time.perf_counter()
    case_results: list[CaseResult] = []
    for wl in workloads:
        for case in wl.cases(quick):
            log(f"{wl.id} {wl.title} — {case.label}")
            case_results.append(run_case(wl, case, quick=quick, repeat=repeat, log=log))
    rows = [row for cr in case_results for row in build_rows(cr)]
    md, md_path, json_path = write_results(
        rows, case_results, out_dir=out_dir, quick=quick, repeat=repeat,
        elapsed=time.perf_counter() - t0)
    log(f"wrote {md_path} and {json_path}")
    return rows, md
