"""The exercise notebooks: one source with solutions (exercises/source/), one generated student edition (exercises/).

* The committed student notebooks are exactly what ``scripts/make_exercises.py`` generates from their sources; a
  stale stub fails here, naming the command that fixes it.
* The chapter notebooks exist under the names the chapters link to, with kernel ``python3`` and no outputs, and no
  line of a solution survives in a student notebook.
* Every student notebook runs top to bottom: the cells tagged ``raises-exception`` (and only those) raise
  ``NotImplementedError("Exercise K.M: not yet implemented ...")``, so "Run all" and nbval work through them.
* Every source notebook (the solution edition) runs top to bottom without an error, so every checker accepts the
  solutions and every assertion about the experiments holds.
* The generator's rules hold on small synthetic notebooks (markers, indentation, tagging, errors, ``--check``, and
  the otter-grader export).

The ten notebooks run in two worker processes (one kernel each), a few seconds per notebook.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = ROOT / "exercises"
SOURCES = EXERCISES / "source"
CHAPTERS = ["01_preliminaries", "02_optimization", "03_implicit_bias", "04_applications", "05_linearized_networks"]
CELL_TIMEOUT = 120


def _load_generator():
    spec = importlib.util.spec_from_file_location("make_exercises", ROOT / "scripts" / "make_exercises.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_exercises"] = module
    spec.loader.exec_module(module)
    return module


mk = _load_generator()


# ----------------------------------------------------------------------------------------------------------------
# executing notebooks (in worker processes)
# ----------------------------------------------------------------------------------------------------------------
def _execute(path: str) -> dict:
    """Run one notebook in a fresh kernel; return, per code cell, its tags and the error it raised (if any)."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    os.environ["LNN_QUIET"] = "1"
    os.environ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": os.path.dirname(path)}})
    start = time.perf_counter()
    failure = None
    try:
        client.execute()
    except CellExecutionError as exc:
        failure = str(exc)[-3000:]
    cells = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        cells.append({
            "index": index,
            "tags": list(cell.get("metadata", {}).get("tags", [])),
            "executed": cell.get("execution_count") is not None,
            "error": (errors[0]["ename"], errors[0]["evalue"]) if errors else None,
        })
    return {"cells": cells, "failure": failure, "seconds": time.perf_counter() - start}


@pytest.fixture(scope="module")
def executed() -> dict[str, dict]:
    """Every stub and every source notebook, executed two at a time."""
    paths = [str(EXERCISES / f"{name}.ipynb") for name in CHAPTERS] + [str(SOURCES / f"{name}.ipynb") for name in CHAPTERS]
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = dict(zip(paths, pool.map(_execute, paths)))
    return results


# ----------------------------------------------------------------------------------------------------------------
# the committed notebooks
# ----------------------------------------------------------------------------------------------------------------
def test_stubs_are_up_to_date_with_their_sources():
    problems = mk.check()
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", CHAPTERS)
def test_both_editions_exist_clean_with_python3_kernel(name):
    for path in (EXERCISES / f"{name}.ipynb", SOURCES / f"{name}.ipynb"):
        assert path.exists(), f"{path.relative_to(ROOT)} is missing (the chapters link to it)"
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata.get("kernelspec", {}).get("name") == "python3", path
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name}: stored outputs"


def _solution_blocks(text: str, begin: str, end: str) -> list[list[str]]:
    blocks, current = [], None
    for line in text.split("\n"):
        if line.strip() == begin:
            current = []
        elif line.strip() == end:
            blocks.append(current)
            current = None
        elif current is not None:
            current.append(line)
    return blocks


@pytest.mark.parametrize("name", CHAPTERS)
def test_no_solution_leaks_into_the_student_edition(name):
    source = nbformat.read(SOURCES / f"{name}.ipynb", as_version=4)
    stub_text = "\n".join(mk.source_text(c) for c in nbformat.read(EXERCISES / f"{name}.ipynb", as_version=4).cells)
    solution_lines, given = [], []
    for cell in source.cells:
        text = mk.source_text(cell)
        begin, end = (mk.CODE_BEGIN, mk.CODE_END) if cell.cell_type == "code" else (mk.MD_BEGIN, mk.MD_END)
        blocks = _solution_blocks(text, begin, end)
        solution_lines += [line.strip() for block in blocks for line in block]
        inside = {line for block in blocks for line in block}
        given += [line.strip() for line in text.split("\n") if line not in inside]
    # lines that occur only inside solutions (not in hints or given code), and long enough to be distinctive
    given_text = "\n".join(given)
    secret = [line for line in solution_lines if len(line) >= 20 and line not in given_text]
    assert len(secret) >= 5, f"{name}: expected several exercises with solutions"
    leaked = [line for line in secret if line in stub_text]
    assert not leaked, f"{name}: solution lines in the student edition: {leaked[:3]}"
    assert "SOLUTION" not in stub_text


@pytest.mark.parametrize("name", CHAPTERS)
def test_every_exercise_has_a_solution_and_mixes_derivations_and_code(name):
    source = nbformat.read(SOURCES / f"{name}.ipynb", as_version=4)
    numbers, code, markdown, current = [], set(), set(), None
    for cell in source.cells:
        text = mk.source_text(cell)
        for match in mk.EXERCISE_HEADING.finditer(text if cell.cell_type == "markdown" else ""):
            current = f"{match.group(1)}.{match.group(2)}"
            numbers.append(current)
        if mk.CODE_BEGIN in text:
            code.add(current)
        if mk.MD_BEGIN in text:
            markdown.add(current)
    chapter = int(name[:2])
    assert numbers == [f"{chapter}.{k}" for k in range(1, len(numbers) + 1)], numbers
    assert set(numbers) == code | markdown, f"exercises without a solution: {sorted(set(numbers) - code - markdown)}"
    assert code and markdown, f"{name}: needs both code exercises and derivations"


# ----------------------------------------------------------------------------------------------------------------
# running both editions
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CHAPTERS)
def test_student_edition_runs_through_with_only_tagged_cells_raising(executed, name):
    result = executed[str(EXERCISES / f"{name}.ipynb")]
    assert result["failure"] is None, f"an untagged cell failed in exercises/{name}.ipynb:\n{result['failure']}"
    tagged = [c for c in result["cells"] if "raises-exception" in c["tags"]]
    assert tagged, f"exercises/{name}.ipynb has no unfinished exercise cells"
    assert all(c["executed"] for c in result["cells"]), "some cells did not run"
    for cell in result["cells"]:
        if "raises-exception" in cell["tags"]:
            assert cell["error"] is not None, f"cell {cell['index']} is tagged raises-exception but did not raise"
            ename, evalue = cell["error"]
            assert ename == "NotImplementedError" and re.match(r"Exercise \d+\.\d+: not yet implemented", evalue), \
                f"cell {cell['index']} raised {ename}: {evalue}"
        else:
            assert cell["error"] is None, f"cell {cell['index']} raised {cell['error']}"


@pytest.mark.parametrize("name", CHAPTERS)
def test_solution_edition_passes_every_checker(executed, name):
    result = executed[str(SOURCES / f"{name}.ipynb")]
    assert result["failure"] is None, f"exercises/source/{name}.ipynb failed:\n{result['failure']}"
    assert all(c["error"] is None for c in result["cells"])
    assert result["seconds"] < 60, f"{name} took {result['seconds']:.1f} s; exercise notebooks must run in seconds"


# ----------------------------------------------------------------------------------------------------------------
# the generator's rules
# ----------------------------------------------------------------------------------------------------------------
def _nb(*cells) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, text in cells:
        nb.cells.append(nbformat.v4.new_markdown_cell(text) if kind == "md" else nbformat.v4.new_code_cell(text))
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"c{i}"
    return nb


def _stub(*cells, name="02_test.ipynb"):
    return mk.student_edition(_nb(*cells), Path(name))


def _tags(cell):
    return cell.get("metadata", {}).get("tags", [])


def test_code_solutions_become_raising_placeholders_at_their_indentation():
    stub = _stub(
        ("md", "## Exercise 2.1: a function"),
        ("code", "def f(x):\n    y = 1\n    # BEGIN SOLUTION\n    return x + y\n    # END SOLUTION"),
        ("code", "print(f(2))"),
        ("code", "print('independent')"),
    )
    src = stub.cells[1].source
    assert src.splitlines()[:2] == ["def f(x):", "    y = 1"]
    assert '    raise NotImplementedError("Exercise 2.1: not yet implemented (fill in f)")' in src
    assert "return x + y" not in src
    assert _tags(stub.cells[1]) == [] and _tags(stub.cells[2]) == ["raises-exception"] and _tags(stub.cells[3]) == []
    assert stub.metadata["lnn_exercises"]["generated_from"] == "source/02_test.ipynb"


def test_markdown_solutions_become_answer_prompts():
    stub = _stub(("md", "## Exercise 2.4: prove it"), ("md", "Before.\n<!-- BEGIN SOLUTION -->\nThe proof.\n<!-- END SOLUTION -->\nAfter."))
    assert stub.cells[1].source == "Before.\n" + mk.MD_PROMPT.format(number="2.4") + "\nAfter."


def test_raising_propagates_through_helpers_and_top_level_placeholders():
    stub = _stub(
        ("md", "## Exercise 2.1"),
        ("code", "def f():\n    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION"),
        ("code", "def g():\n    return f() + 1"),  # defining g does not raise ...
        ("code", "value = g()"),  # ... calling it does
        ("code", "# BEGIN SOLUTION\nanswer = 3\n# END SOLUTION"),  # a top-level placeholder raises at once
        ("code", "import math\nprint(math.pi)"),
    )
    assert [("raises-exception" in _tags(c)) for c in stub.cells[1:]] == [False, False, True, True, False]


def test_a_name_defined_only_by_a_raising_cell_is_an_error():
    with pytest.raises(mk.ExerciseSourceError, match="'value'.*NameError"):
        _stub(
            ("md", "## Exercise 2.1"),
            ("code", "def f():\n    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION"),
            ("code", "value = f()"),
            ("code", "print(value)"),
        )


@pytest.mark.parametrize(
    "cells, message",
    [
        ((("code", "# BEGIN SOLUTION\nx = 1\n# END SOLUTION"),), "before any '## Exercise K.M' heading"),
        ((("md", "## Exercise 2.1"), ("code", "def f():\n    # BEGIN SOLUTION\n    return 1")), "without '# END SOLUTION'"),
        ((("md", "## Exercise 2.1"), ("code", "x = 1\n# END SOLUTION")), "without '# BEGIN SOLUTION'"),
        ((("md", "## Exercise 2.1"), ("code", "x = 1  # SOLUTION")), "one-line '# SOLUTION'"),
        ((("md", "## Exercise 2.1"), ("md", "<!-- BEGIN SOLUTION -->\nproof")), "without"),
        ((("md", "## Exercise 3.1"),), "exercise numbers start with the chapter number"),
    ],
)
def test_broken_markers_are_rejected_with_the_cell(cells, message):
    with pytest.raises(mk.ExerciseSourceError, match=re.escape(message)):
        _stub(*cells)


def test_check_mode_reports_stale_missing_and_orphan_stubs(tmp_path):
    src, out = tmp_path / "source", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    nb = _nb(("md", "## Exercise 1.1"), ("code", "def f():\n    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION"))
    (src / "01_a.ipynb").write_text(mk.dumps(nb))
    (src / "01_b.ipynb").write_text(mk.dumps(nb))
    assert mk.main(["--source", str(src), "--out", str(out)]) == 0
    assert mk.check(src, out) == []
    assert mk.main(["--check", "--source", str(src), "--out", str(out)]) == 0
    stale = json.loads((out / "01_a.ipynb").read_text())
    stale["cells"][0]["source"] = "edited by hand"
    (out / "01_a.ipynb").write_text(json.dumps(stale))
    (out / "01_b.ipynb").unlink()
    (out / "01_c.ipynb").write_text(mk.dumps(nb))
    problems = "\n".join(mk.check(src, out))
    assert "01_a.ipynb: out of date" in problems and "01_b.ipynb" in problems and "01_c.ipynb: no source" in problems
    assert mk.main(["--check", "--source", str(src), "--out", str(out)]) == 1


def test_generation_is_deterministic():
    path = SOURCES / f"{CHAPTERS[1]}.ipynb"
    first = mk.dumps(mk.student_edition(mk.read_notebook(path), path))
    second = mk.dumps(mk.student_edition(copy.deepcopy(mk.read_notebook(path)), path))
    assert first == second


def test_otter_master_has_one_question_per_exercise_with_checker_tests():
    path = SOURCES / f"{CHAPTERS[1]}.ipynb"
    master = mk.otter_master(mk.read_notebook(path), path)
    raw = [mk.source_text(c) for c in master.cells if c.cell_type == "raw"]
    assert raw[0].startswith("# ASSIGNMENT CONFIG") and "strip_solutions_from_all_cells: true" in raw[0]
    questions = [r for r in raw if r.startswith("# BEGIN QUESTION")]
    assert [q.splitlines()[1] for q in questions] == ["name: exercise_2_1", "name: exercise_2_2", "name: exercise_2_3"]
    assert sum(r == "# END QUESTION" for r in raw) == 3
    tests = [mk.source_text(c) for i, c in enumerate(master.cells) if c.cell_type == "code"
             and i > 0 and mk.source_text(master.cells[i - 1]) == "# BEGIN TESTS"]
    assert tests and all(t.startswith('""" # BEGIN TEST CONFIG') and "hidden: true" in t and "points: 1" in t
                         and "def test_exercise_" in t and "chk.check_" in t for t in tests)
    # the checkers are imported afresh in each test, never taken from the graded notebook's namespace
    assert all('_importlib.import_module("lnn_course.checkers")' in t and "def test_exercise_2_1_0(balancedness_gaps)"
               in tests[0] for t in tests)
    for t in tests:
        compile(t, "<otter test>", "exec")
    markdown_solutions = [i for i, c in enumerate(master.cells) if c.cell_type == "markdown"
                          and mk.source_text(master.cells[i - 1]) == "# BEGIN SOLUTION"]
    assert markdown_solutions, "derivations must sit in otter solution blocks"


# otter assign and otter's local grading, end to end: tests/test_grading.py
