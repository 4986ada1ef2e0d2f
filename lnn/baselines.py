"""Explicit baselines for the implicit bias of gradient descent (chapter *Implicit bias*).

Gradient descent on an underdetermined problem picks one of infinitely many solutions. The chapter compares that
pick with the solutions that explicit criteria would choose:

* :func:`min_norm_least_squares`: the minimum-Euclidean-norm interpolant ``X^+ y`` (linear regression);
* :func:`min_l1_nonnegative`: the nonnegative solution of least l1 norm (diagonal sensing; the nuclear norm of a
  diagonal PSD matrix is the l1 norm of its diagonal), by linear programming;
* :func:`zero_fill_completion`: what an unfactorized ("linear") model trained by gradient descent from zero returns
  in matrix or tensor completion: the observed entries, and zeros elsewhere.

The minimum-nuclear-norm completion lives in :func:`lnn.nuclear_norm_completion`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ._checks import check_matrix

__all__ = ["min_norm_least_squares", "min_l1_nonnegative", "zero_fill_completion"]


def min_norm_least_squares(X: Tensor, y: Tensor, *, rcond: float | None = None) -> Tensor:
    """The minimum-norm least-squares solution (chapter *Implicit bias*, linear regression):

    .. math:: w^\\star = X^+ y = \\operatorname{argmin}\\{\\|w\\|_2 : w \\in \\operatorname{argmin}_v \\|Xv - y\\|_2\\},

    which is the interpolant of least Euclidean norm when ``X`` (``m x d``, rows are examples) has full row rank.
    Gradient descent from zero on ``||Xw - y||^2`` converges to it.

    The solution of :prf:ref:`ib-thm-min-norm`.

    Parameters
    ----------
    X
        Design matrix of shape ``(m, d)``.
    y
        Targets of shape ``(m,)`` or ``(m, k)``.
    rcond
        Relative cutoff for small singular values (default: ``torch.linalg.pinv``'s).

    Returns
    -------
    Tensor of shape ``(d,)`` or ``(d, k)``.

    Examples
    --------
    >>> import torch
    >>> from lnn.baselines import min_norm_least_squares
    >>> w = min_norm_least_squares(torch.tensor([[1.0, 1.0]], dtype=torch.float64), torch.tensor([2.0], dtype=torch.float64))
    >>> [round(v, 12) for v in w.tolist()]
    [1.0, 1.0]
    """
    check_matrix(X, "X")
    if y.ndim not in (1, 2) or y.shape[0] != X.shape[0]:
        raise ValueError(f"y must have shape (m,) or (m, k) with m = {X.shape[0]} rows of X, got {tuple(y.shape)}")
    pinv = torch.linalg.pinv(X) if rcond is None else torch.linalg.pinv(X, rtol=rcond)
    return pinv @ y


def min_l1_nonnegative(A: Tensor, y: Tensor) -> Tensor:
    """The nonnegative solution of least l1 norm (chapter *Implicit bias*, diagonal networks):

    .. math:: \\min_x \\ \\textstyle\\sum_i x_i \\quad \\text{s.t.}\\quad A x = y,\\ x \\ge 0,

    solved as a linear program with ``scipy.optimize.linprog`` (HiGHS). For diagonal measurement matrices
    ``diag(a_i)`` it is the minimum-nuclear-norm PSD diagonal solution, the limit that gradient descent on a deep
    diagonal network approaches as the initialization scale goes to zero.

    The baseline of :prf:ref:`ib-thm-commuting`.

    Parameters
    ----------
    A
        Measurement matrix of shape ``(m, n)``.
    y
        Measurements of shape ``(m,)``.

    Returns
    -------
    Tensor of shape ``(n,)`` with ``A``'s dtype.

    Raises
    ------
    ValueError
        Bad shapes, or a linear program without a nonnegative solution.

    Examples
    --------
    >>> import torch
    >>> from lnn.baselines import min_l1_nonnegative
    >>> A = torch.tensor([[1.0, 1.0, 2.0]], dtype=torch.float64)
    >>> min_l1_nonnegative(A, torch.tensor([2.0], dtype=torch.float64)).tolist()  # the cheapest way to reach 2
    [0.0, 0.0, 1.0]
    """
    from scipy.optimize import linprog

    check_matrix(A, "A")
    if A.ndim != 2 or y.shape != (A.shape[0],):
        raise ValueError(f"A must have shape (m, n) and y shape (m,), got {tuple(A.shape)} and {tuple(y.shape)}")
    A_np = A.detach().cpu().to(torch.float64).numpy()
    y_np = y.detach().cpu().to(torch.float64).numpy()
    result = linprog(np.ones(A_np.shape[1]), A_eq=A_np, b_eq=y_np, bounds=(0, None), method="highs")
    if result.status != 0:
        raise ValueError(f"no nonnegative solution of A x = y found: {result.message}")
    return torch.as_tensor(result.x, dtype=A.dtype, device=A.device)


def zero_fill_completion(target: Tensor, mask: Tensor) -> Tensor:
    """The completion of an unfactorized model trained by gradient descent from zero (chapter *Implicit bias*):

    .. math:: W_{i} = T_{i} \\ (i \\in \\Omega), \\qquad W_{i} = 0 \\ (i \\notin \\Omega).

    The gradient of ``sum_{i in Omega} (W_i - T_i)^2`` vanishes off ``Omega``, so unobserved entries never move from
    their initial value; the relative error is ``||T_{not Omega}|| / ||T||``. Works for matrices and tensors.

    The trivial baseline of :doc:`/book/03_implicit_bias`.

    Examples
    --------
    >>> import torch
    >>> from lnn.baselines import zero_fill_completion
    >>> zero_fill_completion(torch.ones(2, 2), torch.eye(2, dtype=torch.bool)).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    if target.shape != mask.shape:
        raise ValueError(f"target and mask must have the same shape, got {tuple(target.shape)} and {tuple(mask.shape)}")
    return torch.where(mask.to(torch.bool), target, torch.zeros_like(target))
