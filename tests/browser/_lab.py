"""Drive a real, isolated JupyterLab or Voila in headless Chromium (no tests in here).

Typical use in a test::

    with IsolatedLab(tmp_path) as lab, sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page()
        write_notebook(tmp_path / "NB.ipynb", ["import ipywidgets as w; w.IntSlider()"])
        open_notebook(page, lab, "NB.ipynb")
        run_cell(page, 0)

``tests/browser/conftest.py`` offers the same as fixtures: ``chromium`` (one browser per
module) and ``page`` (fresh context per test, screenshot to ``test-artifacts/`` on failure).

Every server listens on 127.0.0.1 only, uses a random token, runs from this interpreter's
venv, reads no user-level Jupyter config or settings (the venv's own config still applies),
and is stopped together with its kernels when the ``with`` block exits, even on failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import psutil

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Playwright

__all__ = (
    "CHROMIUM_ARGS",
    "IsolatedLab",
    "IsolatedVoila",
    "REPO_ROOT",
    "artifacts_dir",
    "chromium_path",
    "launch_chromium",
    "open_notebook",
    "port_listening",
    "run_all_cells",
    "run_cell",
    "wait_for_file",
    "wait_for_kernel_idle",
    "widget_button",
    "write_notebook",
)

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Seconds to wait for a server to answer; this 2-core machine is slow and noisy.
START_TIMEOUT = float(os.environ.get("SDJOBS_SERVER_START_TIMEOUT", "60"))
#: Milliseconds for browser-side waits (page load, kernel start, cell execution).
UI_TIMEOUT_MS = 60_000

KERNEL_IDLE_TEXT = "Python 3 (ipykernel) | Idle"

CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

# Lab settings written into the isolated settings dir: no news fetch (no network, no
# popup) and no notebook windowing, so every cell is in the DOM and indexable.
_LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def artifacts_dir() -> Path:
    """Return the repo's ``test-artifacts/`` directory, creating it if needed."""
    path = REPO_ROOT / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


def write_notebook(path: str | os.PathLike[str], cells: Sequence[str]) -> Path:
    """Write a notebook of code cells with the ``python3`` kernelspec, so Lab asks nothing."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    path = Path(path)
    nbformat.write(nb, path)
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_listening(port: int) -> bool:
    """Return True if something accepts TCP connections on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for_file(path: str | os.PathLike[str], timeout: float = 30.0) -> str:
    """Wait until ``path`` holds text (e.g. a marker a click handler writes) and return it.

    ``write_text`` creates the file before it writes: an empty file is not written yet.
    """
    path = Path(path)
    deadline = time.monotonic() + timeout
    while not (text := path.read_text() if path.exists() else ""):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} was not written within {timeout:.0f}s")
        time.sleep(0.05)
    return text


def _venv_executable(name: str) -> str:
    """Return the ``name`` script next to this interpreter, so servers use the test venv."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise RuntimeError(f"{path} not found; install the test extras: pip install -e '.[test]'")
    return str(path)


class _IsolatedServer:
    """A Jupyter-family server in its own process group, with its own config/runtime dirs.

    Subclasses provide ``_command()`` and ``_ready_path()``; the rest (ports, polling,
    teardown of the server *and* its kernels) is shared.
    """

    name = "server"

    def __init__(self, *, start_timeout: float = START_TIMEOUT) -> None:
        self.start_timeout = start_timeout
        self.token = secrets.token_hex(16)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._home: Path | None = None

    # -- public --------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "") -> str:
        """Return ``base_url/path`` with the token appended as a query parameter."""
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}/{path.lstrip('/')}{sep}token={self.token}"

    @property
    def log_path(self) -> Path:
        assert self._home is not None, "server not started"
        return self._home / f"{self.name}.log"

    def log(self) -> str:
        """Return the server's combined stdout/stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except (AssertionError, OSError):
            return ""

    def start(self) -> "_IsolatedServer":
        self._home = self._make_home()
        try:
            self._write_settings()
            self._start_on_free_port()
        except BaseException:
            self.stop()
            raise
        return self

    def _make_home(self) -> Path:
        """The server's own Jupyter home (settings, runtime files, log): a new temporary folder."""
        return Path(tempfile.mkdtemp(prefix=f"sdjobs-{self.name}-"))

    def stop(self) -> None:
        """Stop the server and every process it started (kernels have their own sessions)."""
        try:
            if self.proc is not None:
                _kill_tree(self.proc)
                self.proc = None
                self._wait_port_closed()
        finally:
            if self._home is not None:
                shutil.rmtree(self._home, ignore_errors=True)
                self._home = None

    def listen_addresses(self) -> set[tuple[str, int]]:
        """Return the (ip, port) of every listening socket of the server and its kernels."""
        assert self.proc is not None, "server not running"
        root = psutil.Process(self.proc.pid)
        addresses = set()
        for proc in (root, *root.children(recursive=True)):
            with contextlib.suppress(psutil.NoSuchProcess):
                for conn in proc.net_connections(kind="inet"):
                    if conn.status == psutil.CONN_LISTEN:
                        addresses.add((conn.laddr.ip, conn.laddr.port))
        return addresses

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- internals -----------------------------------------------------------------------
    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready_path(self) -> str:
        raise NotImplementedError

    def _cwd(self) -> Path:
        assert self._home is not None
        return self._home

    def _env(self) -> dict[str, str]:
        assert self._home is not None
        env = dict(os.environ)
        for var, sub in (
            ("JUPYTER_CONFIG_DIR", "config"),
            ("JUPYTER_RUNTIME_DIR", "runtime"),
            ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
            ("JUPYTERLAB_SETTINGS_DIR", "settings"),
        ):
            env[var] = str(self._home / sub)
        env.pop("JUPYTER_TOKEN", None)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _write_settings(self) -> None:
        assert self._home is not None
        for rel, content in _LAB_SETTINGS.items():
            path = self._home / "settings" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(content))
        for sub in ("config", "runtime", "workspaces"):
            (self._home / sub).mkdir(exist_ok=True)

    def _start_on_free_port(self, attempts: int = 3) -> None:
        # The probed port can be taken before the server binds it. Servers run with port
        # retries off, so they never drift to a port nobody polls; we retry here instead.
        for _ in range(attempts):
            self.port = _free_port()
            self._spawn()
            if self._wait_ready():
                return
        raise RuntimeError(
            f"{self.name} found no free port in {attempts} attempts\n--- log ---\n{self.log()}"
        )

    def _spawn(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self._command(),
                cwd=self._cwd(),
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait_ready(self) -> bool:
        """Poll until ready; return False if the port was taken, raise on other failures."""
        assert self.proc is not None
        deadline = time.monotonic() + self.start_timeout
        url = self.url(self._ready_path())
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if "already in use" in self.log():
                    self.proc = None
                    return False
                raise RuntimeError(
                    f"{self.name} exited with code {self.proc.returncode} before it was "
                    f"ready; command: {self._command()}\n--- log ---\n{self.log()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    if resp.status == 200:
                        return True
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.25)
        raise RuntimeError(
            f"{self.name} did not answer {url} within {self.start_timeout:.0f}s; "
            f"command: {self._command()}\n--- log ---\n{self.log()}"
        )

    def _wait_port_closed(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while port_listening(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"port {self.port} still listening after stopping {self.name}")
            time.sleep(0.1)


def _kill_tree(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the server's group (it then shuts its kernels down), then SIGKILL stragglers.

    Kernels are started with ``start_new_session=True`` by jupyter_client, so killing the
    server's process group alone would orphan them: collect all descendants first.
    """
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    _, alive = psutil.wait_procs(descendants, timeout=max(1.0, grace / 2))
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(alive, timeout=5)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


class IsolatedLab(_IsolatedServer):
    """A ``jupyter lab`` serving ``root_dir`` on 127.0.0.1 with a random token.

    Use as a context manager (or call ``start()``/``stop()``); ``lab.url("lab/tree/NB.ipynb")``
    gives an authenticated URL, ``lab.api("GET", "api/kernels")`` calls the REST API.
    """

    name = "jupyter-lab"

    def __init__(self, root_dir: str | os.PathLike[str], *, start_timeout: float = START_TIMEOUT,
                 extra_args: Sequence[str] = ()) -> None:
        super().__init__(start_timeout=start_timeout)
        self.root_dir = Path(root_dir).resolve()
        self.extra_args = list(extra_args)

    def __enter__(self) -> "IsolatedLab":
        return self.start()  # type: ignore[return-value]

    def _command(self) -> list[str]:
        return [
            _venv_executable("jupyter"), "lab",
            "--no-browser", "--allow-root",
            "--ip=127.0.0.1", f"--port={self.port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
            "--LabApp.news_url=None",
            *self.extra_args,
        ]

    def _ready_path(self) -> str:
        return "api/status"

    def api(self, method: str, path: str, body: object | None = None) -> object:
        """Call the server's REST API and return the decoded JSON (None for empty replies)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url(path), data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def shutdown_kernels(self) -> None:
        """Delete all sessions and kernels, so the next test starts from a clean server."""
        for session in self.api("GET", "api/sessions"):  # type: ignore[union-attr]
            self.api("DELETE", f"api/sessions/{session['id']}")
        for kernel in self.api("GET", "api/kernels"):  # type: ignore[union-attr]
            self.api("DELETE", f"api/kernels/{kernel['id']}")


class IsolatedVoila(_IsolatedServer):
    """A ``voila NB.ipynb`` on 127.0.0.1 with a random token; ``voila.url()`` opens the page.

    Voila has no root check, so no ``--allow-root`` is needed. It reads ``voila.json`` from its
    working directory, so it runs in a fresh temp dir (the kernel still runs in the
    notebook's directory).
    """

    name = "voila"

    def __init__(self, notebook_path: str | os.PathLike[str], *,
                 start_timeout: float = START_TIMEOUT, extra_args: Sequence[str] = ()) -> None:
        super().__init__(start_timeout=start_timeout)
        self.notebook_path = Path(notebook_path).resolve()
        self.extra_args = list(extra_args)

    def __enter__(self) -> "IsolatedVoila":
        return self.start()  # type: ignore[return-value]

    def _command(self) -> list[str]:
        assert self._home is not None
        return [
            _venv_executable("voila"), str(self.notebook_path),
            "--no-browser", f"--port={self.port}", "--Voila.ip=127.0.0.1",
            "--Voila.port_retries=0",
            f"--Voila.token={self.token}",
            f"--Voila.connection_dir_root={self._home / 'runtime'}",
            "--show_tracebacks=True",
            *self.extra_args,
        ]

    def _ready_path(self) -> str:
        # A static file: polling "/" would execute the notebook in a new kernel each time.
        return "voila/static/voila.js"


def chromium_path() -> str:
    """Return the Chromium binary (``$SDJOBS_CHROMIUM`` or /usr/bin/chromium), or raise."""
    path = os.environ.get("SDJOBS_CHROMIUM", "/usr/bin/chromium")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise RuntimeError(
            f"Chromium not found at {path!r}: run `apt-get install -y chromium` "
            "(or set SDJOBS_CHROMIUM to a Chromium binary). Browser tests need it."
        )
    return path


def launch_chromium(playwright: "Playwright", **kwargs) -> "Browser":
    """Launch headless Chromium with the flags from NOTEBOOK_FACTS.md.

    Playwright's ``launch`` gives each browser a fresh temporary profile (user-data dir)
    and deletes it on ``browser.close()``; no ``playwright install`` is needed.
    """
    args = [*CHROMIUM_ARGS, *kwargs.pop("args", ())]
    return playwright.chromium.launch(
        executable_path=chromium_path(), headless=True, args=args, **kwargs
    )


def _active_notebook(page: "Page"):
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").first


def wait_for_kernel_idle(page: "Page", timeout: float = UI_TIMEOUT_MS) -> None:
    """Wait until the status bar shows the notebook's kernel as idle."""
    page.get_by_text(KERNEL_IDLE_TEXT, exact=True).first.wait_for(timeout=timeout)


def open_notebook(page: "Page", lab: IsolatedLab, path: str,
                  timeout: float = UI_TIMEOUT_MS) -> None:
    """Open ``path`` (relative to the Lab root) in a fresh workspace and wait for its kernel.

    ``?reset`` drops the workspace saved by an earlier page, so notebooks opened by earlier
    tests on a shared server are not reopened next to this one.
    """
    page.goto(lab.url(f"lab/tree/{urllib.parse.quote(path)}?reset"), timeout=timeout)
    _active_notebook(page).locator(".jp-Cell").first.wait_for(timeout=timeout)
    wait_for_kernel_idle(page, timeout)


def widget_button(page: "Page", text: str):
    """Locate an ipywidgets Button by its text, in Lab or Voila, inside a box or not.

    The selector ``.jupyter-widgets button:has-text(...)`` only matches buttons nested in a
    Box (HBox/VBox): a bare Button *is* the ``.jupyter-widgets`` element, with no such
    ancestor. This locator matches both.
    """
    return page.locator("button.jupyter-button", has_text=text)


def _prompt(cell) -> str:
    return cell.locator(".jp-InputPrompt").first.inner_text().strip()


def run_cell(page: "Page", index: int, timeout: float = UI_TIMEOUT_MS, *,
             key: str = "Shift+Enter") -> None:
    """Run cell ``index`` of the active notebook with ``key`` and wait until it finished.

    "Finished" means the prompt shows a new execution count (not ``[*]``) and the kernel
    is idle; background tasks the cell started may still be running. Shift+Enter on the
    last cell appends an empty cell (as in Lab); pass ``key="Control+Enter"`` to avoid it.
    """
    cell = _active_notebook(page).locator(".jp-Cell").nth(index)
    before = _prompt(cell)
    cell.locator(".jp-InputArea-editor .cm-content").click()
    page.keyboard.press(key)
    _wait_prompt_done(page, cell, before, timeout)
    wait_for_kernel_idle(page, timeout)


def run_all_cells(page: "Page", timeout: float = UI_TIMEOUT_MS) -> None:
    """Run every cell of the active notebook via Run > Run All Cells and wait for all of them."""
    cells = _active_notebook(page).locator(".jp-Cell")
    before = [_prompt(cells.nth(i)) for i in range(cells.count())]
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    for i, prompt in enumerate(before):
        _wait_prompt_done(page, cells.nth(i), prompt, timeout)
    wait_for_kernel_idle(page, timeout)


def _wait_prompt_done(page: "Page", cell, before: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout / 1000
    while True:
        now = _prompt(cell)
        if re.fullmatch(r"\[\d+\]:", now) and now != before:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"cell still shows {now!r} after {timeout / 1000:.0f}s")
        page.wait_for_timeout(100)
