"""The shape of the package (docs/ARCHITECTURE.md): layers, no import cycles, small functions and
classes, and no object reaching into another's private attributes."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "sdjobs_nb"
MAX_FUNCTION_LINES = 40
MAX_CLASS_LINES = 450
# private names that are public API of other libraries (namedtuple, sys, IPython's display protocol)
FOREIGN_PRIVATE = {"_replace", "_asdict", "_fields", "_make", "_getframe", "_exit", "_repr_mimebundle_"}


def _modules() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(), str(path))) for path in sorted(PACKAGE.rglob("*.py"))]


def test_the_import_contracts_hold():
    linter = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(linter), "--no-cache"], cwd=PACKAGE.parent, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_import_cycles_lazy_imports_included():
    grimp = pytest.importorskip("grimp", reason="import-linter brings grimp")
    graph = grimp.build_graph("sdjobs_nb", exclude_type_checking_imports=True)
    cycles = set()
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            if imported == "sdjobs_nb" or imported.startswith(importer + "."):
                continue  # a package importing its own submodules, or a re-export from the package root
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None and not importer.startswith(imported + "."):
                cycles.add(" -> ".join((importer, *back)))
    assert not cycles, "\n".join(sorted(cycles))


def test_functions_and_classes_stay_small():
    too_long = []
    for path, tree in _modules():
        for node in ast.walk(tree):
            limit = {ast.FunctionDef: MAX_FUNCTION_LINES, ast.AsyncFunctionDef: MAX_FUNCTION_LINES,
                     ast.ClassDef: MAX_CLASS_LINES}.get(type(node))
            if limit is not None and node.end_lineno - node.lineno + 1 > limit:
                too_long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} "
                                f"({node.end_lineno - node.lineno + 1} lines > {limit})")
    assert not too_long, "\n".join(too_long)


def _own_private_names(tree: ast.Module) -> set[str]:
    """Private attribute names that the classes of this module define (methods and self._x)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("_"):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and node.attr.startswith("_"):
            names.add(node.attr)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:  # __slots__ entries and class-level names
                if isinstance(item, ast.Assign):
                    names.update(t.id for t in item.targets if isinstance(t, ast.Name) and t.id.startswith("_"))
    return names


def test_no_object_reaches_into_another_modules_private_attributes():
    reaches = []
    for path, tree in _modules():
        own = _own_private_names(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") or node.attr.startswith("__"):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if node.attr in own or node.attr in FOREIGN_PRIVATE:
                continue
            reaches.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {ast.unparse(node)}")
    assert not reaches, "\n".join(reaches)
