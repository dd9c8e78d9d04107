"""binder/ cannot rot: a fresh venv built only from binder/ runs the quick start notebook.

Binder installs binder/requirements.txt, then runs binder/postBuild from the repository root.
This test does the same in a new virtual environment (pip reaches PyPI; its cache makes
reruns quick), on a copy of the repository so the notebook's library folder never meets one
from a concurrent nbval run, and executes notebooks/01_quickstart.ipynb with that
environment's kernel. Every output the notebook test compares must come out as stored.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "notebooks/01_quickstart.ipynb"
KERNEL = "sdjobs-binder-test"  # a name of its own: no other python3 kernelspec can stand in
NOT_IN_A_CLONE = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.egg-info", ".pytest_cache", ".hypothesis", "build", "dist",
    "libraries", "test-artifacts", "*.db", "*.db-wal", "*.db-shm", ".ipynb_checkpoints", ".cache",
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def run(args: list[str | Path], **kwargs) -> subprocess.CompletedProcess:
    """Run a command; on failure, fail the test with its output."""
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} exited {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return done


def isolated_env(tmp: Path, venv: Path) -> dict[str, str]:
    """The environment of a shell in `venv` that sees no user-wide Jupyter or IPython setup."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
        env[name] = str(tmp / "home" / name.lower())
    # what its tools leave in a temp folder (ipykernel's kernelspec staging dir) goes with the test's
    (tmp / "tmp").mkdir(exist_ok=True)
    env["TMPDIR"] = str(tmp / "tmp")
    return env


def compared_outputs(nb: nbformat.NotebookNode) -> list[list[tuple[str, str]]]:
    """The outputs nbval compares, per code cell not marked NBVAL_IGNORE_OUTPUT (text only)."""
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code" or "NBVAL_IGNORE_OUTPUT" in cell.source:
            continue
        texts = []
        for out in cell.outputs:
            if out.output_type == "stream":
                texts.append((out.name, out.text))
            elif "data" in out:
                texts.append((out.output_type, out.data.get("text/plain", "")))
            else:
                texts.append((out.output_type, f"{out.get('ename')}: {out.get('evalue')}"))
        cells.append(texts)
    return cells


def test_a_venv_built_from_binder_runs_the_quickstart(tmp_path: Path) -> None:
    repo, venv = tmp_path / "repo", tmp_path / "venv"
    shutil.copytree(ROOT, repo, ignore=NOT_IN_A_CLONE)
    env = isolated_env(tmp_path, venv)
    python = venv / "bin" / "python"

    run([sys.executable, "-m", "venv", venv])
    run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", repo / "binder" / "requirements.txt"], env=env)
    run(["bash", repo / "binder" / "postBuild"], cwd=repo, env=env)

    where = run([python, "-c", "import sdjobs_nb; print(sdjobs_nb.__file__)"], env=env, cwd=tmp_path).stdout.strip()
    assert Path(where).is_relative_to(repo), f"sdjobs_nb came from {where}, not from the repository"

    run([python, "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL], env=env)
    run([venv / "bin" / "jupyter", "nbconvert", "--to", "notebook", "--execute", NOTEBOOK,
         "--output-dir", tmp_path / "out", f"--ExecutePreprocessor.kernel_name={KERNEL}",
         "--ExecutePreprocessor.timeout=120"], cwd=repo, env=env)

    executed = nbformat.read(tmp_path / "out" / Path(NOTEBOOK).name, as_version=4)
    stored = nbformat.read(ROOT / NOTEBOOK, as_version=4)
    assert compared_outputs(executed) == compared_outputs(stored)
    assert any("application/vnd.jupyter.widget-view+json" in out.get("data", {})
               for cell in executed.cells for out in cell.get("outputs", [])), "the handle did not show as a widget"
    kernel = json.loads((venv / "share" / "jupyter" / "kernels" / KERNEL / "kernel.json").read_text())
    assert Path(kernel["argv"][0]).parent == venv / "bin"
