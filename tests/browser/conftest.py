"""Fixtures for real-browser tests: one Chromium per module, a fresh page per test."""

from __future__ import annotations

import contextlib
import re

import pytest

from ._lab import artifacts_dir, launch_chromium


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture(scope="module")
def chromium():
    """A headless Chromium (fails, never skips, when the binary is missing)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium, request):
    """A page in its own browser context; on failure a screenshot goes to test-artifacts/."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(60_000)
    page = context.new_page()
    try:
        yield page
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            name = re.sub(r"[^\w.-]+", "_", request.node.name)
            with contextlib.suppress(Exception):  # a dead page must not hide the failure
                page.screenshot(path=str(artifacts_dir() / f"FAILED-{name}.png"))
        context.close()
