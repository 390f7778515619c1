"""The book's repository address: one setting, and every place that must agree with it.

The setting is ``[project.urls] Repository`` in ``pyproject.toml``. Three kinds of places
carry the address: the launch and repository buttons (``_config.yml``,
``repository.url``), each chapter's "Open in Colab" badge (first cell) and each
chapter's setup cell, which installs aadlib from the repository (``AADLIB_REPOSITORY``).
The documentation address (``[project.urls] Documentation``) follows from it: GitHub
Pages serves ``https://github.com/OWNER/NAME`` at ``https://OWNER.github.io/NAME``.

    python tools/repository.py show                 # the setting and every place, checked
    python tools/repository.py retarget URL         # point every place at URL (a GitHub fork)
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
_URL = re.compile(r"^https://github\.com/([A-Za-z0-9][A-Za-z0-9-]*)/([A-Za-z0-9._-]+?)/?$")
_BADGE = re.compile(
    r"https://colab\.research\.google\.com/github/[^/\s)]+/[^/\s)]+/blob/[^/\s)]+/notebooks/"
    r"(?P<file>[^\s)]+\.ipynb)"
)
_SETUP = re.compile(r'^(AADLIB_REPOSITORY = )"[^"]*"', re.MULTILINE)
_CONFIG_URL = re.compile(r"^(repository:\n(?:  .*\n)*?  url: )(\S+)$", re.MULTILINE)
_CONFIG_BRANCH = re.compile(r"^repository:\n(?:  .*\n)*?  branch: (\S+)$", re.MULTILINE)
_PYPROJECT_URL = re.compile(r'^(Repository = )"[^"]*"', re.MULTILINE)
_PYPROJECT_DOCS = re.compile(r'^(Documentation = )"[^"]*"', re.MULTILINE)


class AddressError(ValueError):
    """A repository address that is not a GitHub repository's, or a place that lacks it."""


@dataclass(frozen=True)
class Place:
    """One place that carries the repository address, and what it says."""

    where: str
    found: str
    expected: str

    @property
    def agrees(self) -> bool:
        return self.found == self.expected


def parse(url: str) -> tuple[str, str]:
    """``(owner, name)`` of a GitHub repository address; AddressError otherwise."""
    match = _URL.match(url.strip())
    if not match:
        raise AddressError(
            f"{url!r} is not a GitHub repository address: give it as "
            "https://github.com/OWNER/NAME (Colab opens notebooks from GitHub only)"
        )
    return match.group(1), match.group(2).removesuffix(".git")


def setting(root: Path = ROOT) -> str:
    """The repository address: ``[project.urls] Repository`` of ``pyproject.toml``."""
    path = root / "pyproject.toml"
    urls = tomllib.loads(path.read_text(encoding="utf-8")).get("project", {}).get("urls", {})
    if "Repository" not in urls:
        raise AddressError(f"{path}: no [project.urls] Repository; add the repository address")
    owner, name = parse(urls["Repository"])
    return f"https://github.com/{owner}/{name}"


def pages_url(url: str) -> str:
    """The GitHub Pages address of a repository: ``https://OWNER.github.io/NAME``."""
    owner, name = parse(url)
    return f"https://{owner.lower()}.github.io/{name}"


def branch(root: Path = ROOT) -> str:
    """The branch that the badges open (``repository.branch`` of ``_config.yml``)."""
    match = _CONFIG_BRANCH.search((root / "_config.yml").read_text(encoding="utf-8"))
    return match.group(1) if match else "main"


def badge_url(url: str, notebook: str, on_branch: str) -> str:
    """The Colab address that opens ``notebooks/<notebook>`` of the repository."""
    owner, name = parse(url)
    return (
        f"https://colab.research.google.com/github/{owner}/{name}/blob/{on_branch}/"
        f"notebooks/{notebook}"
    )


def chapters(root: Path = ROOT) -> list[Path]:
    """The chapter notebooks (``notebooks/NN_*.ipynb``)."""
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _setup_cell(nb) -> nbformat.NotebookNode | None:
    return next((c for c in nb.cells if c.cell_type == "code"), None)


def places(root: Path = ROOT) -> list[Place]:
    """Every place that carries the address, with what it says and what it should say."""
    url, on_branch = setting(root), branch(root)
    config = (root / "_config.yml").read_text(encoding="utf-8")
    match = _CONFIG_URL.search(config)
    found = [Place("_config.yml repository.url", match.group(2) if match else "(missing)", url)]
    docs = _PYPROJECT_DOCS.search((root / "pyproject.toml").read_text(encoding="utf-8"))
    found.append(
        Place(
            "pyproject.toml [project.urls] Documentation",
            docs.group(0).split('"')[1] if docs else "(missing)",
            pages_url(url),
        )
    )
    for path in chapters(root):
        nb = nbformat.read(path, as_version=4)
        badges = _BADGE.findall(nb.cells[0].source) if nb.cells else []
        where = f"notebooks/{path.name}"
        badge = _BADGE.search(nb.cells[0].source) if nb.cells else None
        found.append(
            Place(
                f"{where}: Colab badge (first cell)",
                badge.group(0) if len(badges) == 1 else f"({len(badges)} badges)",
                badge_url(url, path.name, on_branch),
            )
        )
        cell = _setup_cell(nb)
        setup = _SETUP.search(cell.source) if cell is not None else None
        found.append(
            Place(
                f"{where}: AADLIB_REPOSITORY (first code cell)",
                setup.group(0).split('"')[1] if setup else "(missing)",
                url,
            )
        )
    return found


def retarget(url: str, root: Path = ROOT) -> list[str]:
    """Point every place at ``url``; returns the files changed."""
    owner, name = parse(url)
    url = f"https://github.com/{owner}/{name}"
    changed = []
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    new = _PYPROJECT_URL.sub(lambda m: f'{m.group(1)}"{url}"', text)
    new = _PYPROJECT_DOCS.sub(lambda m: f'{m.group(1)}"{pages_url(url)}"', new)
    changed += _write_if_changed(pyproject, text, new)
    config = root / "_config.yml"
    text = config.read_text(encoding="utf-8")
    if not _CONFIG_URL.search(text):
        raise AddressError(f"{config}: no repository.url to rewrite; add `repository: url: ...`")
    changed += _write_if_changed(config, text, _CONFIG_URL.sub(lambda m: m.group(1) + url, text))
    on_branch = branch(root)
    for path in chapters(root):
        changed += _retarget_notebook(path, url, on_branch)
    return changed


def _retarget_notebook(path: Path, url: str, on_branch: str) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    before = [cell.source for cell in nb.cells]
    if nb.cells:
        first = nb.cells[0]
        first.source = _BADGE.sub(lambda m: badge_url(url, path.name, on_branch), first.source)
    cell = _setup_cell(nb)
    if cell is not None:
        cell.source = _SETUP.sub(lambda m: f'{m.group(1)}"{url}"', cell.source)
    if [cell.source for cell in nb.cells] == before:
        return []
    nbformat.write(nb, path)
    return [str(path)]


def _write_if_changed(path: Path, old: str, new: str) -> list[str]:
    if new == old:
        return []
    path.write_text(new, encoding="utf-8")
    return [str(path)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("show", help="the setting and every place that carries it (exit 1: disagree)")
    target = sub.add_parser("retarget", help="point every place at another repository")
    target.add_argument("url", help="https://github.com/OWNER/NAME")
    args = parser.parse_args(argv)
    try:
        if args.command == "retarget":
            for path in retarget(args.url):
                print(f"rewrote {Path(path).relative_to(ROOT)}")
        url = setting()
        print(f"repository: {url} (pyproject.toml [project.urls] Repository)")
        wrong = [p for p in places() if not p.agrees]
        for place in wrong:
            print(f"  {place.where}: {place.found} (expected {place.expected})")
        if not wrong:
            print("every place agrees")
        else:
            print("1 place disagrees" if len(wrong) == 1 else f"{len(wrong)} places disagree")
        return 1 if wrong else 0
    except (AddressError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
