"""Execute each chapter once per CI run, and re-execute only what changed in a local rebuild.

The key of a chapter's execution is a hash of what can change its outputs: the notebook's code cells (source and
tags, not the markdown), every source file of ``lnn/``, ``requirements.txt``, ``pyproject.toml`` and the Python
version. Jupyter Book's own cache (jupyter-cache) keys on the code cells only, so an edit to ``lnn/`` would not
invalidate it; here the ``lnn`` part of the key names the cache folder instead.

Commands (used by the Makefile)::

    python tools/execution_cache.py config _config.yml _build/_config_book.yml
        Write the config for `make book`: the book's own config with ``execute_notebooks: cache`` and
        ``execute.cache`` in ``_build/.jupyter_cache/<hash of lnn and the environment>``, so a prose-only edit
        re-executes nothing and an edit to one chapter's code re-executes that chapter only. Other hashes' folders
        are removed. With CI=true (or LNN_EXECUTE=force) the folder is emptied first: every chapter is executed
        from scratch.
    python tools/execution_cache.py execute _build/_config_book.yml NOTEBOOK...
        Execute, in parallel (one kernel per core, ``LNN_EXECUTE_JOBS`` to override), the notebooks that the
        config's cache holds no execution of, and store each execution in the cache, where the build then finds
        it (Jupyter Book 1.x executes its notebooks one after the other). Prints each notebook's time; a notebook
        that raises fails the command, with its traceback.
    python tools/execution_cache.py record NOTEBOOK...
        After a successful strict build: for each notebook whose execution (in the cache, else the executed copy
        in ``_build/jupyter_execute/``) has the same code as the source, outputs and no error output, store its key
        in ``_build/executed.json``.
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


def executed_notebook(path: Path, root: Path = ROOT, build: Path = BUILD) -> dict | None:
    """The build's execution of ``path``: the matching record of the execution cache (``make book``), else the copy
    in ``_build/jupyter_execute/`` (a build that executed without the cache; myst-nb writes that copy without the
    outputs when they come from the cache). None when there is neither."""
    folder = cache_dir(root, build)
    if folder.is_dir() and any(folder.iterdir()):
        import nbformat
        from jupyter_cache import get_cache

        cache = get_cache(folder)
        try:
            match = cache.match_cache_notebook(nbformat.read(path, as_version=4))
        except KeyError:
            pass
        else:
            return json.loads(nbformat.writes(cache.get_cache_bundle(match.pk).nb))
    copy = executed_copy(path, root, build)
    return json.loads(copy.read_text()) if copy.is_file() else None


def execution_problem(source: Path, nb: dict | None) -> str | None:
    """Why the executed notebook ``nb`` cannot stand for an execution of ``source`` (None when it can)."""
    if nb is None:
        return "no execution"
    if code_cells(nb) != code_cells(json.loads(Path(source).read_text())):
        return "the execution has other code"
    cells = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    if not any(c.get("outputs") for c in cells):
        return "no outputs"
    for cell in cells:
        if any(out.get("output_type") == "error" for out in cell.get("outputs", [])):
            return "an error output"
    return None


def record(notebooks: list[str], root: Path = ROOT, build: Path = BUILD) -> dict[str, str]:
    src = source_key(root)
    manifest: dict[str, str] = {}
    for name in notebooks:
        problem = execution_problem(Path(name), executed_notebook(Path(name), root, build))
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
            execution_problem(Path(name), executed_notebook(Path(name), root, build)) is None
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


def forced() -> bool:
    """CI=true or LNN_EXECUTE=force: every chapter is executed from scratch."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes") or os.environ.get("LNN_EXECUTE") == "force"


def write_config(source: Path, target: Path, root: Path = ROOT, build: Path = BUILD) -> Path:
    """The build config: the book's own with ``execute_notebooks: cache`` in the folder keyed on ``lnn/`` and the
    environment, emptied first with CI=true or LNN_EXECUTE=force."""
    import yaml

    config = yaml.safe_load(Path(source).read_text())
    execute = dict(config.get("execute") or {})
    folder = cache_dir(root, build)
    if folder.parent.is_dir():
        for other in folder.parent.iterdir():
            if other.is_dir() and (other != folder or forced()):
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


def default_jobs() -> int:
    """Notebooks executed at once: one per core. Each kernel runs its products on one thread (``lnn.threads``), so
    two kernels on two cores do not oversubscribe them. On the book's two-core test machine the time of one chapter
    varied by more than its slowdown from sharing the machine with a second chapter (see the Timings page)."""
    return max(1, os.cpu_count() or 1)


def _execute_one(path: str, timeout: int | None, allow_errors: bool) -> tuple[str, float, str | None]:
    """Run one notebook in its own folder (a worker process): the executed notebook, the seconds, the traceback."""
    import nbformat
    from jupyter_cache.executors.utils import single_nb_execution

    nb = nbformat.read(path, as_version=4)
    result = single_nb_execution(nb, cwd=str(Path(path).parent), timeout=timeout, allow_errors=allow_errors)
    return nbformat.writes(nb), result.time, result.exc_string if result.err is not None else None


def execute(config_path: Path, notebooks: list[str], jobs: int | None = None) -> tuple[list[str], list[str]]:
    """Execute the notebooks without an execution in the config's cache, ``jobs`` at a time (default
    ``LNN_EXECUTE_JOBS``, else :func:`default_jobs`), in the given order, and store each successful execution in the
    cache with its time, as myst-nb's own cache mode does. Returns the executed and the failed notebooks."""
    from concurrent.futures import ProcessPoolExecutor

    import nbformat
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    settings = yaml_load(config_path).get("execute") or {}
    if settings.get("execute_notebooks") != "cache" or not notebooks:
        return [], []
    cache = get_cache(settings["cache"])
    todo = []
    for name in notebooks:
        uri = str(Path(name).resolve())
        try:
            cache.match_cache_notebook(nbformat.read(uri, as_version=4))
        except KeyError:
            todo.append(uri)
    if not todo:
        print(f"execution_cache: the cache holds an execution of all {len(notebooks)} notebooks", file=sys.stderr)
        return [], []
    jobs = jobs or int(os.environ.get("LNN_EXECUTE_JOBS", "0")) or default_jobs()
    jobs = max(1, min(jobs, len(todo)))
    timeout, allow_errors = settings.get("timeout", 30), bool(settings.get("allow_errors", False))
    print(f"execution_cache: executing {len(todo)} notebook(s), {jobs} at a time", file=sys.stderr)
    executed, failed = [], []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [(uri, pool.submit(_execute_one, uri, timeout, allow_errors)) for uri in todo]
        for uri, future in futures:
            name = os.path.relpath(uri)
            text, seconds, traceback = future.result()
            if traceback is not None:
                print(f"execution_cache: {name} FAILED after {seconds:.1f} s\n{traceback}", file=sys.stderr)
                failed.append(name)
                continue
            cache.add_nb_to_project(uri)
            cache.cache_notebook_bundle(
                CacheBundleIn(nbformat.reads(text, as_version=4), uri, data={"execution_seconds": seconds}),
                check_validity=False,
                overwrite=True,
            )
            print(f"execution_cache: {name} executed in {seconds:.1f} s", file=sys.stderr)
            executed.append(name)
    return executed, failed


def main(argv: list[str]) -> int:
    if len(argv) < 1 or argv[0] not in ("config", "execute", "record", "stale", "key"):
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "config":
        if len(args) != 2:
            print("usage: execution_cache.py config SOURCE_CONFIG TARGET_CONFIG", file=sys.stderr)
            return 2
        write_config(Path(args[0]), Path(args[1]))
    elif cmd == "execute":
        if len(args) < 1:
            print("usage: execution_cache.py execute BUILD_CONFIG NOTEBOOK...", file=sys.stderr)
            return 2
        _, failed = execute(Path(args[0]), args[1:])
        if failed:
            print("execution_cache: these notebooks raised: " + ", ".join(failed), file=sys.stderr)
            return 1
    elif cmd == "record":
        record(args)
    elif cmd == "stale":
        print(" ".join(stale(args)))
    else:
        print(source_key())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
