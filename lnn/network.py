"""Deep linear networks: the end-to-end matrix, its gradient formula and the initializations.

A depth-``N`` linear network is a list of factors ``[W_1, ..., W_N]`` with ``W_j`` of shape ``(..., d_j, d_{j-1})``;
leading dimensions ``...`` are batch dimensions, so many runs (seeds, initialization scales) live in one tensor.
Chapter *Preliminaries* derives everything in this module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ._checks import check_compatible, check_depth, check_factors, check_matrix, hidden_widths

__all__ = [
    "end_to_end",
    "partial_products",
    "factor_gradients",
    "balanced_factors",
    "gaussian_factors",
    "identity_factors",
    "orthogonal_factors",
    "dims_of",
    "FactorProduct",
]

DEFAULT_DTYPE = torch.float64


def dims_of(factors: Sequence[Tensor]) -> list[int]:
    """The widths ``[d_0, d_1, ..., d_N]`` of a list of factors.

    Notation of :prf:ref:`prelim-def-lnn`.

    Examples
    --------
    >>> import torch, lnn
    >>> lnn.dims_of([torch.zeros(5, 3), torch.zeros(2, 5)])
    [3, 5, 2]
    """
    factors = check_factors(factors)
    return [factors[0].shape[-1]] + [W.shape[-2] for W in factors]


def partial_products(factors: Sequence[Tensor]) -> list[Tensor]:
    """Prefix products ``[W_{1:1}, W_{2:1}, ..., W_{N:1}]`` where ``W_{j:1} = W_j \\cdots W_1``.

    The last entry is the end-to-end matrix. Used to evaluate the network and its gradient with ``2N - 1``
    matrix products per step (chapter *Preliminaries*).

    Derived in :prf:ref:`prelim-lem-gradient`.

    Examples
    --------
    >>> import torch, lnn
    >>> W1, W2 = torch.full((2, 2), 2.0), torch.eye(2)
    >>> [P.tolist() for P in lnn.partial_products([W1, W2])]
    [[[2.0, 2.0], [2.0, 2.0]], [[2.0, 2.0], [2.0, 2.0]]]
    """
    return _prefix_products(check_factors(factors))


def _prefix_products(factors: Sequence[Tensor]) -> list[Tensor]:
    """:func:`partial_products` without the checks (the training loop checks once, then calls this every step)."""
    prods = [factors[0]]
    for W in factors[1:]:
        prods.append(W @ prods[-1])
    return prods


def end_to_end(factors: Sequence[Tensor]) -> Tensor:
    """The end-to-end matrix ``W_e = W_{N:1} = W_N W_{N-1} \\cdots W_1`` (chapter *Preliminaries*).

    Defined in :prf:ref:`prelim-def-lnn`.

    Parameters
    ----------
    factors
        ``[W_1, ..., W_N]`` with ``W_j`` of shape ``(..., d_j, d_{j-1})``; batch dimensions broadcast.

    Returns
    -------
    Tensor of shape ``(..., d_N, d_0)``.

    Examples
    --------
    >>> import torch, lnn
    >>> W1, W2 = torch.ones(3, 2), torch.ones(1, 3)
    >>> lnn.end_to_end([W1, W2])
    tensor([[3., 3.]])
    """
    return partial_products(factors)[-1]


def _factor_gradients_from_prefix(factors: list[Tensor], prefix: list[Tensor], G: Tensor) -> list[Tensor]:
    """Gradient formula given prefix products; runs the suffix products ``W_{N:j+1}^T G`` backwards."""
    N = len(factors)
    grads: list[Tensor] = [None] * N  # type: ignore[list-item]
    back = G  # W_{N:j+1}^T G, starting from j = N
    for j in range(N - 1, -1, -1):
        grads[j] = back @ prefix[j - 1].mT if j > 0 else back
        if j > 0:
            back = factors[j].mT @ back
    return grads


def factor_gradients(factors: Sequence[Tensor], G: Tensor) -> list[Tensor]:
    """Gradients of the overparameterized objective ``phi(W_1..W_N) = ell(W_{N:1})`` with respect to each factor.

    .. math::  \\frac{\\partial \\phi}{\\partial W_j} = W_{N:j+1}^\\top \\, \\nabla\\ell(W_e) \\, W_{j-1:1}^\\top

    (chapter *Preliminaries*, the gradient formula), with ``W_{j:i} = I`` when ``j < i``.

    Derived in :prf:ref:`prelim-lem-gradient`.

    Parameters
    ----------
    factors
        ``[W_1, ..., W_N]``, ``W_j`` of shape ``(..., d_j, d_{j-1})``.
    G
        ``\\nabla \\ell`` at the end-to-end matrix, shape ``(..., d_N, d_0)``.

    Examples
    --------
    >>> import torch, lnn
    >>> factors = lnn.gaussian_factors([3, 4, 2], generator=torch.Generator().manual_seed(0))
    >>> G = torch.ones(2, 3, dtype=torch.float64)
    >>> [tuple(g.shape) for g in lnn.factor_gradients(factors, G)]
    [(4, 3), (2, 4)]
    """
    factors = check_factors(factors)
    check_matrix(G, "G")
    check_compatible(G, factors[0], "G", "the factors")
    expected = (factors[-1].shape[-2], factors[0].shape[-1])
    if tuple(G.shape[-2:]) != expected:
        raise ValueError(f"G must have the end-to-end shape (d_N, d_0) = {expected}, got {tuple(G.shape)}")
    return _factor_gradients_from_prefix(factors, partial_products(factors), G)


class FactorProduct:
    """The parametrization of a deep linear network, for :func:`lnn.gradient_descent` and :func:`lnn.gradient_flow`.

    Parameters are the factors ``[W_1..W_N]``; :meth:`forward` gives the end-to-end matrix ``W_{N:1}`` with its
    prefix products (:func:`partial_products`), and :meth:`direction` the closed-form gradient of
    :func:`factor_gradients`,

    .. math:: \\frac{\\partial \\phi}{\\partial W_j} = W_{N:j+1}^\\top \\, G \\, W_{j-1:1}^\\top,

    reusing the prefix products, so one step costs ``3N - 2`` matrix products (chapter *Preliminaries*).

    Derived in :prf:ref:`prelim-lem-gradient`.

    Examples
    --------
    >>> import torch, lnn
    >>> factors = [torch.eye(2, dtype=torch.float64), 3 * torch.eye(2, dtype=torch.float64)]
    >>> W, prefix = lnn.FactorProduct().forward(factors)
    >>> W.diagonal().tolist(), len(prefix)
    ([3.0, 3.0], 2)
    """

    def check(self, params: list[Tensor]) -> tuple[int, ...]:
        """Check that the factors chain and share dtype, device and batch shape; return the batch shape."""
        check_factors(params, same_batch=True)
        return tuple(params[0].shape[:-2])

    def forward(self, params: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """``(W_{N:1}, [W_{1:1}, ..., W_{N:1}])``."""
        prefix = _prefix_products(params)
        return prefix[-1], prefix

    def direction(self, params: list[Tensor], cache: list[Tensor], G: Tensor) -> list[Tensor]:
        """The factor gradients at ``G = nabla ell(W_{N:1})``, from the cached prefix products."""
        return _factor_gradients_from_prefix(params, cache, G)




def balanced_factors(W: Tensor, depth: int, widths: int | Sequence[int] | None = None) -> list[Tensor]:
    """Exactly balanced factors whose product is ``W`` (chapter *Optimization*, the balanced initialization).

    With the thin SVD ``W = U \\Sigma V^T`` (rank ``k``):

    .. math:: W_N = U\\Sigma^{1/N},\\quad W_j = \\Sigma^{1/N}\\ (1<j<N),\\quad W_1 = \\Sigma^{1/N} V^T,

    each zero-padded to the hidden widths. Then ``W_{N:1} = W`` and every balancedness gap
    ``D_j = W_{j+1}^T W_{j+1} - W_j W_j^T`` vanishes, so the end-to-end matrix follows the preconditioned flow
    ``dW/dt = -P_W(\\nabla\\ell)``.

    The construction of :prf:ref:`alg-opt-balanced`; why it is balanced: :prf:ref:`lem-opt-balanced-powers`.

    Parameters
    ----------
    W
        Target end-to-end matrix, shape ``(..., d_N, d_0)`` (batch dimensions allowed).
    depth
        ``N >= 1``.
    widths
        Hidden widths ``d_1..d_{N-1}`` (an int for all); default ``min(d_0, d_N)``. A width smaller than
        ``min(d_0, d_N)`` is allowed only when the dropped singular values are zero.

    Examples
    --------
    >>> import torch, lnn
    >>> W = torch.tensor([[2.0, 0.0], [0.0, 0.5]], dtype=torch.float64)
    >>> factors = lnn.balanced_factors(W, depth=3)
    >>> torch.allclose(lnn.end_to_end(factors), W), float(lnn.balancedness(factors)) < 1e-12
    (True, True)
    """
    check_matrix(W, "W")
    N = check_depth(depth)
    if N == 1:
        return [W.clone()]
    d_out, d_in = W.shape[-2], W.shape[-1]
    k = min(d_out, d_in)
    hidden = hidden_widths(widths, N, k)
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    kk = min([k] + hidden)
    if kk < k:
        dropped = S[..., kk:]
        if dropped.numel() and bool((dropped > 1e-12 * S[..., :1].clamp_min(1e-300)).any()):
            raise ValueError(
                f"a hidden width of {kk} is smaller than the rank of W (singular values {S.tolist()}); "
                "no depth-N factorization with these widths reproduces W"
            )
        U, S, Vh = U[..., :kk], S[..., :kk], Vh[..., :kk, :]
    root = S ** (1.0 / N)
    batch = W.shape[:-2]
    dims = [d_in] + hidden + [d_out]
    factors = []
    for j in range(1, N + 1):
        F = W.new_zeros(*batch, dims[j], dims[j - 1])
        if j == 1:
            F[..., :kk, :] = root.unsqueeze(-1) * Vh
        elif j == N:
            F[..., :, :kk] = U * root.unsqueeze(-2)
        else:
            F[..., :kk, :kk] = torch.diag_embed(root)
        factors.append(F)
    return factors


def _resolve(dtype: torch.dtype | None, device: torch.device | str | None, generator: torch.Generator | None):
    dtype = DEFAULT_DTYPE if dtype is None else dtype
    if device is None and generator is not None:
        device = generator.device
    return dtype, device


def _per_layer_scale(scale: float | Tensor, depth: int, batch_shape: Sequence[int], dtype, device) -> float | Tensor:
    """``scale^{1/N}``; a tensor of scales (one per run, shape ``batch_shape``) becomes a ``(*batch, 1, 1)`` tensor."""
    if isinstance(scale, Tensor) and scale.numel() != 1:
        if tuple(scale.shape) != tuple(batch_shape):
            raise ValueError(f"a tensor of scales must have the batch shape {tuple(batch_shape)}, got {tuple(scale.shape)}")
        if not bool((scale > 0).all()) or not bool(torch.isfinite(scale).all()):
            raise ValueError("every scale must be positive and finite")
        return (scale.to(dtype=dtype, device=device) ** (1.0 / depth)).reshape(*batch_shape, 1, 1)
    value = float(scale)
    if not value > 0 or value == float("inf"):
        raise ValueError(f"scale must be positive, got {scale}")
    return value ** (1.0 / depth)


def _check_dims(dims: Sequence[int]) -> list[int]:
    dims = [int(d) for d in dims]
    if len(dims) < 2:
        raise ValueError(f"dims must list [d_0, ..., d_N] with depth N >= 1, got {dims}")
    if any(d < 1 for d in dims):
        raise ValueError(f"every width must be >= 1, got dims={dims}")
    return dims


def gaussian_factors(
    dims: Sequence[int],
    scale: float = 1.0,
    *,
    batch_shape: Sequence[int] = (),
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> list[Tensor]:
    """Gaussian factors whose end-to-end map has gain ``scale`` (chapters *Optimization*, *Implicit bias*).

    Entries of ``W_j`` are i.i.d. ``N(0, scale^{2/N} / d_{j-1})``, so ``E||W_j x||^2 = scale^{2/N} ||x||^2`` and
    ``E||W_{N:1} x||^2 = scale^2 ||x||^2``. For square ``n x n`` layers the per-layer standard deviation is
    ``scale^{1/N}/sqrt(n)``, the initialization of Arora, Cohen, Hu and Luo (2019).

    Used in :ref:`opt-initialization` and :doc:`/book/03_implicit_bias`.

    Parameters
    ----------
    dims
        ``[d_0, d_1, ..., d_N]``.
    scale
        End-to-end gain ``s > 0``, or a tensor of gains of shape ``batch_shape`` (one per run).
    batch_shape
        Leading batch dimensions (independent draws).
    generator
        A seeded :class:`torch.Generator` for reproducibility.

    Examples
    --------
    >>> import torch, lnn
    >>> factors = lnn.gaussian_factors([4, 8, 8, 2], 0.1, batch_shape=(5,), generator=torch.Generator().manual_seed(0))
    >>> [tuple(W.shape) for W in factors], factors[0].dtype
    ([(5, 8, 4), (5, 8, 8), (5, 2, 8)], torch.float64)
    """
    dims = _check_dims(dims)
    N = len(dims) - 1
    dtype, device = _resolve(dtype, device, generator)
    per_layer = _per_layer_scale(scale, N, batch_shape, dtype, device)
    return [
        torch.randn(*batch_shape, dims[j], dims[j - 1], generator=generator, dtype=dtype, device=device)
        * (per_layer / math.sqrt(dims[j - 1]))
        for j in range(1, N + 1)
    ]


def identity_factors(
    dims: Sequence[int],
    scale: float = 1.0,
    *,
    batch_shape: Sequence[int] = (),
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> list[Tensor]:
    """Identity-scaled factors ``W_j = scale^{1/N} I_{d_j x d_{j-1}}`` (rectangular identity), so ``W_{N:1} = scale I``
    when all widths are equal. Balanced exactly when all widths are equal (chapter *Implicit bias*, diagonal
    networks). ``scale > 0``, or a tensor of scales of shape ``batch_shape`` (one per run).

    The diagonal networks of :prf:ref:`ib-prop-diagonal`.

    Examples
    --------
    >>> import lnn
    >>> factors = lnn.identity_factors([3, 3, 3], scale=4.0)
    >>> lnn.end_to_end(factors).diagonal().tolist()
    [4.0, 4.0, 4.0]
    """
    dims = _check_dims(dims)
    N = len(dims) - 1
    dtype = DEFAULT_DTYPE if dtype is None else dtype
    per_layer = _per_layer_scale(scale, N, batch_shape, dtype, device)
    out = []
    for j in range(1, N + 1):
        eye = torch.eye(dims[j], dims[j - 1], dtype=dtype, device=device) * per_layer
        out.append(eye.expand(*batch_shape, dims[j], dims[j - 1]).clone())
    return out


def orthogonal_factors(
    dims: Sequence[int],
    scale: float = 1.0,
    *,
    batch_shape: Sequence[int] = (),
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> list[Tensor]:
    """Random (semi-)orthogonal factors times ``scale^{1/N}``: ``W_j = scale^{1/N} Q_j`` with ``Q_j`` having
    orthonormal rows or columns (QR of a Gaussian matrix, signs fixed so the law is Haar).

    An alternative initialization, :ref:`opt-initialization`.

    Examples
    --------
    >>> import torch, lnn
    >>> W1, W2 = lnn.orthogonal_factors([3, 5, 3], generator=torch.Generator().manual_seed(0))
    >>> torch.allclose(W1.T @ W1, torch.eye(3, dtype=torch.float64))
    True
    """
    dims = _check_dims(dims)
    N = len(dims) - 1
    dtype, device = _resolve(dtype, device, generator)
    per_layer = _per_layer_scale(scale, N, batch_shape, dtype, device)
    out = []
    for j in range(1, N + 1):
        rows, cols = dims[j], dims[j - 1]
        A = torch.randn(*batch_shape, max(rows, cols), min(rows, cols), generator=generator, dtype=dtype, device=device)
        Q, R = torch.linalg.qr(A)
        Q = Q * torch.sign(torch.diagonal(R, dim1=-2, dim2=-1)).unsqueeze(-2)
        if rows < cols:
            Q = Q.mT
        out.append(per_layer * Q.contiguous())
    return out
