"""Headless Chromium for the book's checks and its printed edition, driven by Playwright for Python.

Playwright (``playwright`` on PyPI, pinned in requirements.txt) drives the system's Chromium (the Debian package
``chromium``, or ``$CHROMIUM``) through ``executable_path``: ``playwright install`` (a browser download) is never
needed. Used by ``tests/test_browser.py`` and ``scripts/print_book.py``.

* :meth:`Browser.open` loads a page with the network cut: every ``http(s)``/``ws(s)`` request is recorded and aborted
  by a route (the book must work offline, from ``file://``), host names do not resolve either, and the page's
  console errors, uncaught exceptions and failed loads are collected in the returned :class:`PageLoad`.
* :meth:`Browser.evaluate`, :meth:`Browser.screenshot`, :meth:`Browser.pdf` (``page.pdf``) and :meth:`Browser.axe`
  (an axe-core audit, WCAG 2.1 A and AA rules, with the pinned ``axe.min.js`` that ``scripts/fetch_static.sh``
  fetches from the npm registry).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: axe-core, fetched (pinned, checked) by scripts/fetch_static.sh; a dot folder, so not copied into the book.
AXE_JS = Path(os.environ.get("LNN_AXE_JS", ROOT / "book" / "_static" / "vendor" / ".axe-core" / "axe.min.js"))
#: The accessibility standard the book is held to: WCAG 2.1 levels A and AA.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
NETWORK_SCHEMES = ("http", "https", "ws", "wss")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",
    "--allow-file-access-from-files",
]


def find_chromium() -> str | None:
    """The Chromium binary: ``$CHROMIUM``, else the first of chromium, chromium-browser, google-chrome on PATH."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env if Path(env).exists() or shutil.which(env) else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageLoad:
    """What happened while a page loaded (and since, until the next :meth:`Browser.open`)."""

    url: str
    network_requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)


class Browser:
    """One headless Chromium (Playwright) with one page.

    Parameters
    ----------
    executable
        The browser binary (default: :func:`find_chromium`).
    size
        The viewport size in CSS pixels, ``(width, height)``.
    timeout
        Seconds allowed for a page load or a single evaluation.
    """

    def __init__(self, executable: str | None = None, *, size: tuple[int, int] = (1280, 1600), timeout: float = 60.0):
        self.executable = executable or find_chromium()
        if not self.executable:
            raise FileNotFoundError("no Chromium found (apt-get install chromium, or set $CHROMIUM)")
        self.size = size
        self.timeout = timeout
        self._pw = self._browser = self.context = self.page = None
        self._load: PageLoad | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> "Browser":
        from playwright.sync_api import sync_playwright

        self._pw = sync_playwright().start()
        self._browser = self._pw.chromium.launch(executable_path=self.executable, args=LAUNCH_ARGS, headless=True)
        width, height = self.size
        self.context = self._browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=1,
                                                 service_workers="block")
        self.context.set_default_timeout(self.timeout * 1000)
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", self._on_console)
        self.page.on("pageerror", self._on_pageerror)
        self.page.on("requestfailed", self._on_requestfailed)
        return self

    def close(self) -> None:
        for closer in (self.context, self._browser):
            if closer is not None:
                try:
                    closer.close()
                except Exception:  # noqa: BLE001  (the browser may be gone already)
                    pass
        if self._pw is not None:
            self._pw.stop()
        self._pw = self._browser = self.context = self.page = None

    def __enter__(self) -> "Browser":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- events -------------------------------------------------------------------------------------------
    def _route(self, route) -> None:
        url = route.request.url
        if url.split(":", 1)[0].lower() in NETWORK_SCHEMES:
            if self._load is not None:
                self._load.network_requests.append(url)
            route.abort("internetdisconnected")
        else:
            route.continue_()

    def _on_console(self, message) -> None:
        if self._load is not None and message.type in ("error", "assert"):
            where = message.location.get("url", "") if message.location else ""
            self._load.console_errors.append(f"console.{message.type}: {message.text} {where}".strip())

    def _on_pageerror(self, error) -> None:
        if self._load is not None:
            self._load.console_errors.append(f"uncaught: {error}")

    def _on_requestfailed(self, request) -> None:
        if self._load is None or request.url.split(":", 1)[0].lower() in NETWORK_SCHEMES:
            return  # cut on purpose: listed in network_requests
        self._load.failed_requests.append(f"{request.url} ({request.failure or 'failed'})")

    # -- pages --------------------------------------------------------------------------------------------
    def open(self, url: str, *, settle: float = 0.2) -> PageLoad:
        """Load ``url``, wait for its load event, for MathJax to finish typesetting and the fonts, then ``settle``
        seconds; returns what went wrong on the way (it keeps collecting until the next ``open``)."""
        self._load = PageLoad(url)
        self.page.goto(url, wait_until="load")
        # MathJax 3 typesets after load and may fetch extensions; its startup promise covers both.
        self.page.evaluate(
            "async () => { const mj = window.MathJax;"
            " if (mj && mj.startup && mj.startup.promise) { await mj.startup.promise; }"
            " await document.fonts.ready; return true; }"
        )
        self.page.wait_for_timeout(settle * 1000)
        return self._load

    @property
    def load(self) -> PageLoad | None:
        """The record of the page opened last."""
        return self._load

    def evaluate(self, expression: str, arg=None):
        """The value of a JavaScript expression (a promise is awaited) or function (called with ``arg``)."""
        return self.page.evaluate(expression, arg)

    def screenshot(self, path: str | os.PathLike, *, full_page: bool = False, clip: dict | None = None) -> Path:
        """Save a PNG of the viewport (or the whole page, or a ``clip`` rectangle in page coordinates)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), full_page=full_page, clip=clip)
        return path

    def pdf(self, path: str | os.PathLike, **options) -> Path:
        """Print the open page to PDF (A4, backgrounds on, page numbers; the page's print stylesheet applies)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        params = {
            "format": "A4",
            "print_background": True,
            "margin": {"top": "0.6in", "bottom": "0.6in", "left": "0.6in", "right": "0.6in"},
            "display_header_footer": True,
            "header_template": "<span></span>",
            "footer_template": (
                '<div style="font-size:8px;width:100%;text-align:center;">'
                '<span class="pageNumber"></span> / <span class="totalPages"></span></div>'
            ),
            **options,
        }
        self.page.pdf(path=str(path), **params)
        return path

    def axe(self, *, tags: list[str] | None = None, exclude: list[str] | None = None) -> list[dict]:
        """Run axe-core on the open page (WCAG 2.1 A and AA rules by default): its violations, each with the
        rule id, impact, help text and the offending elements (``nodes``: CSS target and a snippet of HTML)."""
        if not AXE_JS.is_file():
            raise FileNotFoundError(f"{AXE_JS} is missing: run scripts/fetch_static.sh (make static)")
        if not self.page.evaluate("() => typeof window.axe !== 'undefined'"):
            self.page.add_script_tag(content=AXE_JS.read_text(encoding="utf-8"))
        options = {"runOnly": {"type": "tag", "values": tags or AXE_TAGS}, "resultTypes": ["violations"]}
        context = {"exclude": [[sel] for sel in exclude]} if exclude else None
        result = self.page.evaluate(
            "async ([context, options]) => { const r = await axe.run(context || document, options);"
            " return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,"
            " nodes: v.nodes.map(n => ({target: n.target.join(' '), html: n.html.slice(0, 200),"
            " summary: n.failureSummary}))})); }",
            [context, options],
        )
        return json.loads(json.dumps(result))
