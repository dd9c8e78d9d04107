"""DataFrames and plots of a library's jobs (the `frames` extra: pandas and matplotlib).

Importing this package needs neither; each function raises `MissingExtra` when what it needs
is not installed. `JobManager.history()`, `metrics()`, `jobs()`, `plot_timeline()` and
`plot_durations()` call these.
"""

from ._history import active_jobs_frame, history_frame, metrics_frame
from ._plots import STATUS_COLORS, plot_durations, plot_timeline

__all__ = (
    "STATUS_COLORS",
    "active_jobs_frame",
    "history_frame",
    "metrics_frame",
    "plot_durations",
    "plot_timeline",
)
