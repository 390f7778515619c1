"""Slides per chapter: reveal.js decks made from the executed chapters, readable offline.

Each chapter is taken with the outputs of the book build (Jupyter Book's execution cache,
``_build/.jupyter_cache``; ``make book`` fills it), so that no chapter runs twice. The deck
shows the chapter's text and outputs, not its code: every heading starts a slide (``#``
and ``##`` a new slide, ``###`` a slide below it), a slide that would overflow continues
on the next one below, code inputs are hidden, solutions are left out (the exercises
stay), glued numbers are filled in and MyST roles and directives become plain markdown.

reveal.js, RequireJS and jQuery come from npm (``make slides`` installs them into
``_build/node``) and MathJax from the ``sphinx-mathjax-offline`` package; all are copied
into the decks' ``_vendor`` folder, which the decks load with relative addresses.

    python tools/slides.py [--cache _build/.jupyter_cache] [--out _build/slides] [nb ...]
"""

from __future__ import annotations

import argparse
import copy
import importlib
import re
import shutil
import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import student  # noqa: E402  (a sibling script)

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = Path(__file__).resolve().parent / "slides_template"
VENDOR = "_vendor"
# What a slide holds before the rest goes on the next one: about 20 lines of text.
SLIDE_BUDGET = 20
_ROLE = re.compile(r"\{(?P<name>[\w:-]+)\}`(?P<text>[^`]*)`")
_FENCE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w:-]+)\}\s*(?P<arg>.*)$")
_LABELLED = re.compile(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>$", re.DOTALL)
_ADMONITIONS = {"note", "tip", "warning", "important", "caution", "attention", "seealso", "hint"}


class SlidesError(RuntimeError):
    """A chapter that cannot be made into slides; the message says what to do."""


def executed(path: Path, cache: Path | None) -> nbformat.NotebookNode:
    """The chapter with its outputs: from the book's execution cache, or as stored."""
    nb = nbformat.read(path, as_version=4)
    if cache is None:
        return nb
    from jupyter_cache import get_cache  # the book's dependency, not the library's

    if not cache.is_dir():
        raise SlidesError(f"no execution cache at {cache}: run `make book` first")
    try:
        _, merged = get_cache(str(cache)).merge_match_into_notebook(nb)
    except KeyError:
        raise SlidesError(
            f"{path}: no executed copy in {cache} matches the chapter as it is now: "
            "run `make book` first (it executes changed chapters only)"
        ) from None
    return merged


def glue_values(nb: nbformat.NotebookNode) -> dict[str, dict]:
    """``name -> mime bundle`` of every value the chapter glues (myst-nb's ``glue``)."""
    values = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            meta = output.get("metadata", {}).get("scrapbook")
            if meta:
                prefix = len(meta.get("mime_prefix", ""))
                values[meta["name"]] = {k[prefix:]: v for k, v in output["data"].items()}
    return values


def _drop_glue_outputs(cell: nbformat.NotebookNode) -> None:
    """Drop what the book does not show either: glued values (they appear in the prose)
    and stderr streams (library logs and warnings; the book's ``stderr_output: remove``)."""
    cell.outputs = [
        o
        for o in cell.get("outputs", [])
        if not o.get("metadata", {}).get("scrapbook", {}).get("mime_prefix")
        and not (o.get("output_type") == "stream" and o.get("name") == "stderr")
    ]


def _glued_text(key: str, glue: dict[str, dict], markdown: bool = False) -> str:
    from myst_nb.core.variables import format_plain_text  # the book's dependency

    name, _, spec = key.partition(":")
    if name not in glue:
        raise SlidesError(f"glued value {name!r} is not in the executed chapter")
    bundle = glue[name]
    if markdown and "text/markdown" in bundle:
        return bundle["text/markdown"]
    text = bundle.get("text/plain", "")
    if spec:
        return format_plain_text(text, spec)
    return text[1:-1] if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"" else text


def _role(match: re.Match, glue: dict[str, dict], citations: dict[str, str]) -> str:
    name, text = match.group("name"), match.group("text")
    if name in ("glue", "glue:", "glue:text", "glue:any"):
        return _glued_text(text, glue)
    if name == "glue:md":
        return _glued_text(text, glue, markdown=True)
    if name.startswith("cite"):
        works = "; ".join(citations.get(k.strip(), k.strip()) for k in text.split(","))
        return works if name in ("cite:t", "cite:ts") else f"({works})"
    if name == "math":
        return f"${text}$"
    labelled = _LABELLED.match(text)
    if labelled:
        return labelled.group("text")
    if name == "doc":
        return Path(text).name.replace("_", " ").capitalize()
    return text


def citations_from(bib: Path) -> dict[str, str]:
    """``key -> "Author et al. year"`` from a BibTeX file, for the slides' citations."""
    found = {}
    text = bib.read_text(encoding="utf-8") if bib.exists() else ""
    for entry in re.split(r"\n(?=@)", text):
        key = re.match(r"@\w+\{([^,]+),", entry.strip())
        authors = re.search(r"\bauthor\s*=\s*[{\"](.+?)[}\"],?\s*\n", entry, re.DOTALL)
        year = re.search(r"\byear\s*=\s*[{\"]?(\d{4})", entry)
        if not key:
            continue
        names = [a.strip() for a in authors.group(1).split(" and ")] if authors else []
        last = [n.split(",")[0].strip("{} ") if "," in n else n.split()[-1] for n in names if n]
        who = (
            last[0]
            if len(last) == 1
            else f"{last[0]} and {last[1]}"
            if len(last) == 2
            else (f"{last[0]} et al." if last else key.group(1))
        )
        found[key.group(1)] = f"{who} {year.group(1) if year else ''}".strip()
    return found


def _directive(name: str, arg: str, body: str, glue: dict[str, dict]) -> str:
    if name in ("glue", "glue:", "glue:any", "glue:figure"):
        bundle = glue.get(arg.split()[0], {}) if arg else {}
        if "image/png" in bundle:
            image = f'<img src="data:image/png;base64,{bundle["image/png"]}" alt="{arg}">'
            return image + (f"\n\n{body}" if body.strip() else "")
        return bundle.get("text/html") or bundle.get("text/plain", "")
    if name == "exercise":
        return f"**Exercise.** {body}"
    if name in _ADMONITIONS or name == "admonition":
        title = arg if name == "admonition" and arg else name.capitalize()
        return "\n".join(f"> {line}" for line in f"**{title}.** {body}".splitlines())
    if name == "math":
        return f"$$\n{body}\n$$"
    if name in ("code-block", "code", "sourcecode"):
        return f"```{arg}\n{body}\n```"
    if name in ("figure", "image", "bibliography", "glossary", "toctree"):
        return body
    return f"**{arg}**\n\n{body}" if arg and name == "dropdown" else body


def myst_to_markdown(text: str, glue: dict[str, dict], citations: dict[str, str]) -> str:
    """Plain markdown for nbconvert: MyST roles, directives and targets resolved."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        match = _FENCE.match(line)
        if re.match(r"^\([\w.-]+\)=\s*$", line) or line.startswith("% "):
            i += 1
            continue
        if not match:
            out.append(_ROLE.sub(lambda m: _role(m, glue, citations), line))
            i += 1
            continue
        fence, end = match.group("fence"), i + 1
        while end < len(lines) and not student._closes(lines[end], fence):
            end += 1
        body = lines[i + 1 : end]
        while body and re.match(r"^:[\w-]+:", body[0]):
            body = body[1:]
        inner = myst_to_markdown("\n".join(body).strip("\n"), glue, citations)
        out.append(_directive(match.group("name"), match.group("arg").strip(), inner, glue))
        i = end + 1
    return "\n".join(out)


def _split_at_headings(text: str) -> list[str]:
    """Markdown cut before every heading (outside code fences)."""
    pieces, fenced = [[]], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"^#{1,3} ", line) and any(x.strip() for x in pieces[-1]):
            pieces.append([])
        pieces[-1].append(line)
    return ["\n".join(p).strip("\n") for p in pieces if any(x.strip() for x in p)]


def _height(cell: nbformat.NotebookNode) -> float:
    """A rough height of a cell on a slide, in lines of text."""
    if cell.cell_type == "markdown":
        return sum(1 + len(line) // 90 for line in cell.source.splitlines() if line.strip())
    height = 0.0
    for output in cell.get("outputs", []):
        data = output.get("data", {})
        if "image/png" in data or "image/svg+xml" in data:
            height += 14
        elif "text/html" in data:
            html = data["text/html"]
            height += 3 + html.count("<tr") + 2 * html.count("<audio")
        else:
            text = output.get("text", "") or data.get("text/plain", "")
            height += 1 + min(text.count("\n"), 30) * 0.6
    return height


def slide_cells(nb: nbformat.NotebookNode, glue, citations) -> list[nbformat.NotebookNode]:
    """The chapter's cells as slides: markdown resolved and cut at headings, slide types set."""
    cells, used = [], 0.0
    for cell in nb.cells:
        tags = set(cell.metadata.get("tags", []))
        if "remove-cell" in tags:
            continue
        if cell.cell_type == "markdown":
            text = myst_to_markdown(cell.source, glue, citations)
            text = "\n".join(x for x in text.splitlines() if "colab.research.google.com" not in x)
            pieces = [nbformat.v4.new_markdown_cell(p) for p in _split_at_headings(text)]
        elif cell.cell_type == "code":
            piece = copy.deepcopy(cell)
            _drop_glue_outputs(piece)
            if "remove-output" in tags:
                piece.outputs = []
            pieces = [piece] if piece.outputs else []
        else:
            pieces = []
        for piece in pieces:
            heading = (
                re.match(r"^(#{1,3}) ", piece.source) if piece.cell_type == "markdown" else None
            )
            height = _height(piece)
            if heading:
                kind = "subslide" if len(heading.group(1)) == 3 else "slide"
                used = height
            elif cells and used + height > SLIDE_BUDGET:
                kind, used = "subslide", height
            else:
                kind, used = "-", used + height
            piece.metadata["slideshow"] = {"slide_type": kind}
            cells.append(piece)
    if cells:
        cells[0].metadata["slideshow"] = {"slide_type": "slide"}
    return cells


def deck(path: Path, cache: Path | None, citations: dict[str, str]) -> nbformat.NotebookNode:
    """The notebook that nbconvert turns into a chapter's deck."""
    nb = executed(path, cache)
    glue = glue_values(nb)
    nb = student.strip_solutions(nb, keep_outputs=True, answer_cells=False)
    out = nbformat.v4.new_notebook(metadata=nb.metadata)
    out.cells = slide_cells(nb, glue, citations)
    title = next((c.source for c in out.cells if c.source.startswith("# ")), path.stem)
    out.metadata["title"] = title.splitlines()[0].removeprefix("# ").strip()
    return out


def vendor(out_dir: Path, node_modules: Path) -> None:
    """Copy reveal.js, RequireJS, jQuery and MathJax into ``out_dir/_vendor``."""
    target = out_dir / VENDOR
    reveal = node_modules / "reveal.js"
    needed = [
        reveal / "dist",
        node_modules / "requirejs" / "require.js",
        node_modules / "jquery" / "dist" / "jquery.min.js",
    ]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise SlidesError(
            f"missing {', '.join(missing)}: install them with `npm install --prefix "
            f"{node_modules.parent} reveal.js@4 requirejs@2 jquery@3` (what `make slides` does)"
        )
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(reveal / "dist", target / "reveal.js" / "dist")
    shutil.copytree(reveal / "plugin" / "notes", target / "reveal.js" / "plugin" / "notes")
    shutil.copy2(needed[1], target / "require.js")
    shutil.copy2(needed[2], target / "jquery.min.js")
    # The book's MathJax 3 (the package's name has hyphens: importlib imports it as Sphinx does)
    package = importlib.import_module("sphinx-mathjax-offline")
    mathjax = Path(package.__file__).parent / "static" / "mathjax"
    (target / "mathjax").mkdir(parents=True)
    shutil.copy2(mathjax / "tex-svg.js", target / "mathjax" / "tex-svg.js")


def exporter():
    """nbconvert's slides exporter, set to load every script from ``_vendor``."""
    from nbconvert import SlidesExporter  # the book's dependency
    from traitlets.config import Config

    config = Config()
    config.SlidesExporter.reveal_url_prefix = f"{VENDOR}/reveal.js"
    config.SlidesExporter.reveal_scroll = True
    config.SlidesExporter.reveal_theme = "white"
    config.SlidesExporter.require_js_url = f"{VENDOR}/require.js"
    config.SlidesExporter.jquery_url = f"{VENDOR}/jquery.min.js"
    config.SlidesExporter.mathjax_url = f"{VENDOR}/mathjax/tex-svg.js"
    config.SlidesExporter.exclude_input = True
    config.SlidesExporter.exclude_input_prompt = True
    config.SlidesExporter.exclude_output_prompt = True
    config.SlidesExporter.extra_template_basedirs = [str(TEMPLATES)]
    config.SlidesExporter.template_name = "aad_reveal"
    return SlidesExporter(config=config)


def build(
    notebooks: list[Path], out_dir: Path, cache: Path | None, node_modules: Path
) -> list[Path]:
    """Write one deck per chapter into ``out_dir`` (and ``_vendor``); returns the decks."""
    out_dir.mkdir(parents=True, exist_ok=True)
    vendor(out_dir, node_modules)
    citations = citations_from(ROOT / "book" / "references.bib")
    export, written = exporter(), []
    for path in notebooks:
        body, _ = export.from_notebook_node(deck(path, cache, citations))
        target = out_dir / f"{path.stem}.slides.html"
        target.write_text(body, encoding="utf-8")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument(
        "--cache",
        default=str(ROOT / "_build" / ".jupyter_cache"),
        help="the book's execution cache; 'none': the notebooks' own outputs",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "slides")
    parser.add_argument(
        "--node-modules", type=Path, default=ROOT / "_build" / "node" / "node_modules"
    )
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    cache = None if args.cache == "none" else Path(args.cache)
    try:
        decks = build(notebooks, args.out, cache, args.node_modules)
    except (SlidesError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in decks:
        print(f"{path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
