"""The GitHub Actions workflows (.github/workflows/) are valid: checked against GitHub's workflow schema by
check-jsonschema (PyPI, pinned in requirements.txt; the schema ships inside the package, so this runs offline)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))


def _check(paths) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows", *map(str, paths)],
        capture_output=True, text=True, cwd=ROOT,
    )


def test_there_is_a_publishing_workflow():
    assert any("deploy-pages" in p.read_text() and "make book" in p.read_text() for p in WORKFLOWS), (
        "no workflow builds the book with `make book` and deploys it to GitHub Pages"
    )


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_workflow_is_valid(workflow):
    done = _check([workflow])
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_linter_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("name: x\non: push\njobs:\n  build:\n    runs-on: ubuntu-24.04\n    step:\n      - run: make\n")
    done = _check([broken])
    assert done.returncode != 0, "check-jsonschema accepted a job without steps"
