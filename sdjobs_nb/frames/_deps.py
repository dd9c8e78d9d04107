"""Optional dependencies of the frames package, imported on first use."""

from __future__ import annotations

from types import ModuleType

from .._errors import MissingExtra

__all__ = ("pandas", "figure_class")


def pandas() -> ModuleType:
    """Return pandas, or raise `MissingExtra` naming the extra to install."""
    try:
        import pandas
    except ImportError as e:
        raise MissingExtra("job DataFrames", "frames", "pandas") from e
    return pandas


def figure_class() -> type:
    """Return `matplotlib.figure.Figure` (no pyplot: no global state, safe off the main thread)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise MissingExtra("job plots", "frames", "matplotlib") from e
    return Figure
