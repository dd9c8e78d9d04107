"""DataFrames and plots of a library's jobs (the `frames` extra: pandas and matplotlib).

Importing this package needs neither; each function raises `MissingExtra` when what it needs
is not installed.
"""

from ._history import active_jobs_frame, history_frame, metrics_frame

__all__ = ("active_jobs_frame", "history_frame", "metrics_frame")
