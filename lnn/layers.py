"""Overparameterized layers: a dense layer whose weight is a product of matrices (chapter *Applications*).

Arora, Cohen and Hazan (2018, section 8) replace each dense layer ``x -> W x + b`` of a non-linear network by
``x -> W_N \\cdots W_1 x + b``. The new layer computes exactly the same family of functions (a product of matrices
is a matrix, and with hidden widths ``>= min(d_in, d_out)`` every matrix is such a product), so any change in how
training goes is an effect of the parametrization on optimization, not of expressiveness. Under gradient descent
from a balanced factorization the end-to-end weight ``W = W_{N:1}`` moves, to first order in the step size, by the
preconditioned step ``-eta P_W(G)`` of chapter *Optimization* (:func:`lnn.preconditioned_gradient`).

This module holds the layer (:class:`OverparameterizedLinear`), the rewrite of a network's dense layers into such
products and back (:func:`overparameterize`, :func:`collapse`). Chapter *Applications* trains many copies of one
small network at once with :func:`lnn.training.train_ensemble`; ``ensemble_train``, its earlier name here, is the
same function.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import check_depth
from ._checks import hidden_widths
from .network import balanced_factors, end_to_end
from .training import train_ensemble

__all__ = [
    "OverparameterizedLinear",
    "overparameterize",
    "collapse",
    "count_parameters",
]

_INITS = ("balanced", "identity")


def _factorize(W: Tensor, depth: int, hidden: list[int], init: str) -> list[Tensor]:
    """Factors ``[W_1..W_N]`` with ``W_N \\cdots W_1 = W`` (computed in float64, returned in ``W``'s dtype)."""
    if init not in _INITS:
        raise ValueError(f"init must be one of {_INITS}, got {init!r}")
    d_out, d_in = W.shape
    W64 = W.detach().to(torch.float64)
    if depth == 1:
        factors = [W64.clone()]
    elif init == "balanced":
        if min(hidden) < min(d_in, d_out):
            raise ValueError(
                f"a balanced factorization of a {d_out}x{d_in} weight needs hidden widths >= {min(d_in, d_out)}, "
                f"got {hidden}"
            )
        factors = balanced_factors(W64, depth, widths=hidden)
    elif init == "identity":
        if min(hidden) < d_out:
            raise ValueError(f"the identity factorization needs hidden widths >= d_out = {d_out}, got {hidden}")
        dims = [d_in] + hidden + [d_out]
        factors = [torch.zeros(dims[1], d_in, dtype=torch.float64)]
        factors[0][:d_out] = W64  # W_1 = [W; 0]
        factors += [torch.eye(dims[j], dims[j - 1], dtype=torch.float64) for j in range(2, depth + 1)]
    return [f.to(dtype=W.dtype, device=W.device).contiguous() for f in factors]


class OverparameterizedLinear(nn.Module):
    """A dense layer whose weight is a product of ``depth`` matrices: ``y = W_N \\cdots W_1 x + b``.

    .. math:: y = W_{N:1}\\, x + b, \\qquad W_{N:1} = W_N W_{N-1} \\cdots W_1,\\quad W_j \\in \\mathbb{R}^{d_j \\times d_{j-1}},

    with ``d_0 = in_features`` and ``d_N = out_features`` (chapter *Applications*, acceleration by
    overparameterization). Hidden widths ``d_1..d_{N-1}`` default to ``min(in_features, out_features)``, the
    smallest widths that leave the set of computable maps unchanged. A freshly constructed layer draws ``W`` as
    :class:`torch.nn.Linear` would and stores a balanced factorization of it; :meth:`from_linear` factorizes the
    weight of an existing layer, so the new layer computes the same function.

    Parameters
    ----------
    in_features, out_features
        ``d_0`` and ``d_N``.
    depth
        Number of factors ``N >= 1`` (``N = 1`` is an ordinary dense layer).
    widths
        Hidden widths ``d_1..d_{N-1}`` (an int for all).
    bias
        Whether to add a bias ``b`` (not factorized).

    Attributes
    ----------
    factors
        :class:`torch.nn.ParameterList` ``[W_1, ..., W_N]``.
    weight
        The end-to-end matrix ``W_{N:1}`` (a tensor computed on access; differentiable).

    Examples
    --------
    >>> import torch
    >>> from lnn.layers import OverparameterizedLinear
    >>> dense = torch.nn.Linear(5, 3)
    >>> deep = OverparameterizedLinear.from_linear(dense, depth=3)
    >>> x = torch.randn(4, 5)
    >>> bool(torch.allclose(deep(x), dense(x), atol=1e-5))
    True
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        depth: int = 2,
        widths: int | Sequence[int] | None = None,
        bias: bool = True,
        *,
        init: str = "balanced",
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if int(in_features) < 1 or int(out_features) < 1:
            raise ValueError(f"in_features and out_features must be >= 1, got {in_features}, {out_features}")
        reference = nn.Linear(int(in_features), int(out_features), bias=bias, dtype=dtype, device=device)
        self._build(reference.weight, reference.bias, depth, widths, init)

    def _build(self, W: Tensor, b: Tensor | None, depth: int, widths, init: str) -> None:
        self.depth = check_depth(depth)
        self.out_features, self.in_features = W.shape
        self.widths = hidden_widths(widths, self.depth, min(self.in_features, self.out_features))
        if any(w < 1 for w in self.widths):
            raise ValueError(f"hidden widths must be >= 1, got {self.widths}")
        self.init = init
        self.factors = nn.ParameterList([nn.Parameter(f) for f in _factorize(W, self.depth, self.widths, init)])
        self.bias = None if b is None else nn.Parameter(b.detach().clone())

    @classmethod
    def from_linear(
        cls,
        linear: nn.Linear,
        depth: int = 2,
        widths: int | Sequence[int] | None = None,
        *,
        init: str = "balanced",
    ) -> "OverparameterizedLinear":
        """The product layer computing the same function as ``linear``: ``W_{N:1} = linear.weight`` and the same bias.

        ``init="balanced"`` uses :func:`lnn.balanced_factors` (``W_N = U S^{1/N}``, ``W_j = S^{1/N}``,
        ``W_1 = S^{1/N} V^T``, zero-padded; every balancedness gap vanishes), computed in float64 and stored in the
        layer's dtype. ``init="identity"`` sets ``W_1 = [W; 0]`` and the other factors to rectangular identities
        (needs hidden widths ``>= out_features``).
        """
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"from_linear expects a torch.nn.Linear, got {type(linear).__name__}")
        layer = cls.__new__(cls)  # no fresh random draw: the factors come from ``linear``
        nn.Module.__init__(layer)
        layer._build(linear.weight, linear.bias, depth, widths, init)
        return layer

    @property
    def weight(self) -> Tensor:
        return end_to_end(list(self.factors))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def to_linear(self) -> nn.Linear:
        """An ordinary :class:`torch.nn.Linear` with weight ``W_{N:1}`` and the same bias (the same function)."""
        W = self.weight.detach()
        out = nn.utils.skip_init(  # no random draw: the weights are overwritten
            nn.Linear, self.in_features, self.out_features, bias=self.bias is not None, dtype=W.dtype, device=W.device
        )
        with torch.no_grad():
            out.weight.copy_(W)
            if self.bias is not None:
                out.bias.copy_(self.bias)
        return out

    def extra_repr(self) -> str:
        dims = [self.in_features] + self.widths + [self.out_features]
        return f"dims={dims}, bias={self.bias is not None}, init={self.init!r}"


def _replace(module: nn.Module, convert: Callable[[nn.Module], nn.Module | None]) -> int:
    count = 0
    for name, child in module.named_children():
        new = convert(child)
        if new is not None:
            setattr(module, name, new)
            count += 1
        else:
            count += _replace(child, convert)
    return count


def overparameterize(
    model: nn.Module,
    depth: int = 2,
    widths: int | Sequence[int] | None = None,
    *,
    init: str = "balanced",
) -> nn.Module:
    """A copy of ``model`` with every :class:`torch.nn.Linear` replaced by an :class:`OverparameterizedLinear`
    of the given ``depth`` that computes the same function (chapter *Applications*).

    The copy computes the same function as ``model`` at initialization (up to rounding in the model's dtype) and
    can express exactly the same functions; only the parametrization, hence the training dynamics, changes.
    ``model`` itself is left untouched. Raises :class:`ValueError` when the model has no dense layer.
    """
    depth = check_depth(depth)
    if init not in _INITS:
        raise ValueError(f"init must be one of {_INITS}, got {init!r}")
    new = copy.deepcopy(model)
    convert = lambda m: OverparameterizedLinear.from_linear(m, depth, widths, init=init) if isinstance(m, nn.Linear) else None  # noqa: E731
    if isinstance(new, nn.Linear):
        return convert(new)
    if _replace(new, convert) == 0:
        raise ValueError(f"overparameterize found no torch.nn.Linear layer in {type(model).__name__}")
    return new


def collapse(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every :class:`OverparameterizedLinear` replaced by the :class:`torch.nn.Linear` with its
    end-to-end weight: the same function, ordinary parametrization (the inverse of :func:`overparameterize` up to
    the choice of factors). It shows that overparameterization adds no expressiveness (chapter *Applications*)."""
    if isinstance(model, OverparameterizedLinear):
        return model.to_linear()
    new = copy.deepcopy(model)
    _replace(new, lambda m: m.to_linear() if isinstance(m, OverparameterizedLinear) else None)
    return new


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# The earlier name of lnn.training.train_ensemble (the one training loop), kept for code that imports it from here.
ensemble_train = train_ensemble
