"""The scripts in scripts/: `bash scripts/lab` really serves the example notebooks (as root too).

The test runs the real script, pip step included, on this checkout's .venv: when everything is
installed already, the script installs nothing (it would otherwise reinstall the editable
package under the feet of other processes using the venv).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest

from browser._lab import REPO_ROOT, _IsolatedServer, port_listening

LAB_SCRIPT = REPO_ROOT / "scripts" / "lab"
VENV_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"


class ScriptLab(_IsolatedServer):
    """`bash scripts/lab` with extra options: 127.0.0.1 only, a random token, a free port, no browser.

    Everything Jupyter and pip write (config, runtime, workspaces, settings, data, temp files)
    goes under `home`, a folder of the test's tmp_path.
    """

    name = "scripts-lab"

    def __init__(self, home: Path) -> None:
        super().__init__(start_timeout=240)  # pip runs before Lab starts
        self.home = home

    def _make_home(self) -> Path:
        for sub in ("data", "tmp"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        return self.home

    def _command(self) -> list[str]:
        return [
            "bash", str(LAB_SCRIPT),
            "--no-browser", "--ip=127.0.0.1", f"--port={self.port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}", "--LabApp.news_url=None",
        ]

    def _env(self) -> dict[str, str]:
        env = super()._env()
        env["JUPYTER_DATA_DIR"] = str(self.home / "data")
        env["TMPDIR"] = str(self.home / "tmp")
        return env

    def _ready_path(self) -> str:
        return "api/contents"


def group_processes(proc: subprocess.Popen) -> list[psutil.Process]:
    root = psutil.Process(proc.pid)
    return [root, *root.children(recursive=True)]


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="a bash script")
@pytest.mark.skipif(not VENV_PYTHON.exists(), reason="no .venv in the checkout: scripts/lab would build one from scratch")
def test_scripts_lab_serves_the_notebooks_and_stops(tmp_path):
    lab = ScriptLab(tmp_path / "lab").start()
    try:
        assert lab.proc is not None
        with urllib.request.urlopen(lab.url("api/contents"), timeout=30) as reply:
            assert reply.status == 200
            listing = json.load(reply)
        names = {item["name"] for item in listing["content"]}
        assert {"01_quickstart.ipynb", "07_scale_out.ipynb"} <= names, names  # it serves notebooks/

        assert {ip for ip, _ in lab.listen_addresses()} == {"127.0.0.1"}
        command = psutil.Process(lab.proc.pid).cmdline()  # the script exec'd into jupyter lab
        assert any(Path(arg).name == "jupyter-lab" for arg in command) and "notebooks/" in command, command
        assert ("--allow-root" in command) == (os.getuid() == 0), command  # only as root
        processes = group_processes(lab.proc)
    except BaseException:
        print(lab.log())
        lab.stop()
        raise
    proc, port = lab.proc, lab.port
    lab.stop()  # SIGTERM to the process group, then whatever is left is killed
    assert proc.poll() is not None
    assert not alive(processes)
    assert not port_listening(port)
