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


def part_of(name: str) -> str:
    """The part of the library a public module belongs to (``aadlib.PARTS``)."""
    return next(part for part, names in aadlib.PARTS.items() if name in names)


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
    # the first sentence ends at ". ", but not after an abbreviation such as "e.g."
    return re.split(r"(?<!\be\.g)(?<!\bi\.e)\. ", first)[0].rstrip(".") + "."


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


def constant(obj) -> str:
    """How the map shows a constant: its value when that is short, else what it holds."""
    text = repr(obj)
    if len(text) <= 60 and " at 0x" not in text:
        return f"= {text}"
    if isinstance(obj, dict):
        keys = ", ".join(map(str, obj))
        return f"a dict of {len(obj)}" + (f": {keys}" if len(keys) <= 80 else "")
    if isinstance(obj, tuple | list):
        return f"a {type(obj).__name__} of {len(obj)}"
    return f"a {type(obj).__name__}"


def private_modules() -> list[str]:
    """The private modules (``aadlib._*``): no part of the interface the chapters call."""
    return sorted(p.stem for p in PACKAGE.glob("_*.py") if not p.stem.startswith("__"))


def private_rows() -> list[dict[str, object]]:
    """One row per private module for the Library map: its summary and size."""
    return [
        {
            "module": f"aadlib.{name}",
            "what it does": summary(importlib.import_module(f"aadlib.{name}")),
            "lines": lines_of(name),
        }
        for name in private_modules()
    ]


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


def chapters_calling(
    uses: dict[tuple[str, str], list[int]], module: str, name: str | None = None
) -> list[int]:
    """The chapters whose code calls ``module.name`` (any name of it when ``name`` is None).

    ``uses`` is :func:`chapter_uses`'s answer. The Library map's two tables list chapters by
    this one rule, so a module's chapters are exactly the union of its names' chapters.
    """
    return sorted(
        {c for (m, n), found in uses.items() if m == module and name in (None, n) for c in found}
    )


def module_rows(uses: dict[tuple[str, str], list[int]]) -> list[dict[str, object]]:
    """One row per public module for the Library map: summary, imports, size, chapters.

    ``uses`` is :func:`chapter_uses`'s answer.
    """
    rows = []
    for name in modules():
        module, imported = importlib.import_module(f"aadlib.{name}"), imports_of(name)
        rows.append(
            {
                "module": f"aadlib.{name}",
                "part": part_of(name),
                "what it does": summary(module),
                "imports (aadlib)": ", ".join(m for m in modules() if m in imported),
                "lines": lines_of(name),
                "chapters calling it": ", ".join(map(str, chapters_calling(uses, name))),
            }
        )
    return rows


def name_rows(name: str, uses: dict[tuple[str, str], list[int]]) -> list[dict[str, str]]:
    """One row per public name of module ``name``: its summary and the chapters calling it."""
    module = importlib.import_module(f"aadlib.{name}")
    rows = []
    for public in public_names(name):
        obj = getattr(module, public)
        rows.append(
            {
                "name": f"{name}.{public}",
                "what it is": summary(obj) if callable(obj) else constant(obj),
                "chapters calling it": ", ".join(map(str, chapters_calling(uses, name, public))),
            }
        )
    return rows


_ROLE = re.compile(r"\{[\w:-]+\}`(?:([^`<]*?)\s*<[^`>]+>|([^`]*))`")


def _plain_myst(text: str) -> str:
    """MyST roles as text: ``{term}`a <b>``` -> ``a``; ``{doc}`../book/setup``` -> ``Setup``."""

    def plain(match: re.Match) -> str:
        if match.group(1):
            return match.group(1)
        target = match.group(2)
        return target.rsplit("/", 1)[-1].replace("_", " ").capitalize() if "/" in target else target

    return _ROLE.sub(plain, text).strip()


def chapter_outline(path: Path) -> dict[str, object]:
    """What a chapter's first cell promises, for the course map of "Teaching with this book".

    Returns the chapter's ``number``, ``title``, ``outcomes`` (the numbered list after "you
    will be able to"), ``time`` (its "Time to learn"), the ``necessary`` and ``helpful``
    prerequisites of its table, and its ``exercises`` (labels, in order) and how many of
    them are ``explore`` exercises.
    """
    import nbformat  # the book's dependency, not the library's

    cells = nbformat.read(path, as_version=4).cells
    first = cells[0].source if cells else ""
    text = "\n".join(c.source for c in cells if c.cell_type == "markdown")
    title = re.search(r"^# (.+)$", first, re.MULTILINE)
    able = first.split("you will be able to:", 1)
    time = re.search(r"\*\*Time to learn\*\*:\s*(.+?)\.?\s*$", first, re.MULTILINE)
    needs: dict[str, list[str]] = {"Necessary": [], "Helpful": []}
    for concept, importance in re.findall(r"^\| (.+?) \| (Necessary|Helpful) \|", first, re.M):
        needs[importance].append(_plain_myst(concept))
    exercises = re.findall(r"\{exercise\}[^\n]*\n:label: (\S+)\n+(\*Explore\.\*)?", text)
    return {
        "number": int(path.name[:2]),
        "title": title.group(1).strip() if title else path.stem,
        "outcomes": [_plain_myst(item) for item in re.findall(r"^\d+\. (.+)$", able[-1], re.M)]
        if len(able) == 2
        else [],
        "time": time.group(1) if time else "",
        "necessary": needs["Necessary"],
        "helpful": needs["Helpful"],
        "exercises": [label for label, _ in exercises],
        "explore": sum(1 for _, explore in exercises if explore),
    }
