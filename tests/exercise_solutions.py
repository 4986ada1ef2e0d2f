"""The reference solutions of the exercises, read from their one source, ``exercises/source/*.ipynb``.

``solutions("03_implicit_bias")`` executes that notebook's first code cell (imports and data) and every cell that
holds a ``# BEGIN SOLUTION`` block (the functions the student writes), and returns the resulting namespace. The
checker tests use these as the correct answers, so they test the answers students are shown, and none of them calls
the ``lnn`` reference that the checkers make unavailable.
"""

from __future__ import annotations

import functools
from pathlib import Path

import nbformat
import torch

SOURCE = Path(__file__).resolve().parents[1] / "exercises" / "source"


@functools.cache
def _namespace(stem: str) -> dict:
    nb = nbformat.read(SOURCE / f"{stem}.ipynb", as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    ns: dict = {"__name__": f"solutions_{stem}"}
    # The notebooks' first cell sets torch's default dtype to float64 for the whole process; it must not leak
    # into the other tests of the session (collection runs this at import time).
    dtype = torch.get_default_dtype()
    try:
        for k, src in enumerate(code):
            if k == 0 or "# BEGIN SOLUTION" in src:
                exec(compile(src, f"{stem}.ipynb[code {k}]", "exec"), ns)  # noqa: S102 - our own source notebooks
    finally:
        torch.set_default_dtype(dtype)
    return ns


def solutions(stem: str) -> dict:
    return _namespace(stem)


def solution(name: str):
    """The solution function called ``name``, from whichever source notebook defines it."""
    for path in sorted(SOURCE.glob("[0-9]*.ipynb")):
        ns = _namespace(path.stem)
        if name in ns and callable(ns[name]):
            return ns[name]
    raise KeyError(name)
