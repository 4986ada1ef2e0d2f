"""l_p regression bookkeeping for the acceleration-by-depth experiment (chapter *Optimization*).

Arora, Cohen and Hazan (2018) compare how many gradient-descent iterations networks of depth ``N = 1, 2, 3`` need
to bring an l_p regression loss close to its minimum, with the step size tuned separately for each depth. This
module holds the pieces of that measurement that are not dynamics:

* :func:`lp_regression_minimum`: the minimum ``ell*`` of the convex l_p loss, by damped Newton's method;
* :func:`relative_excess_loss` and :func:`iterations_to_target`: the normalized optimality gap
  ``(ell_t - ell*) / (ell_0 - ell*)`` and the first iteration at which it falls below a target;
* :func:`best_over_step_sizes`: the best step size of a sweep, flagging a best value at the edge of the grid;
* :class:`DivergenceGuard` (defined in :mod:`lnn.tasks`, re-exported): an objective wrapper that freezes runs whose loss explodes, so one batched call of
  :func:`lnn.gradient_descent` can sweep step sizes that include unstable ones.

The loss is the one of :class:`lnn.LpRegression`, ``ell(W) = (c/p) sum_{i,k} |(X W^T - Y)_{ik}|^p``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ._checks import check_matrix, check_positive
from .tasks import DivergenceGuard as DivergenceGuard  # it lives with the objectives; re-exported here
from .tasks import LpRegression

__all__ = [
    "lp_regression_minimum",
    "relative_excess_loss",
    "iterations_to_target",
    "best_over_step_sizes",
]  # DivergenceGuard (lnn.tasks) stays importable from here


def lp_regression_minimum(
    X: Tensor,
    Y: Tensor,
    p: float,
    reduction: str = "mean",
    *,
    tol: float = 1e-15,
    max_iter: int = 200,
) -> tuple[Tensor, Tensor]:
    """Minimizer and minimum of the l_p regression loss, by Newton's method with backtracking.

    The loss of :class:`lnn.LpRegression`,

    .. math:: \\ell(W) = \\frac{c}{p} \\sum_{i,k} |r_{ik}|^p, \\qquad R = X W^\\top - Y,

    separates over the output columns ``k``; for each, the gradient is ``c X^T (|r|^{p-1} sign r)`` and the Hessian
    ``c (p-1) X^T diag(|r|^{p-2}) X``. Starting from the least-squares solution (the exact minimizer for ``p = 2``),
    each iteration takes the Newton step, halved until the loss does not increase (Armijo backtracking), and stops
    once the Newton decrement ``g^T H^+ g / 2`` falls below ``tol * max(ell, tiny)``. Chapter *Optimization* uses
    ``ell*`` to normalize the optimality gap in the acceleration-by-depth experiment.

    The reference minimum of :ref:`Acceleration by depth: ℓp regression <opt-acceleration>`.

    Parameters
    ----------
    X
        Inputs, shape ``(m, d_in)``; rows are examples.
    Y
        Targets, shape ``(m,)`` or ``(m, d_out)``.
    p
        Exponent ``p >= 2`` (the Hessian of ``|r|^p`` is unbounded at ``r = 0`` for ``p < 2``).
    reduction
        As in :class:`lnn.LpRegression`: ``"mean"`` (``c = 1/(m d_out)``), ``"sum"`` or ``"half_sum"``.
    tol, max_iter
        Relative stopping tolerance on the Newton decrement and the iteration cap.

    Returns
    -------
    (W_star, loss_star)
        ``W_star`` of shape ``(d_out, d_in)`` and the scalar tensor ``ell(W_star)``.

    Raises
    ------
    ValueError
        ``p < 2``, shapes that do not match, or no convergence within ``max_iter`` iterations.

    Examples
    --------
    >>> import torch
    >>> from lnn.regression import lp_regression_minimum
    >>> X = torch.tensor([[1.0], [1.0]], dtype=torch.float64); Y = torch.tensor([0.0, 2.0], dtype=torch.float64)
    >>> W, loss = lp_regression_minimum(X, Y, p=4)
    >>> round(W.item(), 12), round(loss.item(), 12)
    (1.0, 0.25)
    """
    check_matrix(X, "X")
    if X.ndim != 2:
        raise ValueError(f"X must be one (m, d_in) matrix, got shape {tuple(X.shape)}")
    if not float(p) >= 2.0:
        raise ValueError(f"Newton's method needs p >= 2 (the loss must be twice differentiable), got p={p}")
    check_positive(tol, "tol")
    objective = LpRegression(X, Y, p=p, reduction=reduction)
    Y2 = objective.Y
    if Y2.ndim != 2:
        raise ValueError(f"Y must have shape (m,) or (m, d_out), got {tuple(Y.shape)}")
    c, p = objective.c, float(p)
    W = torch.linalg.lstsq(X, Y2).solution.mT.contiguous()  # (d_out, d_in), exact for p = 2
    tiny = torch.finfo(X.dtype).tiny
    for _ in range(max_iter):
        value, G = objective.value_and_grad(W)
        R = objective.residual(W)  # (m, d_out)
        weights = c * (p - 1) * R.abs() ** (p - 2)  # (m, d_out)
        H = torch.einsum("ik,ia,ib->kab", weights, X, X)  # one Hessian per output column
        step = (torch.linalg.pinv(H, hermitian=True) @ G.unsqueeze(-1)).squeeze(-1)  # (d_out, d_in)
        decrement = float((G * step).sum()) / 2
        if decrement <= tol * max(float(value), tiny):
            return W, objective(W)
        t = 1.0
        while True:
            candidate = W - t * step
            if float(objective(candidate)) <= float(value) or t < 1e-12:
                break
            t /= 2
        W = candidate
    raise ValueError(f"Newton's method did not converge in {max_iter} iterations (p={p}); raise max_iter")


def relative_excess_loss(losses: Tensor, loss_star: Tensor | float) -> Tensor:
    """The normalized optimality gap ``(ell_t - ell*) / (ell_0 - ell*)`` of every run at every step.

    ``losses`` has shape ``(steps + 1, *batch)`` as in :attr:`lnn.Trajectory.losses`; each run is normalized by its
    own initial gap, so runs started at different points are compared by the fraction of the gap they closed
    (chapter *Optimization*).

    The measure of :ref:`Acceleration by depth: ℓp regression <opt-acceleration>`.

    Examples
    --------
    >>> import torch
    >>> from lnn.regression import relative_excess_loss
    >>> relative_excess_loss(torch.tensor([3.0, 2.0, 1.5]), 1.0).tolist()
    [1.0, 0.5, 0.25]
    """
    if not isinstance(losses, Tensor) or losses.ndim < 1:
        raise ValueError("losses must be a tensor of shape (steps + 1, *batch)")
    gap0 = losses[0] - loss_star
    if bool((gap0 <= 0).any()):
        raise ValueError("every run must start above the minimum (ell_0 > ell*) for the gap to be normalized")
    return (losses - loss_star) / gap0


def iterations_to_target(
    losses: Tensor, loss_star: Tensor | float, target: float = 1e-4, *, stay: bool = False
) -> Tensor:
    """First iteration at which the normalized gap ``(ell_t - ell*) / (ell_0 - ell*)`` is below ``target``, per
    run; ``-1`` if never.

    With ``stay=True`` the count is the first iteration from which the gap *stays* below ``target`` until the end
    of the run, so a run that dips below the target and then spikes back up (a step size at the edge of
    stability) is charged for the spike. The metric of the acceleration-by-depth table in chapter *Optimization*
    (after Arora, Cohen and Hazan 2018). Non-finite losses (runs frozen by :class:`DivergenceGuard`) never count
    as reaching the target.

    The count of :ref:`Acceleration by depth: ℓp regression <opt-acceleration>`.

    Examples
    --------
    >>> import torch
    >>> from lnn.regression import iterations_to_target
    >>> int(iterations_to_target(torch.tensor([3.0, 2.0, 1.5, 1.1]), 1.0, target=0.2))
    3
    """
    check_positive(target, "target")
    rel = relative_excess_loss(losses, loss_star)
    below = torch.isfinite(rel) & (rel < target)
    never = torch.full(below.shape[1:], -1, dtype=torch.int64, device=below.device)
    if not stay:
        first = below.to(torch.int64).argmax(0)
        return torch.where(below.any(0), first, never)
    steps = torch.arange(below.shape[0], device=below.device).reshape(-1, *([1] * (below.ndim - 1)))
    last_above = torch.where(below, -1, steps).amax(0)  # -1 when the run is below the target throughout
    first = last_above + 1
    return torch.where(first < below.shape[0], first, never)


def best_over_step_sizes(iterations: Tensor, step_sizes: Tensor | Sequence[float], dim: int = 0):
    """The best step size of a sweep: fewest iterations along ``dim``, where ``-1`` (never reached) counts as worst.

    Returns ``(best_iterations, best_step_size, at_edge)``: ``best_iterations`` is ``-1`` where no step size
    reached the target (then ``best_step_size`` is NaN); ``at_edge`` is True where the best step size is the
    smallest or the largest of the grid, a sign that the grid should be widened before trusting the comparison.
    Ties go to the smaller step size. Chapter *Optimization* tunes the step size per depth this way.

    The tuning of :ref:`Acceleration by depth: ℓp regression <opt-acceleration>`.

    Examples
    --------
    >>> import torch
    >>> from lnn.regression import best_over_step_sizes
    >>> iterations = torch.tensor([[40, 30], [20, -1], [25, 10], [-1, -1]])  # 4 step sizes x 2 depths
    >>> best, lr, at_edge = best_over_step_sizes(iterations, [0.1, 0.2, 0.4, 0.8])
    >>> best.tolist(), lr.tolist(), at_edge.tolist()
    ([20, 10], [0.2, 0.4], [False, False])
    """
    if not isinstance(iterations, Tensor):
        raise ValueError("iterations must be a tensor (as returned by iterations_to_target)")
    lrs = torch.as_tensor(step_sizes, dtype=torch.float64)
    dim = dim % iterations.ndim
    n = iterations.shape[dim]
    if lrs.ndim != 1 or lrs.numel() != n:
        raise ValueError(f"step_sizes must list the {n} step sizes along dim {dim}, got shape {tuple(lrs.shape)}")
    never = iterations < 0
    big = torch.iinfo(torch.int64).max
    score = torch.where(never, torch.full_like(iterations, big), iterations)
    best = score.min(dim)
    found = best.values < big
    best_iter = torch.where(found, best.values, torch.full_like(best.values, -1))
    best_lr = torch.where(found, lrs[best.indices], torch.full(best.indices.shape, math.nan, dtype=torch.float64))
    at_edge = found & ((best.indices == 0) | (best.indices == n - 1))
    return best_iter, best_lr, at_edge
