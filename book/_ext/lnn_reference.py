"""Sphinx extension for the API reference of lnn (book/reference/).

1. Flat names resolve. Docstrings and pages may write ``:func:`lnn.gradient_descent``` (the public, flat name);
   the reference documents each object where it is defined (``lnn.dynamics.gradient_descent``, which is also where
   sphinx-codeautolink sends the chapters' code). A ``missing-reference`` handler maps a flat ``lnn.X`` to the
   defining module of the object it names.

2. Starred names in numpy-style parameter types (``x : Tensor, shape (n, *input_shape)``) are literal: napoleon
   would pass the ``*`` on as the start of an emphasis, which the strict build reports as an error.

3. sphinx-codeautolink walks the untitled sections of sphinx-proof and sphinx-exercise.

The bodies of ``{prf:...}`` and ``{exercise}``/``{solution}`` directives are ``section`` nodes without a title
(ids ``proof-content``, ``exercise-content``, ``solution-content``), and their headings are ``title`` nodes outside
any section. sphinx-codeautolink 0.19 pushes every title it visits and pops one per section it leaves, so the first
untitled section fails the build with "pop from empty list", and box titles pile up in the "references to" lists of
the API reference. Here only section titles are pushed, and an untitled section keeps the enclosing title and
anchor (a code cell inside a proof is listed under the enclosing heading), popped when it is left.
"""

from __future__ import annotations

import re

from docutils import nodes


def _resolve_flat_name(app, env, node, contnode):
    """``lnn.X`` (or ``lnn.X.attr``) -> the object's defining module, for Python-domain references."""
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target.startswith("lnn."):
        return None
    import importlib

    parts = target.split(".")
    try:
        obj = importlib.import_module("lnn")
        for part in parts[1:]:
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qualname:
        return None
    canonical = f"{module}.{qualname}"
    if canonical == target:
        return None
    domain = env.get_domain("py")
    return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], canonical, node, contnode)


_PARAM_LINE = re.compile(r"^(\s*\**\w[\w, ]*\s:\s)(.*)$")


def _escape_stars_in_types(app, what, name, obj, options, lines):
    """Escape ``*`` outside inline literals in the ``name : type`` lines of lnn's docstrings (before napoleon)."""
    if not name.startswith("lnn"):
        return
    for i, line in enumerate(lines):
        match = _PARAM_LINE.match(line)
        if not match or "*" not in match.group(2):
            continue
        parts = match.group(2).split("``")
        parts = [p if k % 2 else re.sub(r"(?<!\\)\*", r"\\*", p) for k, p in enumerate(parts)]
        lines[i] = match.group(1) + "``".join(parts)


def setup(app):
    app.connect("missing-reference", _resolve_flat_name)
    app.connect("autodoc-process-docstring", _escape_stars_in_types, priority=400)
    from sphinx_codeautolink.extension import block

    cls = block.CodeBlockAnalyser
    if not getattr(cls, "_untitled_sections_patched", False):
        visit_titled = cls.visit_section

        def visit_section(self, node):
            if any(isinstance(child, nodes.title) for child in node.children):
                return visit_titled(self, node)
            self.title_stack.append(self.title_stack[-1] if self.title_stack else "")
            return None

        visit_any_title = cls.visit_title

        def visit_title(self, node):
            if isinstance(node.parent, nodes.section):
                return visit_any_title(self, node)
            return None  # the title of a box (theorem, exercise, figure...), not a heading

        cls.visit_section = visit_section
        cls.visit_title = visit_title
        cls._untitled_sections_patched = True
    return {"parallel_read_safe": True, "parallel_write_safe": True}
