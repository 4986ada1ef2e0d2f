"""The docstring examples of every module of lnn (and of the course package lnn_course) run as doctests (part of `make test`, through tests/).

Each module is one test, so a failing example names its module. Examples print with ELLIPSIS and
NORMALIZE_WHITESPACE; they should print exact small numbers (float64 rounded, or integers), not long tensors.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest
import torch

import lnn
import lnn_course

MODULES = sorted(
    {"lnn", "lnn_course"}
    | {info.name for info in pkgutil.walk_packages(lnn.__path__, prefix="lnn.")}
    | {info.name for info in pkgutil.walk_packages(lnn_course.__path__, prefix="lnn_course.")}
)
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        finder = doctest.DocTestFinder(exclude_empty=True)
        runner = doctest.DocTestRunner(optionflags=FLAGS)
        report: list[str] = []
        for test in finder.find(module, name):  # globals: a copy of the module's, as pytest --doctest-modules
            if test.filename and not test.filename.endswith(".py"):
                continue
            runner.run(test, out=report.append)
        result = runner.summarize(verbose=False)
    finally:
        torch.set_num_threads(threads)
    assert result.failed == 0, (
        f"{result.failed} of {result.attempted} docstring examples of {name} failed:\n" + "".join(report)
    )


def test_the_main_functions_have_examples():
    # the flat public namespace: every function and class exported as lnn.X carries a runnable example
    missing = []
    for name in sorted(vars(lnn)):
        obj = getattr(lnn, name)
        if name.startswith("_") or not (callable(obj) and getattr(obj, "__module__", "").startswith("lnn")):
            continue
        if ">>>" not in (obj.__doc__ or ""):
            missing.append(name)
    assert not missing, f"public lnn names without a docstring example: {missing}"
