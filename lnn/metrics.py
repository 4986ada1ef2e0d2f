"""Metrics of end-to-end matrices and factorizations (chapters *Optimization* and *Implicit bias*)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._checks import check_factors, check_finite, check_floating, check_matrix, check_same_shape

__all__ = [
    "effective_rank",
    "balancedness_gaps",
    "balancedness",
    "schatten_norm",
    "nuclear_norm",
    "deficiency_margin",
]


def effective_rank(W: Tensor) -> Tensor:
    """Effective rank of Roy and Vetterli (2007):

    .. math:: \\operatorname{erank}(W) = \\exp\\Big(-\\sum_r p_r \\ln p_r\\Big), \\qquad p_r = \\sigma_r / \\|\\sigma\\|_1,

    with ``0 ln 0 = 0``. It lies between 1 and the rank and is continuous in ``W`` (chapter *Implicit bias*).
    Batched over leading dimensions. Raises :class:`ValueError` for a zero matrix, where it is undefined, and for
    NaN/inf entries; :class:`TypeError` for an integer tensor.

    The measure of low rank in :doc:`/book/03_implicit_bias`.

    Examples
    --------
    >>> import torch, lnn
    >>> round(float(lnn.effective_rank(torch.eye(3, dtype=torch.float64))), 6)
    3.0
    """
    check_matrix(W, "W")
    check_floating(W, "W")
    check_finite(W, "W")
    s = torch.linalg.svdvals(W)
    total = s.sum(-1, keepdim=True)
    if bool((total == 0).any()):
        raise ValueError("effective rank is undefined for a zero matrix")
    p = s / total
    entropy = -(torch.where(p > 0, p * torch.log(p), torch.zeros_like(p))).sum(-1)
    return torch.exp(entropy)


def balancedness_gaps(factors: Sequence[Tensor]) -> list[Tensor]:
    """The gaps ``D_j = W_{j+1}^T W_{j+1} - W_j W_j^T`` for ``j = 1..N-1`` (chapter *Optimization*).

    Gradient flow conserves every ``D_j``; a balanced network has all ``D_j = 0``.

    Conserved by :prf:ref:`thm-opt-conservation`.

    Examples
    --------
    >>> import torch, lnn
    >>> factors = lnn.balanced_factors(torch.eye(2, dtype=torch.float64), depth=3)
    >>> [float(D.abs().max()) for D in lnn.balancedness_gaps(factors)]
    [0.0, 0.0]
    """
    factors = check_factors(factors)
    return [factors[j + 1].mT @ factors[j + 1] - factors[j] @ factors[j].mT for j in range(len(factors) - 1)]


def balancedness(factors: Sequence[Tensor]) -> Tensor:
    """``max_j ||D_j||_F`` (the ``delta`` of delta-balancedness), per run; 0 for depth 1.

    The delta of :prf:ref:`def-opt-margin`.

    Examples
    --------
    >>> import torch, lnn
    >>> I = torch.eye(2, dtype=torch.float64)
    >>> round(float(lnn.balancedness([I, 2 * I])), 4)  # ||(2I)^T (2I) - I I^T||_F = 3 sqrt(2)
    4.2426
    """
    gaps = balancedness_gaps(factors)
    if not gaps:
        return torch.zeros(factors[0].shape[:-2], dtype=factors[0].dtype, device=factors[0].device)
    return torch.stack([torch.linalg.matrix_norm(D) for D in gaps], -1).amax(-1)


def schatten_norm(W: Tensor, p: float) -> Tensor:
    """Schatten ``p``-(quasi-)norm ``(sum_r sigma_r^p)^{1/p}``; ``p = 1`` nuclear, ``2`` Frobenius, ``inf`` spectral.

    The norms of :prf:ref:`ib-thm-norms`.

    Examples
    --------
    >>> import torch, lnn
    >>> W = torch.diag(torch.tensor([3.0, 4.0], dtype=torch.float64))
    >>> float(lnn.schatten_norm(W, 1)), float(lnn.schatten_norm(W, 2)), float(lnn.schatten_norm(W, float("inf")))
    (7.0, 5.0, 4.0)
    """
    check_matrix(W, "W")
    check_floating(W, "W")
    if not p > 0:
        raise ValueError(f"p must be positive, got {p}")
    s = torch.linalg.svdvals(W)
    if p == float("inf"):
        return s.amax(-1)
    return (s**p).sum(-1) ** (1.0 / p)


def nuclear_norm(W: Tensor) -> Tensor:
    """Nuclear norm ``||W||_* = sum_r sigma_r`` (batched).

    The norm of :prf:ref:`ib-conj-gunasekar`.

    Examples
    --------
    >>> import torch, lnn
    >>> float(lnn.nuclear_norm(torch.diag(torch.tensor([3.0, -4.0], dtype=torch.float64))))
    7.0
    """
    return schatten_norm(W, 1.0)


def deficiency_margin(W: Tensor, target: Tensor) -> Tensor:
    """Deficiency margin ``c = sigma_min(Phi) - ||W - Phi||_F`` of ``W`` with respect to the target ``Phi``
    (Arora, Cohen, Golowich, Hu 2019; chapter *Optimization*). Positive iff ``W`` is closer to ``Phi`` than every
    rank-deficient matrix is; then ``sigma_min(W(t)) >= c`` along gradient flow on ``(1/2)||W - Phi||_F^2``.

    Defined in :prf:ref:`def-opt-margin`.

    Examples
    --------
    >>> import torch, lnn
    >>> Phi = 2 * torch.eye(2, dtype=torch.float64)
    >>> float(lnn.deficiency_margin(1.5 * torch.eye(2, dtype=torch.float64), Phi)) > 0
    True
    """
    check_same_shape(W, target, "W", "target")
    return torch.linalg.svdvals(target)[..., -1] - torch.linalg.matrix_norm(W - target)
