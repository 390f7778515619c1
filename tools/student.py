"""The student edition of the chapters: every exercise kept, every solution removed.

A solution is either a ``{solution}`` directive or everything from a
``{solution-start}`` directive to the end of its ``{solution-end}`` directive, which may
span cells: the markdown around them and the code cells between them. Each removed
solution leaves one empty code cell for the student's answer. Outputs are dropped.

    python tools/student.py [--out _build/student] [notebooks ...]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
_FENCE = re.compile(r"^(?P<fence>`{3,}|:{3,})\s*\{(?P<name>[\w:-]+)\}\s*(?P<arg>.*)$")
ANSWER = "# Your answer\n"


def exercise_labels(nb: nbformat.NotebookNode) -> list[str]:
    """The labels of the exercises of a notebook, in order."""
    return _directive_labels(nb, "exercise")


def solution_count(nb: nbformat.NotebookNode) -> int:
    """How many solution directives (``{solution}`` or ``{solution-start}``) a notebook has."""
    return sum(
        1
        for cell in nb.cells
        if cell.cell_type == "markdown"
        for line in cell.source.splitlines()
        if (m := _FENCE.match(line)) and m.group("name") in ("solution", "solution-start")
    )


def _directive_labels(nb: nbformat.NotebookNode, name: str) -> list[str]:
    labels = []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.splitlines()
        for i, line in enumerate(lines):
            match = _FENCE.match(line)
            if match and match.group("name") == name:
                label = next((x for x in lines[i + 1 :] if x.startswith(":label:")), "")
                labels.append(label.removeprefix(":label:").strip())
    return labels


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return len(stripped) >= len(fence) and set(stripped) == {fence[0]}


class _Stripper:
    """Walks the cells once, remembering whether it is inside a solution, and how."""

    def __init__(self) -> None:
        self.fence = ""  # the fence of the directive being skipped
        self.kind = ""  # "", "solution", "solution-start", "between" or "solution-end"

    @property
    def inside(self) -> bool:
        return bool(self.kind)

    def markdown(self, source: str) -> list[str | None]:
        """The pieces of a markdown cell that stay; ``None`` where a solution ended."""
        pieces: list[str | None] = [""]
        for line in source.splitlines(keepends=True):
            match = _FENCE.match(line.rstrip("\n"))
            if not self.kind:
                if match and match.group("name") in ("solution", "solution-start"):
                    self.fence, self.kind = match.group("fence"), match.group("name")
                else:
                    pieces[-1] += line
            elif self.kind == "between":
                if match and match.group("name") == "solution-end":
                    self.fence, self.kind = match.group("fence"), "solution-end"
            elif _closes(line, self.fence):
                if self.kind == "solution-start":
                    self.kind = "between"
                else:
                    self.kind = ""
                    pieces += [None, ""]
        return pieces


def strip_solutions(
    nb: nbformat.NotebookNode, keep_outputs: bool = False, answer_cells: bool = True
) -> nbformat.NotebookNode:
    """A copy of ``nb`` without solutions: an empty answer cell (``answer_cells``) for
    each, and the code cells' outputs dropped unless ``keep_outputs``."""
    out = nbformat.v4.new_notebook(metadata=nb.metadata)
    walker = _Stripper()
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            pieces = walker.markdown(cell.source)
            for k, piece in enumerate(pieces):
                cell_id = cell.get("id") or f"cell{len(out.cells)}"
                if piece is None:
                    new = _answer_cell() if answer_cells else None
                else:
                    new = _markdown_cell(piece)
                if new is not None:
                    new.id = cell_id if k == 0 else f"{cell_id}-{k}"
                    out.cells.append(new)
        elif not walker.inside:
            new = nbformat.from_dict(dict(cell))
            if new.cell_type == "code" and not keep_outputs:
                new.outputs, new.execution_count = [], None
            out.cells.append(new)
    if walker.inside:
        raise ValueError("a solution directive is never closed")
    return out


def _markdown_cell(text: str) -> nbformat.NotebookNode | None:
    return nbformat.v4.new_markdown_cell(text.strip("\n")) if text.strip() else None


def _answer_cell() -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(ANSWER)


def write_edition(notebooks: list[Path], out_dir: Path) -> list[Path]:
    """Write the student edition of each notebook into ``out_dir``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        try:
            student = strip_solutions(nb)
        except ValueError as error:
            raise ValueError(f"{path}: {error}; close it with its fence") from None
        target = out_dir / path.name
        nbformat.write(student, target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "student")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    try:
        written = write_edition(notebooks, args.out)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in written:
        nb = nbformat.read(path, as_version=4)
        print(f"{path}: {len(exercise_labels(nb))} exercises, solutions removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
