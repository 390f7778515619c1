"""The course kit's scripts (tools/): one repository address, the student edition, the
slides, the PDF and the publishing workflow. Fast: small notebooks and pages made here,
no book build."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from conftest import ROOT

sys.path.insert(0, str(ROOT / "tools"))
import pdf  # noqa: E402
import repository  # noqa: E402
import slides  # noqa: E402
import student  # noqa: E402

CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
v4 = nbformat.v4


# --- one repository address ---------------------------------------------------------------


def test_every_badge_launch_button_and_setup_cell_agrees_with_the_setting():
    places = repository.places()
    # _config.yml, the documentation address, and a badge and a setup cell per chapter
    assert len(places) == 2 + 2 * len(CHAPTERS)
    wrong = [f"{p.where}: {p.found} (expected {p.expected})" for p in places if not p.agrees]
    assert not wrong, "run `make retarget REPO=...` or fix these by hand:\n" + "\n".join(wrong)


def _copy_project(tmp_path: Path) -> Path:
    for name in ("pyproject.toml", "_config.yml"):
        shutil.copy2(ROOT / name, tmp_path / name)
    (tmp_path / "notebooks").mkdir()
    for path in CHAPTERS:
        shutil.copy2(path, tmp_path / "notebooks" / path.name)
    return tmp_path


def test_retarget_moves_every_place_and_nothing_else(tmp_path):
    root = _copy_project(tmp_path)
    fork = "https://github.com/jane-doe/my-course"
    changed = repository.retarget(fork + "/", root)
    assert repository.setting(root) == fork
    assert all(p.agrees for p in repository.places(root))
    assert len(changed) == 2 + len(CHAPTERS)
    config = (root / "_config.yml").read_text()
    assert f"url: {fork}\n" in config and "aadlib/aad-book" not in config
    assert (
        'Documentation = "https://jane-doe.github.io/my-course"'
        in (root / "pyproject.toml").read_text()
    )
    for path in CHAPTERS:
        before = nbformat.read(path, as_version=4)
        after = nbformat.read(root / "notebooks" / path.name, as_version=4)
        assert [c.get("id") for c in before.cells] == [c.get("id") for c in after.cells]
        differing = [i for i, (b, a) in enumerate(zip(before.cells, after.cells)) if b != a]
        first_code = next(i for i, c in enumerate(before.cells) if c.cell_type == "code")
        assert set(differing) == {0, first_code}, path.name
        assert f"github/jane-doe/my-course/blob/main/notebooks/{path.name}" in after.cells[0].source
        assert f'AADLIB_REPOSITORY = "{fork}"' in after.cells[first_code].source
    # a second run changes nothing
    assert repository.retarget(fork, root) == []


@pytest.mark.parametrize(
    "url", ["http://github.com/a/b", "https://gitlab.com/a/b", "https://github.com/a", "a/b"]
)
def test_retarget_refuses_an_address_that_is_not_a_github_repository(url, tmp_path, capsys):
    assert repository.main(["retarget", url]) == 2
    assert "https://github.com/OWNER/NAME" in capsys.readouterr().err


# --- the student edition --------------------------------------------------------------------


def _solution_code(nb) -> list[str]:
    """The sources of the code cells between a solution-start and its solution-end."""
    found, inside = [], False
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            if "{solution-end}" in cell.source:
                inside = False
            if "{solution-start}" in cell.source.split("{solution-end}")[-1]:
                inside = True
        elif inside and cell.source.strip():
            found.append(cell.source)
    return found


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_student_edition_keeps_every_exercise_and_no_solution(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    (written,) = student.write_edition([path], tmp_path)
    edition = nbformat.read(written, as_version=4)
    nbformat.validate(edition)
    labels = student.exercise_labels(nb)
    assert labels and student.exercise_labels(edition) == labels
    text = "\n".join(c.source for c in edition.cells)
    assert "{solution" not in text
    for code in _solution_code(nb):
        assert code not in text
    answers = [c for c in edition.cells if c.source == student.ANSWER]
    assert len(answers) == student.solution_count(nb) > 0
    assert all(not c.get("outputs") for c in edition.cells if c.cell_type == "code")
    assert len({c.id for c in edition.cells}) == len(edition.cells)


def test_student_edition_removes_a_solution_directive_inside_a_cell():
    nb = v4.new_notebook()
    nb.cells = [
        v4.new_markdown_cell(
            "Intro.\n\n````{exercise}\n:label: ex-a\n\nAsk.\n````\n\n"
            "````{solution} ex-a\n:class: dropdown\n\nThe answer:\n\n```python\nx = 1\n```\n"
            "````\n\nAfter the solution."
        ),
        v4.new_code_cell("kept = 1"),
    ]
    out = student.strip_solutions(nb)
    sources = [c.source for c in out.cells]
    assert sources[0].startswith("Intro.") and sources[0].rstrip().endswith("````")
    assert sources[1] == student.ANSWER
    assert sources[2] == "After the solution."
    assert sources[3] == "kept = 1"
    assert "The answer" not in "".join(sources)


def test_student_edition_refuses_an_unclosed_solution(tmp_path):
    nb = v4.new_notebook()
    nb.cells = [v4.new_markdown_cell("````{solution-start} ex-a\n````"), v4.new_code_cell("x")]
    path = tmp_path / "01_open.ipynb"
    nbformat.write(nb, path)
    assert student.main([str(path), "--out", str(tmp_path / "out")]) == 2


# --- slides -----------------------------------------------------------------------------------


def _png() -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [1, 0])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _executed_chapter(path: Path) -> Path:
    glue = {"scrapbook": {"name": "auc", "mime_prefix": "application/papermill.record/"}}
    nb = v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    nb.cells = [
        v4.new_markdown_cell(
            "# A small chapter\n\n[![Open In Colab](https://colab.research.google.com/assets/"
            "colab-badge.svg)](https://colab.research.google.com/github/a/b/blob/main/x.ipynb)"
            "\n\n## Overview\n\nWe take $10 \\log_{10}$ of the energy {cite}`coelho2022`."
        ),
        v4.new_code_cell(
            "glue('auc', 0.8123)",
            outputs=[
                v4.new_output(
                    "display_data",
                    data={"application/papermill.record/text/plain": "0.8123"},
                    metadata=glue,
                )
            ],
        ),
        v4.new_markdown_cell(
            "## Result\n\nThe AUC is {glue:text}`auc:.1%`.\n\n```{note}\nA note.\n```"
        ),
        v4.new_code_cell(
            "plot_the_scores()",
            outputs=[v4.new_output("display_data", data={"image/png": _png(), "text/plain": "F"})],
        ),
        v4.new_markdown_cell(
            "## Exercises\n\n````{exercise}\n:label: ex-a\n\nWhat does the plot show?\n````\n\n"
            "````{solution-start} ex-a\n:class: dropdown\n````"
        ),
        v4.new_code_cell(
            "print('MODEL ANSWER')",
            outputs=[v4.new_output("stream", name="stdout", text="MODEL ANSWER\n")],
        ),
        v4.new_markdown_cell("````{solution-end}\n````"),
    ]
    nbformat.write(nb, path)
    return path


def _node_modules(root: Path) -> Path:
    """Stand-ins for the npm packages, laid out as npm installs them."""
    files = [
        "reveal.js/dist/reveal.js",
        "reveal.js/dist/reveal.css",
        "reveal.js/dist/theme/white.css",
        "reveal.js/plugin/notes/notes.js",
        "requirejs/require.js",
        "jquery/dist/jquery.min.js",
    ]
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("/* stand-in */\n")
    return root


def test_slides_deck_is_offline_and_shows_the_text_and_outputs_without_code(tmp_path):
    chapter = _executed_chapter(tmp_path / "01_small.ipynb")
    out = tmp_path / "slides"
    assert (
        slides.main(
            [
                str(chapter),
                "--cache",
                "none",
                "--out",
                str(out),
                "--node-modules",
                str(_node_modules(tmp_path / "nm")),
            ]
        )
        == 0
    )
    deck = (out / "01_small.slides.html").read_text()
    # every script and style sheet is a file of the deck's folder: nothing from a network
    loaded = re.findall(r'<(?:script|link)[^>]*(?:src|href)="([^"#]+)"', deck)
    loaded += re.findall(r'"(_vendor/[^"]+)"', deck)
    assert loaded and all(not re.match(r"\w+://", url) for url in loaded), loaded
    missing = [u for u in loaded if not (out / u).exists() and not (out / f"{u}.js").exists()]
    assert not missing
    assert "81.2%" in deck and "{glue" not in deck and "{cite}" not in deck
    assert "Coelho" in deck and "````" not in deck
    assert "data:image/png;base64," in deck
    assert "plot_the_scores" not in deck and "MODEL ANSWER" not in deck
    assert "What does the plot show?" in deck and "colab.research.google.com" not in deck
    # the title and each ## heading on a slide of its own
    chunks = deck.split("<section>")
    where = [
        next(i for i, c in enumerate(chunks) if f'id="{h}"' in c)
        for h in ("A-small-chapter", "Overview", "Result", "Exercises")
    ]
    assert len(set(where)) == 4


def test_slides_need_the_book_build_when_the_cache_lacks_a_chapter(tmp_path, capsys):
    chapter = _executed_chapter(tmp_path / "01_small.ipynb")
    assert (
        slides.main(
            [
                str(chapter),
                "--cache",
                str(tmp_path / "no-cache"),
                "--out",
                str(tmp_path / "out"),
                "--node-modules",
                str(_node_modules(tmp_path / "nm")),
            ]
        )
        == 2
    )
    assert "make book" in capsys.readouterr().err


def test_slides_assign_a_slide_to_every_heading():
    nb = v4.new_notebook()
    nb.cells = [
        v4.new_markdown_cell("# Title\n\nText.\n\n## One\n\nA.\n\n### One, detail\n\nB."),
        v4.new_code_cell("x", outputs=[v4.new_output("stream", name="stdout", text="out\n")]),
        v4.new_code_cell("silent"),
    ]
    cells = slides.slide_cells(nb, {}, {})
    kinds = [(c.source.split("\n")[0], c.metadata["slideshow"]["slide_type"]) for c in cells]
    assert kinds == [
        ("# Title", "slide"),
        ("## One", "slide"),
        ("### One, detail", "subslide"),
        ("x", "-"),
    ]


def test_slides_leave_out_stderr_as_the_book_does():
    """Library logs and warnings (TensorFlow's start-up lines, tqdm's) stay off the slides."""
    nb = v4.new_notebook()
    logs = v4.new_output("stream", name="stderr", text="I0000 oneDNN custom operations are on\n")
    shown = v4.new_output("stream", name="stdout", text="aadlib 0.2.0, profile 'quick'\n")
    nb.cells = [v4.new_markdown_cell("# Title"), v4.new_code_cell("x", outputs=[logs, shown])]
    (code,) = [c for c in slides.slide_cells(nb, {}, {}) if c.cell_type == "code"]
    assert code.outputs == [shown]
    nb.cells[1].outputs = [logs]  # a cell whose only output is a log gets no slide
    assert [c.cell_type for c in slides.slide_cells(nb, {}, {})] == ["markdown"]


# --- the PDF ------------------------------------------------------------------------------


def test_pdf_joins_the_pages_in_book_order_with_a_bookmark_each(tmp_path):
    from pypdf import PdfReader, PdfWriter

    parts = []
    for title, pages in (("Intro", 1), ("Chapter 1", 3), ("Chapter 2", 2)):
        writer = PdfWriter()
        for _ in range(pages):
            writer.add_blank_page(width=595, height=842)
        part = tmp_path / f"{title}.pdf"
        with part.open("wb") as handle:
            writer.write(handle)
        parts.append((title, part))
    out = tmp_path / "book.pdf"
    assert pdf.join(parts, out) == 6
    reader = PdfReader(out)
    assert len(reader.pages) == 6
    marks = [(o.title, reader.get_destination_page_number(o)) for o in reader.outline]
    assert marks == [("Intro", 0), ("Chapter 1", 1), ("Chapter 2", 4)]


def test_pdf_reads_the_pages_from_the_table_of_contents():
    pages = pdf.toc_pages()
    assert pages[0] == "book/intro"
    assert [p for p in pages if p.startswith("notebooks/")] == [
        f"notebooks/{p.stem}" for p in CHAPTERS
    ]


def test_pdf_asks_for_the_book_build_first(tmp_path, capsys):
    assert pdf.main(["--html", str(tmp_path / "none"), "--out", str(tmp_path / "b.pdf")]) == 2
    assert "make book" in capsys.readouterr().err


@pytest.mark.skipif(not any(map(shutil.which, pdf.BROWSERS)), reason="no Chromium installed")
def test_pdf_prints_built_pages_with_chromium(tmp_path):
    from pypdf import PdfReader

    (tmp_path / "_toc.yml").write_text(
        "root: book/intro\nparts:\n  - caption: A\n    chapters:\n      - file: notebooks/01_a\n"
    )
    html = tmp_path / "html"
    for name, title, paragraphs in (("book/intro", "Welcome", 1), ("notebooks/01_a", "A", 90)):
        (html / name).parent.mkdir(parents=True, exist_ok=True)
        body = "".join(f"<p>paragraph {i}</p>" for i in range(paragraphs))
        (html / f"{name}.html").write_text(
            f"<html><head><title>{title} — Book</title></head><body>{body}</body></html>"
        )
    (html / "_static").mkdir()
    (html / "_static" / "aad-pdf.js").write_text((ROOT / "book/_static/aad-pdf.js").read_text())
    count = pdf.build(html, tmp_path / "book.pdf", tmp_path)
    reader = PdfReader(tmp_path / "book.pdf")
    assert count == len(reader.pages) >= 3  # 90 paragraphs do not fit on one page
    assert [o.title for o in reader.outline] == ["Welcome", "A"]
    assert "paragraph 89" in "".join(page.extract_text() for page in reader.pages)
    assert (html / "book.pdf").read_bytes() == (tmp_path / "book.pdf").read_bytes()
    assert 'var BOOK_PDF = "book.pdf";' in (html / "_static" / "aad-pdf.js").read_text()


@pytest.mark.skipif(not any(map(shutil.which, pdf.BROWSERS)), reason="no Chromium installed")
def test_pdf_wraps_long_code_lines_inside_the_page(tmp_path):
    """A code line far wider than A4 is wrapped by the print style, not cut at the edge."""
    from pypdf import PdfReader

    (tmp_path / "_toc.yml").write_text("root: book/intro\n")
    html = tmp_path / "html"
    (html / "book").mkdir(parents=True)
    (html / "_static").mkdir()
    shutil.copy(ROOT / "book/_static/aad-kit.css", html / "_static" / "aad-kit.css")
    words = [f"word{i:03d}" for i in range(60)]  # about 480 characters on one line
    (html / "book" / "intro.html").write_text(
        "<html><head><title>Intro — Book</title>"
        '<link rel="stylesheet" href="../_static/aad-kit.css"></head><body>'
        f'<div class="highlight"><pre>x = [{", ".join(words)}]</pre></div></body></html>'
    )
    pdf.build(html, tmp_path / "book.pdf", tmp_path)
    page = PdfReader(tmp_path / "book.pdf").pages[0]
    width = float(page.mediabox.width)
    placed = []  # (text, x) of every piece of text drawn on the page

    def visit(text, cm, tm, font, size):
        if text.strip():
            placed.append((text, cm[0] * tm[4] + cm[2] * tm[5] + cm[4]))

    page.extract_text(visitor_text=visit)
    text = "".join(t for t, _ in placed)
    assert all(word in text.replace("\n", "") for word in words)  # nothing cut off
    assert max(x for _, x in placed) < width  # and all of it starts inside the page


# --- publishing -------------------------------------------------------------------------------

WORKFLOW = ROOT / ".github" / "workflows" / "publish.yml"


def test_publish_workflow_passes_actionlint():
    binary = Path(sys.executable).parent / "actionlint"
    binary = str(binary) if binary.exists() else shutil.which("actionlint")
    assert binary, "actionlint is missing: pip install -e '.[dev]'"
    done = subprocess.run([binary, str(WORKFLOW)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_publish_workflow_builds_the_book_and_deploys_it_to_pages():
    flow = yaml.safe_load(WORKFLOW.read_text())
    steps = [s for job in flow["jobs"].values() for s in job["steps"]]
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    runs = " ".join(s.get("run", "") for s in steps)
    assert "actions/upload-pages-artifact" in uses and "actions/deploy-pages" in uses
    assert "make book" in runs and "make slides pdf student" in runs
    assert flow["jobs"]["deploy"]["permissions"] == {"pages": "write", "id-token": "write"}
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-pages"))
    assert upload["with"]["path"] == "_build/html"


# --- the Library map ----------------------------------------------------------------------


def _chapter_code() -> dict[int, str]:
    return {
        int(p.name[:2]): "\n".join(
            c.source for c in nbformat.read(p, as_version=4).cells if c.cell_type == "code"
        )
        for p in CHAPTERS
    }


def test_library_map_lists_for_each_name_the_chapters_whose_code_calls_it():
    from aadlib import _map

    uses, code = _map.chapter_uses(CHAPTERS), _chapter_code()
    for module in _map.modules():
        named = set()
        for row in _map.name_rows(module, uses):
            listed = [int(n) for n in row["chapters calling it"].split(", ") if n]
            token = re.compile(rf"(?<![\w.]){re.escape(row['name'])}\b")
            assert listed == [n for n, text in code.items() if token.search(text)], row["name"]
            named.update(listed)
        (row,) = [r for r in _map.module_rows(uses) if r["module"] == f"aadlib.{module}"]
        assert row["chapters calling it"] == ", ".join(map(str, sorted(named))), module


def test_library_map_summaries_end_at_the_first_sentence_not_an_abbreviation():
    from aadlib import _map

    def documented():
        """The first sentence, e.g. with an example. The second one."""

    assert _map.summary(documented) == "The first sentence, e.g. with an example."


def test_library_map_page_shows_the_generated_tables():
    page = (ROOT / "book" / "library_map.md").read_text()
    assert "_map.module_rows(uses)" in page and "_map.name_rows(name, uses)" in page
    assert "_map.private_rows()" in page


def test_library_map_shows_a_short_constant_by_value_and_a_long_one_by_what_it_holds():
    from aadlib import _map

    assert _map.constant(16000) == "= 16000"
    assert _map.constant(("a", "b")) == "= ('a', 'b')"
    assert _map.constant({f"key{i}": "x" * 80 for i in range(3)}) == "a dict of 3: key0, key1, key2"
    assert _map.constant({f"key{i:03d}": 0 for i in range(30)}) == "a dict of 30"  # keys too long
    assert _map.constant({"rule": lambda: 0}) == "a dict of 1: rule"  # no memory address shown
    assert _map.constant(tuple(range(100))) == "a tuple of 100"


# --- Teaching with this book ----------------------------------------------------------------


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_course_map_reads_each_chapter_outcomes_time_and_exercises(path):
    from aadlib import _map

    outline = _map.chapter_outline(path)
    first = nbformat.read(path, as_version=4).cells[0].source
    assert outline["number"] == int(path.name[:2])
    assert outline["title"] and outline["title"] in first
    assert len(outline["outcomes"]) >= 3
    assert all("{" not in o and "`../" not in o for o in outline["outcomes"])
    assert re.match(r"\d+ min", outline["time"]), outline["time"]
    assert outline["exercises"] == student.exercise_labels(nbformat.read(path, as_version=4))
    assert outline["necessary"], "every chapter names what it needs"


def test_course_map_parses_a_chapter_head():
    from aadlib import _map

    nb = v4.new_notebook()
    nb.cells = [
        v4.new_markdown_cell(
            "# A title\n\n## Overview\n\nBy the end of it you will be able to:\n\n"
            "1. do one thing;\n2. read {term}`AUC <auc>` and {doc}`../book/setup`.\n\n"
            "## Prerequisites\n\n| Concept | Importance | Notes |\n|---|---|---|\n"
            "| Chapter 1 | Necessary | x |\n| Sound | Helpful | y |\n\n"
            "**Time to learn**: 25 minutes."
        ),
        v4.new_markdown_cell(
            "````{exercise}\n:label: ex-1\n\nAsk.\n````\n\n"
            "````{exercise}\n:label: ex-2\n\n*Explore.* Go on.\n````"
        ),
    ]
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "07_head.ipynb"
        nbformat.write(nb, path)
        outline = _map.chapter_outline(path)
    assert outline == {
        "number": 7,
        "title": "A title",
        "outcomes": ["do one thing;", "read AUC and Setup."],
        "time": "25 minutes",
        "necessary": ["Chapter 1"],
        "helpful": ["Sound"],
        "exercises": ["ex-1", "ex-2"],
        "explore": 1,
    }


def test_teaching_page_is_in_the_book_with_its_formats_and_rubric():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert "book/teaching" in pages
    page = (ROOT / "book" / "teaching.md").read_text()
    for heading in (
        "## The course map",
        "### A two-day workshop",
        "### A six-week module",
        "### Self-study",
        "## What students need",
        "## Assessment",
        "### A rubric for the mini-project",
    ):
        assert f"\n{heading}\n" in page, heading
    assert "_map.chapter_outline(path)" in page
    rubric = page.split("### A rubric for the mini-project")[1]
    weights = [int(w) for w in re.findall(r"^\| [^|]+ \| (\d+) % \|", rubric, re.M)]
    assert len(weights) >= 4 and sum(weights) == 100


def test_bibliography_lists_cited_works_and_further_reading_apart():
    page = (ROOT / "book" / "bibliography.md").read_text()
    cited, further = page.split("## Further reading")
    assert ":filter: cited" in cited and ":all:" not in page
    assert ":filter: not cited" in further
