"""The back-links from lnn's docstrings to the book resolve: every ``:prf:ref:``, ``:ref:``, ``:eq:`` and ``:doc:``
target named in a docstring of lnn exists in the book's sources (the strict build checks the same; this test says
so in seconds, e.g. when a chapter renames a theorem label)."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROLE = re.compile(r":(prf:ref|ref|eq|doc):`(?:[^`<]*<)?([^`<>]+?)>?`")  # `label` or `title <label>`


@functools.lru_cache(maxsize=1)
def _book_text() -> str:
    parts = []
    for path in sorted((ROOT / "book").rglob("*")):
        if path.suffix == ".ipynb":
            nb = json.loads(path.read_text())
            parts += ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]
        elif path.suffix == ".md":
            parts.append(path.read_text())
    return "\n".join(parts)


def _references() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted((ROOT / "lnn").rglob("*.py")):
        for role, target in ROLE.findall(path.read_text()):
            found.append((str(path.relative_to(ROOT)), role, target.strip()))
    return found


def defined(role: str, target: str, text: str) -> bool:
    if role == "doc":
        return (ROOT / (target.lstrip("/") + ".ipynb")).exists() or (ROOT / (target.lstrip("/") + ".md")).exists()
    if role == "prf:ref":
        return re.search(rf":label:\s*{re.escape(target)}\s", text) is not None
    if role == "eq":
        return re.search(rf"\$\$\s*\({re.escape(target)}\)", text) is not None or f":label: {target}" in text
    return re.search(rf"^\({re.escape(target)}\)=\s*$", text, re.M) is not None or f":label: {target}" in text


def test_there_are_back_links():
    assert len(_references()) >= 50


@pytest.mark.parametrize("path, role, target", sorted(set(_references())))
def test_back_link_target_exists(path, role, target):
    assert defined(role, target, _book_text()), f"{path}: :{role}:`{target}` names nothing in book/"
