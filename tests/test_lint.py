"""Lint: ruff (pinned in requirements.txt, rules in pyproject.toml [tool.ruff]) passes on all of lnn/ and lnn_course/,
and on the build tools, scripts and benchmarks (tools/, scripts/, benchmarks/).

The rules are pyflakes and pycodestyle errors (unused or undefined names, imports not at the top, ambiguous
comparisons...); long lines and the paper's one-letter names (``l`` for a level) are allowed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _ruff() -> list[str] | None:
    exe = Path(sys.executable).with_name("ruff")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("ruff")
    return [found] if found else None


def test_ruff_passes_on_lnn_lnn_course_and_the_tools():
    ruff = _ruff()
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -r requirements.txt)")
    result = subprocess.run([*ruff, "check", "--no-cache", "lnn", "lnn_course", "tools", "scripts", "benchmarks"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
