"""Runnable anywhere: a chapter notebook downloaded from the built book runs in a fresh environment.

The end-to-end check: a new venv with only pip and a Jupyter kernel (ipykernel), the notebook as the book serves it
for download (``_build/html/_sources/book/NN.ipynb``), and an install source that the test provides: a wheel of
``lnn`` built from this checkout into a temporary folder, found through ``PIP_FIND_LINKS`` (torch comes from the
local wheel that pip's configuration finds, the other pinned packages from the configured index). nbclient runs the
notebook top to bottom in that venv's kernel, from a folder outside the repository (so ``import lnn`` cannot find
the checkout). Its first cell (``scripts/bootstrap_cell.py``) must install ``lnn`` at the book's version.

Nothing is cached between runs (the venv is new each time); the time of each step is printed. The chapter is the
one named by ``LNN_BOOTSTRAP_CHAPTER`` (default: the first chapter, among the quickest to run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import bootstrap_cell  # noqa: E402  (scripts/bootstrap_cell.py)
from test_browser import html  # noqa: E402,F401  (the built book, shared fixture)

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = os.environ.get("LNN_BOOTSTRAP_CHAPTER", "01_preliminaries")


def _run(cmd, **kwargs) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if done.returncode:
        pytest.fail(f"{' '.join(map(str, cmd))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}", pytrace=False)
    return time.perf_counter() - start


def test_bootstrap_cell_is_idempotent(tmp_path):
    nb = {"cells": [{"cell_type": "markdown", "id": "a", "metadata": {}, "source": ["# Title"]},
                    {"cell_type": "code", "id": "b", "metadata": {}, "outputs": [], "execution_count": None,
                     "source": ["import numpy as np\n", "from sklearn import datasets"]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb))
    assert bootstrap_cell.main(["x", "--check", str(path)]) == 1
    assert bootstrap_cell.apply(path) is True
    first = path.read_text()
    assert bootstrap_cell.apply(path) is False and path.read_text() == first
    assert bootstrap_cell.main(["x", "--check", str(path)]) == 0
    cells = json.loads(first)["cells"]
    assert [c["id"] for c in cells] == ["a", bootstrap_cell.CELL_ID, "b"]
    source = "".join(cells[1]["source"])
    version = bootstrap_cell.book_version()
    assert f'"lnn=={version}"' in source and '"scikit-learn==' in source and '"numpy==' in source
    assert cells[1]["metadata"]["tags"] == ["remove-cell"]
    # An out-of-date cell is replaced in place, not duplicated.
    cells[1]["source"] = ["# old"]
    path.write_text(json.dumps({**json.loads(first), "cells": cells}))
    assert bootstrap_cell.apply(path) is True and path.read_text() == first


def test_downloaded_chapter_runs_in_a_fresh_venv(html, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    downloaded = html / "_sources" / "book" / f"{CHAPTER}.ipynb"
    assert downloaded.is_file(), f"the book offers no {downloaded.relative_to(html)} for download"
    nb = nbformat.read(downloaded, as_version=4)
    assert any(c.get("id") == bootstrap_cell.CELL_ID for c in nb.cells), (
        f"{CHAPTER}: the downloaded notebook has no bootstrap cell: run scripts/bootstrap_cell.py book/*.ipynb"
    )
    times = {}
    wheels = tmp_path / "wheels"
    times["lnn wheel"] = _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                               "-w", str(wheels), str(ROOT)])
    # The wheel holds every module of lnn in the checkout (a subpackage left out of pyproject's packages would
    # only fail in a reader's fresh environment).
    import zipfile

    (wheel,) = wheels.glob("lnn-*.whl")
    packed = {n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".py")}
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "lnn").rglob("*.py") if "__pycache__" not in p.parts}
    assert modules <= packed, f"the lnn wheel lacks {sorted(modules - packed)}: list them in pyproject.toml"
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    base = os.environ.get("LNN_BOOTSTRAP_PYTHON", f"python{sys.version_info.major}.{sys.version_info.minor}")
    times["venv"] = _run([base, "-m", "venv", str(venv)])
    times["ipykernel"] = _run([str(python), "-m", "pip", "install", "--quiet", "ipykernel"])
    probe = subprocess.run([str(python), "-c", "import importlib.util as u; print(u.find_spec('lnn'))"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert probe.stdout.strip() == "None", f"the fresh venv already has lnn: {probe.stdout}"
    prefix = tmp_path / "kernel"
    _run([str(python), "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", "fresh"])

    work = tmp_path / "reader"
    work.mkdir()
    keep = ("HOME", "LANG", "LC_ALL", "TMPDIR", "PIP_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_INDEX_URL",
            "PIP_EXTRA_INDEX_URL", "PIP_CONFIG_FILE", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    find_links = " ".join([str(wheels)] + [p for p in os.environ.get("PIP_FIND_LINKS", "").split() if p])
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin", VIRTUAL_ENV=str(venv), PIP_FIND_LINKS=find_links,
               PIP_DISABLE_PIP_VERSION_CHECK="1", MPLBACKEND="Agg", LNN_QUIET="1", OMP_NUM_THREADS="1")
    os.environ["JUPYTER_PATH"] = str(prefix / "share" / "jupyter")
    try:
        client = NotebookClient(nb, timeout=900, kernel_name="fresh", resources={"metadata": {"path": str(work)}})
        start = time.perf_counter()
        client.execute(env=env)
        times["notebook (install + run)"] = time.perf_counter() - start
    finally:
        os.environ.pop("JUPYTER_PATH", None)
    installed = subprocess.run([str(python), "-m", "pip", "show", "lnn"], capture_output=True, text=True).stdout
    print(f"{CHAPTER} in a fresh venv: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    assert f"Version: {bootstrap_cell.book_version()}" in installed, installed
    assert str(venv) in installed, f"lnn was not installed into the fresh venv:\n{installed}"
