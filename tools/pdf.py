"""The whole book as one PDF: Chromium prints each built HTML page, pypdf joins them.

The pages are taken in the order of ``_toc.yml`` from the built book (``make book`` first),
printed by headless Chromium (Debian's ``chromium`` package, or Google Chrome) with the
book's print style sheet, and joined into one PDF with a bookmark per page. The PDF is
also copied into the built HTML (``book.pdf`` beside ``index.html``), and each page's
download menu then offers it (``book/_static/aad-pdf.js``).

    python tools/pdf.py [--html _build/html] [--out _build/pdf/book.pdf]
"""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
PRINT_SECONDS = 120


class PdfError(RuntimeError):
    """A PDF that cannot be made; the message says what to do."""


def toc_pages(root: Path = ROOT) -> list[str]:
    """The book's pages in the order of ``_toc.yml`` (without suffix)."""
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        pages += [chapter["file"] for chapter in part["chapters"]]
    return pages


def browser() -> str:
    """The first Chromium-type browser on the PATH (``CHROMIUM`` overrides it)."""
    found = os.environ.get("CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
    if not found:
        raise PdfError(
            "no Chromium found: install Debian's `chromium` package "
            "(sudo apt-get install chromium), or set CHROMIUM to a Chrome binary"
        )
    return found


def page_title(page: Path) -> str:
    """The page's title (its ``<title>``, without the book's name after it)."""
    match = re.search(r"<title>(.*?)</title>", page.read_text(encoding="utf-8"), re.DOTALL)
    title = html.unescape(match.group(1)).strip() if match else page.stem
    return re.split(r"\s+[—–-]\s+", title)[0]


def print_page(chrome: str, page: Path, target: Path) -> None:
    """Print one HTML page to ``target`` with headless Chromium."""
    command = [
        chrome,
        "--headless",
        "--no-sandbox",  # Chromium refuses to run as root with its sandbox
        "--disable-gpu",
        "--no-pdf-header-footer",
        "--run-all-compositor-stages-before-draw",
        "--virtual-time-budget=20000",
        f"--print-to-pdf={target}",
        page.resolve().as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=PRINT_SECONDS)
    if done.returncode != 0 or not target.exists() or target.stat().st_size == 0:
        raise PdfError(f"Chromium could not print {page}: {done.stderr.strip()[-500:]}")


def join(parts: list[tuple[str, Path]], out: Path) -> int:
    """One PDF of the parts, with a bookmark per part; returns its number of pages."""
    from pypdf import PdfReader, PdfWriter  # the book's dependency, not the library's

    writer = PdfWriter()
    for title, part in parts:
        first = len(writer.pages)
        for page in PdfReader(part).pages:
            writer.add_page(page)
        writer.add_outline_item(title, first)
    writer.add_metadata({"/Title": parts[0][0] if parts else "book"})
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as handle:
        writer.write(handle)
    return len(writer.pages)


def build(html_dir: Path, out: Path, root: Path = ROOT) -> int:
    """Print every page of the built book into ``out``; returns the number of PDF pages."""
    pages = [html_dir / f"{name}.html" for name in toc_pages(root)]
    missing = [str(p) for p in pages if not p.exists()]
    if missing:
        raise PdfError(f"{len(missing)} pages not built, e.g. {missing[0]}: run `make book` first")
    chrome = browser()
    with tempfile.TemporaryDirectory() as tmp:
        parts = []
        for number, page in enumerate(pages):
            target = Path(tmp) / f"{number:03d}.pdf"
            print_page(chrome, page, target)
            parts.append((page_title(page), target))
        count = join(parts, out)
    publish(out, html_dir)
    return count


def publish(pdf: Path, html_dir: Path) -> None:
    """Put the PDF beside the book's ``index.html`` and switch on its download entry."""
    shutil.copy2(pdf, html_dir / "book.pdf")
    script = html_dir / "_static" / "aad-pdf.js"
    if script.exists():
        text = script.read_text(encoding="utf-8")
        script.write_text(text.replace("var BOOK_PDF = null;", 'var BOOK_PDF = "book.pdf";'))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html", type=Path, default=ROOT / "_build" / "html")
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "pdf" / "book.pdf")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        count = build(args.html, args.out)
    except (PdfError, OSError, subprocess.TimeoutExpired) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    size = args.out.stat().st_size / 1e6
    print(f"{args.out}: {count} pages, {size:.1f} MB, {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
