"""A small headless-Chromium driver over the Chrome DevTools Protocol (CDP).

Used by the browser test (``tests/test_browser.py``) and the print route (``scripts/print_book.py``):
open a built page from ``file://`` with the network cut off, wait for MathJax, evaluate JavaScript,
take screenshots and print to PDF. It needs the Debian ``chromium`` package (``/usr/bin/chromium``)
and the pinned ``websocket-client`` package; nothing is downloaded.

Example::

    with Chromium() as browser:
        page = browser.open("file:///.../_build/html/book/intro.html")
        print(page.title, page.failed_requests, page.console_errors)
        browser.screenshot("intro.png")
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import websocket  # websocket-client

#: Flags for a quiet, offline, reproducible headless browser (no first-run UI, no background traffic).
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
    "--font-render-hinting=none",
    # Offline: every host name fails to resolve, so a page that reaches for a CDN shows it at once.
    "--host-resolver-rules=MAP * ~NOTFOUND",
]

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable: ``$CHROMIUM`` if set, else the first one on ``PATH``."""
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() or shutil.which(explicit) else None
    for name in _CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


class CDPError(RuntimeError):
    """A DevTools command failed, timed out, or the page threw while being evaluated."""


@dataclass
class PageLoad:
    """What happened while one page loaded: its URL and the problems a reader would meet."""

    url: str
    failed_requests: list[str] = field(default_factory=list)  # resources that did not load (URL and reason)
    network_requests: list[str] = field(default_factory=list)  # http(s)/ws requests: none should be made offline
    console_errors: list[str] = field(default_factory=list)  # console.error calls, uncaught exceptions, log errors


class Chromium:
    """One headless Chromium with one tab, driven over CDP.

    Parameters
    ----------
    executable
        The browser binary (default: :func:`find_chromium`).
    size
        The window (viewport) size in CSS pixels, ``(width, height)``.
    timeout
        Seconds allowed for any single command or page load.
    """

    def __init__(self, executable: str | None = None, *, size: tuple[int, int] = (1280, 1600), timeout: float = 60.0):
        self.executable = executable or find_chromium()
        if not self.executable:
            raise FileNotFoundError("no Chromium found (apt-get install chromium, or set $CHROMIUM)")
        self.size = size
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="lnn-chromium-")
        self._proc: subprocess.Popen | None = None
        self._ws: websocket.WebSocket | None = None
        self._next_id = 0
        self._events: list[dict] = []

    # -- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> "Chromium":
        width, height = self.size
        cmd = [
            self.executable,
            *FLAGS,
            f"--user-data-dir={self._profile}",
            f"--window-size={width},{height}",
            "--remote-debugging-port=0",
            "about:blank",
        ]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while not (port_file.exists() and port_file.read_text().strip()):
            if self._proc.poll() is not None:
                raise CDPError(f"{self.executable} exited with status {self._proc.returncode} at start")
            if time.monotonic() > deadline:
                raise CDPError("Chromium did not open its DevTools port in time")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=self.timeout) as response:
            targets = json.load(response)
        page = next(t for t in targets if t.get("type") == "page")
        self._ws = websocket.create_connection(
            page["webSocketDebuggerUrl"], timeout=self.timeout, suppress_origin=True, enable_multithread=False
        )
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.send(f"{domain}.enable")
        self.send("Network.setCacheDisabled", cacheDisabled=True)
        self.send(
            "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False
        )
        return self

    def close(self) -> None:
        if self._ws is not None:
            try:
                self.send("Browser.close")
            except Exception:  # noqa: BLE001 - closing anyway
                pass
            self._ws.close()
            self._ws = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> "Chromium":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- protocol ------------------------------------------------------------------------------------------
    def _receive(self, deadline: float) -> dict:
        assert self._ws is not None, "browser not started"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise CDPError("timed out waiting for the browser")
        self._ws.settimeout(remaining)
        try:
            return json.loads(self._ws.recv())
        except websocket.WebSocketTimeoutException as err:
            raise CDPError("timed out waiting for the browser") from err

    def send(self, method: str, timeout: float | None = None, **params) -> dict:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        assert self._ws is not None, "browser not started"
        self._next_id += 1
        ident = self._next_id
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            message = self._receive(deadline)
            if message.get("id") == ident:
                if "error" in message:
                    raise CDPError(f"{method}: {message['error'].get('message')}")
                return message.get("result", {})
            if "method" in message:
                self._events.append(message)

    def wait_for_event(self, method: str, timeout: float | None = None) -> dict:
        """Wait for the next event named ``method`` (already-received ones count)."""
        for i, event in enumerate(self._events):
            if event["method"] == method:
                return self._events.pop(i)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            message = self._receive(deadline)
            if message.get("method") == method:
                return message
            if "method" in message:
                self._events.append(message)

    def evaluate(self, expression: str, *, timeout: float | None = None):
        """Evaluate a JavaScript expression in the page (promises are awaited) and return its JSON value."""
        result = self.send(
            "Runtime.evaluate",
            timeout=timeout,
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
            userGesture=True,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise CDPError(f"JavaScript error: {text}")
        return result.get("result", {}).get("value")

    # -- pages ---------------------------------------------------------------------------------------------
    def open(self, url: str, *, settle: float = 0.2) -> PageLoad:
        """Load ``url``, wait for its load event, for MathJax to finish typesetting, and for a short settle time.

        Returns what went wrong on the way (failed resources, network requests, console errors).
        """
        self._events.clear()
        result = self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise CDPError(f"cannot open {url}: {result['errorText']}")
        self.wait_for_event("Page.loadEventFired")
        # MathJax 3 typesets after load and may fetch extensions; its startup promise covers both.
        self.evaluate(
            "(async () => { const mj = window.MathJax;"
            " if (mj && mj.startup && mj.startup.promise) { await mj.startup.promise; }"
            " await document.fonts.ready; return true; })()"
        )
        time.sleep(settle)
        self.send("Runtime.evaluate", expression="0")  # drain events that arrived meanwhile
        return self._page_load(url)

    def _page_load(self, url: str) -> PageLoad:
        load = PageLoad(url)
        requested: dict[str, str] = {}
        for event in self._events:
            method, params = event["method"], event.get("params", {})
            if method == "Network.requestWillBeSent":
                request_url = params["request"]["url"]
                requested[params["requestId"]] = request_url
                if request_url.split(":", 1)[0] in ("http", "https", "ws", "wss"):
                    load.network_requests.append(request_url)
            elif method == "Network.loadingFailed" and not params.get("canceled"):
                load.failed_requests.append(
                    f"{requested.get(params['requestId'], '?')} ({params.get('errorText', 'failed')})"
                )
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                load.console_errors.append(
                    "uncaught: " + (details.get("exception", {}).get("description") or details.get("text", ""))
                )
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                args = params.get("args", [])
                load.console_errors.append(
                    "console.error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in args)
                )
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                entry = params["entry"]
                load.console_errors.append(f"log: {entry.get('text', '')} {entry.get('url', '')}".strip())
        self._events.clear()
        return load

    def screenshot(self, path: str | os.PathLike, *, full_page: bool = False, clip: dict | None = None) -> Path:
        """Save a PNG of the viewport (or the whole page, or a ``clip`` rectangle in page coordinates)."""
        params: dict = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            metrics = self.send("Page.getLayoutMetrics")["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": metrics["width"], "height": metrics["height"]}
        if clip is not None:
            params["clip"] = {"scale": 1, **clip}
            params["captureBeyondViewport"] = True
        data = self.send("Page.captureScreenshot", **params)["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def print_pdf(self, path: str | os.PathLike, **options) -> Path:
        """Print the open page to PDF (A4, backgrounds on, the page's print stylesheet applies)."""
        params = {
            "printBackground": True,
            "paperWidth": 8.27,
            "paperHeight": 11.69,
            "marginTop": 0.6,
            "marginBottom": 0.6,
            "marginLeft": 0.6,
            "marginRight": 0.6,
            "displayHeaderFooter": True,
            "headerTemplate": "<span></span>",
            "footerTemplate": (
                '<div style="font-size:8px;width:100%;text-align:center;">'
                '<span class="pageNumber"></span> / <span class="totalPages"></span></div>'
            ),
            **options,
        }
        data = self.send("Page.printToPDF", timeout=max(self.timeout, 300), **params)["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path
