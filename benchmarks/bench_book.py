"""Benchmark: execution time of every chapter notebook of the book, and the total.

Run with ``make bench`` (or ``python benchmarks/bench_book.py``). Each notebook in ``book/`` is executed from scratch
in a fresh kernel (as the build does), with ``LNN_QUIET=1``; the wall time of each, the kernel start included, is
printed beside the budget of 60 s per chapter. This is a measurement, not a test: it prints and never fails on time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
BUDGET_S = 60.0


def run_notebook(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    client.execute()
    return time.perf_counter() - t0


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="notebooks to time (default: every book/*.ipynb)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    os.environ.setdefault("LNN_QUIET", "1")
    paths = [Path(p) for p in args.notebooks] or sorted((ROOT / "book").glob("*.ipynb"))
    times = {}
    print(f"chapter execution times on {platform.machine()} with {os.cpu_count()} cores (budget {BUDGET_S:.0f} s each)")
    for path in paths:
        seconds = run_notebook(path)
        times[path.name] = seconds
        flag = "ok" if seconds < BUDGET_S else "OVER BUDGET"
        print(f"  {path.name:<32} {seconds:6.1f} s  {flag}")
    total = sum(times.values())
    print(f"  {'total':<32} {total:6.1f} s")
    figures = {"machine": platform.machine(), "cores": os.cpu_count(), "seconds": times, "total_s": total}
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
