"""Tensor factorization: the CP model, its components and unfoldings (chapter *Implicit bias*, tensor part).

A CP factorization of order ``N`` and ``R`` components is a list of factor matrices ``A^(n)`` of shape
``(..., d_n, R)``; the tensor is ``W = sum_r a_r^(1) ⊗ ... ⊗ a_r^(N)``. It is the end-to-end map of a shallow
multiplicative convolutional network (Razin, Maman, Cohen 2021).
"""

from __future__ import annotations

import math
import string
from collections.abc import Sequence

import torch
from torch import Tensor

from ._checks import check_compatible, check_int, check_positive, check_tensor

__all__ = [
    "cp_tensor",
    "cp_factor_gradients",
    "cp_component_norms",
    "cp_gaussian_factors",
    "random_cp_tensor",
    "unfold",
    "CPProduct",
]


def _check_cp(factors: Sequence[Tensor]) -> list[Tensor]:
    if isinstance(factors, Tensor):
        raise ValueError("CP factors must be a list of matrices [A^(1), ..., A^(N)], got a single tensor")
    factors = list(factors)
    if len(factors) < 1:
        raise ValueError("a CP factorization needs at least one factor matrix (order >= 1)")
    for n, A in enumerate(factors, start=1):
        check_tensor(A, f"CP factor A^({n})")
    R = factors[0].shape[-1]
    for n, A in enumerate(factors, start=1):
        check_compatible(A, factors[0], f"CP factor A^({n})", "A^(1)")
        if A.ndim < 2:
            raise ValueError(f"CP factor A^({n}) must have shape (..., d_{n}, R), got {tuple(A.shape)}")
        if A.shape[-1] != R:
            raise ValueError(f"CP factors must share the number of components R: A^(1) has {R}, A^({n}) has {A.shape[-1]}")
        if A.shape[:-2] != factors[0].shape[:-2]:
            raise ValueError("CP factors must share their batch dimensions")
    return factors


def _letters(order: int) -> tuple[str, str]:
    idx = string.ascii_lowercase[: order]
    return idx, "z"  # mode indices, component index


def cp_tensor(factors: Sequence[Tensor]) -> Tensor:
    """The tensor of a CP factorization.

    ``W = sum_r a_r^(1) ⊗ ... ⊗ a_r^(N)`` for factors ``A^(n)`` of shape ``(..., d_n, R)``.

    Defined in :prf:ref:`ib-def-cp`.

    Examples
    --------
    >>> import torch, lnn
    >>> a, b = torch.tensor([[1.0], [2.0]]), torch.tensor([[3.0], [4.0]])
    >>> lnn.cp_tensor([a, b]).tolist()  # one component: the outer product
    [[3.0, 4.0], [6.0, 8.0]]
    """
    return _cp_tensor(_check_cp(factors))


def _cp_tensor(factors: Sequence[Tensor]) -> Tensor:
    idx, r = _letters(len(factors))
    spec = ",".join(f"...{i}{r}" for i in idx) + f"->...{idx}"
    return torch.einsum(spec, *factors)


def cp_factor_gradients(factors: Sequence[Tensor], G: Tensor) -> list[Tensor]:
    """Gradients of the loss of a CP tensor with respect to each factor matrix.

    Given ``G = nabla ell`` at ``cp_tensor(A)``: ``dA^(n)_{i r} = sum G_{.. i ..} prod_{m != n} A^(m)_{i_m r}``.

    The dynamics of :prf:ref:`ib-prop-component`.

    Examples
    --------
    >>> import torch, lnn
    >>> a, b = torch.tensor([[1.0], [2.0]]), torch.tensor([[3.0], [4.0]])
    >>> [g.flatten().tolist() for g in lnn.cp_factor_gradients([a, b], torch.ones(2, 2))]
    [[7.0, 7.0], [3.0, 3.0]]
    """
    factors = _check_cp(factors)
    check_tensor(G, "G")
    check_compatible(G, factors[0], "G", "the CP factors")
    expected = tuple(A.shape[-2] for A in factors)
    if tuple(G.shape[G.ndim - len(factors):]) != expected:
        raise ValueError(f"G must have the tensor shape (..., {expected}) of the CP factors, got {tuple(G.shape)}")
    return _cp_factor_gradients(factors, G)


def _cp_factor_gradients(factors: Sequence[Tensor], G: Tensor) -> list[Tensor]:
    idx, r = _letters(len(factors))
    grads = []
    for n in range(len(factors)):
        others = [f"...{idx[m]}{r}" for m in range(len(factors)) if m != n]
        spec = ",".join([f"...{idx}"] + others) + f"->...{idx[n]}{r}"
        grads.append(torch.einsum(spec, G, *[factors[m] for m in range(len(factors)) if m != n]))
    return grads


def cp_component_norms(factors: Sequence[Tensor]) -> Tensor:
    """``||W_r|| = prod_n ||a_r^(n)||`` for each component ``r``, shape ``(..., R)``.

    The component norms of :prf:ref:`ib-prop-component`.

    Examples
    --------
    >>> import torch, lnn
    >>> a, b = torch.tensor([[3.0], [4.0]]), torch.tensor([[1.0], [0.0]])
    >>> lnn.cp_component_norms([a, b]).tolist()
    [5.0]
    """
    factors = _check_cp(factors)
    out = torch.linalg.vector_norm(factors[0], dim=-2)
    for A in factors[1:]:
        out = out * torch.linalg.vector_norm(A, dim=-2)
    return out


def cp_gaussian_factors(
    dims: Sequence[int],
    rank: int,
    scale: float,
    *,
    batch_shape: Sequence[int] = (),
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> list[Tensor]:
    """CP factors with i.i.d. ``N(0, scale^2)`` entries, shapes ``(..., d_n, rank)``, ``scale > 0`` and every
    ``d_n >= 1``; raises :class:`ValueError` otherwise.

    The small initialization of :prf:ref:`ib-prop-component`.

    Examples
    --------
    >>> import torch, lnn
    >>> factors = lnn.cp_gaussian_factors([3, 4, 5], rank=2, scale=0.1, generator=torch.Generator().manual_seed(0))
    >>> [tuple(A.shape) for A in factors]
    [(3, 2), (4, 2), (5, 2)]
    """
    rank = check_int(rank, "rank", 1)
    scale = check_positive(scale, "scale")
    if isinstance(dims, int) or len(dims) < 1:
        raise ValueError(f"dims must list the mode sizes [d_1, ..., d_N] (order N >= 1), got {dims!r}")
    dims = [check_int(d, "every mode size d_n", 1) for d in dims]
    if device is None and generator is not None:
        device = generator.device
    return [scale * torch.randn(*batch_shape, d, rank, generator=generator, dtype=dtype, device=device) for d in dims]


def random_cp_tensor(
    dims: Sequence[int],
    rank: int,
    *,
    norm: float = 1.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """A random tensor of CP rank at most ``rank`` (Gaussian factors), rescaled to Frobenius norm ``norm``.

    The targets of :prf:ref:`ib-def-cp`.

    Examples
    --------
    >>> import torch, lnn
    >>> T = lnn.random_cp_tensor([3, 4, 5], rank=2, norm=2.0, generator=torch.Generator().manual_seed(0))
    >>> tuple(T.shape), round(float(torch.linalg.vector_norm(T)), 6)
    ((3, 4, 5), 2.0)
    """
    T = cp_tensor(cp_gaussian_factors(dims, rank, 1.0, generator=generator, dtype=dtype, device=device))
    return T * (norm / torch.linalg.vector_norm(T))


def unfold(T: Tensor, mode: int) -> Tensor:
    """Mode-``mode`` unfolding: a ``d_mode x prod(other dims)`` matrix (no batch dimensions).

    The matricizations of :prf:ref:`ib-def-cp`.

    Examples
    --------
    >>> import torch, lnn
    >>> tuple(lnn.unfold(torch.zeros(3, 4, 5), 1).shape)
    (4, 15)
    """
    check_tensor(T, "T")
    if not 0 <= mode < T.ndim:
        raise ValueError(f"mode must be in [0, {T.ndim}), got {mode}")
    return T.movedim(mode, 0).reshape(T.shape[mode], math.prod(T.shape) // T.shape[mode])


class CPProduct:
    """The CP parametrization, for :func:`lnn.gradient_descent` and :func:`lnn.gradient_flow`: parameters are the
    factor matrices ``A^(n)`` of shape ``(..., d_n, R)``, :meth:`forward` gives the tensor :func:`cp_tensor` and
    :meth:`direction` the gradients :func:`cp_factor_gradients` (chapter *Implicit bias*, tensor part).

    Defined in :prf:ref:`ib-def-cp`; its dynamics in :prf:ref:`ib-prop-component`.

    Examples
    --------
    >>> import torch, lnn
    >>> factors = lnn.cp_gaussian_factors([3, 3, 3], rank=2, scale=0.5, generator=torch.Generator().manual_seed(0))
    >>> T, _ = lnn.CPProduct().forward(factors)
    >>> torch.equal(T, lnn.cp_tensor(factors))
    True
    """

    def check(self, params: list[Tensor]) -> tuple[int, ...]:
        """Check that the factors share ``R``, dtype, device and batch shape; return the batch shape."""
        _check_cp(params)
        return tuple(params[0].shape[:-2])

    def forward(self, params: list[Tensor]) -> tuple[Tensor, None]:
        """The CP tensor (no cache)."""
        return _cp_tensor(params), None

    def direction(self, params: list[Tensor], cache: None, G: Tensor) -> list[Tensor]:
        """The gradient of ``ell(cp_tensor(A))`` with respect to each factor matrix."""
        return _cp_factor_gradients(params, G)
