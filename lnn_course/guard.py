"""Keep the reference answers out of reach while a checker runs a student's function.

``lnn`` implements most of what the exercises ask for (``lnn.factor_gradients``, ``lnn.effective_rank``,
``lnn.ntk.empirical_ntk``, ...), and the checkers use those implementations to judge an answer. An answer that simply
calls them would pass without any work. While a checker runs the student's function, :func:`references_unavailable`
makes every call to the listed references fail with :class:`ReferenceUnavailableError`, whose message says to write
the function from the math.

The references are recognised by their *code*, not by their name in a namespace: a function is blocked when its code
lives in the ``lnn`` package (or, for the autograd entries, in ``torch``'s autograd modules) under one of the listed
qualified names. Renaming (``ref = lnn.effective_rank``), importing it from a submodule, wrapping it, reloading
``lnn`` or calling a private helper with the same code are all caught. The check is a ``sys.settrace`` hook on
function calls only (no line events), installed for the duration of the student's call and removed afterwards; the
previous trace function (a debugger, coverage) keeps working. A violation is recorded even when the student's code
catches the exception, so ``try: return lnn.x(...) except Exception: ...`` does not help either.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import lnn
import torch

__all__ = ["ReferenceUnavailableError", "Blocked", "references_unavailable", "AUTOGRAD"]

_LNN_DIR = os.path.dirname(os.path.abspath(lnn.__file__)) + os.sep
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep

# torch's autograd entry points (for the exercises that say "no autograd"), as (file under torch/, qualname) pairs;
# a name of None blocks every function defined in that file.
AUTOGRAD: tuple[tuple[str, str | None], ...] = (
    ("autograd/__init__.py", "grad"),
    ("autograd/__init__.py", "backward"),
    ("_tensor.py", "Tensor.backward"),
    ("autograd/functional.py", None),
    ("_functorch/eager_transforms.py", None),
    ("_functorch/apis.py", "grad"),
    ("_functorch/apis.py", "grad_and_value"),
)


class ReferenceUnavailableError(RuntimeError):
    """A student's function called a reference implementation that the exercise asks them to write."""


@dataclass
class Blocked:
    """What a checker blocks: ``lnn`` functions by qualified name (``"factor_gradients"``,
    ``"EndToEndRule.direction"``; a name ending in ``.*`` blocks a whole class) and, optionally, torch files."""

    label: str
    lnn_names: tuple[str, ...]
    torch_entries: tuple[tuple[str, str | None], ...] = ()
    hint: str = "write it yourself from the math in the exercise"
    violations: list[str] = field(default_factory=list)

    def match(self, code: Any) -> str | None:
        filename = os.path.abspath(code.co_filename)
        qualname = getattr(code, "co_qualname", code.co_name)
        if filename.startswith(_LNN_DIR):
            for name in self.lnn_names:
                if qualname == name or (name.endswith(".*") and qualname.startswith(name[:-1])):
                    module = "lnn." + os.path.splitext(filename[len(_LNN_DIR):])[0].replace(os.sep, ".")
                    return f"{module.removesuffix('.__init__')}.{qualname}"
        elif filename.startswith(_TORCH_DIR):
            rel = filename[len(_TORCH_DIR):].replace(os.sep, "/")
            for path, name in self.torch_entries:
                if rel == path and (name is None or qualname == name):
                    return f"torch ({rel}: {qualname})"
        return None

    def message(self, what: str) -> str:
        return (f"{self.label}: {what} is not available while the checker runs your function: it is the reference "
                f"answer (or part of it). {self.hint[:1].upper()}{self.hint[1:]}.")


@contextlib.contextmanager
def references_unavailable(blocked: Blocked | None) -> Iterator[Blocked | None]:
    """While the block runs, a call to any function that ``blocked`` matches raises
    :class:`ReferenceUnavailableError` (and is recorded in ``blocked.violations``)."""
    if blocked is None or not (blocked.lnn_names or blocked.torch_entries):
        yield blocked
        return
    previous = sys.gettrace()

    verdicts: dict[Any, str | None] = {}  # code object -> what it is, or None: one path comparison per function
    match = blocked.match

    def tracer(frame: FrameType, event: str, arg: Any):
        if event == "call":
            code = frame.f_code
            try:
                what = verdicts[code]
            except KeyError:
                what = verdicts[code] = match(code)
            if what is not None:
                blocked.violations.append(what)
                # raising from a trace function unsets it (CPython): the violation is recorded above, and the
                # checker fails on it whatever the student's code does with the exception
                raise ReferenceUnavailableError(blocked.message(what))
        return previous(frame, event, arg) if previous is not None else None

    sys.settrace(tracer)
    try:
        yield blocked
    finally:
        sys.settrace(previous)


def blocked(label: str, lnn_names: Iterable[str], *, autograd: bool = False, hint: str | None = None) -> Blocked:
    """A :class:`Blocked` for one checker."""
    kwargs = {"hint": hint} if hint else {}
    return Blocked(label, tuple(lnn_names), AUTOGRAD if autograd else (), **kwargs)
