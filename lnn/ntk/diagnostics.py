"""Kernel diagnostics of Ortiz-Jimenez, Moosavi-Dezfooli and Frossard (2021) and the closed-form predictions of
gradient descent on the linearized model (kernel regression), chapter *Linearized networks*."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "kernel_alignment",
    "kernel_eigh",
    "energy_concentration",
    "eigenfunction_labels",
    "rotation_ratios",
    "kernel_gd_residuals",
    "kernel_regression_gd",
    "check_gram",
    "check_target",
]

_REDUCTION_SCALE = {"half_sum": 1.0, "sum": 2.0, "mean": 2.0}  # "mean" is further divided by n

# ----------------------------------------------------------------------------------------------------------------
# Public: kernel diagnostics
# ----------------------------------------------------------------------------------------------------------------


def check_gram(K: Tensor, name: str = "K") -> Tensor:
    if not isinstance(K, Tensor) or K.ndim != 2 or K.shape[0] != K.shape[1]:
        shape = tuple(K.shape) if isinstance(K, Tensor) else type(K).__name__
        raise ValueError(f"{name} must be a square (n, n) Gram matrix, got {shape}")
    return K


def check_target(y: Tensor, n: int, name: str = "y") -> Tensor:
    if not isinstance(y, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(y).__name__}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) to match the kernel, got {tuple(y.shape)}")
    return y


def kernel_alignment(K: Tensor, y: Tensor, *, centered: bool = False) -> Tensor:
    """Kernel-target alignment (Cristianini et al. 2001; chapter *Linearized networks*):

    .. math:: A(K, y) = \\frac{\\langle K, y y^\\top \\rangle_F}{\\|K\\|_F \\, \\|y y^\\top\\|_F}
              = \\frac{y^\\top K y}{\\|K\\|_F \\, \\|y\\|^2},

    the cosine between the Gram matrix and the ideal kernel ``y y^T``; for labels ``y in {+-1}^n`` the
    denominator is ``n ||K||_F``. With ``centered=True``, the centered alignment of Cortes, Mohri and
    Rostamizadeh (2012), which centers both kernels in feature space with ``H = I - 1 1^T / n``:

    .. math:: A_c(K, y) = \\frac{y^\\top H K H y}{\\|H K H\\|_F \\, \\|H y\\|^2}.

    (Centering ``K`` only would put ``||y||^2`` in the denominator: a fixed factor ``||Hy||^2 / ||y||^2 <= 1`` for a
    given ``y``, so trends are the same.) Both lie in ``[-1, 1]``, and in ``[0, 1]`` for a PSD ``K``.
    """
    K = check_gram(K)
    y = check_target(y, K.shape[0]).to(K.dtype)
    if centered:
        K = K - K.mean(0, keepdim=True)
        K = K - K.mean(1, keepdim=True)
        y = y - y.mean()
    denom = torch.linalg.matrix_norm(K) * (y @ y)
    if not bool(denom > 0):
        raise ValueError("alignment is undefined for a zero kernel or a zero (or, centered, constant) target")
    return (y @ K @ y) / denom


def kernel_eigh(K: Tensor) -> tuple[Tensor, Tensor]:
    """Eigendecomposition ``K = sum_i lambda_i u_i u_i^T`` of a symmetric Gram matrix, in descending order of
    ``lambda_i``, with each eigenvector's arbitrary sign fixed deterministically: its largest-magnitude entry is
    positive (chapter *Linearized networks*). Returns ``(eigenvalues (n,), eigenvectors (n, n))`` with ``u_i`` the
    column ``i``. Near-degenerate eigenvectors still depend on the LAPACK build: never hard-code labels built
    from them."""
    K = check_gram(K)
    lam, U = torch.linalg.eigh(K)
    lam, U = lam.flip(0), U.flip(1)
    idx = U.abs().argmax(0)
    signs = torch.sign(U[idx, torch.arange(U.shape[1], device=U.device)])
    signs[signs == 0] = 1
    return lam, U * signs


def _check_eigvecs(U: Tensor) -> Tensor:
    if not isinstance(U, Tensor) or U.ndim != 2:
        raise ValueError(f"eigenvectors must be an (n, k) matrix with u_i in column i, got {getattr(U, 'shape', U)}")
    return U


def energy_concentration(eigenvectors: Tensor, y: Tensor) -> Tensor:
    """Cumulative energy of a target on a kernel's eigenvectors (chapter *Linearized networks*):

    .. math:: C_K(k) = \\frac{\\sum_{i < k} (u_i^\\top y)^2}{\\|y\\|^2}, \\qquad k = 1, \\dots, m,

    with ``u_0, u_1, ...`` in descending order of eigenvalue (``eigenvectors`` as returned by :func:`kernel_eigh`,
    possibly only the first ``m`` columns). Entry ``k - 1`` of the result is ``C_K(k)``; with all ``n`` eigenvectors
    the last entry is 1. Gradient descent on the kernel fits the part of ``y`` on the top eigenvectors first
    (Arora et al. 2019), so a target with high ``C_K(k)`` at small ``k`` is learned fast.
    """
    U = _check_eigvecs(eigenvectors)
    y = check_target(y, U.shape[0]).to(U.dtype)
    norm2 = y @ y
    if not bool(norm2 > 0):
        raise ValueError("energy concentration is undefined for a zero target")
    return torch.cumsum((U.T @ y) ** 2, 0) / norm2


def eigenfunction_labels(eigenvectors: Tensor, indices: int | Sequence[int]) -> Tensor:
    """Binary labels of the eigenfunction tasks of Ortiz-Jimenez et al. (2021) (chapter *Linearized networks*):
    task ``j`` labels point ``i`` by the sign of the ``j``-th eigenvector of the NTK Gram matrix on all points,

    .. math:: y^{(j)}_i = \\mathbb{1}[\\,u_j[i] > 0\\,] \\in \\{0, 1\\}.

    Index 0 is refused: a kernel with positive entries has a one-signed top eigenvector (Perron-Frobenius), a
    one-class task. So is any index whose eigenvector is one-signed. Fix the eigenvector signs first (as
    :func:`kernel_eigh` does); the labels flip with them. Returns shape ``(len(indices), n)`` (or ``(n,)`` for an
    int), in the eigenvectors' dtype.
    """
    U = _check_eigvecs(eigenvectors)
    single = isinstance(indices, numbers.Integral)
    idx = [int(indices)] if single else [int(j) for j in indices]
    for j in idx:
        if j < 1 or j >= U.shape[1]:
            raise ValueError(
                f"eigen-index must lie in 1..{U.shape[1] - 1} (index 0 is the one-signed top eigenvector), got {j}"
            )
    labels = (U[:, idx].T > 0).to(U.dtype)
    frac = labels.mean(1)
    for j, f in zip(idx, frac.tolist()):
        if f in (0.0, 1.0):
            raise ValueError(f"eigenvector {j} is one-signed: its task has a single class")
    return labels[0] if single else labels


def rotation_ratios(eigenvalues: Tensor, eigenvectors: Tensor, K_T: Tensor) -> Tensor:
    """How much a kernel ``K_T`` (after training) grew along each eigenvector ``u_i`` of the initial kernel ``K_0``,
    relative to its overall growth (chapter *Linearized networks*; Ortiz-Jimenez et al. 2021):

    .. math:: r_i = \\frac{u_i^\\top K_T u_i / \\operatorname{tr} K_T}{\\lambda_i / \\operatorname{tr} K_0}.

    ``eigenvalues``/``eigenvectors`` are those of ``K_0`` from :func:`kernel_eigh` (the first ``m`` of them, with
    ``tr K_0`` taken as the sum of all ``eigenvalues`` passed, so pass all ``n``). Returns ``r`` of shape ``(m,)``.
    ``r_i = 1`` for every ``i`` when ``K_T = c K_0``; a spike at the target's index is rotation along one axis.
    """
    U = _check_eigvecs(eigenvectors)
    K_T = check_gram(K_T, "K_T")
    if eigenvalues.ndim != 1 or U.shape[0] != K_T.shape[0] or eigenvalues.shape[0] < U.shape[1]:
        raise ValueError(
            f"shapes do not match: eigenvalues {tuple(eigenvalues.shape)}, eigenvectors {tuple(U.shape)}, "
            f"K_T {tuple(K_T.shape)}"
        )
    m = U.shape[1]
    quad = ((K_T @ U) * U).sum(0) / (U * U).sum(0)
    return (quad / torch.trace(K_T)) / (eigenvalues[:m] / eigenvalues.sum())


def _effective_lr(lr: float, n: int, reduction: str) -> float:
    if reduction not in _REDUCTION_SCALE:
        raise ValueError(f"reduction must be one of {sorted(_REDUCTION_SCALE)}, got {reduction!r}")
    lr = float(lr)
    if not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    return lr * _REDUCTION_SCALE[reduction] / (n if reduction == "mean" else 1)


def _as_steps(steps: int | Sequence[int] | Tensor, dtype: torch.dtype) -> tuple[Tensor, bool]:
    single = isinstance(steps, numbers.Integral)
    t = torch.as_tensor([int(steps)] if single else steps, dtype=dtype)
    if t.ndim != 1 or bool((t < 0).any()) or bool((t != t.round()).any()):
        raise ValueError(f"steps must be a non-negative integer or a 1-D sequence of them, got {steps!r}")
    return t, single


def _decay(lam: Tensor, eta: float, t: Tensor) -> Tensor:
    """(1 - eta lam)^t, shape (T, n), via exp(t log1p(-eta lam)) where 1 - eta lam > 0."""
    base = 1 - eta * lam
    positive = base > 0
    safe = torch.where(positive, -eta * lam, torch.zeros_like(lam))
    smooth = torch.exp(t[:, None] * torch.log1p(safe)[None, :])
    return torch.where(positive[None, :], smooth, base[None, :] ** t[:, None])


def kernel_gd_residuals(
    K: Tensor, r0: Tensor, *, lr: float, steps: int | Sequence[int], reduction: str = "half_sum"
) -> Tensor:
    """Training residuals of gradient descent on the linearized model with the square loss (chapter *Linearized
    networks*): with ``r = f_lin(X) - y`` on the training inputs and ``K = J_0 J_0^T``,

    .. math:: r_t = (I - \\eta K)^t \\, r_0

    for the loss ``(1/2) sum_i r_i^2`` (``reduction="half_sum"``); ``"sum"`` uses ``2 eta`` and ``"mean"``
    (``(1/n) sum_i r_i^2``) uses ``2 eta / n``. Along an eigenvector ``u_i`` the residual decays as
    ``(1 - eta lambda_i)^t``. Computed from the eigendecomposition of ``K``. ``steps`` may be a list (then the
    result has a leading time dimension).
    """
    K = check_gram(K)
    r0 = check_target(r0, K.shape[0], "r0").to(K.dtype)
    eta = _effective_lr(lr, K.shape[0], reduction)
    t, single = _as_steps(steps, K.dtype)
    lam, U = torch.linalg.eigh(K)
    r = ((_decay(lam, eta, t) * (U.T @ r0)[None, :]) @ U.T)
    return r[0] if single else r


def kernel_regression_gd(
    K_train: Tensor,
    y_train: Tensor,
    f0_train: Tensor,
    *,
    lr: float,
    steps: int | Sequence[int],
    K_test_train: Tensor | None = None,
    f0_test: Tensor | None = None,
    reduction: str = "half_sum",
    eigh: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Closed-form predictions of ``t`` steps of gradient descent on the linearized model with the square loss,
    i.e. kernel regression with the NTK ``K_0`` (chapter *Linearized networks*; Lee et al. 2019). With
    ``A_t = (I - eta K_tr,tr)^t`` and ``r_0 = f_0(X_tr) - y``:

    .. math::
        f_t(X_{tr}) = y + A_t r_0, \\qquad
        f_t(X_{te}) = f_0(X_{te}) - K_{te,tr} K_{tr,tr}^{-1} (I - A_t) \\, r_0 .

    The product ``K^{-1}(I - A_t) = sum_i (1 - (1 - eta lambda_i)^t) / lambda_i  u_i u_i^T`` is taken in the
    eigenbasis, so no inverse is formed (its limit ``t eta`` serves ``lambda_i = 0``). ``eta`` follows
    ``reduction`` as in :func:`kernel_gd_residuals`. A step size beyond the stability limit, ``eta > 2 /
    lambda_max``, raises :class:`FloatingPointError`, as :func:`lnn.gradient_descent` does for a diverging run.

    Parameters
    ----------
    K_train : (n, n) Gram matrix on the training inputs.
    y_train, f0_train : (n,) targets and the model's outputs at ``theta_0``.
    lr : step size; steps : int or 1-D sequence of ints.
    K_test_train : (m, n), optional, with ``f0_test`` (m,): the kernel between test and training inputs.
    eigh : optional ``torch.linalg.eigh(K_train)``, to reuse across calls.

    Returns
    -------
    ``(f_train, f_test)`` of shapes ``(n,)`` and ``(m,)`` (``(T, n)``, ``(T, m)`` for a list of steps);
    ``f_test`` is None without test inputs.
    """
    K = check_gram(K_train, "K_train")
    n = K.shape[0]
    y = check_target(y_train, n, "y_train").to(K.dtype)
    f0 = check_target(f0_train, n, "f0_train").to(K.dtype)
    if (K_test_train is None) != (f0_test is None):
        raise ValueError("pass both K_test_train and f0_test, or neither")
    if K_test_train is not None:
        if K_test_train.ndim != 2 or K_test_train.shape[1] != n:
            raise ValueError(f"K_test_train must have shape (m, {n}), got {tuple(K_test_train.shape)}")
        f0_test = check_target(f0_test, K_test_train.shape[0], "f0_test").to(K.dtype)
    eta = _effective_lr(lr, n, reduction)
    t, single = _as_steps(steps, K.dtype)
    lam, U = torch.linalg.eigh(K) if eigh is None else eigh
    if lam.shape != (n,) or U.shape != (n, n):
        raise ValueError(f"eigh must be (eigenvalues ({n},), eigenvectors ({n}, {n}))")
    lam_max = float(lam.max())
    if eta * lam_max > 2:
        raise FloatingPointError(
            f"gradient descent diverges: the effective step size {eta:.4g} exceeds 2 / lambda_max = "
            f"{2 / lam_max:.4g} of K_train, so the residual along the top eigenvector grows as |1 - eta lambda|^t "
            f"= {abs(1 - eta * lam_max):.4g}^t; lower lr (kernel_gd_residuals shows the divergence itself)"
        )
    coef = U.T @ (f0 - y)
    decay = _decay(lam, eta, t)
    f_train = y[None, :] + (decay * coef[None, :]) @ U.T
    f_test = None
    if K_test_train is not None:
        tiny = lam.abs() <= torch.finfo(K.dtype).eps * lam.abs().max() * n
        gain = torch.where(tiny[None, :], eta * t[:, None], (1 - decay) / torch.where(tiny, 1.0, lam)[None, :])
        f_test = f0_test[None, :] - (gain * coef[None, :]) @ (K_test_train @ U).T
    if single:
        return f_train[0], (None if f_test is None else f_test[0])
    return f_train, f_test
