"""The reader's experience of the built book, checked on the HTML and in a real (headless) browser.

What a reader meets is the HTML in ``_build/html`` (opened from ``file://``, offline) and the notebooks.
This module checks, for every page in ``_toc.yml``:

* on the HTML files (no browser needed): no traceback, error or stderr output (warnings, text progress
  bars), no widget view (the static site has no kernel: a slider there would be dead), no raw LaTeX outside
  the math containers, no unrendered MyST directive or role, every image and every internal link (file and
  ``#anchor``) resolves, every image has a meaningful alt text (not empty, not a file name: figure cells set
  ``mystnb.image.alt``), every theorem/proof/exercise directive of a chapter became its box;
* the navigation a textbook reader expects: numbered parts and chapters, the notation page, search, a per-page
  table of contents, previous/next links, the ``.ipynb`` download and print buttons, the colour-mode switch;
* per chapter: an explorer (``lnn.explorer.explore``: live sliders in a notebook, precomputed frames in the HTML);
* in a live kernel, a long ``lnn.gradient_descent`` run shows a progress bar, and ``LNN_QUIET`` silences it;
* in headless Chromium, with every host name unresolvable: nothing is requested from the network, nothing
  fails to load, the console stays clean, MathJax typesets every formula without errors and leaves no raw TeX,
  every image decodes (``naturalWidth > 0``), the theorem/proof/exercise boxes are drawn with a numbered title,
  no widget debris, search answers from ``file://``, and dark mode keeps figures on white, uninverted;
  each explorer's sliders, moved with the keyboard and with the mouse, change the displayed frame and its alt
  text; an axe-core audit (WCAG 2.1 A and AA rules, ``axe-core`` pinned in ``scripts/fetch_static.sh``) finds
  no violation on any page (the figures per page go to ``artifacts/axe.json``).
  Screenshots of each chapter in light and dark mode, and of each explorer before and after its sliders
  moved, go to ``artifacts/screenshots/`` (gitignored).

The browser is the system Chromium driven by Playwright (``scripts/browser.py``), with the network cut.

The HTML is built once: this module reuses ``_build/html`` when ``_build/.book-built`` (written by
``make book`` after a successful strict build) is newer than every source of the book, and builds it
otherwise (with ``LNN_BOOK_NO_BUILD=1``, as in ``.ci/run``, it fails instead); ``LNN_BOOK_HTML=DIR`` checks the
book built in DIR as it is. Without Chromium
(``apt-get install chromium``, or ``$CHROMIUM``) the browser tests are skipped with the reason; the
HTML checks still run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import warnings
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
BUILT_STAMP = ROOT / "_build" / ".book-built"
ARTIFACTS = ROOT / "artifacts" / "screenshots"
sys.path.insert(0, str(ROOT / "scripts"))

from browser import AXE_JS, Browser, find_chromium  # noqa: E402  (scripts/browser.py)

# What the book is built from: a change to any of these makes _build/html stale.
SOURCES = [
    "book",
    "lnn",
    "_config.yml",
    "_toc.yml",
    "references.bib",
    "requirements.txt",
    "pyproject.toml",
    "scripts/sphinx_reader.py",
    "scripts/fetch_static.sh",
]
JB_FLAGS = ["--all", "-W", "--keep-going"]  # as in the Makefile's `book` target


# ------------------------------------------------------------------------------------------------------------
# the pages
# ------------------------------------------------------------------------------------------------------------
def _toc_files() -> list[tuple[str, str | None, bool]]:
    """``(file, part caption, numbered)`` for every page of ``_toc.yml``, in reading order."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    pages = [(toc["root"], None, False)]

    def walk(entries, caption, numbered):
        for entry in entries or []:
            if "file" in entry:
                pages.append((entry["file"], caption, numbered))
            walk(entry.get("sections"), caption, numbered)

    for part in toc.get("parts", []):
        walk(part.get("chapters"), part.get("caption"), bool(part.get("numbered")))
    walk(toc.get("chapters"), None, False)
    return pages


TOC = _toc_files()
PAGES = [f"{file}.html" for file, _, _ in TOC] + ["search.html", "genindex.html"]
CHAPTERS = sorted(p.stem for p in (ROOT / "book").glob("[0-9][0-9]_*.ipynb"))


def _chapter_cells(stem: str) -> list[dict]:
    import json

    return json.loads((ROOT / "book" / f"{stem}.ipynb").read_text(encoding="utf-8"))["cells"]


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return src if isinstance(src, str) else "".join(src)


def _written(stem: str) -> bool:
    """A chapter counts as written once it has a code cell (the placeholders have none)."""
    return any(c["cell_type"] == "code" and _source(c).strip() for c in _chapter_cells(stem))


# ------------------------------------------------------------------------------------------------------------
# the build, reused when it is up to date
# ------------------------------------------------------------------------------------------------------------
def _newest_source() -> tuple[float, Path | None]:
    newest, which = 0.0, None
    for name in SOURCES:
        path = ROOT / name
        files = [path] if path.is_file() else path.rglob("*") if path.is_dir() else []
        for f in files:
            rel = f.relative_to(ROOT).parts
            if not f.is_file() or any(p.startswith(".") or p == "__pycache__" for p in rel):
                continue
            mtime = f.stat().st_mtime
            if mtime > newest:
                newest, which = mtime, f
    return newest, which


def book_is_up_to_date() -> tuple[bool, str]:
    if not (HTML / "index.html").exists() or not BUILT_STAMP.exists():
        return False, "no successful build in _build/html"
    newest, which = _newest_source()
    if newest > BUILT_STAMP.stat().st_mtime:
        return False, f"{which.relative_to(ROOT)} changed after the last build"
    return True, "up to date"


def build_book() -> None:
    """Fetch the static assets and run the strict Jupyter Book build, as ``make book`` does."""
    bindir = Path(sys.executable).parent
    env = dict(os.environ, LNN_QUIET="1", PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    log = ROOT / "_build" / "book-build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    BUILT_STAMP.unlink(missing_ok=True)
    steps = [
        ["bash", "scripts/fetch_static.sh"],
        [str(bindir / "jupyter-book"), "build", *JB_FLAGS, "."],
    ]
    with log.open("w") as out:
        for cmd in steps:
            done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            if done.returncode:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
                pytest.fail(f"building the book failed ({' '.join(cmd)}); see {log}:\n{tail}", pytrace=False)
    BUILT_STAMP.touch()


@pytest.fixture(scope="session")
def html() -> Path:
    if os.environ.get("LNN_BOOK_HTML"):
        # A book built elsewhere (jupyter-book build --path-output ...), checked as it is.
        return Path(os.environ["LNN_BOOK_HTML"]).resolve()
    fresh, why = book_is_up_to_date()
    if not fresh and os.environ.get("LNN_BOOK_NO_BUILD"):
        # CI (.ci/run) builds the book in the step before; building again here would hide that it failed.
        pytest.fail(f"no up-to-date book to check ({why}) and LNN_BOOK_NO_BUILD is set: run `make book`", pytrace=False)
    if not fresh:
        print(f"\n[test_browser] building the book: {why}")
        build_book()
    return HTML


# ------------------------------------------------------------------------------------------------------------
# checks on the HTML files
# ------------------------------------------------------------------------------------------------------------
# TeX that a reader would see raw: delimiters, environments, control words, $...$ pairs.
RAW_TEX = re.compile(r"\$\$|\\\(|\\\)|\\\[|\\\]|\\begin\{|\\end\{|\\[A-Za-z]{2,}|(?<![\w$])\$[^$\s](?:[^$\n]*[^$\s])?\$")
# An unrendered MyST directive or role, or a docutils error left in the page.
RAW_MYST = re.compile(r"```\{|:::\{|\{(?:prf:[a-z]+|numref|eq|ref|cite(?::[a-z]+)?|doc|term|exercise|solution)\}`")
# What ipywidgets or a progress bar leave behind as text when no widget can be drawn.
WIDGET_DEBRIS = re.compile(
    r"interactive\(children=|(?:Int|Float)(?:Range)?Slider\(|FloatProgress\(|HBox\(children=|VBox\(children="
    r"|Output\(\)|Loading widget|Error displaying widget|\d+%\|[^|\n]*\|"
)
NO_SCHEME = re.compile(r"^(?![a-zA-Z][a-zA-Z0-9+.-]*:)")


# An alt text that names a file instead of describing the figure: what docutils writes when a cell sets no
# ``mystnb.image.alt`` (the image's path), or a bare file name, hash or placeholder.
FILE_NAME_ALT = re.compile(
    r"(?:\.(?:png|jpe?g|gif|svg|webp|pdf)$)|_images/|^[0-9a-f]{16,}$|^(?:image|figure|img|plot|output)\s*\d*$", re.I
)


def alt_problem(alt: str | None, src: str = "") -> str | None:
    """Why an image's alt text does not describe it (None if it does)."""
    if alt is None or not alt.strip():
        return "no alt text (set the figure cell's metadata mystnb.image.alt to what the figure shows)"
    alt = alt.strip()
    if FILE_NAME_ALT.search(alt) or (src and alt == src):
        return f"its alt text is a file name ({alt[:60]!r}): set mystnb.image.alt to what the figure shows"
    if len(alt.split()) < 3:
        return f"its alt text {alt!r} is too short to describe a figure"
    return None


def _short(src: str) -> str:
    return src[:40] + "..." if src.startswith("data:") else src


def _soup(path: Path):
    from bs4 import BeautifulSoup

    return BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


@lru_cache(maxsize=None)
def _anchors(path: Path) -> frozenset[str]:
    soup = _soup(path)
    return frozenset(
        [el["id"] for el in soup.find_all(id=True)] + [el["name"] for el in soup.find_all(attrs={"name": True})]
    )


def _article(soup):
    return soup.select_one("article.bd-article") or soup.body or soup


def _text_outside_math(node) -> str:
    import copy

    node = copy.copy(node)
    for el in node.select("script, style, pre, code, kbd, textarea, .math, .highlight, img, svg, mjx-container"):
        el.decompose()
    return node.get_text(" ")


def _resolve(page: Path, ref: str) -> tuple[Path, str]:
    parts = urlsplit(ref)
    target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
    if target.is_dir():
        target = target / "index.html"
    return target, unquote(parts.fragment)


def html_problems(page: Path) -> list[str]:
    """Everything wrong with one built page that can be seen without a browser."""
    soup = _soup(page)
    article = _article(soup)
    problems = []

    for el in soup.select(".traceback, .output.error, .problematic, .system-message"):
        problems.append(f"error output: {el.get_text(' ', strip=True)[:200]!r}")
    for el in soup.select(".output.stderr"):
        problems.append(f"stderr output (warning or progress bar): {el.get_text(' ', strip=True)[:200]!r}")
    outputs = " ".join(el.get_text(" ") for el in soup.select(".cell_output"))
    if "Traceback (most recent call last)" in outputs:
        problems.append("a traceback printed in a cell output")

    views = soup.select('script[type="application/vnd.jupyter.widget-view+json"]')
    if views:
        problems.append(
            f"{len(views)} widget view(s) in the page: the static site has no kernel, so they are dead; tag the "
            "explorer cell `remove-output` and show a static counterpart"
        )
    debris = WIDGET_DEBRIS.search(outputs)
    if debris:
        problems.append(f"widget or progress-bar debris: {debris.group(0)!r}")

    prose = _text_outside_math(article)
    reported_until = -1
    for match in RAW_TEX.finditer(prose):
        if match.start() < reported_until:
            continue  # one report per passage
        reported_until = match.end() + 120
        context = " ".join(prose[max(0, match.start() - 60) : reported_until].split())
        problems.append(f"raw LaTeX outside math: {match.group(0)!r} in ...{context}...")
    for match in list(RAW_MYST.finditer(prose))[:5]:
        problems.append(f"unrendered MyST: {prose[match.start() : match.end() + 40]!r}")

    for img in article.find_all("img"):
        why = alt_problem(img.get("alt"), img.get("src", ""))
        if why:
            problems.append(f"image {_short(img.get('src', ''))}: {why}")
    for img in soup.find_all("img"):
        src = img.get("src", "")
        if src.startswith("data:"):
            continue
        if not NO_SCHEME.match(src):
            problems.append(f"image loaded from the network: {src}")
            continue
        target, _ = _resolve(page, src)
        if not target.is_file():
            problems.append(f"missing image: {src}")

    for tag, attr in (("a", "href"), ("link", "href"), ("script", "src")):
        for el in soup.find_all(tag, attrs={attr: True}):
            ref = el[attr]
            if not NO_SCHEME.match(ref) or ref.startswith("//"):
                if tag != "a" and ref.split(":", 1)[0] in ("http", "https"):
                    problems.append(f"<{tag}> loads from the network: {ref}")
                continue
            target, fragment = _resolve(page, ref)
            if not target.exists():
                problems.append(f"broken link: {ref}")
            elif fragment and target.suffix == ".html" and fragment not in _anchors(target):
                problems.append(f"broken anchor: {ref}")
    return problems


@pytest.mark.parametrize("page", PAGES)
def test_page_html(html, page):
    path = html / page
    assert path.is_file(), f"{page} was not built"
    problems = html_problems(path)
    assert not problems, f"{page}:\n  " + "\n  ".join(problems)


# sphinx-proof renders {prf:kind} as <div class="proof kind admonition">, {prf:proof} as <div class="proof
# admonition">; sphinx-exercise renders {exercise}/{solution} (and their -start forms) as <div class="exercise
# admonition">/<div class="solution ... admonition">.
DIRECTIVE = re.compile(r"^\s*(?:`{3,}|:{3,})\{(prf:[a-z]+|exercise|solution)(?:-start)?\}", re.MULTILINE)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_boxes(html, chapter):
    wanted: dict[str, int] = {}
    for cell in _chapter_cells(chapter):
        if cell["cell_type"] == "markdown":
            for kind in DIRECTIVE.findall(_source(cell)):
                wanted[kind] = wanted.get(kind, 0) + 1
    soup = _soup(html / "book" / f"{chapter}.html")
    article = _article(soup)
    missing = []
    for kind, count in sorted(wanted.items()):
        if kind == "prf:proof":
            found = [d for d in article.select("div.proof.admonition") if set(d["class"]) == {"proof", "admonition"}]
        elif kind.startswith("prf:"):
            found = article.select(f"div.proof.{kind[4:]}.admonition")
        else:
            found = article.select(f"div.{kind}.admonition")
        if len(found) < count:
            missing.append(f"{count} {{{kind}}} in the notebook, {len(found)} box(es) in the HTML")
    assert not missing, f"{chapter}: " + "; ".join(missing)


# A cell that builds widgets by hand (importing ipywidgets alone does not make an explorer), and a cell that
# calls the book's one explorer mechanism.
WIDGETS = re.compile(r"\binteract(?:ive|_manual)?\s*\(|\bwidgets\.[A-Z]\w*\s*\(|\.observe\s*\(")
EXPLORE = re.compile(r"\bexplore\s*\(")


def explorer_bundles(soup) -> list[dict]:
    """The precomputed explorers of a built page: their parameters, frames and alt texts, and their weight."""
    import json

    found = []
    for div in _article(soup).select("div.lnn-explorer"):
        data = div.select_one("script.lnn-explorer-data")
        payload = json.loads(data.string) if data is not None and data.string else None
        found.append({"payload": payload, "bytes": len(str(div).encode("utf-8"))})
    return found


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_has_explorer(html, chapter):
    """Each chapter offers an explorer (lnn.explorer.explore): sliders in a notebook, precomputed frames in the HTML."""
    if not _written(chapter):
        pytest.skip(f"{chapter} is a placeholder (no code yet)")
    cells = [c for c in _chapter_cells(chapter) if c["cell_type"] == "code"]
    hand_made = [c for c in cells if WIDGETS.search(_source(c))]
    assert not hand_made, (
        f"{chapter}: widgets built by hand (dead in the HTML): use lnn.explorer.explore instead: "
        + ", ".join(repr(_source(c).strip().splitlines()[0][:60]) for c in hand_made)
    )
    explorers = [c for c in cells if EXPLORE.search(_source(c))]
    assert explorers, f"{chapter} has no explorer (a cell that calls lnn.explorer.explore)"
    hidden = [c for c in explorers if {"remove-output", "remove-cell"} & set(c.get("metadata", {}).get("tags", []))]
    assert not hidden, f"{chapter}: an explorer cell is tagged remove-output/remove-cell: its frames would not show"
    bundles = explorer_bundles(_soup(html / "book" / f"{chapter}.html"))
    assert bundles, f"{chapter}: no precomputed explorer (div.lnn-explorer) in the HTML: was LNN_EXPLORER=static set?"
    for i, bundle in enumerate(bundles):
        data = bundle["payload"]
        assert data and data["params"] and data["frames"], f"{chapter}: explorer {i} holds no frames"
        n = 1
        for p in data["params"]:
            n *= len(p["values"])
        assert len(data["frames"]) == len(data["alts"]) == n, f"{chapter}: explorer {i}: {len(data['frames'])} frames for {n} combinations"
        for alt in set(data["alts"]):
            why = alt_problem(alt)
            assert not why, f"{chapter}: explorer {i}: {why}"
        print(f"{chapter}: explorer {i}: {len(data['frames'])} frames, {bundle['bytes'] / 1024:.0f} KiB in the page")


# ------------------------------------------------------------------------------------------------------------
# navigation
# ------------------------------------------------------------------------------------------------------------
def test_navigation_parts_and_numbering(html):
    soup = _soup(html / f"{TOC[0][0]}.html")
    nav = soup.select_one("nav.bd-docs-nav")
    assert nav is not None, "no book navigation in the primary sidebar"
    captions = [c.get_text(strip=True) for c in nav.select("p.caption")]
    parts = list(dict.fromkeys(caption for _, caption, _ in TOC if caption))
    assert captions == parts, f"sidebar parts {captions} != _toc.yml parts {parts}"
    numbered_parts = list(dict.fromkeys(caption for _, caption, numbered in TOC if numbered))
    romans = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII"]
    for roman, caption in zip(romans, numbered_parts):
        assert caption.startswith(f"Part {roman}:"), f"numbered part {caption!r} should read 'Part {roman}: ...'"
    links = {a["href"].split("#")[0]: a.get_text(" ", strip=True) for a in nav.select("a.reference.internal")}
    number = 0
    for file, _, numbered in TOC[1:]:
        href = os.path.relpath(html / f"{file}.html", (html / f"{TOC[0][0]}.html").parent)
        assert href in links, f"{file} is not in the sidebar"
        if numbered:
            number += 1
            assert re.match(rf"^{number}\.\s", links[href]), f"chapter {file} is shown as {links[href]!r}, not {number}."
        else:
            assert not re.match(r"^\d+\.\s", links[href]), f"{file} should not be numbered: {links[href]!r}"
    assert any("notation" in f for f, _, _ in TOC), "no notation page in _toc.yml"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_navigation_chapter_page(html, chapter):
    page = html / "book" / f"{chapter}.html"
    soup = _soup(page)
    problems = []
    if not soup.select_one("a.left-prev") or not soup.select_one("a.right-next"):
        problems.append("no previous/next links")
    sections = _article(soup).select("section > h2")
    toc_links = soup.select(".bd-sidebar-secondary nav a")
    if len(sections) >= 2 and len(toc_links) < len(sections):
        problems.append(f"{len(sections)} sections but {len(toc_links)} entries in the page's table of contents")
    download = soup.select_one("a.btn-download-source-button")
    if download is None or not download["href"].endswith(".ipynb"):
        problems.append("no .ipynb download button")
    elif not _resolve(page, download["href"])[0].is_file():
        problems.append(f"the .ipynb download {download['href']} does not exist")
    for selector, what in (
        (".btn-download-pdf-button", "print (.pdf) button"),
        (".theme-switch-button", "light/dark switch"),
        (".search-button", "search button"),
    ):
        if soup.select_one(selector) is None:
            problems.append(f"no {what}")
    assert not problems, f"{chapter}: " + "; ".join(problems)


def test_repository_and_launch_buttons(html):
    """The repository address is never invented: with one known, the repository button and the launch links use
    it; without one (no repository.url, no $LNN_REPOSITORY_URL, no origin remote), there are none at all."""
    from sphinx_reader import _HOSTS, repository_address

    configured = (yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8")).get("repository") or {}).get("url")
    expected = repository_address(ROOT, configured) if not os.environ.get("LNN_BOOK_HTML") else None
    for chapter in CHAPTERS:
        soup = _soup(html / "book" / f"{chapter}.html")
        repo = [a["href"] for a in soup.select("a.btn-source-repository-button, a.btn-source-issues-button, "
                                                "a.btn-source-edit-button")]
        launch = [a["href"] for a in soup.select("a[href*='mybinder'], a[href*='colab.research'], "
                                                  "a[href*='/hub/user-redirect'], .dropdown-launch-buttons a")]
        if not repo:
            assert not launch, f"{chapter}: launch links {launch} without a repository address"
            assert expected is None, f"{chapter}: no repository button although the address is {expected}"
            continue
        for href in repo:
            assert any(f"//{host}/" in href for host in _HOSTS), f"{chapter}: repository button to {href}"
            if expected:
                assert href.startswith(expected), f"{chapter}: repository button {href}, not {expected}"
        path = repo[0].split("//", 1)[1].split("/", 1)[1].rstrip("/")
        for href in launch:
            assert path in href, f"{chapter}: launch link {href} is not for {path}"


def test_search_index(html):
    assert (html / "search.html").is_file() and (html / "searchindex.js").is_file()
    index = (html / "searchindex.js").read_text(encoding="utf-8")
    for file, _, _ in TOC:
        assert f'"{file}"' in index, f"{file} is not in the search index"


# ------------------------------------------------------------------------------------------------------------
# progress bars: shown in a live kernel, silent in the build
# ------------------------------------------------------------------------------------------------------------
PROGRESS_CELL = """
import os, torch, lnn
gen = torch.Generator().manual_seed(0)
X = torch.randn(8, 3, generator=gen, dtype=torch.float64)
task = lnn.LpRegression(X, X[:, :2], p=2, reduction="mean")
init = lnn.gaussian_factors([3, 3, 2], scale=0.1, generator=gen)
lnn.gradient_descent(init, task, lr=0.1, steps={steps})
"""


def _bar_outputs(cell) -> list[str]:
    kinds = []
    for out in cell.get("outputs", []):
        data = out.get("data", {})
        if "application/vnd.jupyter.widget-view+json" in data:
            kinds.append("widget bar")
        elif out.get("name") == "stderr" and "%|" in out.get("text", ""):
            kinds.append("text bar")
        elif out.get("output_type") == "error":
            kinds.append(f"error {out.get('ename')}: {out.get('evalue')}")
    return kinds


def test_progress_bar_in_live_kernel():
    """A reader running a 5000-step descent in Jupyter sees a bar; with LNN_QUIET (the build) nothing."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(PROGRESS_CELL.format(steps=5000) + ";"),
        nbformat.v4.new_code_cell(PROGRESS_CELL.format(steps=100) + ";"),
        nbformat.v4.new_code_cell('os.environ["LNN_QUIET"] = "1"\n' + PROGRESS_CELL.format(steps=5000) + ";"),
    ]
    env = {k: v for k, v in os.environ.items() if k != "LNN_QUIET"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    client = NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "book")}})
    start = time.perf_counter()
    client.execute(env=env)
    long_run, short_run, quiet_run = (_bar_outputs(c) for c in nb.cells)
    print(f"live kernel: 5000 steps -> {long_run}, 100 steps -> {short_run}, LNN_QUIET -> {quiet_run} "
          f"({time.perf_counter() - start:.1f} s)")
    assert long_run and all(k.endswith("bar") for k in long_run), f"no progress bar for 5000 steps: {long_run}"
    assert short_run == [], f"a short run should stay quiet: {short_run}"
    assert quiet_run == [], f"LNN_QUIET should silence the bar: {quiet_run}"


# ------------------------------------------------------------------------------------------------------------
# in the browser
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def browser(html):
    if find_chromium() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium, or set $CHROMIUM): browser checks skipped")
    with Browser(size=(1280, 1600)) as chromium:
        yield chromium


PAGE_REPORT_JS = r"""
(async () => {
  const article = document.querySelector('article.bd-article') || document.body;
  for (const img of document.images) img.loading = 'eager';
  await Promise.all([...document.images].map(img => img.complete ? 0 : new Promise(done => {
    img.addEventListener('load', done); img.addEventListener('error', done); setTimeout(done, 5000); })));
  const brokenImages = [...document.images]
    .filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.getAttribute('src'));
  const maths = [...article.querySelectorAll('span.math, div.math')];
  const skip = new Set(['PRE', 'CODE', 'SCRIPT', 'STYLE', 'MJX-CONTAINER', 'TEXTAREA', 'KBD', 'NOSCRIPT']);
  const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT, { acceptNode(node) {
    for (let el = node.parentElement; el && el !== article; el = el.parentElement)
      if (skip.has(el.tagName)) return NodeFilter.FILTER_REJECT;
    return NodeFilter.FILTER_ACCEPT; } });
  const rawTex = [];
  const raw = new RegExp(RAW_TEX);
  while (walker.nextNode()) {
    const text = walker.currentNode.nodeValue;
    const m = text.match(raw);
    if (m) rawTex.push(text.trim().slice(0, 120));
  }
  const boxes = [...article.querySelectorAll('div.admonition.proof, div.admonition.exercise, div.admonition.solution')]
    .map(el => {
      const cs = getComputedStyle(el), r = el.getBoundingClientRect();
      const title = el.querySelector('.admonition-title');
      const framed = ['Top', 'Right', 'Bottom', 'Left'].some(s =>
          parseFloat(cs['border' + s + 'Width']) > 0 && cs['border' + s + 'Style'] !== 'none')
        || !/rgba\(0, 0, 0, 0\)|transparent/.test(cs.backgroundColor) || cs.boxShadow !== 'none';
      return { id: el.id, classes: el.className, width: r.width, height: r.height, framed,
               title: (title ? title.innerText : el.innerText).trim().slice(0, 80) };
    });
  const wide = [...article.querySelectorAll('mjx-container[display="true"]')]
    .filter(c => c.scrollWidth > c.clientWidth + 2)
    .map(c => { const d = c.closest('div.math'); return `${d && d.id ? d.id : 'unlabelled'} (${c.scrollWidth}px in ${c.clientWidth}px)`; });
  return {
    title: document.title,
    h1: !!article.querySelector('h1'),
    mathjax: !!(window.MathJax && window.MathJax.startup),
    maths: maths.length,
    typeset: document.querySelectorAll('mjx-container').length,
    untypeset: maths.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 80)),
    mathErrors: [...document.querySelectorAll('mjx-merror')].map(e => e.getAttribute('data-mjx-error') || e.textContent.slice(0, 80)),
    rawTex, brokenImages, boxes, wide,
    widgetViews: document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length,
    widgetsDrawn: document.querySelectorAll('.jupyter-widgets, .widget-area').length,
    debris: ([...article.querySelectorAll('.cell_output')].map(o => o.innerText).join('\n')
             .match(new RegExp(WIDGET_DEBRIS)) || [null])[0],
  };
})()
"""


def _report_js() -> str:
    import json

    return PAGE_REPORT_JS.replace("RAW_TEX)", f"{json.dumps(RAW_TEX.pattern)})").replace(
        "WIDGET_DEBRIS)", f"{json.dumps(WIDGET_DEBRIS.pattern)})"
    )


NUMBERED_TITLE = re.compile(r"\b\d+\.\d+\b")


@pytest.mark.parametrize("page", PAGES)
def test_page_in_browser(html, browser, page):
    load = browser.open((html / page).as_uri())
    report = browser.evaluate(_report_js())
    problems = []
    problems += [f"requested from the network: {u}" for u in load.network_requests]
    problems += [f"failed to load: {u}" for u in load.failed_requests]
    problems += [f"console: {e}" for e in load.console_errors]
    if not report["title"] or not report["h1"]:
        problems.append("no title or no heading")
    if report["maths"] and not report["mathjax"]:
        problems.append(f"{report['maths']} formulas but MathJax did not load")
    problems += [f"not typeset: {t!r}" for t in report["untypeset"][:5]]
    problems += [f"MathJax error: {e}" for e in report["mathErrors"][:5]]
    problems += [f"raw TeX on screen: {t!r}" for t in report["rawTex"][:5]]
    problems += [f"image does not display: {src}" for src in report["brokenImages"]]
    if report["widgetViews"] or report["widgetsDrawn"]:
        problems.append(f"widgets in the page ({report['widgetViews']} views, {report['widgetsDrawn']} drawn)")
    if report["debris"]:
        problems.append(f"widget/progress debris on screen: {report['debris']!r}")
    for box in report["boxes"]:
        classes = set(box["classes"].split())
        what = f"box {box['id'] or box['classes']!r}"
        if box["height"] < 20 or box["width"] < 100 or not box["framed"] or not box["title"]:
            problems.append(f"{what} is not drawn as a box: {box}")
        elif classes == {"proof", "admonition"}:
            if not box["title"].startswith("Proof"):
                problems.append(f"{what} does not open with 'Proof': {box['title']!r}")
        elif "solution" not in classes and not NUMBERED_TITLE.search(box["title"]):
            problems.append(f"{what} has no number in its title {box['title']!r}")
    if report["wide"]:
        warnings.warn(f"{page}: display math wider than the column (scrolls sideways): {', '.join(report['wide'])}")
    assert not problems, f"{page}:\n  " + "\n  ".join(problems)


def test_search_in_browser(html, browser):
    """The search page answers from file:// (searchindex.js is a script, no server needed)."""
    load = browser.open((html / "search.html").as_uri() + "?q=gradient")
    deadline = time.monotonic() + 15
    results: list = []
    while time.monotonic() < deadline:
        results = browser.evaluate(
            "[...document.querySelectorAll('#search-results li a')].map(a => a.getAttribute('href'))"
        )
        if results:
            break
        time.sleep(0.2)
    assert not load.console_errors, load.console_errors
    assert results, "searching for 'gradient' found nothing"
    for href in results:
        target, _ = _resolve(html / "search.html", href)
        assert target.is_file(), f"search result {href} does not exist"


DARK_REPORT_JS = r"""
(() => {
  const figures = [...document.querySelectorAll('article.bd-article div.cell_output img, article.bd-article figure img')];
  return {
    theme: document.documentElement.dataset.theme,
    background: getComputedStyle(document.body).backgroundColor,
    figures: figures.map(img => { const cs = getComputedStyle(img);
      return { src: img.getAttribute('src'), filter: cs.filter, background: cs.backgroundColor }; }),
  };
})()
"""


def _luminance(css_color: str) -> float:
    r, g, b = (float(x) for x in re.findall(r"[\d.]+", css_color)[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def _scroll_to_first_figure(browser) -> bool:
    """Scroll the first figure to just below the top of the window; False if the page has none."""
    found = browser.evaluate(
        "(async () => { const img = document.querySelector('article.bd-article div.cell_output img');"
        " if (!img) return false; window.scrollTo(0, img.getBoundingClientRect().top + window.scrollY - 120);"
        " await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r))); return true; })()"
    )
    return bool(found)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_screenshots_light_and_dark(html, browser, chapter):
    """Screenshots for the record (artifacts/screenshots/), and dark mode keeps the figures readable."""
    url = (html / "book" / f"{chapter}.html").as_uri()
    browser.open(url)  # localStorage belongs to the page's origin: open one first
    try:
        browser.evaluate("localStorage.setItem('mode', 'light')")
        browser.open(url)
        browser.screenshot(ARTIFACTS / f"{chapter}-light.png")
        if _scroll_to_first_figure(browser):
            browser.screenshot(ARTIFACTS / f"{chapter}-light-figure.png")
        browser.evaluate("localStorage.setItem('mode', 'dark')")
        load = browser.open(url)
        report = browser.evaluate(DARK_REPORT_JS)
        browser.screenshot(ARTIFACTS / f"{chapter}-dark.png")
        if _scroll_to_first_figure(browser):
            browser.screenshot(ARTIFACTS / f"{chapter}-dark-figure.png")
    finally:
        browser.evaluate("localStorage.removeItem('mode')")
    assert report["theme"] == "dark", f"dark mode did not switch the theme: {report['theme']!r}"
    assert _luminance(report["background"]) < 0.3, f"dark mode page background is {report['background']}"
    assert not load.console_errors, load.console_errors
    for fig in report["figures"]:
        assert "invert" not in fig["filter"], f"{fig['src']} is inverted in dark mode ({fig['filter']})"
        assert _luminance(fig["background"]) > 0.9, f"{fig['src']} has no light backing in dark mode: {fig}"


# ------------------------------------------------------------------------------------------------------------
# explorers without a kernel: sliders switch the precomputed frames (book/_static/explorer.js)
# ------------------------------------------------------------------------------------------------------------
EXPLORER_STATE_JS = r"""
(i) => {
  const root = document.querySelectorAll('article.bd-article div.lnn-explorer')[i];
  const img = root.querySelector('img.lnn-explorer-frame');
  return { frame: root.dataset.frame, src: img.getAttribute('src'), alt: img.getAttribute('alt'),
           decoded: img.complete && img.naturalWidth > 0,
           outputs: [...root.querySelectorAll('output')].map(o => o.textContent),
           valuetexts: [...root.querySelectorAll('input[type=range]')].map(r => r.getAttribute('aria-valuetext')) };
}
"""


def _wait_decoded(browser, index: int) -> dict:
    browser.page.wait_for_function(
        "(i) => { const img = document.querySelectorAll('article.bd-article div.lnn-explorer img.lnn-explorer-frame')[i];"
        " return img.complete && img.naturalWidth > 0; }", arg=index)
    return browser.evaluate(EXPLORER_STATE_JS, index)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_explorers_in_browser(html, browser, chapter):
    """Each slider, moved with the keyboard (arrows, End/Home) and with the mouse, changes the frame and its alt."""
    import json

    soup = _soup(html / "book" / f"{chapter}.html")
    bundles = explorer_bundles(soup)
    if not bundles:
        pytest.skip(f"{chapter}: no explorer in the page (test_chapter_has_explorer says why)")
    load = browser.open((html / "book" / f"{chapter}.html").as_uri())
    explorers = browser.page.locator("article.bd-article div.lnn-explorer")
    assert explorers.count() == len(bundles)
    problems, weights = [], []
    for i, bundle in enumerate(bundles):
        params = bundle["payload"]["params"]
        root = explorers.nth(i)
        root.scroll_into_view_if_needed()
        sliders = root.locator("input[type=range]")
        assert sliders.count() == len(params), f"explorer {i}: {sliders.count()} sliders for {len(params)} parameters"
        seen = {_wait_decoded(browser, i)["src"]}
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        root.screenshot(path=str(ARTIFACTS / f"{chapter}-explorer{i}-initial.png"))
        for k, p in enumerate(params):
            slider = sliders.nth(k)
            label = root.locator(f"label[for='{slider.get_attribute('id')}']")
            if label.count() != 1 or label.inner_text().strip() != p["label"]:
                problems.append(f"explorer {i}: slider {p['name']} has no label {p['label']!r}")
            if len(p["values"]) < 2:
                continue
            # Keyboard: focus, then the end of the range away from where it starts.
            before = browser.evaluate(EXPLORER_STATE_JS, i)
            slider.focus()
            key = "Home" if p["initial"] == len(p["values"]) - 1 else "End"
            browser.page.keyboard.press(key)
            after = _wait_decoded(browser, i)
            target = 0 if key == "Home" else len(p["values"]) - 1
            if after["src"] == before["src"] or after["alt"] == before["alt"]:
                problems.append(f"explorer {i}: {key} on slider {p['name']} did not change the frame and its alt")
            if after["outputs"][k] != p["values"][target] or p["values"][target] not in (after["valuetexts"][k] or ""):
                problems.append(f"explorer {i}: slider {p['name']} shows {after['outputs'][k]!r}, not {p['values'][target]!r}")
            browser.page.keyboard.press("ArrowLeft" if key == "End" else "ArrowRight")
            stepped = _wait_decoded(browser, i)
            if stepped["src"] == after["src"]:
                problems.append(f"explorer {i}: an arrow key on slider {p['name']} did not change the frame")
            # Mouse: a click at the end of the track farther from where the keyboard left the thumb.
            box = slider.bounding_box()
            at = int(slider.input_value())
            x = box["x"] + (box["width"] - 2 if at < (len(p["values"]) - 1) / 2 else 2)
            browser.page.mouse.click(x, box["y"] + box["height"] / 2)
            clicked = _wait_decoded(browser, i)
            if clicked["src"] == stepped["src"]:
                problems.append(f"explorer {i}: a click on slider {p['name']} did not change the frame")
            seen.update({after["src"], stepped["src"], clicked["src"]})
        root.screenshot(path=str(ARTIFACTS / f"{chapter}-explorer{i}-moved.png"))
        weights.append(f"explorer {i}: {len(bundle['payload']['frames'])} frames, {len(seen)} shown, "
                       f"{bundle['bytes'] / 1024:.0f} KiB")
    problems += [f"console: {e}" for e in load.console_errors]
    problems += [f"requested from the network: {u}" for u in load.network_requests]
    print(f"{chapter}: " + "; ".join(weights))
    assert not problems, f"{chapter}:\n  " + "\n  ".join(problems)
    (ARTIFACTS.parent / f"explorers-{chapter}.json").write_text(json.dumps(weights, indent=1))


# ------------------------------------------------------------------------------------------------------------
# accessibility: WCAG 2.1 A and AA (axe-core) on every page
# ------------------------------------------------------------------------------------------------------------
def _axe_record(page: str, violations: list[dict]) -> None:
    import json

    path = ARTIFACTS.parent / "axe.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    record[page] = {v["id"]: len(v["nodes"]) for v in violations}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, sort_keys=True))


@pytest.mark.parametrize("page", PAGES)
def test_page_accessibility(html, browser, page):
    """axe-core (WCAG 2.1 A and AA rules) finds no violation; the figures per page go to artifacts/axe.json."""
    if not AXE_JS.is_file():
        pytest.fail(f"{AXE_JS.relative_to(ROOT)} is missing: run `make static` (scripts/fetch_static.sh)", pytrace=False)
    browser.open((html / page).as_uri())
    violations = browser.axe()
    _axe_record(page, violations)
    lines = [
        f"{v['id']} ({v['impact']}, {len(v['nodes'])} element(s)): {v['help']}\n      "
        + "\n      ".join(f"{n['target']}: {n['html'][:120]}" for n in v["nodes"][:4])
        for v in violations
    ]
    assert not violations, f"{page}: {sum(len(v['nodes']) for v in violations)} violating element(s)\n  " + "\n  ".join(lines)
