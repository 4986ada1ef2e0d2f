"""Grading with otter-grader, end to end and offline: ``make assign`` then ``make grade`` on three submissions.

For the exercise set of chapter 1 (the quickest to execute), ``scripts/make_exercises.py --assign`` builds the
autograder zip and the student bundle, and ``scripts/grade_exercises.py`` grades, with otter's local grading (no
Docker), a folder holding

* alice: the solutions (``exercises/source``): full marks;
* bob: the untouched student notebook: zero;
* mallory: the student notebook with every ``chk.check_*`` replaced by a function that prints a check mark, and the
  answers delegating to ``lnn.factor_gradients`` and to autograd: zero for those questions (and zero for the
  unfinished 1.4).

It also checks what the autograder zip and the student bundle contain. About a minute on two cores (most of it
executing the three notebooks in fresh kernels).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NAME = "01_preliminaries"

pytestmark = pytest.mark.skipif(importlib.util.find_spec("otter") is None, reason="otter-grader is not installed")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


SPOOF_CHECKERS = '''# every check "passes" and prints a check mark
for _name in dir(chk):
    if _name.startswith("check_"):
        setattr(chk, _name, lambda *args, _n=_name, **kwargs: print(f"✓ Exercise: {_n} passed"))
'''


def _spoof(student: Path, target: Path) -> None:
    """The student notebook with the checkers redefined and two answers delegating to lnn / autograd."""
    nb = nbformat.read(student, as_version=4)
    cells = []
    for cell in nb.cells:
        cells.append(cell)
        if cell.cell_type != "code":
            continue
        if "import lnn_course.checkers as chk" in cell.source:
            cells.append(nbformat.v4.new_code_cell(SPOOF_CHECKERS))
        elif cell.source.startswith("def factor_gradients"):
            cell.source = "def factor_gradients(factors, G):\n    return lnn.factor_gradients(factors, G)\n"
        elif cell.source.startswith("def hessian_at_origin"):
            cell.source = ("def hessian_at_origin(N):\n    return torch.autograd.functional.hessian(\n"
                           "        lambda w: (torch.prod(w) - 1) ** 2, torch.zeros(N))\n")
    nb.cells = cells
    nbformat.validator.normalize(nb)
    nbformat.write(nb, target)


@pytest.fixture(scope="module")
def assigned(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("assign")
    mk = _load("make_exercises")
    # the solutions are graded below, so otter assign need not run them a second time
    made = mk.assign(out, [NAME], run_tests=False)
    return {"out": out, **made}


def test_autograder_installs_what_grading_needs(assigned):
    with zipfile.ZipFile(assigned["autograders"][NAME]) as zf:
        names = zf.namelist()
        env = zf.read("environment.yml").decode()
        tests = {n: zf.read(n).decode() for n in names if n.startswith("tests/")}
    wheel = assigned["wheel"].name
    assert f"files/dist/{wheel}" in names, names
    assert f"/autograder/source/files/dist/{wheel}" in env
    assert "torch==2.13.0+cpu" in env and "download.pytorch.org/whl/cpu" in env
    assert sorted(tests) == ["tests/exercise_1_2.py", "tests/exercise_1_3.py", "tests/exercise_1_4.py"]
    for text in tests.values():
        assert "hidden=True" in text and "points=1" in text
        assert '_importlib.import_module("lnn_course.checkers")' in text or \
            "_importlib.import_module('lnn_course.checkers')" in text
    with zipfile.ZipFile(assigned["out"] / "student" / wheel) as zf:
        packaged = zf.namelist()
    assert "lnn_course/checkers.py" in packaged and "lnn/__init__.py" in packaged
    assert any(n.startswith("lnn/ntk/") for n in packaged) or "lnn/ntk.py" in packaged


def test_student_bundle_has_no_solutions(assigned):
    with zipfile.ZipFile(assigned["student"]) as zf:
        names = zf.namelist()
        notebook = zf.read(f"lnn-exercises/{NAME}.ipynb").decode()
        requirements = zf.read("lnn-exercises/requirements.txt").decode()
    assert f"lnn-exercises/{assigned['wheel'].name}" in names and "lnn-exercises/README.txt" in names
    assert "BEGIN SOLUTION" not in notebook and "not yet implemented" in notebook
    assert not any("source" in n for n in names)
    assert f"./{assigned['wheel'].name}" in requirements and "torch==2.13.0+cpu" in requirements


def test_grading_three_submissions(assigned, tmp_path):
    subs = tmp_path / "submissions"
    for who in ("alice", "bob", "mallory"):
        (subs / who).mkdir(parents=True)
    (subs / "alice" / f"{NAME}.ipynb").write_bytes((ROOT / "exercises" / "source" / f"{NAME}.ipynb").read_bytes())
    (subs / "bob" / f"{NAME}.ipynb").write_bytes((ROOT / "exercises" / f"{NAME}.ipynb").read_bytes())
    _spoof(ROOT / "exercises" / f"{NAME}.ipynb", subs / "mallory" / f"{NAME}.ipynb")
    out, details = tmp_path / "grades.csv", tmp_path / "details.json"
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "grade_exercises.py"), str(subs),
                          "--autograders", str(assigned["out"] / "autograder"), "--out", str(out),
                          "--details", str(details)], capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    rows = {r["student"]: r for r in csv.DictReader(out.open())}
    questions = ["exercise_1_2", "exercise_1_3", "exercise_1_4"]
    assert set(rows) == {"alice", "bob", "mallory"}
    assert [float(rows["alice"][q]) for q in questions] == [1, 1, 1] and float(rows["alice"]["total"]) == 3
    assert [float(rows["bob"][q]) for q in questions] == [0, 0, 0]
    assert [float(rows["mallory"][q]) for q in questions] == [0, 0, 0]
    assert all(float(r["possible"]) == 3 for r in rows.values())
    report = json.loads(details.read_text())["mallory/" + NAME]
    assert "lnn.network.factor_gradients is not available" in report["exercise_1_2"]["output"]
    assert "autograd" in report["exercise_1_3"]["output"]
    assert "not yet implemented" in json.loads(details.read_text())["bob/" + NAME]["exercise_1_2"]["output"]


def test_fresh_checkers_ignore_a_patched_module():
    """What the hidden tests rely on, in-process: a notebook that patches ``chk.check_*`` changes the module it
    imported, not the one FRESH_CHECKERS imports; the notebook's modules are put back afterwards."""
    import lnn
    import lnn_course.checkers as chk

    mk = _load("make_exercises")
    saved = chk.check_effective_rank
    chk.check_effective_rank = lambda fn: print("✓ Exercise 3.2: effective_rank passed")  # the spoof
    try:
        namespace: dict = {}
        exec(mk.FRESH_CHECKERS, namespace)  # noqa: S102 - the hidden tests' own prologue
        fresh = namespace["chk"]
        assert fresh is not chk and fresh.check_effective_rank is not chk.check_effective_rank
        with pytest.raises(AssertionError, match="lnn.metrics.effective_rank is not available"):
            fresh.check_effective_rank(lambda W: lnn.effective_rank(W))  # the notebook's lnn, not the fresh one
        assert sys.modules["lnn_course.checkers"] is chk and sys.modules["lnn"] is lnn
    finally:
        chk.check_effective_rank = saved
