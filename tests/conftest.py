"""Shared fixtures: a fresh library folder per test, and an open manager on it."""

from __future__ import annotations

from pathlib import Path

import pytest

import sdjobs_nb as sj


@pytest.fixture
def library(tmp_path: Path) -> Path:
    """A library folder that does not exist yet."""
    return tmp_path / "library"


@pytest.fixture
async def manager(library: Path):
    """An open manager on a fresh library, closed after the test."""
    async with sj.JobManager.open(library, grace_period=2.0) as m:
        yield m


def pytest_sessionfinish(session, exitstatus):
    """Close leftover widgets now, not in `Widget.__del__` during interpreter teardown (noisy)."""
    import sys

    widgets = sys.modules.get("ipywidgets")
    if widgets is not None:
        widgets.Widget.close_all()
