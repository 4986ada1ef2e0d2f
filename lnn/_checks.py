"""Input validation shared by every public function of :mod:`lnn`.

Each check raises :class:`ValueError` with a message that names the offending argument, so a reader who passes
factors that do not chain, a depth below one or a negative step size learns what is wrong instead of getting a
silently wrong answer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


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
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def check_matrix(W: Tensor, name: str = "W") -> Tensor:
    """Check that ``W`` is a tensor with at least two dimensions (a matrix, maybe with batch dimensions)."""
    if not isinstance(W, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(W).__name__}")
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
    """Raise :class:`ValueError` unless ``A`` and ``B`` have the same trailing matrix shape."""
    if A.shape[-2:] != B.shape[-2:]:
        raise ValueError(
            f"{name_a} and {name_b} must have the same matrix shape, got {tuple(A.shape)} and {tuple(B.shape)}"
        )
