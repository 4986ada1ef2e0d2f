"""The one place where ``lnn`` chooses torch's number of intra-op CPU threads.

The book's experiments are small: products of matrices of tens to a few hundred rows, repeated thousands of times.
On such products a second thread saves little when the machine is quiet, and costs a great deal when the other
core is busy (another job, a browser, a second notebook): each product then waits for a thread that is not
scheduled, and we measured 2000 steps on 20 x 20 factors at 8.4 s with two threads against 0.43 s with one
(the Timings page has the current figures, median and spread over repetitions). So ``lnn`` runs on **one thread by
default** for this work, chosen here and nowhere else:

* :func:`use_book_threads` sets the process-wide count once (a chapter's first cell calls it instead of
  ``torch.set_num_threads(1)``); the environment variable ``LNN_NUM_THREADS`` overrides the choice
  (``LNN_NUM_THREADS=2``, or ``auto`` for torch's own default);
* :func:`limit_threads` is a context manager for one block (``with lnn.threads.limit_threads(1): ...``), restoring
  the previous count after it; ``None`` leaves the count as it is;
* :func:`warm_up` runs the first products of each kind once, so that the first timed or interactive call of a
  chapter is not the one that pays for thread-pool start-up and kernel selection.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

__all__ = ["book_threads", "use_book_threads", "limit_threads", "warm_up"]

#: Threads for the book's small workloads unless ``LNN_NUM_THREADS`` says otherwise.
DEFAULT_THREADS = 1


def _check_count(n: object, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{name} must be a positive integer or None, got {n!r}")
    return n


def book_threads() -> int:
    """The thread count ``lnn`` uses: ``LNN_NUM_THREADS`` if set (a positive integer, or ``auto`` for torch's
    default here: the number of CPUs), else :data:`DEFAULT_THREADS` (one)."""
    raw = os.environ.get("LNN_NUM_THREADS", "").strip()
    if not raw:
        return DEFAULT_THREADS
    if raw.lower() == "auto":
        return max(1, os.cpu_count() or 1)
    try:
        return _check_count(int(raw), "LNN_NUM_THREADS")
    except ValueError:
        raise ValueError(f"LNN_NUM_THREADS must be a positive integer or 'auto', got {raw!r}") from None


def use_book_threads(n: int | None = None, *, warm: bool = True) -> int:
    """Set torch's intra-op thread count for the rest of the process to ``n`` (default :func:`book_threads`) and,
    with ``warm``, run :func:`warm_up`. Returns the count now in effect. A chapter's first cell calls this once.

    Examples
    --------
    >>> import lnn.threads
    >>> lnn.threads.use_book_threads(1, warm=False)
    1
    """
    n = book_threads() if n is None else _check_count(n, "n")
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    if warm:
        warm_up()
    return torch.get_num_threads()


@contextlib.contextmanager
def limit_threads(n: int | None) -> Iterator[None]:
    """Run a block with ``n`` intra-op threads (``None``: leave the current setting), restoring the old count."""
    if n is None:
        yield
        return
    n = _check_count(n, "num_threads")
    old = torch.get_num_threads()
    if old != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)


_WARM: set[tuple[torch.dtype, int]] = set()


def warm_up(dtype: torch.dtype = torch.float64) -> None:
    """Run one small product of each kind the book uses (``mm``, ``bmm``, a 2-D convolution and its backward,
    ``eigh``) in ``dtype`` on the CPU, once per process, dtype and thread count: the first call of each pays for
    thread-pool start-up, kernel dispatch and the BLAS's buffers, so a chapter's first measured step does not."""
    key = (dtype, torch.get_num_threads())
    if key in _WARM:
        return
    _WARM.add(key)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(64, 64, dtype=dtype, generator=g)
    a @ a
    torch.bmm(a.expand(4, 64, 64), a.expand(4, 64, 64))
    torch.linalg.eigh(a @ a.T)
    x = torch.randn(8, 1, 8, 8, dtype=dtype, generator=g, requires_grad=True)
    w = torch.randn(4, 1, 3, 3, dtype=dtype, generator=g, requires_grad=True)
    torch.nn.functional.conv2d(x, w, padding=1).sum().backward()
