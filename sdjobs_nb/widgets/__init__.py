"""Notebook widgets: `job_widget(handle)` for one job, `dashboard(manager)` for a library.

They need ipywidgets (`pip install 'sdjobs-nb[notebook]'`); `import sdjobs_nb` never imports
them. Widgets only render snapshots; one task per manager keeps them current, at most
`MESSAGES_PER_S` comm messages a second per widget, and always to the final state. Button
clicks only hand the request to the manager's loop (`JobManager.submit`), from any thread.
"""

try:
    import ipywidgets as _ipywidgets  # noqa: F401
except ImportError:
    from .._errors import MissingExtra

    raise MissingExtra("widgets", "notebook", "ipywidgets") from None

from ._dashboard import Dashboard, dashboard
from ._job import JobWidget, job_widget
from ._refresh import MESSAGES_PER_S, TOTAL_MESSAGES_PER_S

__all__ = ("Dashboard", "JobWidget", "MESSAGES_PER_S", "TOTAL_MESSAGES_PER_S", "dashboard", "job_widget")
