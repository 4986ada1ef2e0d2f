"""Execute chapters under alternate seeds and print a pass table.

Every chapter reads its seed in one place, ``SEED = int(os.environ.get("LNN_SEED", <default>))`` in its first code
cells; an asserted claim is a property of the method, so the chapter must execute without error under any seed.

    python scripts/run_seeds.py                              # every chapter, seeds 1-5
    python scripts/run_seeds.py book/03_implicit_bias.ipynb --seeds 11 12
    python scripts/run_seeds.py book/04_applications.ipynb --seeds 0 1 2 3 4 5 --glue apps_igc_gain_hi_d48_z

``--glue NAME ...`` also prints, per seed, the values the chapter glues under those names (myst-nb ``glue``): the
spread across seeds that a chapter's prose or comments quote comes from this table, not from a run kept elsewhere.

Exit status 1 if any run failed. ``make seeds`` calls this.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent


def glued(nb) -> dict[str, str]:
    """The values an executed notebook glued (myst-nb ``glue``), by name, as their plain-text form."""
    out = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name is not None:
                prefix = output["metadata"]["scrapbook"].get("mime_prefix", "")
                out[name] = output.get("data", {}).get(prefix + "text/plain", "?")
    return out


def run(path: Path, seed: int, timeout: int) -> tuple[bool, float, str, dict[str, str]]:
    nb = nbformat.read(path, as_version=4)
    os.environ["LNN_SEED"] = str(seed)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as err:
        last = [line for line in str(err).strip().splitlines() if line.strip()]
        return False, time.perf_counter() - start, (last[-1] if last else "error")[:200], {}
    return True, time.perf_counter() - start, "", glued(nb)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    parser.add_argument("--glue", nargs="+", default=[], metavar="NAME", help="print these glued values per seed")
    args = parser.parse_args()
    notebooks = args.notebooks or sorted((ROOT / "book").glob("[0-9]*.ipynb"))
    os.environ.setdefault("LNN_QUIET", "1")
    failures = 0
    rows, values = [], {}
    for nb in notebooks:
        cells = []
        for seed in args.seeds:
            ok, seconds, why, glue = run(nb, seed, args.timeout)
            for name in args.glue:
                if name in glue:
                    values.setdefault((nb.name, name), {})[seed] = glue[name]
            failures += not ok
            cells.append(f"{'pass' if ok else 'FAIL'} {seconds:5.1f}s")
            print(f"{nb.name} seed {seed}: {'pass' if ok else 'FAIL'} in {seconds:.1f} s {why}", flush=True)
        rows.append((nb.name, cells))
    print()
    print("| chapter | " + " | ".join(f"seed {s}" for s in args.seeds) + " |")
    print("|---|" + "---|" * len(args.seeds))
    for name, cells in rows:
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.glue:
        print()
        print("| chapter | glued value | " + " | ".join(f"seed {s}" for s in args.seeds) + " |")
        print("|---|---|" + "---|" * len(args.seeds))
        for (chapter, name), by_seed in values.items():
            print(f"| {chapter} | {name} | " + " | ".join(by_seed.get(s, "-")[:10] for s in args.seeds) + " |")
        missing = [n for n in args.glue if not any(name == n for _, name in values)]
        if missing:
            print(f"no chapter glued: {', '.join(missing)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
