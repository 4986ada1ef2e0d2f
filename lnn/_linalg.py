"""Fractional powers of Gram matrices through the thin SVD (the book's numerical convention, M^0 := I).

Computing ``(W W^T)^a`` from ``eigh(W W^T)`` squares the condition number and loses about four digits near zero
eigenvalues; from the thin SVD ``W = U diag(s) V^T`` one has ``(W W^T)^a G = U diag(s^{2a}) U^T G`` for ``a > 0`` and
``G`` itself for ``a = 0``, exact to rounding.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class ThinSVD(NamedTuple):
    """Thin SVD ``W = U diag(S) Vh`` with ``U: (..., m, k)``, ``S: (..., k)``, ``Vh: (..., k, n)``, ``k = min(m, n)``."""

    U: Tensor
    S: Tensor
    Vh: Tensor


def thin_svd(W: Tensor) -> ThinSVD:
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    return ThinSVD(U, S, Vh)


def left_gram_power_apply(svd: ThinSVD, a: float, G: Tensor) -> Tensor:
    """``(W W^T)^a G`` with ``M^0 = I``: ``U diag(S^{2a}) U^T G`` for ``a > 0``."""
    if a == 0:
        return G
    U, S = svd.U, svd.S
    return U @ ((S ** (2 * a)).unsqueeze(-1) * (U.mT @ G))


def right_gram_power_apply(svd: ThinSVD, b: float, G: Tensor) -> Tensor:
    """``G (W^T W)^b`` with ``M^0 = I``: ``G V diag(S^{2b}) V^T`` for ``b > 0``."""
    if b == 0:
        return G
    V, S = svd.Vh.mT, svd.S
    return ((G @ V) * (S ** (2 * b)).unsqueeze(-2)) @ V.mT


def gram_power(svd: ThinSVD, a: float, side: str) -> Tensor:
    """The explicit matrix ``(W W^T)^a`` (``side='left'``) or ``(W^T W)^a`` (``side='right'``), with ``M^0 = I``."""
    if side == "left":
        basis = svd.U
    elif side == "right":
        basis = svd.Vh.mT
    else:
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    n = basis.shape[-2]
    if a == 0:
        eye = torch.eye(n, dtype=basis.dtype, device=basis.device)
        return eye.expand(*basis.shape[:-2], n, n).clone()
    return (basis * (svd.S ** (2 * a)).unsqueeze(-2)) @ basis.mT
