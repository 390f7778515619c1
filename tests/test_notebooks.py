"""The chapters: stored clean, built on one template, and each runs top to bottom."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _repository_url() -> str:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["project"]["urls"]["Repository"]


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc["parts"]:
        files += [chapter["file"] for chapter in part["chapters"]]
    return files


def _markdown(nb) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def test_every_notebook_is_a_chapter_of_the_book():
    chapters = {f for f in _toc_files() if f.startswith("notebooks/")}
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


@pytest.fixture(scope="session")
def tiny_home(tmp_path_factory):
    return tmp_path_factory.mktemp("aadlib-home")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, tiny_home, monkeypatch):
    """Execute every cell on the tiny profile; any error fails the test."""
    monkeypatch.setenv("AADLIB_PROFILE", "tiny")
    monkeypatch.setenv("AADLIB_HOME", str(tiny_home))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # figures render inline
    client.execute(env=env)
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if out.output_type == "error"
    ]
    assert not errors
    images = sum(
        1
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.outputs
        if "image/png" in out.get("data", {})
    )
    assert images >= 2, f"{path.name} shows no figures"
