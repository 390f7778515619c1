"""The book builds with Jupyter Book, every chapter executed, each page showing its outputs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, toc_files


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
        log = f"{result.stdout[-6000:]}\n{result.stderr[-3000:]}\n{details}"
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
    figures = re.findall(r'<img [^>]*src="(?:\.\./)?_images/[^"]+\.png"', page)
    assert len(figures) >= 2, f"{chapter}: figures missing"
    for src in re.findall(r'src="((?:\.\./)?_images/[^"]+)"', page):
        assert (html / chapter).parent.joinpath(src).resolve().exists(), src
    assert "solution" in page and "exercise" in page
    assert "colab.research.google.com" in page
    assert "cell_output" in page


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
