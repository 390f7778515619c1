"""The library's own map, read from its source: modules, their imports, who uses what. Private.

The book's "Library map" page and the architecture tests are generated from these
functions, so the map cannot drift from the code.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import aadlib

__all__: list[str] = []

PACKAGE = Path(aadlib.__file__).parent
_CHAPTER = re.compile(r"\bChapters? (\d+(?:, \d+)*(?: to \d+)?)")


def modules() -> list[str]:
    """The public modules, from the bottom layer up (``aadlib.__all__``)."""
    return list(aadlib.__all__)


def _tree(name: str) -> ast.Module:
    return ast.parse((PACKAGE / f"{name}.py").read_text(encoding="utf-8"))


def imports_of(name: str) -> set[str]:
    """The aadlib modules (public and private) that module ``name`` imports, anywhere in it."""
    found = set()
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:  # from .x import y
                found.add(node.module.split(".")[0])
            elif node.level == 1:  # from . import x, y
                found.update(alias.name for alias in node.names)
            elif node.module and node.module.startswith("aadlib."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("aadlib."):
                    found.add(alias.name.split(".")[1])
    found.discard("__version__")
    found.discard(name)
    return found


def lines_of(name: str) -> int:
    return len((PACKAGE / f"{name}.py").read_text(encoding="utf-8").splitlines())


def summary(obj) -> str:
    """The first sentence of an object's docstring, as plain text (no reST markup)."""
    doc = inspect.getdoc(obj) or ""
    first = doc.split("\n\n")[0].replace("\n", " ")
    first = re.sub(r":\w+:`~?([^`]+)`", r"\1", first).replace("``", "")
    return first.split(". ")[0].rstrip(".") + "."


def chapters_named(obj) -> list[int]:
    """The chapters a docstring names (``Chapter 3.``, ``Chapters 3, 4.``, ``Chapters 3 to 5.``)."""
    numbers: set[int] = set()
    for match in _CHAPTER.finditer(inspect.getdoc(obj) or ""):
        text = match.group(1)
        if " to " in text:
            head, last = text.rsplit(" to ", 1)
            first = int(head.split(", ")[-1])
            numbers.update(range(first, int(last) + 1))
            text = head
        numbers.update(int(n) for n in text.split(", "))
    return sorted(numbers)


def public_names(name: str) -> list[str]:
    module = importlib.import_module(f"aadlib.{name}")
    return list(getattr(module, "__all__", []))


def chapter_uses(notebooks: list[Path]) -> dict[tuple[str, str], list[int]]:
    """``(module, name) -> chapters`` whose code cells call ``module.name``.

    A chapter's number is the two digits its file name starts with.
    """
    import nbformat  # the book's dependency, not the library's

    uses: dict[tuple[str, str], set[int]] = {}
    pattern = re.compile(r"(?<![\w.])(" + "|".join(modules()) + r")\.([A-Za-z_]\w*)")
    for path in notebooks:
        chapter = int(path.name[:2])
        nb = nbformat.read(path, as_version=4)
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        for module, attribute in pattern.findall(code):
            uses.setdefault((module, attribute), set()).add(chapter)
    return {key: sorted(value) for key, value in uses.items()}
