"""Input validation shared by every public function of :mod:`lnn`.

Each check raises with a message that names the offending argument, so a reader who passes factors that do not
chain, a depth below one or a negative step size learns what is wrong instead of getting a silently wrong answer or
an error from deep inside torch. The convention: :class:`TypeError` for the wrong kind of object (a numpy array
where a tensor is expected, an integer tensor where floats are needed, two tensors of different dtypes or devices
that must meet in one product), :class:`ValueError` for a wrong value (a shape, a sign, NaN or infinity).

This module is the one private module that every other module of :mod:`lnn` may import from (the import-graph
test, ``tests/test_import_graph.py``, allows it by name).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def check_tensor(x: object, name: str) -> Tensor:
    """Raise :class:`TypeError` unless ``x`` is a :class:`torch.Tensor` (numpy arrays are named as such)."""
    if not isinstance(x, Tensor):
        hint = " (convert it with torch.as_tensor(x, dtype=torch.float64))" if type(x).__module__ == "numpy" else ""
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__module__}.{type(x).__name__}{hint}")
    return x


def check_floating(x: Tensor, name: str) -> Tensor:
    """Raise :class:`TypeError` unless ``x`` is a tensor of a floating (or complex) dtype."""
    check_tensor(x, name)
    if not (x.dtype.is_floating_point or x.dtype.is_complex):
        raise TypeError(f"{name} must have a floating dtype (e.g. torch.float64), got {x.dtype}")
    return x


def check_finite(x: Tensor, name: str) -> Tensor:
    """Raise :class:`ValueError` if ``x`` holds NaN or infinite entries (a meta tensor has no values to check)."""
    if x.device.type != "meta" and (x.dtype.is_floating_point or x.dtype.is_complex):
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            n_nan, n_inf = int(torch.isnan(x).sum()), int(torch.isinf(x).sum())
            raise ValueError(
                f"{name} contains non-finite entries ({n_nan} NaN, {n_inf} inf out of {x.numel()}); "
                "lnn does not propagate NaN or infinity silently"
            )
    return x


def check_compatible(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    """Raise :class:`TypeError` unless two tensors that meet in one computation share dtype and device."""
    if a.dtype != b.dtype:
        raise TypeError(
            f"{name_a} is {a.dtype} but {name_b} is {b.dtype}; they must share a dtype "
            f"(convert one, e.g. {name_a}.to({b.dtype}))"
        )
    if a.device != b.device:
        raise TypeError(
            f"{name_a} is on device {a.device} but {name_b} is on {b.device}; move one, e.g. {name_a}.to({str(b.device)!r})"
        )


def check_int(value: object, name: str, minimum: int = 0) -> int:
    """Return ``value`` as an int after checking that it is an integer (``2.0`` passes, ``2.5`` does not) and
    ``>= minimum``; raises :class:`ValueError` otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    try:
        as_int = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if as_int != value:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if as_int < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {as_int}")
    return as_int


def hidden_widths(widths: int | Sequence[int] | None, depth: int, default: int) -> list[int]:
    """The hidden widths ``[d_1, ..., d_{N-1}]`` of a depth-``N`` network: ``default`` for all when ``widths`` is
    None, one int for all, or a list of ``N - 1`` positive ints (shared by :mod:`lnn.network` and :mod:`lnn.layers`)."""
    if widths is None:
        return [default] * (depth - 1)
    if isinstance(widths, int):
        return [check_int(widths, "widths", 1)] * (depth - 1)
    widths = [check_int(w, "every hidden width", 1) for w in widths]
    if len(widths) != depth - 1:
        raise ValueError(f"widths must list the {depth - 1} hidden widths d_1..d_{depth - 1}, got {len(widths)}")
    return widths


def check_depth(depth: int, name: str = "depth") -> int:
    """Return ``depth`` as an int after checking that it is an integer >= 1."""
    if isinstance(depth, bool) or not isinstance(depth, int | torch.SymInt):
        try:
            as_int = int(depth)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be an integer >= 1, got {depth!r}") from None
        if as_int != depth:
            raise ValueError(f"{name} must be an integer >= 1, got {depth!r}")
        depth = as_int
    if depth < 1:
        raise ValueError(f"{name} must be >= 1 (a network has at least one layer), got {depth}")
    return int(depth)


def check_positive(value: float, name: str) -> float:
    """Return ``value`` as a float after checking that it is finite and > 0 (step sizes, time steps)."""
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number, got {value!r}") from None
    if not math.isfinite(as_float) or as_float <= 0.0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return as_float


def check_nonnegative_int(value: int, name: str) -> int:
    """Return ``value`` as an int after checking that it is an integer >= 0 (step counts)."""
    return check_int(value, name, 0)


def check_matrix(W: Tensor, name: str = "W") -> Tensor:
    """Check that ``W`` is a tensor with at least two dimensions (a matrix, maybe with batch dimensions)."""
    check_tensor(W, name)
    if W.ndim < 2:
        raise ValueError(f"{name} must have at least 2 dimensions (rows, columns), got shape {tuple(W.shape)}")
    return W


def check_factors(factors: Sequence[Tensor], *, same_batch: bool = False) -> list[Tensor]:
    """Check a list of factors ``[W_1, ..., W_N]`` with ``W_j`` of shape ``(..., d_j, d_{j-1})``.

    Raises :class:`ValueError` when the list is empty (depth < 1), a factor is not a matrix, consecutive factors do
    not chain (``W_{j+1}`` must have ``d_j`` columns), dtypes or devices differ, or (with ``same_batch``) the leading
    batch dimensions differ.
    """
    if isinstance(factors, Tensor):
        raise ValueError("factors must be a list of tensors [W_1, ..., W_N], got a single tensor")
    factors = list(factors)
    if len(factors) == 0:
        raise ValueError("depth must be >= 1: got an empty list of factors")
    for j, W in enumerate(factors, start=1):
        check_matrix(W, f"factor W_{j}")
    for j in range(1, len(factors)):
        prev, cur = factors[j - 1], factors[j]
        if cur.shape[-1] != prev.shape[-2]:
            raise ValueError(
                f"factors do not chain: W_{j + 1} has shape {tuple(cur.shape)}, so it expects W_{j} to have "
                f"{cur.shape[-1]} rows (d_{j} = {cur.shape[-1]}), but W_{j} has shape {tuple(prev.shape)}"
            )
        if cur.dtype != prev.dtype:
            raise ValueError(f"factors must share a dtype: W_{j} is {prev.dtype}, W_{j + 1} is {cur.dtype}")
        if cur.device != prev.device:
            raise ValueError(f"factors must share a device: W_{j} is on {prev.device}, W_{j + 1} on {cur.device}")
        if same_batch and cur.shape[:-2] != prev.shape[:-2]:
            raise ValueError(
                f"factors must share their batch dimensions: W_{j} has batch shape {tuple(prev.shape[:-2])}, "
                f"W_{j + 1} has {tuple(cur.shape[:-2])}"
            )
    return factors


def check_same_shape(A: Tensor, B: Tensor, name_a: str, name_b: str) -> None:
    """Raise :class:`ValueError` unless ``A`` and ``B`` have the same trailing matrix shape (and
    :class:`TypeError` unless they are tensors of one dtype and device)."""
    check_tensor(A, name_a)
    check_tensor(B, name_b)
    check_compatible(A, B, name_a, name_b)
    if A.shape[-2:] != B.shape[-2:]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same matrix shape, got {tuple(A.shape)} and {tuple(B.shape)}"
        )
