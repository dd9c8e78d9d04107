"""Text and colours the widgets show, from a status and a progress snapshot (no ipywidgets here)."""

from __future__ import annotations

import html

from .._progress import Progress, human_bytes
from .._status import JobStatus

__all__ = (
    "BAR_STYLE", "bar_value", "duration_text", "error_list_html", "error_html", "eta_text", "info_html",
    "rate_text", "title_html",
)

S = JobStatus

#: bar colour follows the outcome, as tqdm's does
BAR_STYLE = {
    S.QUEUED: "",
    S.RUNNING: "info",
    S.PAUSED: "warning",
    S.COMPLETED: "success",
    S.FAILED: "danger",
    S.CANCELLED: "warning",
}

# JupyterLab theme variables (Voila loads them too), with fallbacks for other frontends
_COLOUR = {
    "": "var(--jp-ui-font-color2, #757575)",
    "info": "var(--jp-info-color1, #0288d1)",
    "success": "var(--jp-success-color1, #388e3c)",
    "warning": "var(--jp-warn-color1, #f57c00)",
    "danger": "var(--jp-error-color1, #d32f2f)",
}

_ONE_LINE = "white-space:nowrap;overflow:hidden;text-overflow:ellipsis"
_REASON = {"interrupted": "interrupted", "parent": "with its parent", "job": "by the job"}
_PENDING = {"pause": "pausing…", "resume": "resuming…", "cancel": "cancelling…"}


def title_html(name: str, job_id: str, status: JobStatus, pending: str | None = None,
               pause_reason: str | None = None) -> str:
    """Return the job's name, coloured status (with why it is paused) and short id as HTML."""
    colour = _COLOUR[BAR_STYLE[status]]
    note = f" · {_PENDING[pending]}" if pending in _PENDING else ""
    if status is S.PAUSED and pause_reason and pause_reason != "user":
        note = f" ({html.escape(_REASON.get(pause_reason, pause_reason))}){note}"
    return (
        f'<div style="{_ONE_LINE}" title="{html.escape(name)} {job_id}">'
        f'<b>{html.escape(name)}</b> <span style="color:{colour};font-weight:bold">{status.value}</span>{note} '
        f'<span style="color:var(--jp-ui-font-color2, #757575);font-size:90%">{job_id[:8]}</span></div>'
    )


def bar_value(progress: Progress | None, status: JobStatus) -> float:
    """Return the bar's fill from 0 to 1, rounded so invisible changes send nothing."""
    if status is S.COMPLETED:
        return 1.0
    if progress is None or progress.fraction is None:
        return 0.0
    return round(min(max(progress.fraction, 0.0), 1.0), 3)


def rate_text(progress: Progress | None) -> str | None:
    """Return '12.3/s' for items or '1.2 MiB/s' for bytes, or None when the rate is unknown."""
    if progress is None or not progress.rate:
        return None
    if progress.kind == "bytes":
        return f"{human_bytes(progress.rate)}/s"
    rate = progress.rate
    return f"{rate:,.0f}/s" if rate >= 100 else f"{rate:.3g}/s"


def duration_text(seconds: float) -> str:
    """Return '42s', '3:25' or '1:02:03'."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def eta_text(seconds: float | None) -> str | None:
    """Return 'ETA 42s', 'ETA 3:25' or 'ETA 1:02:03', or None when unknown."""
    if seconds is None or not seconds >= 0 or seconds == float("inf"):
        return None
    return f"ETA {duration_text(seconds)}"


def _elapsed_text(seconds: float | None) -> str | None:
    if not seconds or not seconds > 0:
        return None
    return f"took {seconds:.1f}s" if seconds < 60 else f"took {duration_text(seconds)}"


def info_html(progress: Progress | None, status: JobStatus, *, error: str | None = None,
              elapsed: float | None = None) -> str:
    """Return the progress text ('37 / 100 · 12.3/s · ETA 5s'), or the error of a failed job."""
    parts = [progress.describe()] if progress is not None and progress.describe() else []
    if status is S.RUNNING:
        parts += [t for t in (rate_text(progress), eta_text(progress and progress.eta_seconds)) if t]
    elif status.is_terminal:
        parts += [t for t in (_elapsed_text(elapsed),) if t]
    text = html.escape(" · ".join(parts))
    if status is S.FAILED and error:
        first_line = error.strip().splitlines()[0] if error.strip() else error
        text = error_html(first_line[:300]) + (f" · {text}" if text else "")
    return f'<div style="{_ONE_LINE}" title="{html.escape(error or "")}">{text}</div>'


def error_html(message: str) -> str:
    """Return `message` escaped, in the theme's error colour."""
    return f'<span style="color:{_COLOUR["danger"]}">{html.escape(message)}</span>'


def error_list_html(errors: list[tuple[float, str]], shown: int = 50) -> str:
    """Return the newest `shown` non-critical errors as an HTML list, newest last."""
    import datetime as dt

    if not errors:
        return "<i>no non-critical errors recorded</i>"
    hidden = len(errors) - shown
    items = "".join(
        f"<li><code>{dt.datetime.fromtimestamp(at).strftime('%H:%M:%S')}</code> {html.escape(message)}</li>"
        for at, message in errors[-shown:]
    )
    more = f"<div><i>… and {hidden:,} earlier</i></div>" if hidden > 0 else ""
    return f'{more}<ul style="margin:0;padding-left:1.5em">{items}</ul>'
