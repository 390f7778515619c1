"""The chapters as stored: clean, built on one template, opening in Colab.

They are executed once per test run, by the book build (tests/test_book.py)."""

from __future__ import annotations

import re
import tomllib

import nbformat
import pytest
import yaml
from conftest import ROOT, toc_files

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _repository_url() -> str:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["project"]["urls"]["Repository"]


def _markdown(nb) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def test_every_notebook_is_a_chapter_of_the_book():
    chapters = {f for f in toc_files() if f.startswith("notebooks/")}
    assert chapters == {f"notebooks/{nb.stem}" for nb in NOTEBOOKS}
    assert len(NOTEBOOKS) >= 5


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: a cell has stored outputs (run nbstripout)"
            assert cell.execution_count is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_follows_the_chapter_template(path):
    nb = nbformat.read(path, as_version=4)
    text = _markdown(nb)
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    for section in ("Overview", "Prerequisites", "Imports", "Summary", "Exercises", "References"):
        assert section in headings, f"{path.name} lacks a '{section}' section"
    assert re.search(r"^1\. ", text, flags=re.M), "learning goals are a numbered list"
    assert "{solution-start}" in text and "{solution-end}" in text, "an exercise with a solution"
    assert text.count("{solution-start}") == text.count("{solution-end}")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_opens_in_colab_from_this_repository(path):
    url = _repository_url()
    slug = url.removeprefix("https://github.com/")
    nb = nbformat.read(path, as_version=4)
    badge = f"https://colab.research.google.com/github/{slug}/blob/main/notebooks/{path.name}"
    assert badge in nb.cells[0].source, f"{path.name}: the Colab badge must point to {badge}"
    setup = next(c for c in nb.cells if c.cell_type == "code")
    assert f'AADLIB_REPOSITORY = "{url}"' in setup.source
    assert "pip" in setup.source and "AADLIB_PROFILE" in setup.source
    assert "hide-output" in setup.metadata.get("tags", [])


def test_book_configuration_names_the_same_repository():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["repository"]["url"] == _repository_url()
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert config["execute"]["allow_errors"] is False
    assert config["sphinx"]["config"]["nb_execution_raise_on_error"] is True
