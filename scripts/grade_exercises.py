"""Grade a folder of submitted exercise notebooks offline, without Docker, and write a CSV of scores.

``make grade SUBMISSIONS=dir/`` runs this after ``make assign``. Each ``*.ipynb`` under ``dir/`` is graded with the
otter-grader autograder of its exercise set (``_build/assign/autograder/NN_name.zip``, found from the file name or,
failing that, from the assignment name otter stores in the notebook's metadata) by otter's local, non-containerized
grading (``otter.api.grade_submission``, what ``otter run`` does): the notebook is executed in a fresh kernel, then
the hidden tests run, each importing the checkers afresh. Submissions may be laid out as ``dir/<student>/NN_name.ipynb``
or ``dir/<student>_NN_name.ipynb`` (or ``dir/NN_name-<student>.ipynb``): the student is whatever is left of the path
once the exercise set's name is removed.

The CSV (``--out``, default ``dir/grades.csv``) has one row per student and exercise set, one column per question
(``exercise_1_2``, ...: points scored), then ``total`` and ``possible``. Manual questions (derivations) are not in it:
grade them by reading the submission next to ``exercises/source``. ``--details`` writes each test's output (the
checker's message) to a JSON file beside the CSV.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_AUTOGRADERS = ROOT / "_build" / "assign" / "autograder"


def assignment_of(path: Path, names: list[str]) -> str | None:
    """The exercise set a submission belongs to: a name in its path, else otter's metadata."""
    text = str(path)
    for name in sorted(names, key=len, reverse=True):
        if name in text:
            return name
    try:
        meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
    except (OSError, ValueError):
        return None
    stored = meta.get("otter", {}).get("assignment_name") or meta.get("lnn_exercises", {}).get("name")
    return stored if stored in names else None


def student_of(path: Path, root: Path, assignment: str) -> str:
    rel = str(path.relative_to(root).with_suffix(""))
    rest = rel.replace(assignment, "")
    rest = re.sub(r"[\\/_\-\s.]+", " ", rest).strip()
    return rest.replace(" ", "_") or path.stem


def grade(submissions: Path, autograders: Path, out: Path, details: Path | None = None) -> list[dict]:
    import otter.api

    zips = {z.stem: z for z in sorted(autograders.glob("*.zip"))}
    if not zips:
        raise SystemExit(f"no autograder zips in {autograders}: run `make assign` first")
    rows, report = [], {}
    notebooks = sorted(p for p in submissions.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    for path in notebooks:
        assignment = assignment_of(path, list(zips))
        if assignment is None:
            print(f"skipped {path}: no exercise set ({', '.join(zips)}) in its name or metadata", file=sys.stderr)
            continue
        student = student_of(path, submissions, assignment)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            # otter checks the assignment name stored in the notebook; a submission found by its file name may
            # have lost it (the source edition, a notebook saved by another tool), so grade a copy that carries it
            nb = json.loads(path.read_text(encoding="utf-8"))
            nb.setdefault("metadata", {}).setdefault("otter", {})["assignment_name"] = assignment
            copy = Path(tmp) / f"{assignment}.ipynb"
            copy.write_text(json.dumps(nb), encoding="utf-8")
            with contextlib.redirect_stdout(io.StringIO()):
                results = otter.api.grade_submission(str(copy), str(zips[assignment]), quiet=True)
        seconds = time.perf_counter() - start
        row = {"student": student, "assignment": assignment}
        for name, test_file in sorted(results.results.items()):
            row[name] = round(float(test_file.score), 4)
            report.setdefault(f"{student}/{assignment}", {})[name] = {
                "score": test_file.score, "possible": test_file.possible,
                "output": test_file.summary() if hasattr(test_file, "summary") else "",
            }
        row["total"] = round(float(results.total), 4)
        row["possible"] = round(float(results.possible), 4)
        rows.append(row)
        print(f"{student:>20} {assignment}: {row['total']:g} / {row['possible']:g}  ({seconds:.1f} s)")
    columns = ["student", "assignment"]
    columns += sorted({k for r in rows for k in r} - {"student", "assignment", "total", "possible"})
    columns += ["total", "possible"]
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out} ({len(rows)} submissions)")
    if details is not None:
        details.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
        print(f"wrote {details}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("submissions", type=Path, help="folder of submitted notebooks")
    parser.add_argument("--autograders", type=Path, default=DEFAULT_AUTOGRADERS,
                        help="folder of autograder zips from make assign")
    parser.add_argument("--out", type=Path, help="CSV to write (default SUBMISSIONS/grades.csv)")
    parser.add_argument("--details", type=Path, help="also write every test's output to this JSON file")
    args = parser.parse_args(argv)
    os.environ.setdefault("LNN_QUIET", "1")
    grade(args.submissions, args.autograders, args.out or args.submissions / "grades.csv", args.details)
    return 0


if __name__ == "__main__":
    sys.exit(main())
