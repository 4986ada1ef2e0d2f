"""Insert or update the bootstrap cell of the chapter notebooks, so that each one runs anywhere.

Usage: python scripts/bootstrap_cell.py [--check] book/NN_name.ipynb ...

A chapter notebook downloaded from the built book (or opened through a launch button) runs top to bottom in a
fresh Python environment that has only Jupyter and pip: its first code cell installs ``lnn`` at the book's version
(``pyproject.toml``), with the exact versions (``requirements.txt``) of the packages the notebook imports, when
``lnn`` cannot be imported. Inside this repository's environment (``lnn`` importable) it does nothing. The cell is
tagged ``remove-cell``: readers of the HTML do not see it; the notebook they download has it.

The cell's source is written here, once; the script inserts it before the first code cell of each notebook, or
replaces an earlier version of it (found by its cell id, ``lnn-bootstrap``), and leaves the rest of the notebook
as it is (idempotent: a second run changes nothing). ``--check`` changes nothing and exits 1 when a notebook lacks
the current cell. ``tests/test_bootstrap.py`` runs a chapter downloaded from the built book in a new venv.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CELL_ID = "lnn-bootstrap"
TAGS = ["remove-cell"]

# Import name -> distribution name, where they differ.
DISTRIBUTIONS = {"sklearn": "scikit-learn", "myst_nb": "myst-nb", "IPython": "ipython", "PIL": "pillow"}
# Always installed: lnn's own imports, and ipywidgets for the live explorers (lnn.explorer).
ALWAYS = ["torch", "numpy", "scipy", "matplotlib", "ipywidgets", "tqdm"]
IMPORT = re.compile(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", re.MULTILINE)

TEMPLATE = '''\
# Outside the book's repository (a notebook downloaded from the book, Binder, Colab...): install the book's
# lnn and the exact versions of what this chapter imports, when lnn is missing. Inside it: nothing to do.
import importlib.util
import subprocess
import sys

if importlib.util.find_spec("lnn") is None:
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", {requirements}], check=True)
    importlib.invalidate_caches()'''


def book_version() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
    if not match:
        raise SystemExit("bootstrap_cell: no version in pyproject.toml")
    return match.group(1)


def pins() -> dict[str, str]:
    """Distribution name (lower case) -> its ``==`` pin from requirements.txt (a local tag like +cpu dropped)."""
    found = {}
    for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;#+]+)", line)
        if match:
            found[match.group(1).lower().replace("_", "-")] = match.group(2)
    return found


def requirements_for(nb: dict) -> list[str]:
    """``lnn==VERSION`` and the pinned distributions of what the notebook imports (beyond the standard library)."""
    imported = set(ALWAYS)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and cell.get("id") != CELL_ID:
            imported.update(IMPORT.findall("".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]))
    versions = pins()
    stdlib = set(sys.stdlib_module_names)
    wanted = [f"lnn=={book_version()}"]
    for name in sorted(imported - stdlib - {"lnn", "lnn_course"}):
        dist = DISTRIBUTIONS.get(name, name).lower().replace("_", "-")
        if dist not in versions:
            raise SystemExit(f"bootstrap_cell: the notebook imports {name!r}, which requirements.txt does not pin")
        wanted.append(f"{dist}=={versions[dist]}")
    return wanted


def cell_source(nb: dict) -> str:
    return TEMPLATE.format(requirements=", ".join(json.dumps(r) for r in requirements_for(nb)))


def _source_text(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def apply(path: Path, *, check: bool = False) -> bool:
    """Insert or update the cell in ``path``; True when the notebook changed (or, with ``check``, would)."""
    text = path.read_text(encoding="utf-8")
    nb = json.loads(text)
    source = cell_source(nb)
    cells = nb["cells"]
    existing = [i for i, c in enumerate(cells) if c.get("id") == CELL_ID]
    first_code = next((i for i, c in enumerate(cells) if c["cell_type"] == "code" and c.get("id") != CELL_ID), len(cells))
    if existing:
        cell = cells[existing[0]]
        tags = cell.setdefault("metadata", {}).get("tags", [])
        up_to_date = (_source_text(cell) == source and all(t in tags for t in TAGS)
                      and existing[0] < first_code and len(existing) == 1)
        if up_to_date:
            return False
        if check:
            return True
        for i in reversed(existing):
            del cells[i]
        first_code = next((i for i, c in enumerate(cells) if c["cell_type"] == "code"), len(cells))
    elif check:
        return True
    cells.insert(first_code, {
        "cell_type": "code",
        "execution_count": None,
        "id": CELL_ID,
        "metadata": {"tags": list(TAGS)},
        "outputs": [],
        "source": source.splitlines(keepends=True),
    })
    nb["nbformat_minor"] = max(nb.get("nbformat_minor", 0), 5)  # cell ids need nbformat 4.5
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return True


def main(argv: list[str]) -> int:
    check = "--check" in argv
    paths = [Path(a) for a in argv[1:] if a != "--check"]
    if not paths:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    stale = []
    for path in paths:
        if apply(path, check=check):
            stale.append(path)
            print(f"bootstrap_cell: {'needs the cell' if check else 'updated'} {path}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
