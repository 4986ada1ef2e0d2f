"""Closed-form theory of deep linear networks under balanced initialization (chapter *Optimization*).

* the end-to-end preconditioner ``P_W`` as an operator and as an explicit matrix, with its eigenvalues;
* the scalar-output form of the end-to-end flow;
* the singular-value ODE and its closed-form solutions (chapters *Optimization* and *Implicit bias*);
* the linear convergence bound under a deficiency margin;
* the loop integral that shows the end-to-end field is not a gradient field;
* the Hessian of the overparameterized objective (the saddle at the origin, chapter *Preliminaries*).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import (
    check_compatible,
    check_depth,
    check_factors,
    check_finite,
    check_floating,
    check_int,
    check_matrix,
    check_positive,
    check_same_shape,
    check_tensor,
)
from ._linalg import gram_power, left_gram_power_apply, right_gram_power_apply, thin_svd
from .network import end_to_end
from .tasks import as_value_and_grad

__all__ = [
    "preconditioned_gradient",
    "preconditioner_matrix",
    "preconditioner_eigenvalues",
    "end_to_end_field",
    "scalar_output_velocity",
    "singular_value_velocity",
    "singular_value_closed_form",
    "blowup_time",
    "linear_convergence_bound",
    "loop_integral",
    "objective_hessian",
    "EndToEndRule",
]


def preconditioned_gradient(W: Tensor, G: Tensor, depth: int) -> Tensor:
    """The end-to-end preconditioner applied to a gradient (Arora, Cohen, Hazan 2018, Theorem 1):

    .. math:: P_W(G) = \\sum_{j=1}^{N} (W W^\\top)^{\\frac{N-j}{N}} \\, G \\, (W^\\top W)^{\\frac{j-1}{N}},

    with ``M^0 = I``. Under balanced initialization the end-to-end matrix obeys ``dW/dt = -P_W(nabla ell(W))``
    (chapter *Optimization*). Fractional powers come from the thin SVD of ``W``, never from ``eigh``.
    Batch dimensions are supported. Raises :class:`TypeError` when ``W`` and ``G`` differ in dtype or device and
    :class:`ValueError` for shapes that differ or NaN/inf entries.

    Derived in :prf:ref:`thm-opt-end-to-end`.

    Examples
    --------
    >>> import torch, lnn
    >>> W = torch.diag(torch.tensor([4.0, 1.0], dtype=torch.float64))
    >>> lnn.preconditioned_gradient(W, torch.eye(2, dtype=torch.float64), depth=2).diagonal().tolist()
    [8.0, 2.0]
    """
    check_matrix(W, "W")
    check_matrix(G, "G")
    check_same_shape(W, G, "W", "G")
    check_floating(W, "W")
    check_finite(W, "W")
    check_finite(G, "G")
    return _preconditioned_gradient(W, G, check_depth(depth))


def _preconditioned_gradient(W: Tensor, G: Tensor, N: int) -> Tensor:
    """:func:`preconditioned_gradient` without the checks (the end-to-end rule calls it at every step)."""
    if N == 1:
        return G.clone()
    svd = thin_svd(W)
    out = torch.zeros_like(G)
    for j in range(1, N + 1):
        out = out + left_gram_power_apply(svd, (N - j) / N, right_gram_power_apply(svd, (j - 1) / N, G))
    return out


def preconditioner_matrix(W: Tensor, depth: int) -> Tensor:
    """The explicit ``(d_0 d_N) x (d_0 d_N)`` matrix of ``P_W`` acting on column-major ``vec``:

    .. math:: P_W = \\sum_{j=1}^{N} (W^\\top W)^{\\frac{j-1}{N}} \\otimes (W W^\\top)^{\\frac{N-j}{N}},

    so that ``vec(P_W(G)) = P_W vec(G)``. Symmetric positive semi-definite (chapter *Optimization*). For small sizes
    only (unbatched).

    Derived in :prf:ref:`prop-opt-spectrum`.

    Examples
    --------
    >>> import torch, lnn
    >>> W = torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=torch.float64)
    >>> P = lnn.preconditioner_matrix(W, depth=3)
    >>> torch.allclose(torch.linalg.eigvalsh(P), lnn.preconditioner_eigenvalues(W, depth=3))
    True
    """
    check_matrix(W, "W")
    if W.ndim != 2:
        raise ValueError(f"preconditioner_matrix takes one unbatched matrix, got shape {tuple(W.shape)}")
    N = check_depth(depth)
    svd = thin_svd(W)
    P = torch.zeros(W.shape[0] * W.shape[1], W.shape[0] * W.shape[1], dtype=W.dtype, device=W.device)
    for j in range(1, N + 1):
        P = P + torch.kron(gram_power(svd, (j - 1) / N, "right"), gram_power(svd, (N - j) / N, "left"))
    return P


def preconditioner_eigenvalues(W: Tensor, depth: int) -> Tensor:
    """Predicted eigenvalues of ``P_W``, sorted ascending (chapter *Optimization*):

    .. math:: \\lambda_{r,r'} = \\sum_{j=1}^N \\sigma_r^{2(N-j)/N} \\sigma_{r'}^{2(j-1)/N},

    for ``r <= d_N``, ``r' <= d_0``, singular values padded with zeros beyond the rank and ``0^0 = 1``. The
    eigenvector of ``lambda_{r,r'}`` is ``vec(u_r v_{r'}^T)``; on the diagonal ``lambda_{r,r} = N sigma_r^{2-2/N}``.

    Derived in :prf:ref:`prop-opt-spectrum`.

    Examples
    --------
    >>> import torch, lnn
    >>> lnn.preconditioner_eigenvalues(torch.diag(torch.tensor([4.0, 1.0], dtype=torch.float64)), depth=2).tolist()
    [2.0, 5.0, 5.0, 8.0]
    """
    check_matrix(W, "W")
    N = check_depth(depth)
    m, n = W.shape[-2:]
    s = torch.linalg.svdvals(W)
    s_left = torch.zeros(*W.shape[:-2], m, dtype=W.dtype, device=W.device)
    s_right = torch.zeros(*W.shape[:-2], n, dtype=W.dtype, device=W.device)
    s_left[..., : s.shape[-1]] = s
    s_right[..., : s.shape[-1]] = s

    def power(x: Tensor, e: float) -> Tensor:
        return torch.ones_like(x) if e == 0 else x ** e

    lam = torch.zeros(*W.shape[:-2], m, n, dtype=W.dtype, device=W.device)
    for j in range(1, N + 1):
        lam = lam + power(s_left, 2 * (N - j) / N).unsqueeze(-1) * power(s_right, 2 * (j - 1) / N).unsqueeze(-2)
    return lam.flatten(-2).sort(dim=-1).values


def end_to_end_field(loss: Callable[[Tensor], Tensor], depth: int) -> Callable[[Tensor], Tensor]:
    """The vector field ``F(W) = -P_W(nabla ell(W))`` of the end-to-end flow (chapter *Optimization*).

    ``loss`` is an :class:`lnn.tasks.Objective` or any differentiable callable of ``W``.

    The field of :prf:ref:`thm-opt-end-to-end`; it is not a gradient field, :prf:ref:`thm-opt-no-regularizer`.

    Examples
    --------
    >>> import torch, lnn
    >>> loss = lambda W: 0.5 * ((W - 1.0) ** 2).sum((-2, -1))
    >>> field = lnn.end_to_end_field(loss, depth=2)
    >>> field(torch.full((1, 1), 4.0, dtype=torch.float64)).item()
    -24.0
    """
    N = check_depth(depth)
    value_and_grad = as_value_and_grad(loss)

    def field(W: Tensor) -> Tensor:
        return -preconditioned_gradient(W, value_and_grad(W)[1], N)

    return field


@dataclass(frozen=True)
class EndToEndRule:
    """The end-to-end parametrization, for :func:`lnn.gradient_descent` and :func:`lnn.gradient_flow`: one matrix
    ``W`` moved along ``P_W(G)``, the rule ``W <- W - lr P_W(nabla ell)`` that the end-to-end matrix of a
    depth-``N`` network follows under balanced initialization (:func:`preconditioned_gradient`; chapter
    *Optimization*).

    Derived in :prf:ref:`thm-opt-end-to-end`.

    Examples
    --------
    >>> import torch, lnn
    >>> W = torch.full((1, 1), 4.0, dtype=torch.float64)
    >>> lnn.EndToEndRule(depth=2).direction([W], None, torch.ones(1, 1, dtype=torch.float64))[0].item()
    8.0
    """

    depth: int

    def __post_init__(self) -> None:
        check_depth(self.depth)

    def check(self, params: list[Tensor]) -> tuple[int, ...]:
        """Check that ``params == [W]`` with ``W`` a floating matrix; return its batch shape."""
        if isinstance(params, Tensor) or len(params) != 1:
            n = "a single tensor" if isinstance(params, Tensor) else f"{len(params)} tensors"
            raise ValueError(f"the end-to-end rule moves a list holding one matrix [W], got {n}")
        check_matrix(params[0], "W")
        check_floating(params[0], "W")
        return tuple(params[0].shape[:-2])

    def forward(self, params: list[Tensor]) -> tuple[Tensor, None]:
        """``W`` itself (no cache)."""
        return params[0], None

    def direction(self, params: list[Tensor], cache: None, G: Tensor) -> list[Tensor]:
        """``[P_W(G)]``."""
        return [_preconditioned_gradient(params[0], G, int(self.depth))]


def scalar_output_velocity(w: Tensor, grad: Tensor, depth: int) -> Tensor:
    """The end-to-end flow for a single output row ``W_e = w^T`` (Arora, Cohen, Hazan 2018):

    .. math:: \\dot w = -\\|w\\|^{2-2/N} \\left(\\nabla\\ell + (N-1) \\frac{w w^\\top}{\\|w\\|^2} \\nabla\\ell\\right).

    The first term is gradient flow with an adaptive step ``||w||^{2-2/N}``; the second stretches the step along
    the direction already travelled, like momentum (chapter *Optimization*). ``w`` has shape ``(..., d)``.
    At ``w = 0`` with ``N >= 2`` the velocity is its limit, ``0`` (the projection is bounded by ``||grad||`` and
    the factor ``||w||^{2-2/N}`` vanishes).

    Derived in :prf:ref:`cor-opt-scalar`.

    Examples
    --------
    >>> import torch, lnn
    >>> w, grad = torch.tensor([2.0, 0.0], dtype=torch.float64), torch.tensor([1.0, 1.0], dtype=torch.float64)
    >>> lnn.scalar_output_velocity(w, grad, depth=2).tolist()
    [-4.0, -2.0]
    """
    N = check_depth(depth)
    check_floating(w, "w")
    check_tensor(grad, "grad")
    check_compatible(w, grad, "w", "grad")
    if w.shape != grad.shape:
        raise ValueError(f"w and grad must have the same shape, got {tuple(w.shape)} and {tuple(grad.shape)}")
    if N == 1:
        return -grad
    norm = torch.linalg.vector_norm(w, dim=-1, keepdim=True)
    safe = torch.where(norm > 0, norm, torch.ones_like(norm))
    proj = (w * grad).sum(-1, keepdim=True) / safe**2 * w  # exactly 0 where w = 0
    return -(norm ** (2 - 2 / N)) * (grad + (N - 1) * proj)


def singular_value_velocity(W: Tensor, G: Tensor, depth: int) -> Tensor:
    """Singular-value dynamics under balanced initialization (Arora, Cohen, Hu, Luo 2019, Theorem 3):

    .. math:: \\dot\\sigma_r = -N \\sigma_r^{2-2/N} \\langle \\nabla\\ell(W), u_r v_r^\\top \\rangle,

    for the thin SVD of ``W`` (chapter *Optimization*). Returns ``(..., min(d_N, d_0))`` in the order of
    ``torch.linalg.svd`` (descending singular values).

    Derived in :prf:ref:`thm-opt-singular`; the incremental learning of :doc:`/book/03_implicit_bias` follows from it.

    Examples
    --------
    >>> import torch, lnn
    >>> W = torch.diag(torch.tensor([4.0, 1.0], dtype=torch.float64))
    >>> lnn.singular_value_velocity(W, -torch.eye(2, dtype=torch.float64), depth=2).tolist()
    [8.0, 2.0]
    """
    check_matrix(W, "W")
    check_matrix(G, "G")
    check_same_shape(W, G, "W", "G")
    check_floating(W, "W")
    N = check_depth(depth)
    svd = thin_svd(W)
    proj = torch.diagonal(svd.U.mT @ G @ svd.Vh.mT, dim1=-2, dim2=-1)
    return -N * svd.S ** (2 - 2 / N) * proj


def singular_value_closed_form(sigma0: Tensor | float, g: Tensor | float, depth: int, t: Tensor | float) -> Tensor:
    """Solution of ``d sigma/dt = N sigma^{2-2/N} g`` with constant ``g`` (chapter *Implicit bias*):

    * ``N = 1``: ``sigma(t) = sigma_0 + g t``;
    * ``N = 2``: ``sigma(t) = sigma_0 exp(2 g t)``;
    * ``N >= 3``: ``sigma(t) = (sigma_0^{-(N-2)/N} - (N-2) g t)^{-N/(N-2)}``, which is ``inf`` from the blow-up
      time ``t* = sigma_0^{-(N-2)/N} / ((N-2) g)`` on (see :func:`blowup_time`).

    ``g = -<nabla ell, u v^T>``; arguments broadcast.

    The solution :eq:`eq-opt-sv-closed` of :prf:ref:`thm-opt-singular` under a frozen gradient.

    Examples
    --------
    >>> import lnn
    >>> round(float(lnn.singular_value_closed_form(1.0, 1.0, depth=3, t=0.5)), 6)
    8.0
    """
    N = check_depth(depth)
    sigma0, g, t = (torch.as_tensor(x, dtype=torch.float64) if not isinstance(x, Tensor) else x for x in (sigma0, g, t))
    if N == 1:
        return sigma0 + g * t
    if N == 2:
        return sigma0 * torch.exp(2 * g * t)
    base = sigma0 ** (-(N - 2) / N) - (N - 2) * g * t
    return torch.where(base > 0, base.clamp_min(torch.finfo(base.dtype).tiny) ** (-N / (N - 2)), torch.inf)


def blowup_time(sigma0: Tensor | float, g: Tensor | float, depth: int) -> Tensor:
    """Finite escape time ``t* = sigma_0^{-(N-2)/N} / ((N-2) g)`` of the singular-value ODE for ``N >= 3`` and
    ``g > 0`` (chapter *Implicit bias*); ``inf`` for ``N <= 2`` or ``g <= 0``.

    The solution :eq:`eq-opt-sv-closed` of :prf:ref:`thm-opt-singular` under a frozen gradient.

    Examples
    --------
    >>> import lnn
    >>> float(lnn.blowup_time(1.0, 1.0, depth=3)), float(lnn.blowup_time(1.0, 1.0, depth=2))
    (1.0, inf)
    """
    N = check_depth(depth)
    sigma0 = torch.as_tensor(sigma0, dtype=torch.float64)
    g = torch.as_tensor(g, dtype=torch.float64)
    if N <= 2:
        return torch.full(torch.broadcast_shapes(sigma0.shape, g.shape), torch.inf, dtype=torch.float64)
    t = sigma0 ** (-(N - 2) / N) / ((N - 2) * g)
    return torch.where(g > 0, t, torch.inf)


def linear_convergence_bound(
    initial_loss: Tensor | float, margin: float, depth: int, t: Tensor | float, *, square: bool = True
) -> Tensor:
    """Gradient-flow bound under balanced initialization with deficiency margin ``c`` for
    ``ell = (1/2)||W - Phi||_F^2`` (Arora, Cohen, Golowich, Hu 2019; chapter *Optimization*):

    .. math:: \\ell(t) \\le \\ell(0) \\exp(-2 \\kappa c^{2-2/N} t),

    with ``kappa = N`` when ``W`` is square (``d_0 = d_N``) and ``kappa = 1`` otherwise. Proof:
    ``d ell/dt = -vec(nabla ell)^T P_W vec(nabla ell) <= -2 lambda_min(P_W) ell`` and ``sigma_min(W(t)) >= c``.

    Derived in :prf:ref:`thm-opt-linear`.

    Examples
    --------
    >>> import math, lnn
    >>> bound = lnn.linear_convergence_bound(1.0, margin=1.0, depth=2, t=1.0)
    >>> math.isclose(float(bound), math.exp(-4.0))
    True
    """
    N = check_depth(depth)
    check_positive(margin, "margin")
    kappa = N if square else 1
    t = torch.as_tensor(t, dtype=torch.float64)
    return torch.as_tensor(initial_loss, dtype=torch.float64) * torch.exp(-2 * kappa * margin ** (2 - 2 / N) * t)


def loop_integral(
    field: Callable[[Tensor], Tensor],
    center: Tensor,
    direction1: Tensor,
    direction2: Tensor,
    radius: float,
    segments: int = 2000,
) -> float:
    """Circulation ``oint <F, dW>`` of a vector field around the circle
    ``W(theta) = center + radius (cos theta E_1 + sin theta E_2)``, by the midpoint rule with ``segments`` pieces
    (error ``O(segments^-2)``). ``field`` must accept a batch of points (leading dimension), as
    :func:`end_to_end_field` does. It vanishes for every loop iff ``F`` is a gradient field, so a nonzero value shows
    that no regularizer produces ``F`` (Arora, Cohen, Hazan 2018, Theorem 2; chapter *Optimization*).

    The test of :prf:ref:`thm-opt-no-regularizer`.

    Examples
    --------
    >>> import torch, lnn
    >>> E1 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    >>> E2 = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    >>> gradient_field = lambda W: -W  # minus the gradient of ||W||^2 / 2: no circulation
    >>> abs(lnn.loop_integral(gradient_field, 0 * E1, E1, E2, radius=1.0, segments=100)) < 1e-12
    True
    """
    check_positive(radius, "radius")
    segments = check_int(segments, "segments", 3)
    if not callable(field):
        raise TypeError(f"field must be a callable W -> F(W), got {type(field).__name__}")
    check_floating(center, "center")
    for name, E in (("direction1", direction1), ("direction2", direction2)):
        check_tensor(E, name)
        check_compatible(E, center, name, "center")
        if E.shape != center.shape:
            raise ValueError(f"{name} must have the shape of center {tuple(center.shape)}, got {tuple(E.shape)}")
    theta = torch.linspace(0, 2 * math.pi, segments + 1, dtype=center.dtype, device=center.device)
    shape = (-1,) + (1,) * center.ndim
    cos, sin = torch.cos(theta).reshape(shape), torch.sin(theta).reshape(shape)
    points = center + radius * (cos * direction1 + sin * direction2)  # (segments + 1, *center.shape)
    midpoints = (points[:-1] + points[1:]) / 2
    steps = points[1:] - points[:-1]
    return float((field(midpoints) * steps).sum())  # the field is evaluated on all midpoints as one batch


def objective_hessian(factors: Sequence[Tensor], loss: Callable[[Tensor], Tensor]) -> Tensor:
    """Hessian of ``phi(W_1..W_N) = ell(W_{N:1})`` with respect to all factor entries, flattened in the order
    ``W_1, ..., W_N`` (row-major). Used to classify the critical point at the origin (chapter *Preliminaries*):
    a strict saddle for ``N = 2``, a vanishing Hessian for ``N >= 3``. Small sizes only.

    Used in :prf:ref:`prelim-prop-saddle`.

    Examples
    --------
    >>> import torch, lnn
    >>> zeros = [torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64)]
    >>> H = lnn.objective_hessian(zeros, lambda W: 0.5 * ((W - 1.0) ** 2).sum())
    >>> torch.linalg.eigvalsh(H).tolist()  # a strict saddle at depth 2
    [-1.0, 1.0]
    """
    factors = check_factors(factors)
    shapes = [W.shape for W in factors]
    sizes = [W.numel() for W in factors]

    def phi(flat: Tensor) -> Tensor:
        parts = torch.split(flat, sizes)
        return loss(end_to_end([p.reshape(s) for p, s in zip(parts, shapes)])).sum()

    flat = torch.cat([W.reshape(-1) for W in factors]).detach()
    return torch.autograd.functional.hessian(phi, flat)
