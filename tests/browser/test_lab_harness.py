"""The browser harness drives real widgets end to end (plain ipywidgets, no sdjobs_nb)."""

from __future__ import annotations

import psutil
import pytest

from ._lab import (
    IsolatedLab,
    IsolatedVoila,
    artifacts_dir,
    chromium_path,
    open_notebook,
    port_listening,
    run_all_cells,
    run_cell,
    wait_for_file,
    wait_for_kernel_idle,
    widget_button,
    write_notebook,
)

pytestmark = pytest.mark.browser

# Runs for ~60 s, so it is still advancing whenever the test looks at it.
PROGRESS_CELL = """\
import asyncio, pathlib
import ipywidgets as w

bar = w.IntProgress(value=0, max=600, description="work")
button = w.Button(description="Touch marker")
button.on_click(lambda _: pathlib.Path({marker!r}).write_text("clicked"))

async def advance():
    while bar.value < bar.max:
        await asyncio.sleep(0.1)
        bar.value += 1

task = asyncio.get_running_loop().create_task(advance())
w.VBox([bar, button])
"""

BUTTON_CELL = """\
import pathlib
import ipywidgets as w

button = w.Button(description="Touch marker")
button.on_click(lambda _: pathlib.Path({marker!r}).write_text("clicked"))
w.VBox([w.Label("voila harness"), button])
"""

BAR_WIDTH_JS = "parseFloat(document.querySelector('.widget-hprogress .progress-bar').style.width)"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with IsolatedLab(tmp_path_factory.mktemp("lab")) as lab:
        yield lab


def assert_loopback_only(server) -> None:
    addresses = server.listen_addresses()
    assert ("127.0.0.1", server.port) in addresses
    assert {ip for ip, _ in addresses} == {"127.0.0.1"}, addresses


def test_lab_progress_advances_between_cells_and_button_reaches_kernel(lab, page):
    marker = lab.root_dir / "lab-clicked.txt"
    write_notebook(lab.root_dir / "progress.ipynb", [PROGRESS_CELL.format(marker=str(marker))])

    open_notebook(page, lab, "progress.ipynb")
    run_cell(page, 0)
    assert_loopback_only(lab)

    # The cell has returned; only the background task can move the bar from here on.
    first = page.evaluate(BAR_WIDTH_JS)
    page.wait_for_function(f"{BAR_WIDTH_JS} >= {first} + 2", timeout=30_000)
    assert page.locator(".jp-InputPrompt", has_text="[*]").count() == 0
    wait_for_kernel_idle(page, timeout=1_000)

    page.locator('.jupyter-widgets button:has-text("Touch marker")').click()
    assert wait_for_file(marker) == "clicked"
    page.screenshot(path=str(artifacts_dir() / "lab_harness_progress.png"))


def test_lab_run_all_cells_and_bare_button(lab, page):
    marker = lab.root_dir / "bare-clicked.txt"
    write_notebook(lab.root_dir / "bare.ipynb", [
        "import pathlib\nimport ipywidgets as w\nanswer = 6 * 7",
        "button = w.Button(description=f'Bare {answer}')\n"
        f"button.on_click(lambda _: pathlib.Path({str(marker)!r}).write_text('clicked'))\n"
        "button",
    ])

    open_notebook(page, lab, "bare.ipynb")
    run_all_cells(page)
    # A Button outside a Box has no .jupyter-widgets ancestor; widget_button finds it anyway.
    assert page.locator('.jupyter-widgets button:has-text("Bare 42")').count() == 0
    widget_button(page, "Bare 42").click()
    assert wait_for_file(marker) == "clicked"

    lab.shutdown_kernels()
    assert lab.api("GET", "api/kernels") == []


def test_voila_renders_button_that_reaches_kernel(tmp_path, page):
    marker = tmp_path / "voila-clicked.txt"
    notebook = write_notebook(tmp_path / "button.ipynb", [BUTTON_CELL.format(marker=str(marker))])

    with IsolatedVoila(notebook) as voila:
        assert_loopback_only(voila)
        page.goto(voila.url())
        page.locator('.jupyter-widgets button:has-text("Touch marker")').click()
        assert wait_for_file(marker) == "clicked"
        page.screenshot(path=str(artifacts_dir() / "voila_harness_button.png"))
        spawned = psutil.Process(voila.proc.pid).children(recursive=True)
        assert spawned, "voila should have started a kernel"

    assert not port_listening(voila.port)
    assert not [p for p in spawned if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_server_that_cannot_start_fails_with_its_log(tmp_path):
    lab = IsolatedLab(tmp_path, start_timeout=30, extra_args=["--no-such-flag"])
    with pytest.raises(RuntimeError, match="exited with code") as excinfo:
        lab.start()
    assert "no-such-flag" in str(excinfo.value)
    assert lab.proc is None


def test_missing_chromium_fails_with_install_hint(monkeypatch, tmp_path):
    monkeypatch.setenv("SDJOBS_CHROMIUM", str(tmp_path / "no-chromium"))
    with pytest.raises(RuntimeError, match="apt-get install -y chromium"):
        chromium_path()
