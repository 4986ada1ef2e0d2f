"""Notebooks are committed without outputs: the build and the test suite produce them.

Checks every git-tracked ``*.ipynb`` (falling back to a glob of the working tree when git is
unavailable) for stored outputs, execution counts and saved widget state, and names the
offending file and cells. To clean a notebook: "Clear all outputs" in Jupyter and save, or
``jupyter nbconvert --clear-output --inplace FILE`` where nbconvert is installed.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_SKIP_DIRS = {"_build", "node_modules"}


def tracked_notebooks(root: Path = ROOT) -> list[Path]:
    """Notebooks tracked by git under ``root`` (that still exist), or a glob if git is unavailable."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--", "*.ipynb"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return sorted(
            p
            for p in root.rglob("*.ipynb")
            if not any(part.startswith(".") or part in _SKIP_DIRS for part in p.relative_to(root).parts)
        )
    return sorted(root / rel for rel in out.split("\0") if rel and (root / rel).is_file())


def dirty_cells(nb: dict) -> list[str]:
    """Human-readable problems of a notebook (parsed JSON); empty when it is clean."""
    problems = []
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        where = f"cell {index}" + (f" (id {cell['id']})" if "id" in cell else "")
        first_line = "".join(cell.get("source", "")).strip().splitlines()[:1]
        if first_line:
            where += f" starting {first_line[0][:60]!r}"
        outputs = cell.get("outputs") or []
        if outputs:
            problems.append(f"{where}: {len(outputs)} stored output(s)")
        if cell.get("execution_count") is not None:
            problems.append(f"{where}: execution_count {cell['execution_count']}")
    if nb.get("metadata", {}).get("widgets"):
        problems.append("notebook metadata: saved widget state ('widgets')")
    return problems


NOTEBOOKS = tracked_notebooks()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[str(p.relative_to(ROOT)) for p in NOTEBOOKS])
def test_notebook_has_no_outputs(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    problems = dirty_cells(nb)
    assert not problems, f"{path.relative_to(ROOT)} is committed with outputs:\n  " + "\n  ".join(problems)


def test_book_notebooks_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in NOTEBOOKS}
    assert "book/01_preliminaries.ipynb" in names, f"tracked notebooks found: {sorted(names)}"


def test_checker_flags_outputs_and_counts() -> None:
    clean = {"cells": [{"cell_type": "code", "source": "1 + 1", "outputs": [], "execution_count": None}]}
    dirty = {
        "cells": [
            {"cell_type": "markdown", "source": "# title"},
            {
                "cell_type": "code",
                "id": "abc",
                "source": "print(2)",
                "outputs": [{"output_type": "stream", "name": "stdout", "text": "2\n"}],
                "execution_count": 3,
            },
        ]
    }
    assert dirty_cells(clean) == []
    problems = dirty_cells(dirty)
    assert len(problems) == 2 and all(p.startswith("cell 1 (id abc)") for p in problems), problems


def test_glob_fallback_skips_hidden_and_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", no_git)
    (tmp_path / "book").mkdir()
    (tmp_path / "_build").mkdir()
    (tmp_path / ".venv").mkdir()
    for rel in ["book/a.ipynb", "_build/b.ipynb", ".venv/c.ipynb"]:
        (tmp_path / rel).write_text("{}", encoding="utf-8")
    found = tracked_notebooks(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["book/a.ipynb"]
