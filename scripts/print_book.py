"""Print the single-page HTML book to one PDF with the installed headless Chromium (offline).

Usage: python scripts/print_book.py _build/singlehtml/index.html _build/print/book.pdf

``make print`` builds the single-page HTML (``jupyter-book build --builder singlehtml``) and then
runs this script. Jupyter Book 1's own ``--builder pdfhtml`` needs pyppeteer, which downloads a
Chromium at run time; this uses the system one instead (``apt-get install chromium``) through
Playwright for Python (``scripts/browser.py``, no browser download). The page is opened from ``file://`` with the network cut off, MathJax finishes
typesetting, the collapsed solutions are opened (the same ``beforeprint`` event a browser's print
dialog sends), display equations wider than the column are shrunk to fit it, and Chromium prints it
on A4 with page numbers (Playwright's ``page.pdf``). Explorers print their initial frame (their sliders
are hidden in print). The book's print stylesheet (``book/_static/reader.css``) starts each
chapter on a new sheet, keeps figures whole and wraps long code lines.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from browser import Browser, find_chromium  # noqa: E402

#: A4 (8.27 in) less two 0.6 in margins, at 96 CSS pixels per inch.
PAPER_COLUMN_PX = round((8.27 - 2 * 0.6) * 96)

OPEN_FOR_PRINT_JS = r"""
async () => {
  window.dispatchEvent(new Event('beforeprint'));           // sphinx-togglebutton opens its dropdowns
  document.querySelectorAll('details').forEach(d => { if (!d.classList.contains('hide')) d.open = true; });
  for (const img of document.images) img.loading = 'eager';
  await Promise.all([...document.images].map(img => img.complete ? 0 : new Promise(done => {
    img.addEventListener('load', done); img.addEventListener('error', done); setTimeout(done, 10000); })));
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  return {
    documents: document.querySelectorAll('article.bd-article span[id^="document-"]').length + 1,
    formulas: document.querySelectorAll('mjx-container').length,
    mathErrors: document.querySelectorAll('mjx-merror').length,
    images: document.images.length,
    brokenImages: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
  };
}
"""


# Display equations wider than their column scroll on screen; on paper they would be cut. Shrink each
# one to its column (CSS zoom, which also shrinks its layout box), in the print layout set up above.
FIT_EQUATIONS_JS = r"""
() => {
  let n = 0;
  for (const c of document.querySelectorAll('mjx-container[display="true"]')) {
    const natural = c.scrollWidth, room = c.clientWidth;
    if (natural > room + 1 && room > 0) { c.style.zoom = (room / natural).toFixed(3); n += 1; }
  }
  return n;
}
"""


def _printable_page(index: Path) -> Path:
    """The single page, placed where its links expect it.

    Jupyter Book writes ``index.html`` as a redirect to the root page (``book/intro.html``), but the
    single-page builder writes that page's links relative to the output folder (``_static/...``,
    ``book/intro.html#...``). A copy at the top of the folder, ``print.html``, with the links to itself
    turned into plain ``#anchors``, loads its styles, scripts and images and links within the PDF.
    """
    text = index.read_text(encoding="utf-8")
    match = re.search(r'http-equiv="Refresh"\s+content="0;\s*url=([^"]+)"', text[:500], re.I)
    if not match:
        return index
    rel = match.group(1)
    text = (index.parent / rel).read_text(encoding="utf-8").replace(f'href="{rel}#', 'href="#')
    page = index.parent / "print.html"
    page.write_text(text, encoding="utf-8")
    return page


def print_book(source: Path, target: Path) -> dict:
    page = _printable_page(source.resolve())
    with Browser(size=(1280, 1600), timeout=300) as browser:
        load = browser.open(page.as_uri(), settle=0.5)
        report = browser.evaluate(OPEN_FOR_PRINT_JS)
        # Lay the page out at the width of the printed column (A4 less the margins, in CSS pixels),
        # not the window's: otherwise the theme keeps its wide-screen columns and shrinks them to fit.
        browser.page.set_viewport_size({"width": PAPER_COLUMN_PX, "height": 1100})
        browser.page.emulate_media(media="print")
        report["shrunk"] = browser.evaluate(FIT_EQUATIONS_JS)
        browser.page.wait_for_timeout(500)  # let the opened dropdowns lay out
        browser.pdf(target)
    report.update(
        page=str(page),
        failed=load.failed_requests,
        network=load.network_requests,
        console=load.console_errors,
        pages=len(re.findall(rb"/Type\s*/Page[^s]", target.read_bytes())),
        size_mb=target.stat().st_size / 1e6,
    )
    return report


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    if find_chromium() is None:
        print("print_book: Chromium is required (apt-get install chromium, or set $CHROMIUM)", file=sys.stderr)
        return 1
    source, target = Path(argv[1]), Path(argv[2])
    report = print_book(source, target)
    print(
        f"print_book: {target} ({report['pages']} pages, {report['size_mb']:.1f} MB): {report['documents']} pages of the book, "
        f"{report['formulas']} formulas ({report['shrunk']} shrunk to fit), {report['images']} images from "
        f"{report['page']}"
    )
    # Search is not part of the single page: its index is not written, and not needed on paper.
    problems = (
        [f"failed to load: {u}" for u in report["failed"] if "searchindex.js" not in u]
        + [f"requested from the network: {u}" for u in report["network"]]
        + [f"image does not display: {u}" for u in report["brokenImages"]]
        + ([f"{report['mathErrors']} MathJax errors"] if report["mathErrors"] else [])
    )
    sys.stdout.flush()
    for line in report["console"]:
        if "searchindex.js" in line:
            continue
        print(f"print_book: console: {line}", file=sys.stderr)
    for line in problems:
        print(f"print_book: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
