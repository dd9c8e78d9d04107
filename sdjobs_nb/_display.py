"""How a handle shows itself: a live widget inside a kernel with ipywidgets, else a text line."""

from __future__ import annotations

from typing import Any


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def mimebundle(handle: Any) -> dict[str, Any]:
    """Return the display data for a handle (the widget's view when a frontend can show it)."""
    text = handle.describe()
    if _in_kernel():
        try:
            from .widgets import job_widget
        except ImportError:
            return {"text/plain": text}
        bundle = job_widget(handle)._repr_mimebundle_()
        if bundle:
            bundle["text/plain"] = text
            return bundle
    return {"text/plain": text}
