"""Hierarchical tensor factorization (chapter *Implicit bias*, section on hierarchical tensor factorization).

A hierarchical tensor factorization (HTF) of an order-``N`` tensor, ``N = 2^L``, follows a perfect binary *mode
tree* whose leaves are the modes ``1..N`` and whose internal nodes merge adjacent pairs (the pooling geometry of a
deep convolutional network with product pooling of size 2; Razin, Maman, Cohen 2022). Its weights are

* level ``1``: one matrix ``A^(1,n)`` of shape ``(..., d_n, R_1)`` per mode ``n``;
* level ``l = 2..L``: one matrix ``A^(l,k)`` of shape ``(..., R_{l-1}, R_l)`` per node ``k`` of that level;
* the output: ``A^(L+1)`` of shape ``(..., R_L, 1)``.

With ``phi^(1,n) = A^(1,n)`` (one vector per column), each node ``k`` at level ``l >= 2`` with children
``c, c'`` holds

.. math:: \\phi^{(l,k)}_{:, r} = \\sum_{s=1}^{R_{l-1}} A^{(l,k)}_{s r}\\, \\phi^{(l-1,c)}_{:, s} \\otimes \\phi^{(l-1,c')}_{:, s},

and the tensor is ``W = sum_s A^(L+1)_s phi^(L,1)_{:,s} ⊗ phi^(L,2)_{:,s}``. For ``N = 2`` this is a depth-2
matrix factorization ``A^(1,1) diag(A^(2)) A^(1,2)^T``; the CP factorization of :mod:`lnn.tensor` is the special
case of a single level (a shallow network).

A *local component* ``(l, k, s)`` gathers the weight vectors that meet in one product pooling: column ``s`` of each
child factor ``A^(l,c)``, ``A^(l,c')`` and row ``s`` of the parent factor ``A^(l+1,k)``; its norm is the product of
the three vector norms. Gradient flow moves each local component norm at a rate proportional to its own norm to
the power ``2 - 2/K`` with ``K = 3`` vectors, so local components are learned one after another and most stay
near zero: a bias towards low *hierarchical rank*, the ranks of the matricizations that split a node's modes from
the rest. Distant modes (split near the root) interact through few components: a bias towards locality.

All weights are matrices with shared leading batch dimensions (independent runs), so :class:`HTProduct` plugs into
:func:`lnn.gradient_descent` like :class:`lnn.CPProduct`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "HTProduct",
    "ht_tensor",
    "ht_gaussian_factors",
    "ht_local_component_norms",
    "ht_mode_tree",
    "ht_num_levels",
    "matricize",
]


def ht_num_levels(order: int) -> int:
    """The number of levels ``L = log2(order)`` of the perfect binary mode tree; ``ValueError`` unless the order
    is a power of two and at least 2.

    Defined in :prf:ref:`ib-def-htf`.

    Examples
    --------
    >>> from lnn.hierarchical import ht_num_levels
    >>> ht_num_levels(4), ht_num_levels(8)
    (2, 3)
    """
    if isinstance(order, bool) or int(order) != order or order < 2 or (int(order) & (int(order) - 1)) != 0:
        raise ValueError(f"the hierarchical factorization needs an order that is a power of two >= 2, got {order!r}")
    return int(order).bit_length() - 1


def ht_mode_tree(order: int) -> list[list[tuple[int, ...]]]:
    """The nodes of the mode tree level by level, as tuples of (0-based) modes: level 0 is the leaves
    ``[(0,), (1,), ...]``, the last level the root ``[(0, ..., order-1)]``. Adjacent nodes are merged, so for order
    4 the levels are ``[(0,), (1,), (2,), (3,)]``, ``[(0, 1), (2, 3)]``, ``[(0, 1, 2, 3)]``.

    The mode tree of :prf:ref:`ib-def-htf`.

    Examples
    --------
    >>> from lnn.hierarchical import ht_mode_tree
    >>> ht_mode_tree(4)
    [[(0,), (1,), (2,), (3,)], [(0, 1), (2, 3)], [(0, 1, 2, 3)]]
    """
    levels = ht_num_levels(order)
    tree = [[(n,) for n in range(order)]]
    for _ in range(levels):
        prev = tree[-1]
        tree.append([prev[2 * k] + prev[2 * k + 1] for k in range(len(prev) // 2)])
    return tree


def _split(params: Sequence[Tensor]) -> tuple[list[list[Tensor]], Tensor, int]:
    """Split the flat parameter list into levels ``[[A^(1,1..N)], [A^(2,..)], ...]`` and the output matrix,
    checking every shape; returns ``(levels, output, order)``."""
    params = list(params)
    if not params or not all(isinstance(p, Tensor) for p in params):
        raise ValueError("HTF parameters must be a non-empty list of tensors")
    total = len(params) - 1  # N + N/2 + ... + 2 = 2N - 2 factor matrices, plus the output
    order = (total + 2) // 2
    if 2 * order - 2 != total or order < 2:
        raise ValueError(
            f"an HTF of order N has 2N - 1 weight matrices (N leaves, N/2 + ... + 2 internal, 1 output); got {len(params)}"
        )
    ht_num_levels(order)
    batch = params[0].shape[:-2]
    for i, p in enumerate(params):
        if p.ndim < 2 or p.shape[:-2] != batch:
            raise ValueError(f"HTF weight {i} must be a (batch of) matrices with batch shape {tuple(batch)}, got {tuple(p.shape)}")
    levels, start, count = [], 0, order
    while count >= 2:
        levels.append(params[start : start + count])
        start += count
        count //= 2
    output = params[-1]
    for l, level in enumerate(levels):
        width = level[0].shape[-1]
        for k, A in enumerate(level):
            if A.shape[-1] != width:
                raise ValueError(f"level {l + 1}: every factor needs the same number of columns R_{l + 1} = {width}, factor {k} has {A.shape[-1]}")
            if l > 0 and A.shape[-2] != levels[l - 1][0].shape[-1]:
                raise ValueError(
                    f"level {l + 1}: factor {k} must have R_{l} = {levels[l - 1][0].shape[-1]} rows, got {A.shape[-2]}"
                )
    if output.shape[-2:] != (levels[-1][0].shape[-1], 1):
        raise ValueError(f"the output weight must have shape (..., R_L, 1) = (..., {levels[-1][0].shape[-1]}, 1), got {tuple(output.shape)}")
    return levels, output, order


def _contract(levels: list[list[Tensor]], output: Tensor) -> Tensor:
    """The HTF tensor flattened to ``(..., prod d_n)`` (row-major over the modes)."""
    nodes = list(levels[0])  # (..., D_node, R)
    for level in levels[1:] + [[output]]:
        pooled = []
        for k, A in enumerate(level):
            a, b = nodes[2 * k], nodes[2 * k + 1]
            psi = (a.unsqueeze(-2) * b.unsqueeze(-3)).reshape(*a.shape[:-2], a.shape[-2] * b.shape[-2], a.shape[-1])
            pooled.append(psi @ A)
        nodes = pooled
    return nodes[0].squeeze(-1)


def ht_tensor(params: Sequence[Tensor]) -> Tensor:
    """The tensor of a hierarchical tensor factorization, shape ``(..., d_1, ..., d_N)`` (module docstring).

    Defined in :prf:ref:`ib-def-htf`.

    Examples
    --------
    >>> import torch
    >>> from lnn.hierarchical import ht_tensor, ht_gaussian_factors
    >>> ht_tensor(ht_gaussian_factors([2, 3, 2, 3], [4, 5], 0.1)).shape
    torch.Size([2, 3, 2, 3])
    """
    levels, output, order = _split(params)
    dims = [A.shape[-2] for A in levels[0]]
    flat = _contract(levels, output)
    return flat.reshape(*flat.shape[:-1], *dims)


def ht_gaussian_factors(
    dims: Sequence[int],
    widths: int | Sequence[int],
    scale: float,
    *,
    batch_shape: Sequence[int] = (),
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> list[Tensor]:
    """HTF weights with i.i.d. ``N(0, scale^2)`` entries (the near-zero initialization of Razin, Maman, Cohen 2022).

    The initialization of :prf:ref:`ib-prop-local`.

    Parameters
    ----------
    dims
        Mode dimensions ``d_1..d_N``, ``N`` a power of two.
    widths
        ``R_1..R_L`` (one per level; an int for all levels).
    scale
        Standard deviation of every entry.

    Examples
    --------
    >>> import torch
    >>> from lnn.hierarchical import ht_gaussian_factors, ht_tensor
    >>> params = ht_gaussian_factors([2, 3, 2, 3], 4, 0.1, generator=torch.Generator().manual_seed(0))
    >>> len(params), tuple(ht_tensor(params).shape)  # 4 leaf weights, 2 node weights, the output weight
    (7, (2, 3, 2, 3))
    """
    dims = [int(d) for d in dims]
    L = ht_num_levels(len(dims))
    if any(d < 1 for d in dims):
        raise ValueError(f"every mode dimension must be >= 1, got {dims}")
    widths = [int(widths)] * L if isinstance(widths, int) else [int(w) for w in widths]
    if len(widths) != L or any(w < 1 for w in widths):
        raise ValueError(f"widths must give R_1..R_L, {L} positive integers, got {widths}")
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    if device is None and generator is not None:
        device = generator.device

    def draw(rows: int, cols: int) -> Tensor:
        return scale * torch.randn(*batch_shape, rows, cols, generator=generator, dtype=dtype, device=device)

    params = [draw(d, widths[0]) for d in dims]
    count = len(dims) // 2
    for l in range(1, L):
        params += [draw(widths[l - 1], widths[l]) for _ in range(count)]
        count //= 2
    params.append(draw(widths[-1], 1))
    return params


def ht_local_component_norms(params: Sequence[Tensor]) -> list[Tensor]:
    """Local component norms, one tensor per level ``l = 1..L`` of shape ``(..., N / 2^l, R_l)``:

    .. math:: \\big\\|A^{(l,c)}_{:, s}\\big\\|\\,\\big\\|A^{(l,c')}_{:, s}\\big\\|\\,\\big\\|A^{(l+1,k)}_{s, :}\\big\\|

    for the node ``k`` of level ``l + 1`` with children ``c, c'`` and ``s = 1..R_l`` (``A^(L+1)`` is the output
    weight). A local component with zero norm contributes nothing to the tensor; the number of non-negligible
    local components at a node bounds the rank of the matricization that splits that node's modes from the rest.

    The local components of :prf:ref:`ib-def-htf`, learned incrementally by :prf:ref:`ib-prop-local`.

    Examples
    --------
    >>> import torch
    >>> from lnn.hierarchical import ht_gaussian_factors, ht_local_component_norms
    >>> params = ht_gaussian_factors([2, 2, 2, 2], 3, 0.1, generator=torch.Generator().manual_seed(0))
    >>> [tuple(n.shape) for n in ht_local_component_norms(params)]
    [(2, 3), (1, 3)]
    """
    levels, output, _ = _split(params)
    parents = levels[1:] + [[output]]
    out = []
    for level, above in zip(levels, parents):
        col = [torch.linalg.vector_norm(A, dim=-2) for A in level]  # (..., R_l)
        rows = [torch.linalg.vector_norm(A, dim=-1) for A in above]  # (..., R_l)
        out.append(torch.stack([col[2 * k] * col[2 * k + 1] * rows[k] for k in range(len(above))], -2))
    return out


def matricize(T: Tensor, row_modes: Sequence[int], *, batch_dims: int = 0) -> Tensor:
    """The matricization of ``T`` with the modes ``row_modes`` (0-based, in the given order) indexing rows and the
    remaining modes, in increasing order, indexing columns. ``batch_dims`` leading dimensions are kept as batch
    dimensions. The rank of ``matricize(T, node)`` for the nodes of the mode tree is the *hierarchical rank*.

    The matricizations that define the hierarchical rank, :prf:ref:`ib-def-htf`.

    Examples
    --------
    >>> import torch
    >>> from lnn.hierarchical import matricize
    >>> tuple(matricize(torch.zeros(2, 3, 4, 5), [0, 2]).shape)
    (8, 15)
    """
    order = T.ndim - batch_dims
    rows = [int(m) for m in row_modes]
    if len(set(rows)) != len(rows) or any(not 0 <= m < order for m in rows) or not 0 < len(rows) < order + 1:
        raise ValueError(f"row_modes must be distinct modes in [0, {order}), got {list(row_modes)}")
    cols = [m for m in range(order) if m not in rows]
    perm = list(range(batch_dims)) + [batch_dims + m for m in rows + cols]
    P = T.permute(perm)
    batch = T.shape[:batch_dims]
    nrows = math.prod(T.shape[batch_dims + m] for m in rows)
    return P.reshape(*batch, nrows, -1)


class HTProduct:
    """Parametrization of :func:`lnn.gradient_descent` by a hierarchical tensor factorization: parameters
    ``[A^(1,1..N), A^(2,..), ..., A^(L+1)]`` (the order of :func:`ht_gaussian_factors`), end-to-end tensor
    :func:`ht_tensor`, and the gradient ``d ell / d A`` by back-propagation through the contraction.

    Defined in :prf:ref:`ib-def-htf`; its dynamics in :prf:ref:`ib-prop-local`.

    Examples
    --------
    >>> import torch, lnn
    >>> from lnn.hierarchical import HTProduct, ht_gaussian_factors
    >>> T = torch.ones(2, 2, 2, 2, dtype=torch.float64) / 4
    >>> task = lnn.Completion(T, torch.ones(2, 2, 2, 2, dtype=torch.bool), reduction="sum")
    >>> params = ht_gaussian_factors([2, 2, 2, 2], 2, 0.5, generator=torch.Generator().manual_seed(0))
    >>> run = lnn.gradient_descent(params, task, lr=0.1, steps=1500, parametrization=HTProduct())
    >>> bool(run.final_loss < 1e-5)
    True
    """

    def check(self, params: list[Tensor]) -> tuple[int, ...]:
        _split(params)
        return tuple(params[0].shape[:-2])

    def forward(self, params: list[Tensor]) -> tuple[Tensor, tuple[Tensor, list[Tensor]]]:
        leaves = [p.detach().requires_grad_(True) for p in params]
        with torch.enable_grad():
            levels, output, _ = _split(leaves)
            flat = _contract(levels, output)
        dims = [A.shape[-2] for A in levels[0]]
        W = flat.detach().reshape(*flat.shape[:-1], *dims)
        return W, (flat, leaves)

    def direction(self, params: list[Tensor], cache: tuple[Tensor, list[Tensor]], G: Tensor) -> list[Tensor]:
        flat, leaves = cache
        grads = torch.autograd.grad(flat, leaves, grad_outputs=G.reshape(flat.shape))
        return list(grads)
