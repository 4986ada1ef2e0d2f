"""Execute each chapter once per CI run, and re-execute only what changed in a local rebuild.

The key of a chapter's execution is a hash of what can change its outputs: the notebook's code cells (source and
tags, not the markdown), every source file of ``lnn/``, ``requirements.txt``, ``pyproject.toml`` and the Python
version. Jupyter Book's own cache (jupyter-cache) keys on the code cells only, so an edit to ``lnn/`` would not
invalidate it; here the ``lnn`` part of the key names the cache folder instead.

Commands (used by the Makefile)::

    python tools/execution_cache.py config _config.yml _build/_config_book.yml
        Write the config for `make book`: with CI=true (or LNN_EXECUTE=force) the book's own config (every chapter
        executed from scratch); otherwise the same config with ``execute_notebooks: cache`` and ``execute.cache`` in
        ``_build/.jupyter_cache/<hash of lnn and the environment>``, so a prose-only edit re-executes nothing and an
        edit to one chapter's code re-executes that chapter only. Other hashes' folders are removed.
    python tools/execution_cache.py record NOTEBOOK...
        After a successful strict build: for each notebook whose executed copy in ``_build/jupyter_execute/``
        has the same code as the source and no error output, store its key in ``_build/executed.json``.
    python tools/execution_cache.py stale NOTEBOOK...
        Print the notebooks that `make test` must still execute under nbval: those without a recorded execution
        with today's key. Names the reused ones on stderr. Without a build, that is every notebook: a fresh
        `make test` alone still executes every chapter.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "_build"
MANIFEST_NAME = "executed.json"
ENVIRONMENT_FILES = ("requirements.txt", "pyproject.toml")


def source_key(root: Path = ROOT) -> str:
    """Hash of ``lnn/`` (every .py file, path and content), the environment files and the Python version."""
    h = hashlib.sha256()
    h.update(f"python {sys.version_info.major}.{sys.version_info.minor}\n".encode())
    files = sorted((root / "lnn").rglob("*.py")) + [root / name for name in ENVIRONMENT_FILES]
    for path in files:
        if path.is_file() and "__pycache__" not in path.parts:
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def code_cells(nb: dict) -> list[tuple[str, list[str]]]:
    out = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            src = cell.get("source", "")
            src = "".join(src) if isinstance(src, list) else src
            out.append((src, sorted(cell.get("metadata", {}).get("tags", []))))
    return out


def notebook_key(path: Path, src_key: str) -> str:
    nb = json.loads(Path(path).read_text())
    payload = json.dumps({"source": src_key, "code": code_cells(nb)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def executed_copy(path: Path, root: Path = ROOT, build: Path = BUILD) -> Path:
    """Where Jupyter Book writes the executed notebook: ``_build/jupyter_execute/<path relative to root>``."""
    return build / "jupyter_execute" / Path(path).resolve().relative_to(root.resolve())


def execution_problem(source: Path, executed: Path) -> str | None:
    """Why the executed copy cannot stand for an execution of ``source`` (None when it can)."""
    if not executed.is_file():
        return "no executed copy"
    nb = json.loads(executed.read_text())
    if code_cells(nb) != code_cells(json.loads(Path(source).read_text())):
        return "the executed copy has other code"
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        if any(out.get("output_type") == "error" for out in cell.get("outputs", [])):
            return "an error output"
    return None


def record(notebooks: list[str], root: Path = ROOT, build: Path = BUILD) -> dict[str, str]:
    src = source_key(root)
    manifest: dict[str, str] = {}
    for name in notebooks:
        problem = execution_problem(Path(name), executed_copy(Path(name), root, build))
        if problem is None:
            manifest[str(Path(name).resolve().relative_to(root.resolve()))] = notebook_key(Path(name), src)
        else:
            print(f"execution_cache: not recording {name}: {problem}", file=sys.stderr)
    build.mkdir(parents=True, exist_ok=True)
    (build / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def stale(notebooks: list[str], root: Path = ROOT, build: Path = BUILD) -> list[str]:
    path = build / MANIFEST_NAME
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    src = source_key(root)
    todo, reused = [], []
    for name in notebooks:
        rel = str(Path(name).resolve().relative_to(root.resolve()))
        ok = manifest.get(rel) == notebook_key(Path(name), src) and (
            execution_problem(Path(name), executed_copy(Path(name), root, build)) is None
        )
        (reused if ok else todo).append(name)
    if reused:
        print(
            "execution_cache: reusing the strict build's execution (same code, lnn and environment) of "
            + ", ".join(reused),
            file=sys.stderr,
        )
    return todo


def cache_dir(root: Path = ROOT, build: Path = BUILD) -> Path:
    return build / ".jupyter_cache" / source_key(root)[:16]


def yaml_load(path: Path) -> dict:
    import yaml

    return yaml.safe_load(Path(path).read_text())


def write_config(source: Path, target: Path, root: Path = ROOT, build: Path = BUILD) -> Path:
    """The build config: the book's own with CI=true or LNN_EXECUTE=force, else with the keyed cache."""
    import yaml

    config = yaml.safe_load(Path(source).read_text())
    forced = os.environ.get("CI", "").lower() in ("1", "true", "yes") or os.environ.get("LNN_EXECUTE") == "force"
    execute = dict(config.get("execute") or {})
    if not forced:
        folder = cache_dir(root, build)
        if folder.parent.is_dir():
            for other in folder.parent.iterdir():
                if other != folder and other.is_dir():
                    shutil.rmtree(other)  # executions under another lnn or environment: never valid again
        execute["execute_notebooks"] = "cache"
        execute["cache"] = str(folder.resolve())
        folder.mkdir(parents=True, exist_ok=True)
    config["execute"] = execute
    # Jupyter Book resolves sphinx.local_extensions against the config file's folder: rebase them.
    sphinx = dict(config.get("sphinx") or {})
    local = sphinx.get("local_extensions") or {}
    if local:
        sphinx["local_extensions"] = {
            name: os.path.relpath((Path(source).parent / p).resolve(), Path(target).parent.resolve()) + "/"
            for name, p in local.items()
        }
        config["sphinx"] = sphinx
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return target


def main(argv: list[str]) -> int:
    if len(argv) < 1 or argv[0] not in ("config", "record", "stale", "key"):
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "config":
        if len(args) != 2:
            print("usage: execution_cache.py config SOURCE_CONFIG TARGET_CONFIG", file=sys.stderr)
            return 2
        write_config(Path(args[0]), Path(args[1]))
    elif cmd == "record":
        record(args)
    elif cmd == "stale":
        print(" ".join(stale(args)))
    else:
        print(source_key())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
