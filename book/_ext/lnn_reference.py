"""Sphinx extension: let sphinx-codeautolink walk the untitled sections of sphinx-proof and sphinx-exercise.

The bodies of ``{prf:...}`` and ``{exercise}``/``{solution}`` directives are ``section`` nodes without a title
(ids ``proof-content``, ``exercise-content``, ``solution-content``), and their headings are ``title`` nodes outside
any section. sphinx-codeautolink 0.19 pushes every title it visits and pops one per section it leaves, so the first
untitled section fails the build with "pop from empty list", and box titles pile up in the "references to" lists of
the API reference. Here only section titles are pushed, and an untitled section keeps the enclosing title and
anchor (a code cell inside a proof is listed under the enclosing heading), popped when it is left.
"""

from __future__ import annotations

from docutils import nodes


def setup(app):
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
