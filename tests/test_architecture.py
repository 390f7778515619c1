"""The library's structure: layers without upward imports, light modules without TensorFlow,
public names that the chapters use and that name their chapter."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys

import pytest
from conftest import ROOT

import aadlib
from aadlib import _map

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PRIVATE = ["_storage", "_fastio", "_quiet"]


def test_every_module_is_on_the_map():
    on_disk = {p.stem for p in _map.PACKAGE.glob("*.py")} - {"__init__", "__main__", "_map"}
    assert on_disk == set(_map.modules()) | set(PRIVATE)


def test_the_map_lists_every_private_module_with_what_it_does():
    rows = _map.private_rows()
    assert [r["module"] for r in rows] == [f"aadlib.{n}" for n in sorted([*PRIVATE, "_map"])]
    assert all(r["what it does"].endswith(".") and len(r["what it does"]) > 20 for r in rows)


@pytest.mark.parametrize("name", _map.modules())
def test_modules_import_only_the_layers_above_them(name):
    order = _map.modules()
    allowed = set(order[: order.index(name)]) | set(PRIVATE)
    assert _map.imports_of(name) <= allowed, f"aadlib.{name} imports a module below it"


@pytest.mark.parametrize("name", PRIVATE)
def test_private_io_modules_import_no_aadlib_module(name):
    assert _map.imports_of(name) == set()


def test_metrics_tables_and_the_command_line_do_not_load_tensorflow():
    code = (
        "import sys, aadlib.metrics, aadlib.tables, aadlib.profiles, aadlib.published, aadlib.cli\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _function_local_imports(name: str):
    source = (_map.PACKAGE / f"{name}.py").read_text().splitlines()
    tree = ast.parse("\n".join(source))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Import | ast.ImportFrom):
                    yield inner.lineno, source[inner.lineno - 1]


@pytest.mark.parametrize("name", [*_map.modules(), *PRIVATE])
def test_a_function_imports_only_with_a_stated_reason(name):
    # Imports belong at the top of a module; one inside a function must say why there.
    unexplained = [(n, line) for n, line in _function_local_imports(name) if "#" not in line]
    assert not unexplained, f"aadlib.{name}: function-local imports without a reason"


#: The longest function (docstring included) that a student should meet in aadlib.
MAX_FUNCTION_LINES = 60


@pytest.mark.parametrize("name", [*_map.modules(), *PRIVATE])
def test_no_function_is_longer_than_a_screen(name):
    tree = ast.parse((_map.PACKAGE / f"{name}.py").read_text())
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"aadlib.{name}: split these functions: {long}"


USES = _map.chapter_uses(NOTEBOOKS)


@pytest.mark.parametrize("used", sorted(USES), ids=lambda key: ".".join(key))
def test_what_a_chapter_calls_is_public_and_names_the_chapter(used):
    module_name, name = used
    module = importlib.import_module(f"aadlib.{module_name}")
    assert name in getattr(module, "__all__", []), f"aadlib.{module_name}.{name} is not in __all__"
    obj = getattr(module, name)
    if callable(obj):
        named = _map.chapters_named(obj)
        missing = [c for c in USES[used] if c not in named]
        assert not missing, (
            f"the docstring of {module_name}.{name} does not name chapter(s) {missing}"
        )


def test_version_is_the_package_version():
    from importlib.metadata import version

    assert aadlib.__version__ == version("aadlib")


def test_the_readme_lists_the_modules_in_their_parts_and_order():
    """The README's module table is a copy of aadlib.PARTS: same parts, same order."""
    import aadlib

    text = (_map.PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\|([^|`]*)\| `(\w+)` \|", text, flags=re.MULTILINE)
    assert [name for _, name in rows] == _map.modules()
    parts, current = {}, None
    for part, name in rows:
        current = part.strip() or current
        parts.setdefault(current, []).append(name)
    assert {p: tuple(n) for p, n in parts.items()} == aadlib.PARTS
