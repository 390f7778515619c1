"""The book builds with Jupyter Book, every chapter executed, each page showing its outputs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, toc_files

from aadlib import paper, profiles

#: How a notebook's failing cell shows in the build's output.
_CELL_ERRORS = ("An error occurred while executing", "CellExecutionError", "Exception encountered")


@pytest.fixture(scope="module")
def html(tmp_path_factory) -> Path:
    """Build the book once (quick profile) into a temporary folder."""
    out = tmp_path_factory.mktemp("book")
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [
        str(jupyter_book),
        "build",
        str(ROOT),
        "--path-output",
        str(out),
        "--warningiserror",
        "--nitpick",
        "--keep-going",
    ]
    env = {**os.environ, "AADLIB_PROFILE": "quick"}
    env.pop("MPLBACKEND", None)  # figures must render inline
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3000)
    reports = out / "_build" / "html" / "reports"
    if result.returncode != 0:
        details = ""
        if reports.exists():
            details = "\n".join(p.read_text()[-3000:] for p in reports.rglob("*.err.log"))
        output = f"{result.stdout}\n{result.stderr}"
        # The failing cell's error, which the build prints well before its own traceback.
        first = min(
            (i for i in (output.find(m) for m in _CELL_ERRORS) if i >= 0), default=len(output)
        )
        log = f"{output[first : first + 6000]}\n...\n{output[-3000:]}\n{details}"
        pytest.fail(f"jupyter-book build failed:\n{log}")
    return out / "_build" / "html"


@pytest.mark.slow
def test_every_chapter_page_exists(html):
    for chapter in toc_files():
        assert (html / f"{chapter}.html").exists(), chapter
    assert (html / "index.html").exists()
    reports = html / "reports"
    assert not reports.exists() or not any(reports.iterdir()), "execution reports mean errors"


@pytest.mark.slow
@pytest.mark.parametrize(
    "chapter",
    [c for c in toc_files() if c.startswith("notebooks/")],
    ids=lambda c: c.split("/")[-1],
)
def test_chapter_pages_show_their_outputs(html, chapter):
    page = (html / f"{chapter}.html").read_text(encoding="utf-8")
    assert "Traceback" not in page and 'class="output error"' not in page
    # Library warnings printed into an output (e.g. TensorFlow's retracing warning) are
    # noise for the reader; the book's configuration drops stderr, these came elsewhere.
    assert not re.findall(r"WARNING:\w+:|\w+Warning:", page)
    # Glued numbers appear as numbers: no NumPy repr, no unrendered glue role.
    assert "np.float" not in page and "np.int" not in page and "{glue" not in page
    # Folders print relative to AADLIB_HOME: the build machine's paths are not the reader's.
    assert str(ROOT) not in page and os.environ.get("AADLIB_HOME", str(ROOT)) not in page
    figures = re.findall(r'<img [^>]*src="(?:\.\./)?_images/[^"]+\.png"', page)
    assert len(figures) >= 2, f"{chapter}: figures missing"
    for src in re.findall(r'src="((?:\.\./)?_images/[^"]+)"', page):
        assert (html / chapter).parent.joinpath(src).resolve().exists(), src
    assert "solution" in page and "exercise" in page
    assert "colab.research.google.com" in page
    assert "cell_output" in page


@pytest.mark.slow
def test_the_books_run_detects_the_planted_anomalies(html):
    """The method works: in the run the book made (quick profile, its own results folder),
    the Dense AE's average AUC is well above chance on every machine type."""
    profile = profiles.resolve("quick")
    table = pd.read_csv(profile.results / "table.csv", dtype={"machine_id": str})
    averages = table[table.machine_id == "average"]
    assert set(averages.model) == set(paper.MODEL_KINDS)
    dense = averages[averages.model == "dense"].set_index("machine_type").auc
    assert len(dense) == 6 and (dense > 60).all(), dense


@pytest.mark.slow
def test_data_chapter_has_audio_players(html):
    page = (html / "notebooks/01_data_exploration.html").read_text(encoding="utf-8")
    assert page.count("<audio") >= 6
    assert "data:audio/wav;base64," in page


@pytest.mark.slow
def test_math_and_citations_render(html):
    page = (html / "notebooks/03_dense_autoencoder.html").read_text(encoding="utf-8")
    assert "math notranslate" in page and "mathjax" in page.lower()
    intro = (html / "book/intro.html").read_text(encoding="utf-8")
    assert "Coelho" in intro


@pytest.mark.slow
def test_rebuild_uses_the_execution_cache(html):
    """A second build with nothing changed executes no notebook."""
    out = html.parents[1]
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run(
        [str(jupyter_book), "build", str(ROOT), "--path-output", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Executing notebook" not in result.stdout


# --- Reading comfort: offline math, wide outputs, badge fallback, author-year bibliography ---

BIB = ROOT / "book" / "references.bib"
STATIC = ROOT / "book" / "_static"
#: Keys the chapters cite, and the data and code the book depends on.
REQUIRED_KEYS = {
    "coelho2022", "koizumi2020dcase", "koizumi2019toyadmos", "purohit2019mimii",
    "ioffe2015batchnorm", "kingma2015adam", "mcclish1989", "mcfee2015librosa",
    "morita2020dcase", "liu2022stgram", "choi2024noisyarcmix", "kawaguchi2021dcase",
    "dohi2022dcase", "dohi2023dcase", "nishida2024dcase", "ledoit2004", "hanley1982",
    "efron1993", "delong1988", "sandler2018mobilenetv2",
    "dcase2020dev", "dcase2020additional", "dcase2020eval", "ribeiro2020code",
    "nakamura2020baseline",
}  # fmt: skip


def _bib_entries():
    database = pytest.importorskip("pybtex.database")
    return database.parse_file(str(BIB)).entries


def _bibstyle():
    """The book's local Sphinx extension that registers the author-year styles."""
    pytest.importorskip("sphinxcontrib.bibtex")
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        import aad_bibstyle
    finally:
        sys.path.pop(0)
    return aad_bibstyle


def test_bibliography_entries_have_links_and_the_data_and_code():
    entries = _bib_entries()
    assert REQUIRED_KEYS <= set(entries), REQUIRED_KEYS - set(entries)
    for key, entry in entries.items():
        assert "doi" in entry.fields or "url" in entry.fields, f"{key}: no DOI or URL"
        assert entry.persons.get("author"), f"{key}: no author"
        assert "year" in entry.fields, f"{key}: no year"
    assert entries["dcase2020dev"].fields["doi"] == "10.5281/zenodo.3678171"
    assert entries["dcase2020additional"].fields["doi"] == "10.5281/zenodo.3727685"
    assert entries["dcase2020eval"].fields["doi"] == "10.5281/zenodo.3841772"
    assert "APILASTRI/DCASE_Task2_UMINHO" in entries["ribeiro2020code"].fields["url"]
    assert "y-kawagu/dcase2020_task2_baseline" in entries["nakamura2020baseline"].fields["url"]


def test_bibliography_style_is_author_year():
    """The list reads "Coelho, G., ... (2021). Title. Venue. https://doi.org/...", its labels
    are author-year, unique, with letters where one author group has several works a year."""
    style = _bibstyle().AuthorYearStyle()
    entries = list(_bib_entries().values())
    formatted = {f.key: f for f in style.format_entries(entries)}
    labels = [f.label for f in formatted.values()]
    assert len(set(labels)) == len(labels), "labels must be unique"
    assert all(re.search(r", (\d{4}[a-z]?|n\.d\.)$", label) for label in labels), labels
    assert formatted["coelho2022"].label == "Coelho et al., 2021"
    assert formatted["ioffe2015batchnorm"].label == "Ioffe and Szegedy, 2015"
    assert formatted["mcclish1989"].label == "McClish, 1989"
    koizumi = sorted(
        f.label for f in formatted.values() if f.label.startswith("Koizumi et al., 2020")
    )
    assert koizumi == [f"Koizumi et al., 2020{c}" for c in "abcd"]
    text = formatted["coelho2022"].text.render_as("text")
    assert text.startswith("Coelho, G., Pereira, P., Matos, L.,"), text
    assert "Pilastri, A. (2021). Deep Dense and Convolutional Autoencoders" in text
    assert text.endswith("https://doi.org/10.1007/978-3-030-79150-6_27")
    data = formatted["dcase2020additional"].text.render_as("text")
    assert "et al. (2020" in data and "zenodo.3727685" in data


def test_book_config_serves_math_and_assets_offline():
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    sphinx = config["sphinx"]
    assert "sphinx-mathjax-offline" in sphinx["extra_extensions"]
    assert (ROOT / sphinx["local_extensions"]["aad_bibstyle"] / "aad_bibstyle.py").exists()
    conf = sphinx["config"]
    assert conf["bibtex_default_style"] == "authoryear"
    assert conf["bibtex_reference_style"] == "author_year_suffixed"
    for static in conf["html_static_path"]:
        assert (ROOT / static).is_dir(), static
    for name in conf["html_css_files"] + conf["html_js_files"]:
        assert (STATIC / name).exists(), name


@pytest.mark.slow
def test_math_is_served_from_static_not_a_cdn(html):
    """Formulas render in a book built and read without a network."""
    pages = [
        p for p in html.rglob("*.html") if "_static" not in p.parts and "reports" not in p.parts
    ]
    with_math = [p for p in pages if "math notranslate" in p.read_text(encoding="utf-8")]
    assert with_math, "no page with math"
    for page in with_math:
        text = page.read_text(encoding="utf-8")
        scripts = re.findall(r'<script[^>]*src="([^"]*mathjax[^"]*)"', text, flags=re.I)
        assert scripts, f"{page.name}: MathJax not loaded"
        for src in scripts:
            assert src.split("?")[0].endswith("_static/mathjax/tex-chtml.js"), src
            assert not src.startswith(("http:", "https:", "//")), src
    assert (html / "_static" / "mathjax" / "tex-chtml.js").exists()
    assert (html / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert not re.search(r'<script[^>]*src="(https?:)?//[^"]*mathjax', text, flags=re.I)


@pytest.mark.slow
def test_pages_load_the_reading_comfort_assets(html):
    for chapter in toc_files():
        page = (html / f"{chapter}.html").read_text(encoding="utf-8")
        assert re.search(r'<link[^>]*href="[^"]*_static/aad\.css', page), chapter
        assert re.search(r'<script[^>]*src="[^"]*_static/aad\.js', page), chapter
    assert (html / "_static" / "aad.css").exists() and (html / "_static" / "aad.js").exists()


@pytest.mark.slow
def test_bibliography_page_lists_every_entry_author_year(html):
    page = (html / "book/bibliography.html").read_text(encoding="utf-8")
    items = re.findall(r'<div class="citation" id="[^"]+" role="doc-biblioentry">(.*?)</div>',
                       page, flags=re.S)  # fmt: skip
    assert len(items) == len(_bib_entries()), "every entry of references.bib is listed"
    for item in items:
        label = re.search(r'<span class="label">(.*?)</span></span>', item, flags=re.S)
        assert label and re.search(r"\d{4}[a-z]?<span", label.group(1)), item[:200]
        assert re.search(r'href="https?://', item), f"no DOI or URL: {item[:200]}"
    assert "https://doi.org/10.5281/zenodo.3678171" in page
    intro = (html / "book/intro.html").read_text(encoding="utf-8")
    assert re.search(r"Coelho\s*<em>et al\.</em>, 20\d\d", intro)


# --- Prose a person would write: glued text, audio captions, one colour per model -------

CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
#: Generated text that shows its machinery: an unresolved plural, a count of zero
#: spelled as a count, "none" added in parentheses, doubled closing parentheses.
PROSE_DEFECTS = {
    "unresolved plural": re.compile(r"\w\(s\)"),
    "a zero count": re.compile(r"(?<![\d.,])0 of (the )?\d"),
    "a parenthesised none": re.compile(r"\(none\)"),
    "doubled parentheses": re.compile(r"\)\)"),
    "markup shown as text": re.compile(r"`|\*\*"),
}


def _chapter_pages(html):
    return {c: (html / f"{c}.html").read_text(encoding="utf-8") for c in toc_files()
            if c.startswith("notebooks/")}  # fmt: skip


def _text(fragment: str) -> str:
    """The visible text of an HTML fragment."""
    import html as html_module

    return html_module.unescape(re.sub(r"<[^>]+>", "", fragment))


def _prose(page: str) -> list[str]:
    """The page's paragraphs and list items outside code cells, as text."""
    page = re.sub(r'<div class="cell_input.*?</div>\s*</div>', "", page, flags=re.S)
    page = re.sub(r"<pre.*?</pre>", "", page, flags=re.S)
    return [_text(p) for p in re.findall(r"<(?:p|li)>(.*?)</(?:p|li)>", page, flags=re.S)]


@pytest.mark.slow
def test_glued_text_reads_as_plain_prose(html):
    for chapter, page in _chapter_pages(html).items():
        pasted = [_text(t) for t in re.findall(r'<span class="pasted-text">(.*?)</span>', page)]
        for text in pasted:
            for defect, pattern in PROSE_DEFECTS.items():
                assert not pattern.search(text), f"{chapter}: glued text with {defect}: {text!r}"
        for paragraph in _prose(page):
            for defect in ("unresolved plural", "a zero count", "a parenthesised none"):
                match = PROSE_DEFECTS[defect].search(paragraph)
                assert not match, f"{chapter}: {defect} in {paragraph[:200]!r}"


@pytest.mark.slow
def test_glued_text_is_not_bold(html):
    """myst-nb pastes glued values in bold; the book's stylesheet, loaded after it, does not."""
    css = (html / "_static" / "aad.css").read_text(encoding="utf-8")
    assert re.search(r"span\.pasted-text\s*\{\s*font-weight:\s*inherit", css)
    for chapter, page in _chapter_pages(html).items():
        links = re.findall(r'<link[^>]*href="[^"]*_static/([\w.-]+\.css)', page)
        if "mystnb.css" in " ".join(links) or any(n.startswith("mystnb") for n in links):
            mystnb = next(i for i, n in enumerate(links) if n.startswith("mystnb"))
            assert links.index("aad.css") > mystnb, f"{chapter}: aad.css loads before myst-nb's"
        # No generated sentence is wrapped in bold markup either.
        assert not re.search(r"<strong>\s*<span class=\"pasted-text\"", page), chapter


@pytest.mark.slow
def test_every_audio_player_is_labelled(html):
    players = 0
    for chapter, page in _chapter_pages(html).items():
        figures = re.findall(r'<figure class="aad-audio">(.*?)</figure>', page, flags=re.S)
        assert page.count("<audio") == len(figures), f"{chapter}: an audio player without caption"
        for figure in figures:
            caption = re.search(r"<figcaption>(.*?)</figcaption>", figure, flags=re.S)
            assert caption, f"{chapter}: a player without caption"
            title = re.search(r'class="aad-audio-title">(.*?)</strong>', caption.group(1), re.S)
            cue = re.search(r'class="aad-audio-listen">(.*?)</span>', caption.group(1), re.S)
            assert title and _text(title.group(1)).strip(), f"{chapter}: a player without title"
            assert cue and "listen for" in _text(cue.group(1)).lower(), f"{chapter}: {caption[0]}"
        players += len(figures)
    assert players >= 10


@pytest.mark.slow
def test_published_figures_are_quoted_as_printed_everywhere(html):
    """One value per published system: its resource's figure to the printed two decimals,
    and the paper's averages as printed with the correction labelled beside them."""
    from aadlib import published, wording

    pages = _chapter_pages(html)
    for chapter in ("notebooks/07_stronger_detectors", "notebooks/09_what_we_learned"):
        text = _text(pages[chapter])
        for row in published.published_results().itertuples():
            assert f"{row.auc:.2f}" in text, f"{chapter}: {row.system} AUC not as printed"
    averages = published.paper_averages().set_index("model")
    cnn = wording.printed_and_corrected(averages.auc["cnn"], averages.auc_corrected["cnn"])
    assert "as printed" in cnn and "corrected" in cnn
    for chapter in ("05_reproducing_the_tables", "07_stronger_detectors", "09_what_we_learned"):
        assert cnn in _text(pages[f"notebooks/{chapter}"]), f"{chapter}: {cnn!r} missing"


def _cells(notebook):
    import nbformat

    return nbformat.read(notebook, as_version=4).cells


def test_chapters_play_audio_only_through_the_captioned_player():
    for notebook in CHAPTERS:
        for cell in _cells(notebook):
            if cell.cell_type == "code":
                assert not re.search(r"(?<![\w.])Audio\(", cell.source), (
                    f"{notebook.name}: an audio player without caption; use plots.audio_player"
                )


def test_cells_that_only_glue_sentences_are_hidden():
    """A code cell whose statements are all glue calls builds phrasing, not computation:
    the page hides it (students see the computation, not the sentences)."""
    import ast

    for notebook in CHAPTERS:
        for cell in _cells(notebook):
            if cell.cell_type != "code" or not cell.source.strip():
                continue
            body = ast.parse(cell.source).body
            only_glue = all(
                isinstance(s, ast.Expr)
                and isinstance(s.value, ast.Call)
                and getattr(s.value.func, "attr", getattr(s.value.func, "id", "")) == "glue"
                for s in body
            )
            tags = set(cell.metadata.get("tags", []))
            if only_glue:
                assert tags & {"remove-cell", "remove-input"}, f"{notebook.name} cell {cell.id}"


def test_every_model_drawn_in_the_book_takes_its_colour_from_the_palette():
    """Figures of models and detectors get their colours from plots.model_color: no chapter
    picks model colours from a colour cycle, and every name drawn has a palette entry."""
    from aadlib import detectors, plots

    for notebook in CHAPTERS:
        source = "\n".join(c.source for c in _cells(notebook) if c.cell_type == "code")
        assert "MODEL_COLORS" not in source, f"{notebook.name}: use plots.model_color(name)"
        assert not re.search(r"get_cmap\(\"tab10\"\)|color=colors\(", source), notebook.name
    chapter7 = "\n".join(
        c.source for c in _cells(ROOT / "notebooks" / "07_stronger_detectors.ipynb")
    )
    chosen = re.search(r"CHOSEN = (\[.*?\])\n", chapter7)
    assert chosen, "chapter 7's ensembles are named in CHOSEN"
    import ast

    names = ["baseline", "dense", "cnn", *detectors.score_names()]
    names += [f"{a} + {b}" for a, b in ast.literal_eval(chosen.group(1))]
    for name in names:
        plots.model_color(name)  # a KeyError names the missing entry


@pytest.mark.slow
def test_decisions_chapter_quotes_a_gap_that_its_shown_values_give(html):
    """Chapter 6 quotes the mean F1, the floor of flagging every clip and the best in
    hindsight to two decimals; the gap it names is the difference of those shown values."""
    page = _text((html / "notebooks/06_from_scores_to_decisions.html").read_text(encoding="utf-8"))
    found = re.search(
        r"mean F1 over the IDs is (\d\.\d\d).*?Flagging every clip, with no detector at all, "
        r"gives (\d\.\d\d); the best thresholds in hindsight would give (\d\.\d\d), "
        r"(-?\d\.\d\d) more",
        page,
        flags=re.S,
    )
    assert found, "chapter 6: the sentence on the mean F1 and its two reference lines is missing"
    f1, floor, best, gap = (float(v) for v in found.groups())
    assert round(best - f1, 2) == pytest.approx(gap)
    assert floor <= best and f1 <= best


@pytest.mark.slow
def test_the_books_verdicts_rest_on_trained_models(html):
    """On quick the baseline and the Dense AE are trained with three seeds each and reach
    their plateau on every type in every run, chapter 5 names the noise of its intervals and
    shows the seed spread, the baseline column is within 5 points of the paper's, and every
    verdict on a model that stopped while improving reads "undecided" (chapters 5, 7, 9)."""
    from aadlib import pipeline, published

    profile = profiles.resolve("quick")
    runs = pipeline.training_summary(profile)
    status = runs.set_index(["model", "machine_type"]).status
    seeded = pipeline.training_summary(profile, seeds=True)
    for kind in ("baseline", "dense"):
        these = seeded[seeded.model == kind]
        per_type = these.groupby("machine_type").seed.nunique()
        assert len(per_type) == 6 and (per_type >= 3).all(), per_type  # seed noise counted
        assert (these.status == "plateau").all(), these[["machine_type", "seed", "status"]]
    table = pd.read_csv(profile.results / "table.csv", dtype={"machine_id": str})
    ours = table[(table.machine_id == "average") & (table.model == "baseline")]
    paper_rows = published.table2()
    paper_rows = paper_rows[paper_rows.machine_id.astype(str) == "average"]
    gap = ours.set_index("machine_type").auc - paper_rows.set_index("machine_type").baseline_auc
    assert len(gap.dropna()) == 6 and (gap.abs() <= 5).all(), gap

    chapter5, chapter9 = (
        re.sub(r"\s+", " ", " ".join(_prose((html / "notebooks" / f"{name}.html").read_text())))
        for name in ("05_reproducing_the_tables", "09_what_we_learned")
    )
    # Every interval says which noise it covers; the seed-to-seed spread is shown.
    assert "and the Dense AE, trained 3 times each with different seeds" in chapter5
    assert "for the CNN AE, trained once, it covers the test clips only" in chapter5
    assert (
        "How much the seed moves a model"
        in (html / "notebooks/05_reproducing_the_tables.html").read_text()
    )
    moved = r"Between runs with different seeds, a type.s average AUC moved by \d"
    assert re.search(moved, chapter5)
    stopped = "undecided: the CNN AE stopped before its plateau"
    if (status["cnn"] != "plateau").any():
        assert f"for the CNN AE it is {stopped}" in chapter5
        assert stopped in chapter9
        assert "CNN AE it is contradicted" not in chapter5 and "CNN AE it holds" not in chapter5
    else:
        assert stopped not in chapter5
    assert "the Dense AE stopped before" not in chapter5 + chapter9


@pytest.mark.slow
def test_a_shipped_model_is_named_as_shipped_with_how_it_was_made(html):
    """The quick book reads the CNN AE's shipped runs: chapter 4 says by which command, on
    which machine and date they were made, chapter 5 says the model was not trained here,
    and chapter 8 leaves out the explanations that would need its model."""
    from aadlib import pipeline

    profile = profiles.resolve("quick")
    made = pipeline.shipped_provenance(profile, "cnn")
    chapter4, chapter5, chapter8 = (
        re.sub(
            r"\s+", " ", " ".join(_prose((html / "notebooks" / f"{name}.html").read_text()))
        ).replace("\u2019", "'")  # the page's typographic apostrophes
        for name in ("04_conv_autoencoder", "05_reproducing_the_tables", "08_explanations")
    )
    assert f"by tools/ship_runs.py on {made['date']} ({made['machine']})" in chapter4
    assert f"training for {made['train_seconds'] / 60:.0f} minutes in all" in chapter4
    assert "use one trained here for 3 epochs" in chapter4
    assert "This profile does not train the CNN AE here" in chapter5
    assert "reads the CNN AE's scores from a shipped run, without its model" in chapter8
    # The rows of the runs it compares are the shipped ones, read, not trained.
    timings = pd.read_csv(profile.results / "timings.csv")
    cnn = timings[timings.model == "cnn"]
    assert len(cnn) == 6 and cnn.shipped.all()
    for row in cnn.itertuples():
        record = pipeline.shipped_run(profile, "cnn", row.machine_type)
        assert row.train_seconds == pytest.approx(record["train_seconds"])
