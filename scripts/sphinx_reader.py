"""Sphinx extension: small fixes of what Jupyter Book 1 writes into every HTML page.

Loaded through ``sphinx.local_extensions`` in ``_config.yml``. It only tidies the page's assets:

- Jupyter Book 1 (with sphinx-thebe and sphinx-togglebutton) adds each of their inline
  configuration scripts twice, so every page threw ``SyntaxError: Identifier 'THEBE_JS_URL'
  has already been declared`` in the browser console. Identical scripts are kept once.

- The single-page builder (``make print``) looks up node handlers under its own name,
  ``singlehtml``, and falls back to ``html`` only when no extension registered any handler for
  ``singlehtml``. Some do, so sphinx-proof's boxes (registered for ``html`` only) crashed it with
  ``NotImplementedError: unknown node type: definition_node``. Every ``html`` handler missing
  under ``singlehtml`` is copied there.

- With sphinx-exercise's ``hide_solutions`` (the student edition, ``make student``), a gated
  solution (``solution-start`` ... ``solution-end``, used when a solution holds code cells) left
  its end marker behind, which crashed the build (``unknown node type: solution_end_node``), and
  would have left the solution's cells in the page. Each gated solution is removed whole.

- The repository address is never invented. ``repository.url`` in ``_config.yml`` is the one place that
  names it; when it is empty, the address comes from ``$LNN_REPOSITORY_URL`` (the publishing workflow sets it)
  or from the checkout's ``origin`` remote (a GitHub, GitLab or Bitbucket address). With none of them, the
  book shows no repository button and no launch buttons (Binder, Colab), rather than broken ones; with one,
  it shows both.

- Accessibility (WCAG 2.1 AA, audited with axe-core by ``tests/test_browser.py``): the written pages are
  post-processed (:func:`accessible_pages`) where a theme or extension writes markup that fails the audit.
  The search button's, the colour-mode button's and the hidden cells' toggles' accessible names contain
  their visible text; the bibliography's entries, marked with the deprecated ARIA role ``doc-biblioentry``
  inside a ``role="list"``, become list items. Colour fixes live in ``book/_static/reader.css``.

- The notebooks it executes show their explorers (``lnn.explorer.explore``) as precomputed frames
  (``LNN_EXPLORER=static`` in the kernels' environment) unless the caller chose otherwise.

``tests/test_browser.py`` opens the pages in headless Chromium and fails on console errors.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.transforms import SphinxTransform


def _script_key(script: Any) -> tuple:
    attributes = getattr(script, "attributes", {}) or {}
    # The same inline script comes once with filename None and once with "" (from two registration paths).
    filename = getattr(script, "filename", script) or None
    return (str(filename) if filename else None, tuple(sorted((k, str(v)) for k, v in attributes.items())))


def drop_duplicate_scripts(app, pagename, templatename, context, doctree) -> None:
    """Keep the first of identical ``<script>`` entries (same source, body and attributes)."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    unique = []
    for script in scripts:
        key = _script_key(script)
        if key in seen:
            continue
        seen.add(key)
        unique.append(script)
    scripts[:] = unique


def share_html_handlers(app) -> None:
    """Give the ``singlehtml`` builder every node handler that extensions registered for ``html``."""
    handlers = app.registry.translation_handlers
    if app.builder.name != "singlehtml" or "singlehtml" not in handlers:
        return
    for node, visitors in handlers.get("html", {}).items():
        handlers["singlehtml"].setdefault(node, visitors)


class hidden_solution_start(nodes.Element):
    """Where a gated solution began, in an edition without solutions (removed before writing)."""


def _hidden_solution_start_directive():
    from sphinx_exercise.directive import SolutionStartDirective

    class HiddenSolutionStart(SolutionStartDirective):
        def run(self):
            super().run()  # keeps sphinx-exercise's bookkeeping of gated pairs; returns [] when hidden
            return [hidden_solution_start()]

    return HiddenSolutionStart


class RemoveHiddenGatedSolutions(SphinxTransform):
    """Drop everything from each hidden ``solution-start`` through its ``solution-end``."""

    default_priority = 5  # before sphinx-exercise merges gated solutions (priority 10)

    def apply(self) -> None:
        from sphinx_exercise.nodes import solution_end_node

        for start in list(self.document.findall(hidden_solution_start)):
            parent = start.parent
            if parent is None:
                continue
            index = parent.index(start)
            end = next(
                (i for i in range(index + 1, len(parent.children)) if isinstance(parent[i], solution_end_node)), None
            )
            stop = end + 1 if end is not None else index + 1
            del parent.children[index:stop]


def hide_gated_solutions(app, config) -> None:
    if config.hide_solutions:
        app.add_directive("solution-start", _hidden_solution_start_directive(), override=True)


# Hosts whose addresses sphinx-book-theme turns into repository and launch buttons.
_HOSTS = ("github.com", "gitlab.com", "bitbucket.org")
_REMOTE = re.compile(
    r"^(?:https?://(?:[^@/]+@)?|ssh://(?:[^@/]+@)?|git@)(?P<host>[^/:]+)[:/](?P<path>[^/\s]+/[^/\s]+?)(?:\.git)?/?$"
)


def repository_address(root: str | os.PathLike, configured: str | None = None) -> str | None:
    """The book's repository as ``https://HOST/OWNER/NAME``, or None when it is not known.

    From ``configured`` (``repository.url`` in ``_config.yml``) when set, else ``$LNN_REPOSITORY_URL``, else the
    ``origin`` remote of the git checkout at ``root``; only addresses on GitHub, GitLab or Bitbucket count (a
    local path or an unknown host gives None). Credentials in a remote's address are dropped.
    """
    for candidate in (configured, os.environ.get("LNN_REPOSITORY_URL")):
        if candidate and candidate.strip():
            return candidate.strip().rstrip("/")
    try:
        remote = subprocess.run(
            ["git", "-C", str(root), "config", "--get", "remote.origin.url"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    match = _REMOTE.match(remote)
    if not match or match["host"].lower() not in _HOSTS:
        return None
    return f"https://{match['host'].lower()}/{match['path']}"


def set_repository(app, config) -> None:
    """Repository and launch buttons from the known address, or none at all (see the module docstring)."""
    options = config.html_theme_options
    address = repository_address(Path(app.confdir), options.get("repository_url"))
    if address:
        options["repository_url"] = address
        options["use_repository_button"] = True
        return
    options["repository_url"] = ""
    for button in ("use_repository_button", "use_issues_button", "use_edit_page_button"):
        options[button] = False
    launch = dict(options.get("launch_buttons") or {})
    for key in ("binderhub_url", "jupyterhub_url", "colab_url", "jupyterlite_url"):
        launch[key] = ""
    launch["thebe"] = False
    options["launch_buttons"] = launch


# (pattern, replacement, what it fixes) applied to every written HTML page.
A11Y_FIXES = [
    # pydata-sphinx-theme's search field: aria-label "Search" hides the visible "Search Ctrl+K" (WCAG 2.5.3,
    # label in name). Without the aria-label the name is the visible text; the tooltip (title) stays.
    # (Matched tag by tag, in any attribute order: sphinx-codeautolink rewrites the pages it links with their
    # attributes sorted.)
    (re.compile(r'<button\b[^>]*\bsearch-button-field\b[^>]*>'),
     lambda m: re.sub(r'\saria-label="[^"]*"', "", m.group(0)),
     "search field button: name from its visible text"),
    # sphinxcontrib-bibtex: <div role="doc-biblioentry"> inside <div role="list">: the role is deprecated (ARIA
    # 1.3) and the list then has no list items.
    (re.compile(r'role="doc-biblioentry"'), 'role="listitem"', "bibliography entries: list items"),
    # The colour-mode button: aria-label "Color mode", but Font Awesome turns the shown icon's title ("Light",
    # "Dark", "System Settings") into an SVG <title>, which counts as its visible text. The icons are
    # decoration (the button's tooltip and name are "Color mode"): no title.
    (re.compile(r'<i class="theme-switch ([^>]*?)\s+title="[^"]*"'), r'<i aria-hidden="true" class="theme-switch \1',
     "colour-mode icons"),
    # sphinx-togglebutton's hidden cells: <summary aria-label="Toggle hidden content"> around the visible
    # "Show code cell source". Without the aria-label the name is what the reader sees.
    (re.compile(r'<summary aria-label="Toggle hidden content">'), "<summary>", "code cell toggles"),
    # pydata-sphinx-theme's sidebar: a part with sub-pages (the API reference) opens with a <summary> that holds
    # only a chevron icon, so it has no name. Name it by what it does.
    (re.compile(r'<summary>(<span class="toctree-toggle" role="presentation">)'),
     r'<summary aria-label="Show or hide the pages of this section">\1', "sidebar section toggles"),
]


def accessible_pages(app, exception) -> None:
    """Apply :data:`A11Y_FIXES` to every HTML page the builder wrote."""
    if exception is not None or app.builder.format != "html":
        return
    for page in Path(app.outdir).rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        fixed = text
        for pattern, replacement, _ in A11Y_FIXES:
            fixed = pattern.sub(replacement, fixed)
        if fixed != text:
            page.write_text(fixed, encoding="utf-8")


def setup(app) -> dict:
    # The notebooks executed for this build (kernels inherit the environment) show their explorers as
    # precomputed frames (lnn/explorer.py), whichever command started the build.
    os.environ.setdefault("LNN_EXPLORER", "static")
    app.setup_extension("sphinx_exercise")
    app.add_node(hidden_solution_start)
    app.add_transform(RemoveHiddenGatedSolutions)
    app.connect("config-inited", hide_gated_solutions)
    app.connect("config-inited", set_repository)
    app.connect("builder-inited", share_html_handlers)
    # Late priority: after the extensions that add scripts in this event.
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    app.connect("build-finished", accessible_pages, priority=950)  # after extensions that rewrite pages
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
