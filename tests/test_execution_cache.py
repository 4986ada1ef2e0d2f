"""The execution cache of tools/execution_cache.py on small notebooks in a temporary project (never the book).

Fast checks of the keys (code, lnn sources, environment; not prose) and of the reuse rule of `make test`, and one
Jupyter Book build sequence showing that a prose-only edit re-executes nothing, a code edit re-executes that
chapter only, an edit to lnn re-executes every chapter, and CI=true executes from scratch."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("execution_cache", ROOT / "tools" / "execution_cache.py")
ec = importlib.util.module_from_spec(spec)
sys.modules["execution_cache"] = ec  # its worker processes find execute()'s worker function by module name
spec.loader.exec_module(ec)


def make_notebook(path: Path, code: str, prose: str = "Some prose.") -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}\n\n{prose}"), nbformat.v4.new_code_cell(code)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def make_project(tmp: Path) -> list[Path]:
    (tmp / "lnn").mkdir()
    (tmp / "lnn" / "__init__.py").write_text("VALUE = 1\n")
    (tmp / "requirements.txt").write_text("torch==2.13.0\n")
    (tmp / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp / "book").mkdir()
    nbs = [tmp / "book" / "a.ipynb", tmp / "book" / "b.ipynb"]
    make_notebook(nbs[0], "print('a', 1 + 1)")
    make_notebook(nbs[1], "print('b', 2 + 2)")
    return nbs


def fake_execution(nb: Path, tmp: Path, error: bool = False) -> None:
    out = tmp / "_build" / "jupyter_execute" / nb.relative_to(tmp)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = nbformat.read(nb, as_version=4)
    data.cells[1].outputs = [
        nbformat.v4.new_output("error", ename="AssertionError", evalue="", traceback=[])
        if error
        else nbformat.v4.new_output("stream", name="stdout", text="ok\n")
    ]
    nbformat.write(data, out)


def test_keys_follow_code_lnn_and_environment_not_prose(tmp_path):
    a, b = make_project(tmp_path)
    src = ec.source_key(tmp_path)
    key = ec.notebook_key(a, src)
    make_notebook(a, "print('a', 1 + 1)", prose="Other prose.")
    assert ec.notebook_key(a, ec.source_key(tmp_path)) == key  # prose only: same key
    make_notebook(a, "print('a', 1 + 2)")
    assert ec.notebook_key(a, src) != key  # code
    (tmp_path / "lnn" / "__init__.py").write_text("VALUE = 2\n")
    assert ec.source_key(tmp_path) != src  # lnn
    src2 = ec.source_key(tmp_path)
    (tmp_path / "requirements.txt").write_text("torch==2.13.1\n")
    assert ec.source_key(tmp_path) != src2  # environment


def test_make_test_reuses_only_recorded_clean_executions(tmp_path):
    a, b = make_project(tmp_path)
    build = tmp_path / "_build"
    names = [str(a), str(b)]
    assert ec.stale(names, tmp_path, build) == names  # no build: a fresh `make test` executes every chapter
    fake_execution(a, tmp_path)
    fake_execution(b, tmp_path, error=True)
    manifest = ec.record(names, tmp_path, build)
    assert list(manifest) == ["book/a.ipynb"]  # b's copy holds an error output: never reused
    nbformat.write(nbformat.read(b, as_version=4), ec.executed_copy(b, tmp_path, build))
    assert list(ec.record(names, tmp_path, build)) == ["book/a.ipynb"]  # a copy without outputs: never reused
    assert ec.stale(names, tmp_path, build) == [str(b)]
    make_notebook(a, "print('a', 1 + 1)", prose="Edited prose.")
    assert ec.stale(names, tmp_path, build) == [str(b)]  # prose does not invalidate
    (tmp_path / "lnn" / "__init__.py").write_text("VALUE = 3\n")
    assert ec.stale(names, tmp_path, build) == names  # lnn changed since the build
    ec.record(names, tmp_path, build)
    make_notebook(a, "print('a', 5)")
    assert ec.stale(names, tmp_path, build) == names  # the executed copy has other code


def test_ci_config_executes_from_scratch(tmp_path, monkeypatch):
    make_project(tmp_path)
    (tmp_path / "_config.yml").write_text("title: t\nexecute:\n  execute_notebooks: force\n")
    target = tmp_path / "_build" / "c.yml"
    folder = ec.cache_dir(tmp_path, tmp_path / "_build")
    monkeypatch.setenv("CI", "false")
    execute = ec.yaml_load(ec.write_config(tmp_path / "_config.yml", target, tmp_path, tmp_path / "_build"))["execute"]
    assert execute["execute_notebooks"] == "cache"
    assert Path(execute["cache"]).name == ec.source_key(tmp_path)[:16]
    (folder / "kept").write_text("an earlier execution")
    ec.write_config(tmp_path / "_config.yml", target, tmp_path, tmp_path / "_build")
    assert (folder / "kept").exists()  # a local rebuild keeps the executions of this lnn and environment
    monkeypatch.setenv("CI", "true")
    execute = ec.yaml_load(ec.write_config(tmp_path / "_config.yml", target, tmp_path, tmp_path / "_build"))["execute"]
    assert execute["execute_notebooks"] == "cache" and Path(execute["cache"]) == folder.resolve()
    assert folder.is_dir() and not any(folder.iterdir())  # CI: an empty cache, every chapter from scratch


@pytest.mark.skipif(not (Path(sys.executable).parent / "jupyter-book").exists(), reason="needs jupyter-book")
def test_jupyter_book_rebuilds_execute_only_what_changed(tmp_path, monkeypatch):
    """Three small builds (about 10 s each on a quiet 2-core machine), as `make book` runs them: the config, the
    parallel execution of what the cache lacks, the build. First both chapters; after a prose-only edit of one and
    a code edit of the other, only the other; after an edit to lnn, both. The build itself never executes: it
    finds every execution in the cache. A raising notebook fails the execution step, with its traceback."""
    a, b = make_project(tmp_path)
    (tmp_path / "_config.yml").write_text(
        "title: t\nonly_build_toc_files: true\nexclude_patterns: ['.*', '_build', 'lnn']\n"
        "execute:\n  execute_notebooks: force\n  raise_on_error: true\n"
    )
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/a\nchapters:\n  - file: book/b\n")
    jb = str(Path(sys.executable).parent / "jupyter-book")
    config = tmp_path / "_build" / "_config_book.yml"
    monkeypatch.setenv("CI", "false")
    monkeypatch.chdir(tmp_path)

    def build_and_list_executed() -> set[str]:
        ec.write_config(tmp_path / "_config.yml", config, tmp_path, tmp_path / "_build")
        executed, failed = ec.execute(config, [str(a), str(b)], jobs=2)
        assert failed == []
        proc = subprocess.run(
            [jb, "build", "--all", "-W", "--config", str(config), str(tmp_path)],
            capture_output=True, text=True, cwd=tmp_path,
        )
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log[-3000:]
        assert "Executing notebook" not in log  # the build reads every execution from the cache
        assert "Using cached notebook" in log
        return {Path(name).stem for name in executed}

    assert build_and_list_executed() == {"a", "b"}
    assert "b 4" in (tmp_path / "_build" / "html" / "book" / "b.html").read_text()  # the outputs are in the page
    # `make test` reuses these executions: they are read from the cache (myst-nb's copies in
    # _build/jupyter_execute/ lack the outputs that come from the cache, so they alone would not do).
    assert list(ec.record([str(a), str(b)], tmp_path, tmp_path / "_build")) == ["book/a.ipynb", "book/b.ipynb"]
    assert ec.stale([str(a), str(b)], tmp_path, tmp_path / "_build") == []
    make_notebook(a, "print('a', 1 + 1)", prose="A prose-only edit.")
    make_notebook(b, "print('b', 2 + 3)")
    assert build_and_list_executed() == {"b"}
    (tmp_path / "lnn" / "__init__.py").write_text("VALUE = 4\n")
    assert build_and_list_executed() == {"a", "b"}
    make_notebook(b, "raise ValueError('a failing chapter')")
    ec.write_config(tmp_path / "_config.yml", config, tmp_path, tmp_path / "_build")
    executed, failed = ec.execute(config, [str(a), str(b)], jobs=2)
    assert executed == [] and failed == ["book/b.ipynb"]
