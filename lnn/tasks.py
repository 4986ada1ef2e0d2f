"""Objectives (losses of the end-to-end matrix) and synthetic tasks.

Every objective maps an end-to-end matrix or tensor ``W`` of shape ``(..., *target_shape)`` to per-run losses of
shape ``(...)`` and gives the gradient in closed form (``value_and_grad``), so the training loop in
:mod:`lnn.dynamics` never builds an autograd graph. Loss normalizations differ between papers, so each objective
takes an explicit ``reduction`` that scales the sum of per-entry losses ``e_i``:

* ``"mean"``: ``(1/m) * sum_i e_i`` over the ``m`` measurements or observed entries (Arora et al. 2019);
* ``"sum"``: ``sum_i e_i``;
* ``"half_sum"``: ``(1/2) * sum_i e_i`` (Razin & Cohen 2020; kernel gradient descent).

The per-entry loss is ``e_i = r_i^2`` for sensing and completion, and ``e_i = |r_i|^p / p`` for
:class:`LpRegression` (the convention of the l_p experiments). So for ``p = 2`` regression, ``"sum"`` already gives
``(1/2) sum_i r_i^2``; use it, not ``"half_sum"`` (which gives ``(1/4) sum_i r_i^2``), for the usual least squares.

Chapters *Optimization* (regression) and *Implicit bias* (sensing, completion, tensors) use them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ._checks import (
    check_compatible,
    check_finite,
    check_floating,
    check_int,
    check_matrix,
    check_nonnegative_int,
    check_positive,
    check_tensor,
)

__all__ = [
    "Objective",
    "LpRegression",
    "MatrixSensing",
    "Completion",
    "diagonal_sensing",
    "low_rank_matrix",
    "random_mask",
    "nuclear_norm_completion",
    "singular_value_threshold",
    "DivergenceGuard",
    "as_value_and_grad",
]

_REDUCTIONS = ("mean", "sum", "half_sum")


def _scale(reduction: str, count: int) -> float:
    if reduction == "mean":
        return 1.0 / count
    if reduction == "sum":
        return 1.0
    if reduction == "half_sum":
        return 0.5
    raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


class Objective:
    """A convex loss ``ell(W)`` of the end-to-end matrix (or tensor) with a closed-form gradient.

    Subclasses implement :meth:`value_and_grad`; calling the objective returns the per-run values. The trailing
    ``len(target_shape)`` dimensions of ``W`` are the matrix/tensor, leading ones are batch dimensions.

    The objective is the checked interface between the data and the parameters: its constructor checks the data
    (tensors of one floating dtype and device, finite), and :meth:`check_input` checks a ``W`` against it (shape,
    dtype, device), which :func:`lnn.gradient_descent` does once before the first step.

    The loss ell of the overparameterized objective, :prf:ref:`prelim-def-lnn`.

    Examples
    --------
    >>> import torch, lnn
    >>> loss = lnn.LpRegression(torch.eye(2, dtype=torch.float64), torch.ones(2, 1, dtype=torch.float64))
    >>> isinstance(loss, lnn.Objective), loss.target_shape
    (True, (1, 2))
    """

    target_shape: tuple[int, ...]
    #: A tensor of the objective's data whose dtype and device ``W`` must share (set by subclasses).
    data: Tensor | None = None

    def value_and_grad(self, W: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, W: Tensor) -> Tensor:
        return self.value_and_grad(W)[0]

    def grad(self, W: Tensor) -> Tensor:
        """``nabla ell(W)``, same shape as ``W``."""
        return self.value_and_grad(W)[1]

    def check_input(self, W: Tensor, name: str = "W") -> None:
        """Raise :class:`TypeError` unless ``W`` is a tensor of the data's dtype and device, and
        :class:`ValueError` unless its trailing shape is ``target_shape``; the messages name both sides."""
        what = type(self).__name__
        check_tensor(W, name)
        k = len(self.target_shape)
        if W.ndim < k or tuple(W.shape[W.ndim - k :]) != tuple(self.target_shape):
            raise ValueError(
                f"{what} expects W of shape (..., {self.target_shape}), got {name} of shape {tuple(W.shape)}"
            )
        if self.data is not None:
            if W.dtype != self.data.dtype:
                raise TypeError(
                    f"{name} is {W.dtype} but the data of {what} is {self.data.dtype}; they must share a dtype "
                    f"(convert the parameters or build the objective from data of dtype {W.dtype})"
                )
            if W.device != self.data.device:
                raise TypeError(
                    f"{name} is on device {W.device} but the data of {what} is on {self.data.device}; "
                    "move one of them (tensor.to(device))"
                )

    _check_input = check_input


class LpRegression(Objective):
    """Linear regression with the l_p loss, for ``W`` of shape ``(..., d_out, d_in)``:

    .. math:: \\ell(W) = \\frac{c}{p} \\sum_{i,k} |(X W^\\top - Y)_{ik}|^p,

    with ``c = 1/(m d_out)`` for ``reduction="mean"`` (the mean of ``|r|^p / p``, chapter *Optimization*,
    acceleration by depth) and ``c = 1`` for ``"sum"``; ``"half_sum"`` gives ``c = 1/2`` (then
    ``(1/(2p)) sum |r|^p``). Rows of ``X`` (``m x d_in``) and ``Y`` (``m x d_out``) are examples.

    The task of :ref:`Acceleration by depth: ℓp regression <opt-acceleration>`.

    Examples
    --------
    >>> import torch, lnn
    >>> X, Y = torch.eye(2, dtype=torch.float64), torch.ones(2, 1, dtype=torch.float64)
    >>> value, G = lnn.LpRegression(X, Y, p=2, reduction="sum").value_and_grad(torch.zeros(1, 2, dtype=torch.float64))
    >>> float(value), G.tolist()
    (1.0, [[-1.0, -1.0]])
    """

    def __init__(self, X: Tensor, Y: Tensor, p: float = 2.0, reduction: str = "mean"):
        check_matrix(X, "X")
        check_floating(X, "X")
        check_tensor(Y, "Y")
        if Y.ndim == 1:
            Y = Y.unsqueeze(-1)
        check_matrix(Y, "Y")
        check_compatible(Y, X, "Y", "X")
        if X.ndim != 2 or Y.ndim != 2:
            raise ValueError(f"X and Y must be matrices (m, d_in) and (m, d_out), got {tuple(X.shape)} and {tuple(Y.shape)}")
        if X.shape[0] != Y.shape[0]:
            raise ValueError(f"X and Y must have the same number of rows (examples), got {X.shape[0]} and {Y.shape[0]}")
        if not p >= 1:
            raise ValueError(f"p must be >= 1 for a convex l_p loss, got {p}")
        check_finite(X, "X")
        check_finite(Y, "Y")
        self.X, self.Y, self.p = X, Y, float(p)
        self.data = X
        self.c = _scale(reduction, Y.numel())
        self.reduction = reduction
        self.target_shape = (Y.shape[1], X.shape[1])

    def residual(self, W: Tensor) -> Tensor:
        """``X W^T - Y``, shape ``(..., m, d_out)``."""
        return self.X @ W.mT - self.Y

    def value_and_grad(self, W: Tensor) -> tuple[Tensor, Tensor]:
        self._check_input(W)
        R = self.residual(W)
        absR = R.abs()
        if self.p == 2.0:
            value = self.c / 2 * (R * R).sum((-2, -1))
            dR = self.c * R
        elif self.p == 4.0:  # the l_4 experiments: multiplications are cheaper than pow
            R2 = R * R
            value = self.c / 4 * (R2 * R2).sum((-2, -1))
            dR = self.c * R2 * R
        else:
            value = self.c / self.p * (absR**self.p).sum((-2, -1))
            dR = self.c * absR ** (self.p - 1) * torch.sign(R)
        return value, dR.mT @ self.X


class MatrixSensing(Objective):
    """Matrix sensing ``ell(W) = c * sum_i (<A_i, W> - y_i)^2`` with measurement matrices ``A`` of shape
    ``(m, d_out, d_in)`` and ``c`` given by ``reduction`` (chapter *Implicit bias*).

    Defined in :prf:ref:`ib-def-dmf`.

    Examples
    --------
    >>> import torch, lnn
    >>> A = torch.eye(4, dtype=torch.float64).reshape(4, 2, 2)  # the four entries of a 2 x 2 matrix
    >>> sensing = lnn.MatrixSensing(A, torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64))
    >>> float(sensing(torch.eye(2, dtype=torch.float64)))
    0.0
    """

    def __init__(self, A: Tensor, y: Tensor, reduction: str = "mean"):
        check_floating(A, "A")
        check_tensor(y, "y")
        check_compatible(y, A, "y", "A")
        if A.ndim != 3:
            raise ValueError(f"A must have shape (m, d_out, d_in), got {tuple(A.shape)}")
        if y.shape != A.shape[:1]:
            raise ValueError(f"y must have shape (m,) = ({A.shape[0]},), got {tuple(y.shape)}")
        check_finite(A, "A")
        check_finite(y, "y")
        self.A, self.y = A, y
        self.data = A
        self._A_flat = A.reshape(A.shape[0], -1)
        self.c = _scale(reduction, A.shape[0])
        self.reduction = reduction
        self.target_shape = tuple(A.shape[1:])

    def measure(self, W: Tensor) -> Tensor:
        """The measurements ``<A_i, W>``, shape ``(..., m)``."""
        return W.reshape(*W.shape[:-2], -1) @ self._A_flat.T

    def value_and_grad(self, W: Tensor) -> tuple[Tensor, Tensor]:
        self._check_input(W)
        r = self.measure(W) - self.y
        value = self.c * (r * r).sum(-1)
        G = (2 * self.c * r) @ self._A_flat
        return value, G.reshape(W.shape)


def diagonal_sensing(a: Tensor, y: Tensor, reduction: str = "mean") -> MatrixSensing:
    """Sensing with diagonal measurement matrices ``A_i = diag(a_i)`` (``a`` of shape ``(m, n)``): they commute, so
    gradient descent from a diagonal initialization stays diagonal and the end-to-end diagonal ``x`` obeys the
    diagonal-network dynamics of chapter *Implicit bias* (nuclear norm = l1 norm on ``x >= 0``).

    The reduction of :prf:ref:`ib-prop-diagonal`.

    Examples
    --------
    >>> import torch, lnn
    >>> task = lnn.diagonal_sensing(torch.ones(3, 2, dtype=torch.float64), torch.ones(3, dtype=torch.float64))
    >>> task.target_shape
    (2, 2)
    """
    check_floating(a, "a")
    if a.ndim != 2:
        raise ValueError(f"a must have shape (m, n), got {tuple(a.shape)}")
    return MatrixSensing(torch.diag_embed(a), y, reduction)


class Completion(Objective):
    """Matrix or tensor completion: ``ell(W) = c * sum_{(i..) in Omega} (W - T)_{i..}^2`` (chapter *Implicit bias*).

    ``mask`` (bool, shape of ``target``) marks the observed entries ``Omega``; ``reduction="mean"`` divides by
    ``|Omega|``. A mask with leading dimensions, shape ``(*runs, *target.shape)``, gives each run its own
    ``Omega_r`` (and, with ``"mean"``, its own ``c = 1 / |Omega_r|``): runs batched over those dimensions then see
    different observations of the same target. :meth:`test_error` and :meth:`relative_error` measure the fit on all
    entries.

    Defined in :prf:ref:`ib-def-dmf` (matrices) and :prf:ref:`ib-def-cp` (tensors).

    Examples
    --------
    >>> import torch, lnn
    >>> target = torch.arange(4.0, dtype=torch.float64).reshape(2, 2)
    >>> task = lnn.Completion(target, torch.tensor([[True, False], [False, True]]))
    >>> task.num_observed, float(task(target)), float(task.test_error(torch.zeros(2, 2, dtype=torch.float64)))
    (2, 0.0, 3.5)
    >>> two = lnn.Completion(target, torch.tensor([[[True, False], [False, True]], [[True, True], [True, True]]]))
    >>> two.num_observed.tolist(), two(torch.zeros(2, 2, 2, dtype=torch.float64)).tolist()  # one loss per run
    ([2, 4], [4.5, 3.5])
    """

    def __init__(self, target: Tensor, mask: Tensor, reduction: str = "mean"):
        check_floating(target, "target")
        check_tensor(mask, "mask")
        if mask.device != target.device:
            raise TypeError(f"mask is on device {mask.device} but target is on {target.device}; move one of them")
        if target.ndim < 2:
            raise ValueError(f"target must be a matrix or a tensor of order >= 2, got shape {tuple(target.shape)}")
        if mask.ndim < target.ndim or mask.shape[mask.ndim - target.ndim :] != target.shape:
            raise ValueError(
                f"mask must have the shape of target, {tuple(target.shape)}, or one such mask per run, "
                f"(*runs, {', '.join(map(str, target.shape))}); got {tuple(mask.shape)}"
            )
        mask = mask.to(torch.bool)
        self._dims = tuple(range(-target.ndim, 0))
        counts = mask.sum(self._dims)
        if bool((counts == 0).any()):
            raise ValueError("mask observes no entry" + ("" if mask.ndim == target.ndim else " in some run"))
        check_finite(target, "target")
        self.target, self.mask = target, mask
        self.data = target
        self._weights = mask.to(target.dtype)
        self._observed = target * self._weights
        if mask.ndim == target.ndim:
            self.num_observed = int(counts)
            self.c = _scale(reduction, self.num_observed)
        else:  # one c per run, broadcast against the run dimensions of the loss
            self.num_observed = counts
            self.c = 1.0 / counts.to(target.dtype) if reduction == "mean" else _scale(reduction, 1)
        # c broadcast against the loss's run dimensions and the entries, computed once
        self._c = self.c.reshape(self.c.shape + (1,) * target.ndim) if isinstance(self.c, Tensor) else self.c
        self.reduction = reduction
        self.target_shape = tuple(target.shape)

    def value_and_grad(self, W: Tensor) -> tuple[Tensor, Tensor]:
        self._check_input(W)
        R = torch.addcmul(-self._observed, W, self._weights)  # mask * (W - T), in one kernel
        if isinstance(self._c, Tensor):  # one c per run
            return (self._c * (R * R)).sum(self._dims), (2 * self._c) * R
        return self._c * (R * R).sum(self._dims), (2 * self._c) * R

    def test_error(self, W: Tensor) -> Tensor:
        """Mean squared error over all entries, ``mean (W - T)^2`` (per run)."""
        return ((W - self.target) ** 2).mean(self._dims)

    def relative_error(self, W: Tensor) -> Tensor:
        """``||W - T||_F / ||T||_F`` over all entries (per run)."""
        return torch.linalg.vector_norm(W - self.target, dim=self._dims) / torch.linalg.vector_norm(self.target)


def low_rank_matrix(
    rows: int,
    cols: int,
    rank: int,
    *,
    frobenius_norm: float | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """A random rank-``rank`` matrix ``U V^T / sqrt(rank)`` with Gaussian ``U, V``, rescaled to Frobenius norm
    ``frobenius_norm`` (default ``sqrt(rows * cols)``, i.e. entries of root-mean-square 1, as in Arora et al. 2019).

    The targets of :prf:ref:`ib-def-dmf`.

    Examples
    --------
    >>> import torch, lnn
    >>> M = lnn.low_rank_matrix(6, 5, 2, generator=torch.Generator().manual_seed(0))
    >>> int(torch.linalg.matrix_rank(M)), round(float(torch.linalg.matrix_norm(M)) ** 2, 6)
    (2, 30.0)
    """
    rows, cols = check_int(rows, "rows", 1), check_int(cols, "cols", 1)
    rank = check_int(rank, "rank", 1)
    if not 1 <= rank <= min(rows, cols):
        raise ValueError(f"rank must be between 1 and min(rows, cols) = {min(rows, cols)}, got {rank}")
    if device is None and generator is not None:
        device = generator.device
    U = torch.randn(rows, rank, generator=generator, dtype=dtype, device=device)
    V = torch.randn(cols, rank, generator=generator, dtype=dtype, device=device)
    M = U @ V.T / math.sqrt(rank)
    target = math.sqrt(rows * cols) if frobenius_norm is None else frobenius_norm
    return M * (target / torch.linalg.matrix_norm(M))


def random_mask(
    shape: Sequence[int],
    num_observed: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """A boolean mask of ``shape`` with exactly ``num_observed`` entries set, chosen uniformly without replacement.

    The observed entries of :prf:ref:`ib-def-dmf`.

    Examples
    --------
    >>> import torch, lnn
    >>> int(lnn.random_mask((4, 5), 7, generator=torch.Generator().manual_seed(0)).sum())
    7
    """
    shape = tuple(check_int(s, "every dimension of shape", 1) for s in shape)
    total = math.prod(shape)
    num_observed = check_int(num_observed, "num_observed", 1)
    if not 1 <= num_observed <= total:
        raise ValueError(f"num_observed must be between 1 and {total}, got {num_observed}")
    if device is None and generator is not None:
        device = generator.device
    idx = torch.randperm(total, generator=generator, device=device)[:num_observed]
    mask = torch.zeros(total, dtype=torch.bool, device=device)
    mask[idx] = True
    return mask.reshape(shape)


def singular_value_threshold(M: Tensor, tau: float) -> Tensor:
    """The proximal operator of ``tau ||.||_*``: ``U diag(max(s - tau, 0)) V^T``.

    The proximal step behind :prf:ref:`ib-conj-gunasekar`'s baseline.

    Examples
    --------
    >>> import torch, lnn
    >>> lnn.singular_value_threshold(torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64)), 2.0).diagonal().tolist()
    [1.0, 0.0]
    """
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)
    return (U * (S - tau).clamp_min(0).unsqueeze(-2)) @ Vh


def nuclear_norm_completion(
    target: Tensor,
    mask: Tensor,
    *,
    rho: float = 0.2,
    iterations: int = 3000,
    tol: float | None = None,
) -> Tensor:
    """The minimum-nuclear-norm completion ``argmin ||X||_*`` subject to ``X_Omega = T_Omega``, by ADMM
    (chapter *Implicit bias*, the baseline of deep matrix completion).

    Splitting ``X = Z`` with ``Z`` feasible, each iteration does
    ``X <- SVT_{1/rho}(Z - U)``; ``Z <- X + U`` with the observed entries reset to ``T``; ``U <- U + X - Z``.
    Returns ``Z``, which is exactly feasible; ``rho`` in ``[0.05, 1]`` converges on the book's problems.
    ``iterations`` is the maximum; with ``tol``, iteration stops once the splitting residual ``||X - Z||_F`` and the
    change of ``Z`` over the iteration are both below ``tol * ||T_Omega||_F`` (checked every 25 iterations).

    The baseline of :prf:ref:`ib-conj-gunasekar`.

    Examples
    --------
    >>> import torch, lnn
    >>> target = torch.ones(3, 3, dtype=torch.float64)  # rank one
    >>> mask = torch.ones(3, 3, dtype=torch.bool); mask[0, 0] = False
    >>> round(float(lnn.nuclear_norm_completion(target, mask, iterations=500)[0, 0]), 3)
    1.0
    """
    check_positive(rho, "rho")
    check_nonnegative_int(iterations, "iterations")
    if target.shape != mask.shape or target.ndim != 2:
        raise ValueError(f"target and mask must be matrices of one shape, got {tuple(target.shape)}, {tuple(mask.shape)}")
    mask = mask.to(torch.bool)
    Z = torch.where(mask, target, torch.zeros_like(target))
    U = torch.zeros_like(target)
    scale = float(torch.linalg.matrix_norm(Z))
    for it in range(iterations):
        X = singular_value_threshold(Z - U, 1.0 / rho)
        Z_old = Z
        Z = torch.where(mask, target, X + U)
        U = U + X - Z
        if tol is not None and it % 25 == 24:
            primal = float(torch.linalg.matrix_norm(X - Z))
            change = float(torch.linalg.matrix_norm(Z - Z_old))
            if max(primal, change) <= tol * scale:
                break
    return Z


class DivergenceGuard(Objective):
    """Wrap an objective so that runs whose loss exceeds ``ceiling`` (or is not finite) stop moving.

    For such a run the wrapper returns a zero gradient, so gradient descent leaves its parameters where they are,
    and reports its loss with NaN and infinities replaced by the largest float (so the driver of
    :func:`lnn.gradient_descent`, which raises on a non-finite loss, carries on). Runs that stay below the ceiling
    see exactly the wrapped objective. This lets one batched call sweep a grid of step sizes whose largest members
    diverge (chapter *Optimization*, acceleration by depth; re-exported by :mod:`lnn.regression`); the frozen runs never reach a target.

    Used in :ref:`Acceleration by depth: ℓp regression <opt-acceleration>`.

    Parameters
    ----------
    objective
        Any :class:`lnn.tasks.Objective`.
    ceiling
        A positive loss value that no converging run reaches, e.g. ``1e3`` times the largest initial loss.

    Examples
    --------
    >>> import torch, lnn
    >>> loss = lnn.DivergenceGuard(lambda_loss := lnn.LpRegression(torch.eye(1, dtype=torch.float64),
    ...                            torch.zeros(1, 1, dtype=torch.float64)), ceiling=1.0)
    >>> value, G = loss.value_and_grad(torch.full((1, 1), 10.0, dtype=torch.float64))  # loss 50 > ceiling: frozen
    >>> float(value), float(G.abs().max())
    (50.0, 0.0)
    """

    def __init__(self, objective: Objective, ceiling: float):
        if not hasattr(objective, "value_and_grad"):
            raise ValueError(f"objective must provide value_and_grad, got {type(objective).__name__}")
        self.objective = objective
        self.ceiling = check_positive(ceiling, "ceiling")
        self.target_shape = objective.target_shape
        self.data = getattr(objective, "data", None)

    def value_and_grad(self, W: Tensor) -> tuple[Tensor, Tensor]:
        value, G = self.objective.value_and_grad(W)
        alive = torch.isfinite(value) & (value <= self.ceiling)
        big = torch.finfo(value.dtype).max
        value = torch.nan_to_num(value, nan=big, posinf=big, neginf=big)
        mask = alive.reshape(*alive.shape, *([1] * (G.ndim - alive.ndim)))
        G = torch.where(mask, G, torch.zeros_like(G))
        return value, G


def as_value_and_grad(loss: Callable[[Tensor], Tensor]) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """Wrap a loss as ``W -> (value, nabla ell(W))``: an :class:`Objective` gives its closed-form gradient; any
    other callable is differentiated with autograd (the gradient of the sum of its values, which is each run's own
    gradient since runs are independent).

    The gradient G that every update of :prf:ref:`prelim-lem-gradient` starts from.

    Examples
    --------
    >>> import torch, lnn
    >>> value_and_grad = lnn.as_value_and_grad(lambda W: 0.5 * (W**2).sum((-2, -1)))
    >>> value, G = value_and_grad(torch.ones(2, 2, dtype=torch.float64))
    >>> float(value), G.tolist()
    (2.0, [[1.0, 1.0], [1.0, 1.0]])
    """
    if hasattr(loss, "value_and_grad"):
        return loss.value_and_grad  # type: ignore[return-value]
    if not callable(loss):
        raise TypeError(f"loss must be an Objective or a callable W -> loss, got {type(loss).__name__}")

    def value_and_grad(W: Tensor) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            Wr = W.detach().requires_grad_(True)
            value = loss(Wr)
            if not isinstance(value, Tensor):
                raise TypeError(f"loss must return a tensor, got {type(value).__name__}")
            (G,) = torch.autograd.grad(value.sum(), Wr)
        return value.detach(), G

    return value_and_grad
