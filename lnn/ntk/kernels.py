"""Gram matrices of the empirical NTK and parameter Jacobians (chapter *Linearized networks*)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from .networks import ELEMENTWISE_ACTIVATIONS, flat_modules, is_dense_network, mlp  # noqa: F401 (mlp: doctests)

__all__ = ["empirical_ntk", "parameter_jacobian"]

# Blocks of the Gram matrix hold at most this many entries (float64: 32 MiB) per intermediate.
_MAX_BLOCK_ELEMENTS = 1 << 22
_METHODS = ("auto", "structured", "jacobian", "ntk_vp")

# ----------------------------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------------------------


def _param_dtype(model: nn.Module) -> torch.dtype:
    params = list(model.parameters())
    if not params:
        raise ValueError("model has no parameters: its tangent kernel is zero")
    dtypes = {p.dtype for p in params}
    if len(dtypes) != 1:
        raise ValueError(f"all parameters must share one dtype, got {sorted(map(str, dtypes))}")
    return params[0].dtype


def _check_inputs(model: nn.Module, x1: Tensor, x2: Tensor | None) -> tuple[Tensor, Tensor]:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    dtype = _param_dtype(model)
    x2 = x1 if x2 is None else x2
    for name, x in (("x1", x1), ("x2", x2)):
        if not isinstance(x, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim < 2:
            raise ValueError(f"{name} must have shape (n, *input_shape) with a leading batch dimension, got {tuple(x.shape)}")
        if x.dtype != dtype:
            raise ValueError(f"{name} has dtype {x.dtype} but the model's parameters are {dtype}: convert one of them")
    if x1.shape[1:] != x2.shape[1:]:
        raise ValueError(f"x1 and x2 must share the input shape, got {tuple(x1.shape)} and {tuple(x2.shape)}")
    return x1, x2


def _check_dense_input(modules: list[nn.Module], x: Tensor) -> None:
    first = next(m for m in modules if isinstance(m, nn.Linear))
    flat = math.prod(x.shape[1:])
    has_flatten = any(isinstance(m, nn.Flatten) for m in modules)
    if (x.ndim != 2 and not has_flatten) or flat != first.in_features:
        raise ValueError(
            f"inputs of shape {tuple(x.shape)} do not fit the first linear layer ({first.in_features} input features)"
        )


def _chunk(chunk_size: int | None, other: int) -> int:
    if chunk_size is None:
        return max(1, _MAX_BLOCK_ELEMENTS // max(other, 1))
    if isinstance(chunk_size, bool) or int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return int(chunk_size)


# ----------------------------------------------------------------------------------------------------------------
# Dense networks: activations and backpropagated sensitivities, layer by layer
# ----------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def _dense_features(modules: list[nn.Module], x: Tensor) -> tuple[list[Tensor], list[Tensor], list[nn.Linear]]:
    """For each linear layer ``z = W a + b`` of a dense network: the inputs ``a`` (n, d_in) and the sensitivities
    ``delta = d f / d z`` (n, d_out), by one forward and one backward pass done by hand.

    The derivative of the activations between two linear layers is taken entry by entry with autograd (exact for
    any elementwise function, in the model's dtype)."""
    linears: list[nn.Linear] = []
    acts: list[Tensor] = []
    slopes: list[Tensor | None] = []  # derivative of the activation chain after each linear layer
    h = x
    pending: list[nn.Module] = []  # activations since the last linear layer

    def close_chain(z: Tensor) -> tuple[Tensor, Tensor | None]:
        if not pending:
            return z, None
        with torch.enable_grad():
            zz = z.detach().requires_grad_(True)
            out = zz
            for m in pending:
                out = m(out)
            (slope,) = torch.autograd.grad(out, zz, torch.ones_like(out))
        return out.detach(), slope

    z: Tensor | None = None
    for m in modules:
        if isinstance(m, nn.Linear):
            if z is not None:
                h, slope = close_chain(z)
                slopes.append(slope)
            elif pending:  # activations (or Flatten) before the first linear layer act on the input
                for p in pending:
                    h = p(h)
            pending = []
            linears.append(m)
            acts.append(h)
            z = m(h)
        else:
            pending.append(m)
    # the network ends with a linear layer (checked by is_dense_network)
    deltas: list[Tensor] = [None] * len(linears)  # type: ignore[list-item]
    delta = torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)
    for k in range(len(linears) - 1, -1, -1):
        deltas[k] = delta
        if k > 0:
            delta = delta @ linears[k].weight
            slope = slopes[k - 1]
            if slope is not None:
                delta = delta * slope
    return acts, deltas, linears


def _with_ones(a: Tensor, bias: bool) -> Tensor:
    return torch.cat([a, torch.ones_like(a[:, :1])], dim=1) if bias else a


def _structured_ntk(modules: list[nn.Module], x1: Tensor, x2: Tensor | None, chunk_size: int | None) -> Tensor:
    acts1, deltas1, linears = _dense_features(modules, x1)
    if x2 is None:
        acts2, deltas2 = acts1, deltas1
    else:
        acts2, deltas2, _ = _dense_features(modules, x2)
    # a layer y = W a + b contributes (a1 a2^T + 1) * (delta1 delta2^T): append a column of ones for the bias
    a1 = [_with_ones(a, lin.bias is not None) for a, lin in zip(acts1, linears)]
    a2 = a1 if x2 is None else [_with_ones(a, lin.bias is not None) for a, lin in zip(acts2, linears)]
    n1, n2 = x1.shape[0], (x1 if x2 is None else x2).shape[0]
    step = _chunk(chunk_size, n2)

    def rows(s: int, e: int) -> Tensor:
        block = a1[-1][s:e] @ a2[-1].T  # the output layer has delta = 1
        for k in range(len(linears) - 1):
            block.addcmul_(a1[k][s:e] @ a2[k].T, deltas1[k][s:e] @ deltas2[k].T)
        return block

    if step >= n1:
        return rows(0, n1)
    K = torch.empty(n1, n2, dtype=x1.dtype, device=x1.device)
    for s in range(0, n1, step):
        K[s : s + step] = rows(s, min(s + step, n1))
    return K


def _structured_jacobian(modules: list[nn.Module], model: nn.Module, x: Tensor) -> Tensor:
    acts, deltas, linears = _dense_features(modules, x)
    n = x.shape[0]
    pieces: dict[int, Tensor] = {}
    for a, d, lin in zip(acts, deltas, linears):
        pieces[id(lin.weight)] = (d[:, :, None] * a[:, None, :]).reshape(n, -1)
        if lin.bias is not None:
            pieces[id(lin.bias)] = d
    return torch.cat([pieces[id(p)] for p in model.parameters()], dim=1)


# ----------------------------------------------------------------------------------------------------------------
# Any architecture: torch.func
# ----------------------------------------------------------------------------------------------------------------


def _functional(model: nn.Module) -> tuple[Callable[[dict, Tensor], Tensor], dict[str, Tensor]]:
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def f_single(p: dict, x: Tensor) -> Tensor:
        out = functional_call(model, (p, buffers), (x.unsqueeze(0),))
        if out.numel() != 1:
            raise ValueError(f"empirical NTK tools need a scalar-output model; model(x) gave {out.numel()} outputs")
        return out.reshape(())

    return f_single, params


def _generic_jacobian(model: nn.Module, x: Tensor, chunk_size: int | None) -> Tensor:
    f_single, params = _functional(model)
    P = sum(p.numel() for p in params.values())
    step = _chunk(chunk_size, P)
    jac = vmap(jacrev(f_single), in_dims=(None, 0))
    blocks = []
    for s in range(0, x.shape[0], step):
        grads = jac(params, x[s : s + step])
        blocks.append(torch.cat([g.reshape(g.shape[0], -1) for g in grads.values()], dim=1))
    return torch.cat(blocks, dim=0)


def _jacobian_contraction(model: nn.Module, x1: Tensor, x2: Tensor | None, chunk_size: int | None) -> Tensor:
    """K = J(x1) J(x2)^T from per-example Jacobian blocks of at most 2**22 entries (or ``chunk_size`` inputs). The
    blocks of x2 are kept when they fit in 2**26 entries in all, and recomputed for each block of x1 otherwise."""
    P = sum(p.numel() for p in model.parameters())
    step = _chunk(chunk_size, P)
    xb = x1 if x2 is None else x2
    starts2 = list(range(0, xb.shape[0], step))
    cache = xb.shape[0] * P <= (_MAX_BLOCK_ELEMENTS << 4)
    blocks2 = [_generic_jacobian(model, xb[s : s + step], step) for s in starts2] if cache else None
    K = torch.empty(x1.shape[0], xb.shape[0], dtype=x1.dtype, device=x1.device)
    for i, s1 in enumerate(range(0, x1.shape[0], step)):
        if x2 is None and blocks2 is not None:
            J1 = blocks2[i]
        else:
            J1 = _generic_jacobian(model, x1[s1 : s1 + step], step)
        for k, s2 in enumerate(starts2):
            J2 = blocks2[k] if blocks2 is not None else _generic_jacobian(model, xb[s2 : s2 + step], step)
            K[s1 : s1 + J1.shape[0], s2 : s2 + J2.shape[0]] = J1 @ J2.T
    return K


def _ntk_vp(model: nn.Module, x1: Tensor, x2: Tensor, chunk_size: int | None) -> Tensor:
    """NTK-vector products (Novak et al. 2022): K[i, :] = J(x2) (J(x1)^T e_i), a VJP at x1 then a JVP at x2."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def f(p: dict, x: Tensor) -> Tensor:
        return functional_call(model, (p, buffers), (x,)).reshape(x.shape[0])

    out1, vjp_fn = vjp(lambda p: f(p, x1), params)
    if out1.numel() != x1.shape[0]:
        raise ValueError("empirical NTK tools need a scalar-output model")

    def row(e: Tensor) -> Tensor:
        (tangent,) = vjp_fn(e)
        return jvp(lambda p: f(p, x2), (params,), (tangent,))[1]

    # per row of K: a P-vector tangent plus the JVP's activations on all of x2 (about n2 times the widths)
    P = sum(p.numel() for p in params.values())
    width = sum(p.shape[0] for p in params.values() if p.ndim >= 1)
    step = _chunk(chunk_size, P + x2.shape[0] * max(width, 1))
    eye = torch.eye(x1.shape[0], dtype=x1.dtype, device=x1.device)
    return torch.cat([vmap(row)(eye[s : s + step]) for s in range(0, x1.shape[0], step)], dim=0)


# ----------------------------------------------------------------------------------------------------------------
# Public: Gram matrices and Jacobians
# ----------------------------------------------------------------------------------------------------------------


def empirical_ntk(
    model: nn.Module,
    x1: Tensor,
    x2: Tensor | None = None,
    *,
    method: str = "auto",
    chunk_size: int | None = None,
) -> Tensor:
    """Gram matrix of the empirical neural tangent kernel of a scalar-output model (chapter *Linearized networks*):

    .. math:: K_{ik} = \\Theta(x_i, x'_k) = \\nabla_\\theta f(x_i; \\theta)^\\top \\nabla_\\theta f(x'_k; \\theta),

    over all parameters of ``model`` at their current values (Jacot et al. 2018).

    For a dense network (:func:`is_dense_network`) the Jacobian is never formed. A layer ``z = W a + b`` contributes

    .. math:: \\big(a(x) a(x')^\\top + 1\\big)\\,\\big(\\delta(x)^\\top \\delta(x')\\big),
              \\qquad \\delta(x) = \\partial f(x) / \\partial z,

    since ``d f / d W = delta a^T`` (the ``+ 1`` is the bias), so ``K`` is a sum over layers of elementwise
    products of small Gram matrices, computed from one forward and one backward pass per input set. For other
    architectures ``method="jacobian"`` contracts per-example Jacobians (``vmap(jacrev)``) and ``"ntk_vp"`` uses
    NTK-vector products, both from :mod:`torch.func` (Novak et al. 2022). All methods are exact up to rounding.

    Parameters
    ----------
    model : nn.Module
        Scalar-output model: ``model(x)`` has shape ``(n,)`` or ``(n, 1)``. All parameters share one dtype.
    x1 : Tensor, shape (n1, *input_shape)
        First set of inputs, in the parameters' dtype.
    x2 : Tensor, shape (n2, *input_shape), optional
        Second set; ``None`` means ``x1`` (the symmetric Gram matrix, computed with one pass).
    method : {"auto", "structured", "jacobian", "ntk_vp"}
        ``"auto"`` is ``"structured"`` for dense networks and ``"jacobian"`` otherwise.
    chunk_size : int, optional
        Rows of ``K`` (or inputs per Jacobian block) computed at once; by default blocks of at most 2**22 entries,
        so memory stays bounded for any ``n``.

    Returns
    -------
    Tensor, shape (n1, n2)

    Examples
    --------
    >>> net = mlp([3, 5, 1], "tanh", generator=torch.Generator().manual_seed(0))
    >>> x = torch.randn(4, 3, dtype=torch.float64)
    >>> K = empirical_ntk(net, x)
    >>> bool(torch.allclose(K, empirical_ntk(net, x, method="jacobian")))
    True
    """
    x1, x2_ = _check_inputs(model, x1, x2)
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    dense = is_dense_network(model)
    if method == "structured" and not dense:
        raise ValueError(
            "method='structured' needs an nn.Sequential of nn.Linear layers and elementwise activations ending "
            "in one output; use method='jacobian' or 'ntk_vp'"
        )
    if method in ("auto", "structured") and dense:
        modules = flat_modules(model)
        assert modules is not None
        _check_dense_input(modules, x1)
        return _structured_ntk(modules, x1, x2, chunk_size)
    if method == "ntk_vp":
        return _ntk_vp(model, x1, x2_, chunk_size).detach()
    return _jacobian_contraction(model, x1, x2, chunk_size).detach()


def parameter_jacobian(model: nn.Module, x: Tensor, *, chunk_size: int | None = None) -> Tensor:
    """The explicit Jacobian ``J[i] = nabla_theta f(x_i; theta)`` of a scalar-output model, shape ``(n, P)``, its
    columns ordered as ``torch.cat([p.flatten() for p in model.parameters()])`` (chapter *Linearized networks*).

    With it the linearization is linear regression on fixed features, ``f_lin(X) = f(X; theta_0) + J (theta -
    theta_0)``, and ``K = J J^T``. Dense networks use the layer-wise form ``d f / d W = delta a^T``; other models
    ``vmap(jacrev)`` in chunks of ``chunk_size`` inputs. Memory is ``n * P`` entries.
    """
    x, _ = _check_inputs(model, x, None)
    if is_dense_network(model):
        modules = flat_modules(model)
        assert modules is not None
        _check_dense_input(modules, x)
        return _structured_jacobian(modules, model, x)
    return _generic_jacobian(model, x, chunk_size).detach()
