"""Every ```python block of README.md runs as written, so the README cannot drift from the code.

A block with top-level `await` is a notebook cell: the cells run in README order, in one shared
namespace, inside a running event loop, as a Jupyter kernel runs them (compiled with
`PyCF_ALLOW_TOP_LEVEL_AWAIT`; a cell whose code object is a coroutine is awaited). A block without
top-level `await` is a script: it runs with `python` in a subprocess and must exit 0 with nothing
on stderr. Both run in the test's tmp_path, so the libraries the examples create land there.
Tracebacks point at README.md's own line numbers.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

import sdjobs_nb as sj

README = Path(__file__).resolve().parent.parent / "README.md"
CELL_TIMEOUT_S = 60  # each example takes well under a second; this only bounds a hang
FENCE = re.compile(r"^(`{3,}|~{3,})\s*([\w+-]*)")


@dataclass(frozen=True)
class Block:
    heading: str
    line: int  # README line of the block's first code line
    lang: str
    code: str

    @property
    def where(self) -> str:
        return f"README.md:{self.line} ({self.heading})"

    def compile(self) -> types.CodeType:
        # padded so that line numbers in tracebacks are README.md's own
        source = "\n" * (self.line - 1) + self.code
        return compile(source, str(README), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)

    @property
    def is_notebook_cell(self) -> bool:
        return bool(self.compile().co_flags & inspect.CO_COROUTINE)


def readme_blocks() -> list[Block]:
    """The fenced code blocks of README.md, each with its nearest heading above it."""
    blocks: list[Block] = []
    heading = "top"
    fence: tuple[str, str, int, list[str]] | None = None  # (marker, lang, first line, lines)
    for number, text in enumerate(README.read_text(encoding="utf-8").splitlines(), start=1):
        if fence is None:
            match = FENCE.match(text)
            if match:
                fence = (match.group(1), match.group(2).lower(), number + 1, [])
            elif text.startswith("#"):
                heading = text.lstrip("#").strip()
        elif text.strip().startswith(fence[0]) and not text.strip().strip(fence[0][0]):
            blocks.append(Block(heading, fence[2], fence[1], "\n".join(fence[3]) + "\n"))
            fence = None
        else:
            fence[3].append(text)
    assert fence is None, f"README.md: the code block opened at line {fence[2] - 1} is never closed"
    return blocks


def _ids(blocks: list[Block]) -> list[str]:
    ids, seen = [], {}
    for block in blocks:
        slug = re.sub(r"[^a-z0-9]+", "-", block.heading.lower()).strip("-") or "block"
        seen[slug] = seen.get(slug, 0) + 1
        ids.append(slug if seen[slug] == 1 else f"{slug}-{seen[slug]}")
    return ids


PYTHON = [b for b in readme_blocks() if b.lang in ("python", "py")]
CELLS = [b for b in PYTHON if b.is_notebook_cell]
SCRIPTS = [b for b in PYTHON if not b.is_notebook_cell]


def test_readme_has_the_examples_this_file_runs():
    """Nothing is silently left out: every python block is a notebook cell or a script."""
    assert len(CELLS) >= 4, [b.where for b in CELLS]
    assert SCRIPTS, "the sync facade example (a script) is missing"
    assert any("open_sync" in b.code for b in SCRIPTS), "the sync facade example should be a script block"
    untagged = [b.where for b in readme_blocks() if not b.lang]
    assert not untagged, f"fenced blocks without a language (tag them, e.g. ```python): {untagged}"


async def test_notebook_cells_in_order(tmp_path, monkeypatch):
    """The notebook cells, in README order, in one namespace, on this test's running loop."""
    monkeypatch.chdir(tmp_path)
    module = types.ModuleType("readme_notebook")  # like a kernel's __main__: classes defined here resolve
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    try:
        for block in CELLS:
            result = eval(block.compile(), namespace)  # noqa: S307 - the README's own code
            if inspect.iscoroutine(result):
                try:
                    await asyncio.wait_for(result, CELL_TIMEOUT_S)
                except TimeoutError:
                    pytest.fail(f"the notebook cell at {block.where} did not finish within {CELL_TIMEOUT_S} s")
    finally:
        for value in list(namespace.values()):  # a failed cell must not leave a library owned
            if isinstance(value, sj.JobManager) and not value.closed:
                await value.close()
    left_open = [name for name, value in namespace.items() if isinstance(value, sj.JobManager) and not value.closed]
    assert not left_open


@pytest.mark.parametrize("block", SCRIPTS, ids=_ids(SCRIPTS))
def test_script(block: Block, tmp_path):
    """A script block runs as `python example.py` and exits 0 with an empty stderr."""
    script = tmp_path / "example.py"
    script.write_text(block.code, encoding="utf-8")
    done = subprocess.run([sys.executable, script.name], cwd=tmp_path, capture_output=True, text=True,
                          timeout=CELL_TIMEOUT_S)
    assert done.returncode == 0, f"{block.where} exited {done.returncode}:\n{done.stderr}"
    assert done.stderr == "", f"{block.where} wrote to stderr:\n{done.stderr}"


def test_command_line_example_names_real_commands():
    """The bash block of "Command line" uses only subcommands that `sdjobs --help` lists."""
    (block,) = [b for b in readme_blocks() if b.heading == "Command line" and b.lang == "bash"]
    used = {line.split()[1] for line in block.code.splitlines() if line.startswith("sdjobs ")}
    assert used, block.code
    done = subprocess.run([sys.executable, "-m", "sdjobs_nb", "--help"], capture_output=True, text=True,
                          timeout=CELL_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    listed = set(re.findall(r"^ {4}(\w+) {2,}", done.stdout, re.MULTILINE))  # the "commands:" list
    assert used <= listed, f"README uses {sorted(used - listed)}, which `sdjobs --help` does not list"
