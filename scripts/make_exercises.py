"""Generate the student editions of the exercise notebooks from their single source with solutions.

One source, two editions. Each exercise set is written once, with its solutions, in
``exercises/source/NN_name.ipynb`` (the instructor edition: it runs top to bottom and passes every checker).
This script writes the student edition ``exercises/NN_name.ipynb`` next to it:

* code between a line ``# BEGIN SOLUTION`` and a line ``# END SOLUTION`` (the markers otter-grader reads) is
  replaced, at the same indentation, by a placeholder that raises
  ``NotImplementedError("Exercise 2.3: not yet implemented (...)")``;
* markdown between ``<!-- BEGIN SOLUTION -->`` and ``<!-- END SOLUTION -->`` (each on its own line; HTML comments,
  so the source renders cleanly) is replaced by an answer prompt;
* outputs and execution counts are cleared;
* every code cell that raises in the student edition (it holds a top-level placeholder, or it uses a function whose
  body is a placeholder, directly or through another function) is tagged ``raises-exception``, so "Run all" in
  Jupyter, nbval and nbclient run through the whole notebook; every other cell loses that tag.

The exercise number in the messages comes from the last markdown heading ``## Exercise K.M ...`` above the marker,
and must start with the chapter number of the file name (``02_...`` holds exercises 2.x). A cell that would fail with
a ``NameError`` in the student edition (it uses a name that only a raising cell defines) is an error: keep such code
in the raising cell or recompute the name, so an unfinished exercise always says "not yet implemented".

Usage::

    python scripts/make_exercises.py                 # regenerate exercises/*.ipynb
    python scripts/make_exercises.py --check         # exit 1 if a committed stub differs from its source
    python scripts/make_exercises.py --otter DIR     # also write otter-grader master notebooks into DIR
    python scripts/make_exercises.py --assign DIR    # make assign: autograder zips + student bundle (otter assign)

``--otter`` turns each source into an otter-grader *master notebook* (otter-grader 7): an ``# ASSIGNMENT CONFIG``
cell, one question per exercise (``exercise_2_3``), markdown answers inside ``# BEGIN SOLUTION`` blocks (manual
questions), and each checker call (``chk.check_...``) turned into a hidden exception-based test worth one point that
imports the checkers afresh (``FRESH_CHECKERS``: the graded notebook's namespace and modules are not trusted), so
``otter assign`` and otter's local grading grade with the same checkers the students see. ``--assign`` runs ``otter
assign`` on them with an environment that installs the pinned CPU torch and this checkout's wheel (shipped in the zip),
and writes the student bundle; ``scripts/grade_exercises.py`` grades submissions with the zips. Submissions of the student edition are graded by
``otter run`` too: its metadata carries the assignment name.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import copy
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIR = ROOT / "exercises" / "source"
OUT_DIR = ROOT / "exercises"

CODE_BEGIN = "# BEGIN SOLUTION"
CODE_END = "# END SOLUTION"
MD_BEGIN = "<!-- BEGIN SOLUTION -->"
MD_END = "<!-- END SOLUTION -->"
RAISES_TAG = "raises-exception"
EXERCISE_HEADING = re.compile(r"^#{1,6}\s+Exercise\s+(\d+)\.(\d+)\b", re.MULTILINE)
CHECKER_CALL = re.compile(r"\bchk\.check_\w+\(")
MD_PROMPT = "**Your answer (Exercise {number}).** *Replace this line with your answer (double-click to edit).*"


class ExerciseSourceError(ValueError):
    """A source notebook breaks the marker conventions; the message names the file and cell."""


@dataclass
class Context:
    path: Path
    chapter: int

    def error(self, index: int, message: str) -> ExerciseSourceError:
        return ExerciseSourceError(f"{self.path.name}, cell {index}: {message}")


# ----------------------------------------------------------------------------------------------------------------
# reading and writing
# ----------------------------------------------------------------------------------------------------------------
def read_notebook(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def dumps(nb: nbformat.NotebookNode) -> str:
    """Canonical serialization (what Jupyter writes: indent 1, sorted keys), ending in a newline."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def chapter_of(path: Path) -> int:
    match = re.match(r"(\d+)_", path.name)
    if not match:
        raise ExerciseSourceError(f"{path.name}: exercise notebooks are named NN_topic.ipynb (NN = chapter)")
    return int(match.group(1))


def source_text(cell: nbformat.NotebookNode) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


# ----------------------------------------------------------------------------------------------------------------
# solution removal
# ----------------------------------------------------------------------------------------------------------------
def _enclosing_function(lines: list[str], index: int, indent: str) -> str | None:
    """Name of the innermost ``def`` above ``lines[index]`` that is less indented than ``indent``."""
    for line in reversed(lines[:index]):
        match = re.match(r"^(\s*)(?:async\s+)?def\s+(\w+)", line)
        if match and len(match.group(1)) < len(indent):
            return match.group(2)
    return None


def strip_code(text: str, number: str | None, ctx: Context, index: int) -> tuple[str, int]:
    """Replace each ``# BEGIN SOLUTION`` ... ``# END SOLUTION`` block by a raising placeholder.

    Returns the new source and the number of blocks replaced."""
    lines = text.split("\n")
    out: list[str] = []
    inside = False
    blocks = 0
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped == CODE_BEGIN:
            if inside:
                raise ctx.error(index, "nested '# BEGIN SOLUTION'")
            if number is None:
                raise ctx.error(index, "a solution block before any '## Exercise K.M' heading")
            inside = True
            blocks += 1
            indent = line[: len(line) - len(line.lstrip())]
            where = _enclosing_function(lines, i, indent)
            what = f"fill in {where}" if where else "replace this line with your code"
            out.append(f"{indent}# Exercise {number}: your code here.")
            out.append(f'{indent}raise NotImplementedError("Exercise {number}: not yet implemented ({what})")')
            continue
        if stripped == CODE_END:
            if not inside:
                raise ctx.error(index, "'# END SOLUTION' without '# BEGIN SOLUTION'")
            inside = False
            continue
        if "SOLUTION" in stripped and re.search(r"#\s*(BEGIN|END)?\s*SOLUTION", stripped):
            raise ctx.error(index, f"unsupported solution marker {stripped!r}: use a line '# BEGIN SOLUTION' and a "
                            "line '# END SOLUTION' around the solution (otter's one-line '# SOLUTION' is not used)")
        if not inside:
            out.append(line)
    if inside:
        raise ctx.error(index, "'# BEGIN SOLUTION' without '# END SOLUTION'")
    return "\n".join(out), blocks


def strip_markdown(text: str, number: str | None, ctx: Context, index: int) -> tuple[str, int]:
    """Replace each ``<!-- BEGIN SOLUTION -->`` ... ``<!-- END SOLUTION -->`` block by an answer prompt."""
    out: list[str] = []
    inside = False
    blocks = 0
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped == MD_BEGIN:
            if inside:
                raise ctx.error(index, f"nested {MD_BEGIN}")
            if number is None:
                raise ctx.error(index, "a solution block before any '## Exercise K.M' heading")
            inside = True
            blocks += 1
            out.append(MD_PROMPT.format(number=number))
            continue
        if stripped == MD_END:
            if not inside:
                raise ctx.error(index, f"{MD_END} without {MD_BEGIN}")
            inside = False
            continue
        if "SOLUTION" in stripped and "<!--" in stripped:
            raise ctx.error(index, f"unsupported marker {stripped!r}: put {MD_BEGIN} and {MD_END} on lines of their own")
        if not inside:
            out.append(line)
    if inside:
        raise ctx.error(index, f"{MD_BEGIN} without {MD_END}")
    return "\n".join(out), blocks


# ----------------------------------------------------------------------------------------------------------------
# which cells raise in the student edition
# ----------------------------------------------------------------------------------------------------------------
def _parse(text: str, ctx: Context, index: int) -> ast.Module:
    # IPython magics and shell escapes are not Python: blank them out (keeping line numbers).
    clean = "\n".join("pass" if line.lstrip().startswith(("%", "!")) else line for line in text.split("\n"))
    try:
        return ast.parse(clean)
    except SyntaxError as exc:
        raise ctx.error(index, f"syntax error in the student edition: {exc}") from exc


def _loads(node: ast.AST) -> set[str]:
    """Names read anywhere in ``node`` (including lambdas and comprehensions)."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _binds(node: ast.AST) -> set[str]:
    """Names bound at module level by a statement (assignments, imports, for targets, with ... as, defs)."""
    names: set[str] = set()
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {node.name}
    if isinstance(node, ast.Import | ast.ImportFrom):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            names.add(n.id)
        elif isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and n is not node:
            names.add(n.name)
    return names


def _is_placeholder(node: ast.AST) -> bool:
    """A ``raise NotImplementedError("Exercise ...")`` written by :func:`strip_code`."""
    for n in ast.walk(node):
        if isinstance(n, ast.Raise) and isinstance(n.exc, ast.Call):
            func = n.exc.func
            if isinstance(func, ast.Name) and func.id == "NotImplementedError" and n.exc.args:
                arg = n.exc.args[0]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and "not yet implemented" in arg.value:
                    return True
    return False


def raising_cells(sources: list[tuple[int, str]], ctx: Context) -> set[int]:
    """Indices of the code cells that raise when the student edition runs top to bottom.

    A function whose body contains a placeholder (or that refers to such a function) is *unfinished*; a top-level
    statement that refers to an unfinished function, or contains a placeholder itself, raises, and the names that
    the rest of its cell would bind stay undefined. Using an undefined name later is an error (a ``NameError``
    would hide the "not yet implemented" message)."""
    unfinished: set[str] = set()
    undefined: dict[str, int] = {}
    raising: set[int] = set()
    for index, text in sources:
        tree = _parse(text, ctx, index)
        raised = False
        for stmt in tree.body:
            if raised:
                for name in _binds(stmt):
                    undefined.setdefault(name, index)
                continue
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                if _is_placeholder(stmt) or (_loads(stmt) & unfinished):
                    unfinished.add(stmt.name)
                else:
                    unfinished.discard(stmt.name)
                undefined.pop(stmt.name, None)
                continue
            used = _loads(stmt)
            local = _binds(stmt) | {a.arg for a in ast.walk(stmt) if isinstance(a, ast.arg)}  # loop vars, lambda args
            missing = sorted(n for n in used & set(undefined) if n not in unfinished and n not in local)
            if missing:
                name = missing[0]
                raise ctx.error(index, f"uses {name!r}, which in the student edition is never defined because cell "
                                f"{undefined[name]} raises first: a NameError would hide 'not yet implemented'. "
                                "Compute it in the same cell, or in a cell that does not depend on an exercise.")
            if _is_placeholder(stmt) or used & unfinished:
                raised = True
                raising.add(index)
                for name in _binds(stmt):
                    undefined.setdefault(name, index)
                continue
            for name in _binds(stmt):
                undefined.pop(name, None)
    return raising


# ----------------------------------------------------------------------------------------------------------------
# the student edition
# ----------------------------------------------------------------------------------------------------------------
def _set_tag(cell: nbformat.NotebookNode, tag: str, on: bool) -> None:
    tags = [t for t in cell.get("metadata", {}).get("tags", []) if t != tag]
    if on:
        tags.append(tag)
    if tags:
        cell.setdefault("metadata", {})["tags"] = tags
    else:
        cell.get("metadata", {}).pop("tags", None)


def _clean_cell(cell: nbformat.NotebookNode) -> None:
    if cell.get("cell_type") == "code":
        cell["outputs"] = []
        cell["execution_count"] = None
    for key in ("execution", "collapsed", "scrolled", "ExecuteTime"):
        cell.get("metadata", {}).pop(key, None)


def student_edition(source: nbformat.NotebookNode, path: Path) -> nbformat.NotebookNode:
    """The student edition of a source notebook (see the module docstring)."""
    ctx = Context(path, chapter_of(path))
    nb = copy.deepcopy(source)
    number: str | None = None
    code: list[tuple[int, str]] = []
    for index, cell in enumerate(nb.cells):
        text = source_text(cell)
        if cell.cell_type == "markdown":
            for match in EXERCISE_HEADING.finditer(text):
                if int(match.group(1)) != ctx.chapter:
                    raise ctx.error(index, f"Exercise {match.group(1)}.{match.group(2)} in the chapter-{ctx.chapter} "
                                    "notebook: exercise numbers start with the chapter number")
                number = f"{match.group(1)}.{match.group(2)}"
            text, _ = strip_markdown(text, number, ctx, index)
        elif cell.cell_type == "code":
            text, _ = strip_code(text, number, ctx, index)
            code.append((index, text))
        elif CODE_BEGIN in text or MD_BEGIN in text:
            raise ctx.error(index, "solution markers in a raw cell")
        cell.source = text
        _clean_cell(cell)
    raising = raising_cells(code, ctx)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            _set_tag(cell, RAISES_TAG, index in raising)
    meta = nb.metadata
    for key in ("widgets", "jupytext", "lnn_exercises", "otter"):
        meta.pop(key, None)
    meta["lnn_exercises"] = {
        "edition": "student",
        "generated_from": f"source/{path.name}",
        "generator": "scripts/make_exercises.py (edit the source, not this file)",
    }
    # the assignment name that `otter run` expects of a submission (see --otter): students may hand in this edition
    meta["otter"] = {"assignment_name": path.stem}
    for cell in nb.cells:
        leaked = [m for m in (CODE_BEGIN, CODE_END, MD_BEGIN, MD_END) if m in source_text(cell)]
        if leaked:  # pragma: no cover - guarded by the parsers above
            raise ExerciseSourceError(f"{path.name}: marker {leaked[0]!r} survived solution removal")
    nbformat.validate(nb)
    return nb


# ----------------------------------------------------------------------------------------------------------------
# otter-grader master notebooks
# ----------------------------------------------------------------------------------------------------------------
def _raw(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_raw_cell(text)


def _checker_statements(text: str, ctx: Context, index: int) -> tuple[list[str], bool]:
    """The top-level statements of a cell that call a checker, and whether the cell holds nothing else."""
    tree = _parse(text, ctx, index)
    calls, other = [], False
    for stmt in tree.body:
        segment = ast.get_source_segment(text, stmt) or ""
        if CHECKER_CALL.search(segment):
            calls.append(segment)
        else:
            other = True
    return calls, not other


# The hidden tests import the checkers afresh: the graded notebook runs in the same process, and it may have replaced
# ``chk.check_...`` or anything else in the modules it imported. Every ``lnn`` and ``lnn_course`` module is taken out of
# ``sys.modules`` while ``lnn_course.checkers`` is imported again from the installed files, then the notebook's modules
# are put back: the test holds checkers (and an ``lnn``) that the submission never touched.
FRESH_CHECKERS = """\
import importlib as _importlib, sys as _sys
_ours = lambda name: name.split(".")[0] in ("lnn", "lnn_course")
_saved = {name: _sys.modules.pop(name) for name in list(_sys.modules) if _ours(name)}
try:
    chk = _importlib.import_module("lnn_course.checkers")
finally:
    for name in [name for name in _sys.modules if _ours(name)]:
        del _sys.modules[name]
    _sys.modules.update(_saved)"""


def _otter_test(statements: list[str], qname: str, k: int, points: float) -> nbformat.NotebookNode:
    """A hidden exception-based otter test: a function of the names the checker call reads (otter passes each from the
    graded notebook's global variables), which imports the checkers afresh (FRESH_CHECKERS) and calls them."""
    code = "\n".join(statements)
    params = sorted(_loads(ast.parse(code)) - set(dir(builtins)) - {"chk"})
    body = "\n".join("    " + line if line.strip() else line for line in (FRESH_CHECKERS + "\n" + code).split("\n"))
    fname = f"test_{qname}_{k}"
    config = f'""" # BEGIN TEST CONFIG\npoints: {points:g}\nhidden: true\n""" # END TEST CONFIG'
    return nbformat.v4.new_code_cell(f"{config}\n\ndef {fname}({', '.join(params)}):\n{body}")


POINTS_PER_CHECK = 1  # each checker call is one hidden test worth this many points
POINTS_PER_DERIVATION = 1  # a pure derivation is a manual question


def otter_master(source: nbformat.NotebookNode, path: Path, *, requirements: str | None = None,
                 files: list[str] | None = None) -> nbformat.NotebookNode:
    """An otter-grader master notebook with the same content, one question per exercise; ``requirements`` (a file
    name next to the master) and ``files`` (paths relative to it, e.g. the lnn wheel) go into its autograder."""
    ctx = Context(path, chapter_of(path))
    src = copy.deepcopy(source)
    lines = [
        "# ASSIGNMENT CONFIG",
        f"name: {path.stem}",
        "init_cell: false",
        "check_all_cell: false",
        "export_cell: false",
        "run_tests: true",
        "solutions_pdf: false",
        "strip_solutions_from_all_cells: true",
        "tests:",
        "  files: false",
        "  ok_format: false",
    ]
    if requirements:
        lines += [f"requirements: {requirements}", "overwrite_requirements: false"]
    if files:
        lines += ["files:"] + [f"  - {f}" for f in files]
    lines += ["python_version: '3.11'", "generate:", "  pdf: false", "  zips: false"]
    config = "\n".join(lines)
    cells = [_raw(config)]
    question: str | None = None
    has_markdown_answer = False
    body: list[nbformat.NotebookNode] = []
    tests: list[nbformat.NotebookNode] = []

    def close() -> None:
        nonlocal body, tests
        if question is None:
            cells.extend(body)
        else:
            # a pure derivation is graded by hand (manual); an exercise with checkers is autograded by them
            manual = has_markdown_answer and not tests
            points = POINTS_PER_DERIVATION if manual else POINTS_PER_CHECK * len(tests)
            header = f"# BEGIN QUESTION\nname: {question}\npoints: {points:g}" + ("\nmanual: true" if manual else "")
            block = [_raw("# BEGIN TESTS"), *tests, _raw("# END TESTS")] if tests else []
            cells.extend([_raw(header), *body, *block, _raw("# END QUESTION")])
        body, tests = [], []

    for index, cell in enumerate(src.cells):
        _clean_cell(cell)
        text = source_text(cell)
        heading = EXERCISE_HEADING.search(text) if cell.cell_type == "markdown" else None
        if heading:
            close()
            question = f"exercise_{heading.group(1)}_{heading.group(2)}"
            has_markdown_answer = False
        if cell.cell_type == "markdown" and MD_BEGIN in text:
            before, rest = text.split(MD_BEGIN, 1)
            answer, after = rest.split(MD_END, 1)
            if before.strip():
                body.append(nbformat.v4.new_markdown_cell(before.rstrip("\n")))
            body.extend([_raw("# BEGIN SOLUTION"), nbformat.v4.new_markdown_cell(answer.strip("\n")),
                         _raw("# END SOLUTION")])
            if after.strip():
                body.append(nbformat.v4.new_markdown_cell(after.strip("\n")))
            has_markdown_answer = True
            continue
        if cell.cell_type == "code" and question is not None and CHECKER_CALL.search(text):
            calls, only_checks = _checker_statements(text, ctx, index)
            for call in calls:  # one hidden test (and point) per checker call
                tests.append(_otter_test([call], question, len(tests), POINTS_PER_CHECK))
            if only_checks:
                continue  # otter shows grader.check("...") in its place
        body.append(cell)
    close()
    src.cells = cells
    for c in src.cells:
        c.pop("id", None)
    src.nbformat, src.nbformat_minor = 4, 4
    src.metadata.pop("lnn_exercises", None)
    return src


# ----------------------------------------------------------------------------------------------------------------
# make assign: otter-grader autograders and the student bundle
# ----------------------------------------------------------------------------------------------------------------
# What grading and the students' notebooks import, pinned as in requirements.txt (torch from PyTorch's CPU index: the
# plain PyPI wheel for Linux is the multi-GB CUDA build).
RUNTIME = ("torch", "numpy", "scipy", "matplotlib", "tqdm", "scikit-learn", "threadpoolctl", "joblib")
TORCH_CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"
AUTOGRADER_SOURCE = "/autograder/source"  # where Gradescope and `otter grade` unpack an autograder zip
STUDENT_README = """\
Exercise notebooks for "Linear Neural Networks: Executable Lecture Notes"
=========================================================================

This bundle holds the student notebooks (no solutions), the book's Python package as a wheel ({wheel}: the library
`lnn` and the exercise checkers `lnn_course`) and the pinned requirements. With Python 3.11:

    python3.11 -m venv .venv
    .venv/bin/pip install -r requirements.txt
    .venv/bin/jupyter lab

Open a notebook, choose "Run all", and fill in every cell that says "not yet implemented"; the cell below each one
checks your answer. Hand in the .ipynb files you worked in, with their names unchanged.
"""


def _pins(names: tuple[str, ...], requirements: Path = ROOT / "requirements.txt") -> list[str]:
    pins = {}
    for line in requirements.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
        if match:
            pins[match.group(1).lower()] = match.group(0)
    missing = [n for n in names if n not in pins]
    if missing:
        raise ExerciseSourceError(f"requirements.txt pins none of {missing}")
    return [pins[n] if n != "torch" else pins[n] + "+cpu" for n in names]


def build_wheel(dest: Path) -> Path:
    """The wheel of this checkout (lnn and lnn_course), built from a copy so that no build/ folder lands in the
    repository; no network (the venv's setuptools builds it)."""
    import shutil
    import subprocess
    import tempfile

    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(ROOT / name, Path(tmp) / name)
        for package in ("lnn", "lnn_course"):
            shutil.copytree(ROOT / package, Path(tmp) / package, ignore=shutil.ignore_patterns("__pycache__"))
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                        "--wheel-dir", str(dest), tmp], check=True)
    wheels = sorted(dest.glob("lnn-*.whl"))
    if len(wheels) != 1:
        raise ExerciseSourceError(f"expected one lnn wheel in {dest}, found {[w.name for w in wheels]}")
    return wheels[0]


def assign(out: Path, stems: list[str] | None = None, *, run_tests: bool = True, source_dir: Path = SOURCE_DIR) -> dict:
    """``make assign``: from the sources with solutions, write into ``out``

    * ``autograder/NN_name.zip``: one otter-grader autograder per notebook, with hidden tests (one per checker call,
      one point each, importing the checkers afresh), an environment that installs the pinned torch (CPU), numpy, ...
      and this checkout's wheel shipped inside the zip (``files/dist/lnn-*.whl``);
    * ``student/``: the student notebooks (placeholders, no solutions), the wheel, ``requirements.txt`` and a
      README, also zipped as ``lnn-exercises-student.zip``: all a student needs, without the repository;
    * ``master/``: the otter master notebooks and ``otter/``: otter assign's own output (kept for inspection).

    ``otter assign`` runs each solution notebook against its tests unless ``run_tests`` is False."""
    import shutil
    import subprocess
    import zipfile

    otter = Path(sys.executable).parent / "otter"
    master, autograder, student = out / "master", out / "autograder", out / "student"
    for d in (master, autograder, student, out / "otter"):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    wheel = build_wheel(master / "dist")
    pins = _pins(RUNTIME)
    (master / "requirements.txt").write_text(
        "\n".join([TORCH_CPU_INDEX, *pins, f"{AUTOGRADER_SOURCE}/files/dist/{wheel.name}"]) + "\n", encoding="utf-8")
    chosen = [p for p in sources(source_dir) if stems is None or p.stem in stems or p.stem[:2] in stems]
    if not chosen:
        raise ExerciseSourceError(f"no source notebook matches {stems}")
    zips = {}
    for p in chosen:
        nb = otter_master(read_notebook(p), p, requirements="requirements.txt", files=[f"dist/{wheel.name}"])
        (master / p.name).write_text(dumps(nb), encoding="utf-8")
        cmd = [str(otter), "assign", p.name, str((out / "otter" / p.stem).resolve())]
        subprocess.run(cmd + ([] if run_tests else ["--no-run-tests"]), cwd=master, check=True,
                       stdout=subprocess.DEVNULL)
        made = sorted((out / "otter" / p.stem / "autograder").glob("*-autograder_*.zip"))
        if len(made) != 1:
            raise ExerciseSourceError(f"otter assign made {len(made)} autograder zips for {p.name}")
        zips[p.stem] = autograder / f"{p.stem}.zip"
        shutil.copy(made[0], zips[p.stem])
        print(f"wrote {zips[p.stem]}")
    # the student bundle: our student edition (placeholders that say "not yet implemented"), not otter's
    texts = build(source_dir)
    for p in chosen:
        (student / p.name).write_text(texts[Path(p.name)], encoding="utf-8")
    shutil.copy(wheel, student / wheel.name)
    (student / "requirements.txt").write_text(
        "\n".join([TORCH_CPU_INDEX, *pins, _pins(("jupyterlab",))[0], f"./{wheel.name}"]) + "\n", encoding="utf-8")
    (student / "README.txt").write_text(STUDENT_README.format(wheel=wheel.name), encoding="utf-8")
    bundle = out / "lnn-exercises-student.zip"
    with zipfile.ZipFile(bundle, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(student.iterdir()):
            zf.write(f, arcname=f"lnn-exercises/{f.name}")
    print(f"wrote {bundle}")
    return {"autograders": zips, "student": bundle, "wheel": wheel}


# ----------------------------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------------------------
def sources(source_dir: Path = SOURCE_DIR) -> list[Path]:
    return sorted(source_dir.glob("[0-9]*.ipynb"))


def build(source_dir: Path = SOURCE_DIR) -> dict[Path, str]:
    """Stub file name -> its text, for every source notebook."""
    return {Path(p.name): dumps(student_edition(read_notebook(p), p)) for p in sources(source_dir)}


def check(source_dir: Path = SOURCE_DIR, out_dir: Path = OUT_DIR) -> list[str]:
    """Problems that make the committed stubs differ from what the sources generate (empty when up to date)."""
    problems = []
    expected = build(source_dir)
    for name, text in expected.items():
        target = out_dir / name
        if not target.exists():
            problems.append(f"{target.relative_to(out_dir.parent) if out_dir.parent in target.parents else target}: "
                            "missing (run python scripts/make_exercises.py)")
        elif target.read_text(encoding="utf-8") != text:
            problems.append(f"exercises/{name}: out of date with exercises/source/{name} "
                            "(run python scripts/make_exercises.py)")
    for stub in sorted(out_dir.glob("[0-9]*.ipynb")):
        if Path(stub.name) not in expected:
            problems.append(f"exercises/{stub.name}: no source exercises/source/{stub.name}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed stub is out of date")
    parser.add_argument("--otter", type=Path, metavar="DIR", help="also write otter-grader master notebooks into DIR")
    parser.add_argument("--assign", type=Path, metavar="DIR", help="make assign: autograder zips and the student "
                        "bundle into DIR (otter-grader assign; see book/exercises.md)")
    parser.add_argument("--only", nargs="*", metavar="NN", help="with --assign: only these notebooks (01 or 01_name)")
    parser.add_argument("--no-run-tests", action="store_true", help="with --assign: do not run the solutions "
                        "against the tests")
    parser.add_argument("--source", type=Path, default=SOURCE_DIR, help="folder of source notebooks")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="folder for the student notebooks")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = check(args.source, args.out)
            for p in problems:
                print(p, file=sys.stderr)
            if not problems:
                print(f"{len(sources(args.source))} student notebooks are up to date with their sources")
            return 1 if problems else 0
        for name, text in build(args.source).items():
            target = args.out / name
            old = target.read_text(encoding="utf-8") if target.exists() else None
            if old != text:
                target.write_text(text, encoding="utf-8")
                print(f"wrote {target}")
        if args.assign:
            assign(args.assign, args.only, run_tests=not args.no_run_tests, source_dir=args.source)
        if args.otter:
            args.otter.mkdir(parents=True, exist_ok=True)
            for p in sources(args.source):
                target = args.otter / p.name
                target.write_text(dumps(otter_master(read_notebook(p), p)), encoding="utf-8")
                print(f"wrote {target}")
    except ExerciseSourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
