"""Linearized networks and the empirical neural tangent kernel (chapter *Linearized networks*).

A network ``f(x; theta)`` with parameters ``theta in R^P`` is compared with its first-order Taylor expansion around
the initialization ``theta_0`` (Lee et al. 2019),

.. math:: f_{lin}(x; \\theta) = f(x; \\theta_0) + \\nabla_\\theta f(x; \\theta_0)^\\top (\\theta - \\theta_0),

whose tangent kernel is the empirical NTK of the network at ``theta_0`` (Jacot et al. 2018),

.. math:: \\Theta(x, x') = \\nabla_\\theta f(x; \\theta)^\\top \\nabla_\\theta f(x'; \\theta).

The module computes Gram matrices of ``Theta`` (fast, layer by layer, for dense networks; by Jacobian contraction or
NTK-vector products otherwise), the explicit Jacobian, the linearized model as a trainable ``nn.Module``, and the
kernel diagnostics of Ortiz-Jimenez, Moosavi-Dezfooli and Frossard (2021): kernel-target alignment, energy
concentration on the kernel's eigenvectors, eigenfunction tasks, the rotation of the kernel during training, and
the closed-form predictions of gradient descent on the linearized model (kernel regression).

Every function here concerns scalar-output models: ``model(x)`` returns shape ``(n,)`` or ``(n, 1)``. Models are
evaluated example by example in the fallback methods, so put models with batch statistics in ``eval()`` mode.
"""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

__all__ = [
    "mlp",
    "lenet",
    "is_dense_network",
    "empirical_ntk",
    "parameter_jacobian",
    "LinearizedModel",
    "linearize",
    "kernel_alignment",
    "kernel_eigh",
    "energy_concentration",
    "eigenfunction_labels",
    "rotation_ratios",
    "kernel_gd_residuals",
    "kernel_regression_gd",
    "minibatches",
    "train_binary",
    "kernel_train_binary",
]

#: Parameter-free modules that act entry by entry; a dense network alternates them with ``nn.Linear``.
ELEMENTWISE_ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.Identity,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
    nn.Softsign,
    nn.Hardtanh,
    nn.Hardsigmoid,
    nn.Hardswish,
    nn.Tanhshrink,
    nn.LogSigmoid,
)

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
    "silu": nn.SiLU,
    "identity": nn.Identity,
}

# Blocks of the Gram matrix hold at most this many entries (float64: 32 MiB) per intermediate.
_MAX_BLOCK_ELEMENTS = 1 << 22
_METHODS = ("auto", "structured", "jacobian", "ntk_vp")
_REDUCTION_SCALE = {"half_sum": 1.0, "sum": 2.0, "mean": 2.0}  # "mean" is further divided by n


# ----------------------------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------------------------


def mlp(
    dims: Sequence[int],
    activation: str = "relu",
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> nn.Sequential:
    """The chapter's fully connected network ``d_0 - d_1 - ... - d_L``: ``nn.Linear`` layers separated by an
    elementwise ``activation``, with weights drawn i.i.d. from ``N(0, 1/fan_in)`` and zero biases (LeCun-normal
    initialization, chapter *Linearized networks*; the base setting is ``dims = [64, 100, 100, 1]`` with ReLU).

    Parameters
    ----------
    dims : sequence of int
        Layer widths ``[d_0, ..., d_L]``, ``L >= 1``; use ``d_L = 1`` for the scalar-output models of this module.
    activation : {"relu", "tanh", "gelu", "sigmoid", "softplus", "silu", "identity"}
        The nonlinearity between layers (none after the last layer).
    generator : torch.Generator, optional
        Source of randomness, for reproducible initializations.
    dtype : torch.dtype
        Parameter dtype (float64 by default, the precision of the book's exactness checks).

    Examples
    --------
    >>> net = mlp([64, 100, 100, 1], generator=torch.Generator().manual_seed(0))
    >>> sum(p.numel() for p in net.parameters())
    16701
    """
    dims = [int(d) for d in dims]
    if len(dims) < 2 or any(d < 1 for d in dims):
        raise ValueError(f"dims must list at least two positive widths [d_0, ..., d_L], got {dims}")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    for j, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        linear = nn.Linear(d_in, d_out, dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(d_out, d_in, generator=generator, dtype=dtype) / math.sqrt(d_in))
            linear.bias.zero_()
        layers.append(linear)
        if j < len(dims) - 2:
            layers.append(_ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def _lecun_(layer: nn.Module, generator: torch.Generator | None) -> None:
    """LeCun-normal initialization in place: weights ``N(0, 1/fan_in)``, zero bias."""
    w = layer.weight
    fan_in = math.prod(w.shape[1:])
    with torch.no_grad():
        w.copy_(torch.randn(w.shape, generator=generator, dtype=w.dtype) / math.sqrt(fan_in))
        if layer.bias is not None:
            layer.bias.zero_()


def lenet(
    activation: str = "relu",
    *,
    channels: Sequence[int] = (6, 16),
    hidden: Sequence[int] = (120, 84),
    image_size: int = 8,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> nn.Sequential:
    """A LeNet-like convolutional network for ``image_size x image_size`` grey images with a scalar output
    (LeCun et al. 1998, scaled to the 8x8 digits of chapter *Linearized networks*):

    ``conv 3x3 (1 -> 6, padding 1) - act - avg-pool 2 - conv 3x3 (6 -> 16, padding 1) - act - avg-pool 2 -
    flatten - dense 64 - 120 - act - 84 - act - 1``

    On 8x8 inputs the feature maps are 6 x 8 x 8, 6 x 4 x 4, 16 x 4 x 4, 16 x 2 x 2 = 64 features, and the network
    has 18,989 parameters. Weights are LeCun-normal (``N(0, 1/fan_in)``, ``fan_in = in_channels * 9`` for a
    convolution) with zero biases, as in :func:`mlp`. Inputs may be flat, ``(n, image_size**2)`` (like the rows of
    the digits data), or images ``(n, 1, image_size, image_size)``: the network starts with ``nn.Flatten`` then
    ``nn.Unflatten``. :func:`empirical_ntk` computes its Gram matrix layer by layer, without a Jacobian.

    Parameters
    ----------
    activation : {"relu", "tanh", "gelu", "sigmoid", "softplus", "silu", "identity"}
        The nonlinearity after each convolution and each hidden dense layer.
    channels : (int, int)
        Output channels of the two convolutions.
    hidden : sequence of int
        Widths of the hidden dense layers.
    image_size : int
        Side of the square input image, divisible by 4.
    generator, dtype : as in :func:`mlp`.

    Examples
    --------
    >>> net = lenet(generator=torch.Generator().manual_seed(0))
    >>> sum(p.numel() for p in net.parameters())
    18989
    >>> net(torch.zeros(5, 64, dtype=torch.float64)).shape
    torch.Size([5, 1])
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    channels = [int(c) for c in channels]
    hidden = [int(h) for h in hidden]
    if len(channels) != 2 or any(c < 1 for c in channels):
        raise ValueError(f"channels must be two positive integers, got {channels}")
    if any(h < 1 for h in hidden):
        raise ValueError(f"hidden widths must be positive, got {hidden}")
    if isinstance(image_size, bool) or int(image_size) != image_size or image_size < 4 or image_size % 4:
        raise ValueError(f"image_size must be a positive multiple of 4, got {image_size!r}")
    act = _ACTIVATIONS[activation]
    side = int(image_size) // 4
    dims = [channels[1] * side * side, *hidden, 1]
    layers: list[nn.Module] = [
        nn.Flatten(),
        nn.Unflatten(1, (1, int(image_size), int(image_size))),
        nn.Conv2d(1, channels[0], 3, padding=1, dtype=dtype),
        act(),
        nn.AvgPool2d(2),
        nn.Conv2d(channels[0], channels[1], 3, padding=1, dtype=dtype),
        act(),
        nn.AvgPool2d(2),
        nn.Flatten(),
    ]
    for j, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(d_in, d_out, dtype=dtype))
        if j < len(dims) - 2:
            layers.append(act())
    for m in layers:
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            _lecun_(m, generator)
    return nn.Sequential(*layers)


def _flat_modules(model: nn.Module) -> list[nn.Module] | None:
    """The leaf modules of nested ``nn.Sequential`` containers, in call order; None for any other container."""
    if isinstance(model, nn.Sequential):
        out: list[nn.Module] = []
        for child in model:
            sub = _flat_modules(child)
            if sub is None:
                return None
            out.extend(sub)
        return out
    return [model]


def is_dense_network(model: nn.Module) -> bool:
    """Whether ``model`` is a (nested) ``nn.Sequential`` of ``nn.Linear`` layers and parameter-free elementwise
    activations (an optional ``nn.Flatten`` may come before the first linear layer), ending in a linear layer with
    one output, each layer used once: the networks for which :func:`empirical_ntk` and :func:`parameter_jacobian`
    use the layer-wise formulas."""
    modules = _flat_modules(model)
    if not modules:
        return False
    seen: set[int] = set()
    linears = 0
    for m in modules:
        if id(m) in seen:
            return False  # a layer used twice shares parameters: its Jacobian is a sum, use the generic route
        seen.add(id(m))
        if isinstance(m, nn.Linear):
            linears += 1
        elif isinstance(m, nn.Flatten):
            if linears > 0:
                return False
        elif not isinstance(m, ELEMENTWISE_ACTIVATIONS) or any(True for _ in m.parameters()):
            return False
    last = modules[-1]
    return linears > 0 and isinstance(last, nn.Linear) and last.out_features == 1


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
        modules = _flat_modules(model)
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
        modules = _flat_modules(model)
        assert modules is not None
        _check_dense_input(modules, x)
        return _structured_jacobian(modules, model, x)
    return _generic_jacobian(model, x, chunk_size).detach()


# ----------------------------------------------------------------------------------------------------------------
# Public: the linearized model
# ----------------------------------------------------------------------------------------------------------------


class LinearizedModel(nn.Module):
    """First-order Taylor expansion of a model around its parameters ``theta_0`` at construction (Lee et al. 2019;
    chapter *Linearized networks*):

    .. math:: f_{lin}(x; \\theta) = f(x; \\theta_0) + J(x; \\theta_0)(\\theta - \\theta_0),

    evaluated with one forward-mode product ``torch.func.jvp`` (no Jacobian is formed). Its ``parameters()`` are
    ``theta``, in the order and shapes of the model's, starting at ``theta_0``; gradients flow through the JVP, so any
    torch optimizer trains it. The wrapped copy of the model (and its buffers, e.g. batch-norm statistics) stays
    frozen at ``theta_0``; the original model is never modified.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        named = list(model.named_parameters())
        if not named:
            raise ValueError("model has no parameters to linearize")
        base = copy.deepcopy(model)
        for p in base.parameters():
            p.requires_grad_(False)
        self._base = (base,)  # a tuple hides it from nn.Module registration: its weights are not ours
        self._names = [name for name, _ in named]
        self.params = nn.ParameterList([nn.Parameter(p.detach().clone()) for _, p in named])
        for i, (_, p) in enumerate(named):
            self.register_buffer(f"theta0_{i}", p.detach().clone())
        self._buffer_names = [name for name, _ in model.named_buffers()]
        for i, (_, b) in enumerate(model.named_buffers()):
            self.register_buffer(f"model_buffer_{i}", b.detach().clone())

    @property
    def base_model(self) -> nn.Module:
        """The frozen copy of the model at ``theta_0``."""
        return self._base[0]

    def theta0(self) -> list[Tensor]:
        """The expansion point ``theta_0``, in ``parameters()`` order."""
        return [getattr(self, f"theta0_{i}") for i in range(len(self._names))]

    def forward(self, x: Tensor) -> Tensor:
        base = self.base_model
        base.train(self.training)
        theta0 = dict(zip(self._names, self.theta0()))
        tangent = {name: p - p0 for (name, p0), p in zip(theta0.items(), self.params)}
        buffers = {name: getattr(self, f"model_buffer_{i}") for i, name in enumerate(self._buffer_names)}

        def f(params: dict) -> Tensor:
            return functional_call(base, (params, buffers), (x,))

        out, dout = jvp(f, (theta0,), (tangent,))
        return out + dout


def linearize(model: nn.Module) -> LinearizedModel:
    """The linearization ``f_lin(x; theta) = f(x; theta_0) + J(x; theta_0)(theta - theta_0)`` of ``model`` around its
    current parameters, as a trainable :class:`LinearizedModel` (chapter *Linearized networks*; Lee et al. 2019).

    Examples
    --------
    >>> net = mlp([3, 8, 1], "tanh", generator=torch.Generator().manual_seed(0))
    >>> lin = linearize(net)
    >>> x = torch.randn(5, 3, dtype=torch.float64)
    >>> bool(torch.allclose(lin(x), net(x)))  # equal at theta_0
    True
    """
    return LinearizedModel(model)


# ----------------------------------------------------------------------------------------------------------------
# Public: kernel diagnostics
# ----------------------------------------------------------------------------------------------------------------


def _check_gram(K: Tensor, name: str = "K") -> Tensor:
    if not isinstance(K, Tensor) or K.ndim != 2 or K.shape[0] != K.shape[1]:
        shape = tuple(K.shape) if isinstance(K, Tensor) else type(K).__name__
        raise ValueError(f"{name} must be a square (n, n) Gram matrix, got {shape}")
    return K


def _check_target(y: Tensor, n: int, name: str = "y") -> Tensor:
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
    K = _check_gram(K)
    y = _check_target(y, K.shape[0]).to(K.dtype)
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
    K = _check_gram(K)
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
    y = _check_target(y, U.shape[0]).to(U.dtype)
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
    K_T = _check_gram(K_T, "K_T")
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
    K = _check_gram(K)
    r0 = _check_target(r0, K.shape[0], "r0").to(K.dtype)
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
    ``reduction`` as in :func:`kernel_gd_residuals`.

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
    K = _check_gram(K_train, "K_train")
    n = K.shape[0]
    y = _check_target(y_train, n, "y_train").to(K.dtype)
    f0 = _check_target(f0_train, n, "f0_train").to(K.dtype)
    if (K_test_train is None) != (f0_test is None):
        raise ValueError("pass both K_test_train and f0_test, or neither")
    if K_test_train is not None:
        if K_test_train.ndim != 2 or K_test_train.shape[1] != n:
            raise ValueError(f"K_test_train must have shape (m, {n}), got {tuple(K_test_train.shape)}")
        f0_test = _check_target(f0_test, K_test_train.shape[0], "f0_test").to(K.dtype)
    eta = _effective_lr(lr, n, reduction)
    t, single = _as_steps(steps, K.dtype)
    lam, U = torch.linalg.eigh(K) if eigh is None else eigh
    if lam.shape != (n,) or U.shape != (n, n):
        raise ValueError(f"eigh must be (eigenvalues ({n},), eigenvectors ({n}, {n}))")
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


# ----------------------------------------------------------------------------------------------------------------
# Public: the chapter's training protocol, for a network and, in function space, for its linearization
# ----------------------------------------------------------------------------------------------------------------


def minibatches(n: int, batch_size: int, steps: int, seed: int = 0) -> list[Tensor]:
    """The index sets of ``steps`` minibatches over ``n`` examples: a fresh seeded permutation each epoch, cut into
    batches of ``batch_size`` (the last one of an epoch may be smaller). :func:`train_binary` and
    :func:`kernel_train_binary` use the same list for the same ``seed``, so a network and its linearization see the
    same batches in the same order."""
    for name, v in (("n", n), ("batch_size", batch_size)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if isinstance(steps, bool) or int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    gen = torch.Generator().manual_seed(int(seed))
    out: list[Tensor] = []
    while len(out) < steps:
        perm = torch.randperm(int(n), generator=gen)
        out.extend(list(perm.split(int(batch_size)))[: steps - len(out)])
    return out


@contextlib.contextmanager
def _num_threads(n: int | None):
    """Run a block with ``n`` intra-op threads (``None``: leave torch's setting), restoring the old count."""
    if n is None:
        yield
        return
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"num_threads must be a positive integer or None, got {n!r}")
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _step_size(lr: float, s: int, steps: int) -> float:
    return lr * (1.0 - s / steps)  # linear decay to 0 over the run


def _check_protocol(steps: int, lr: float, momentum: float) -> None:
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not (math.isfinite(float(lr)) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must lie in [0, 1), got {momentum!r}")


def train_binary(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    *,
    steps: int,
    batch_size: int = 128,
    lr: float = 0.05,
    momentum: float = 0.9,
    seed: int = 0,
    checkpoints: Sequence[int] = (),
    callback: Callable[[int], None] | None = None,
    num_threads: int | None = None,
) -> Tensor:
    """Train a scalar-output model in place on binary labels with the chapter's protocol (Ortiz-Jimenez et al.
    2021, scaled down; chapter *Linearized networks*): the binary cross-entropy of the logits ``model(x)``, averaged
    over minibatches from :func:`minibatches`, and SGD with heavy-ball momentum,

    .. math:: v \\leftarrow \\mu v + \\nabla_\\theta L_{B_s}(\\theta), \\qquad \\theta \\leftarrow \\theta - \\eta_s v,
              \\qquad \\eta_s = \\eta\\,(1 - s / S),

    for ``s = 0, ..., S - 1`` (``torch.optim.SGD``). Works for networks and for :class:`LinearizedModel`.
    ``callback(s)`` runs after ``s`` steps for each ``s`` in ``checkpoints`` (``0`` = before training).
    ``num_threads`` sets torch's thread count during training (restored after): small models train several
    times faster on one thread, where each step is dominated by synchronization overhead.
    Returns the minibatch losses, shape ``(steps,)``.
    """
    _check_protocol(steps, lr, momentum)
    if not isinstance(X, Tensor) or X.ndim < 2:
        raise ValueError(f"X must be a tensor of shape (n, *input_shape), got {getattr(X, 'shape', type(X).__name__)}")
    with _num_threads(num_threads):
        return _train_binary(model, X, y, steps, batch_size, lr, momentum, seed, checkpoints, callback)


def _train_binary(model, X, y, steps, batch_size, lr, momentum, seed, checkpoints, callback) -> Tensor:
    y = _check_target(y, X.shape[0], "y")
    if y.dtype != X.dtype:
        y = y.to(X.dtype)
    wanted = set(int(c) for c in checkpoints)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    losses = torch.empty(steps, dtype=X.dtype)
    if callback is not None and 0 in wanted:
        callback(0)
    for s, idx in enumerate(minibatches(X.shape[0], batch_size, steps, seed)):
        for group in opt.param_groups:
            group["lr"] = _step_size(lr, s, steps)
        loss = nn.functional.binary_cross_entropy_with_logits(model(X[idx]).reshape(-1), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses[s] = loss.detach()
        if callback is not None and s + 1 in wanted:
            callback(s + 1)
    return losses


def kernel_train_binary(
    K_train: Tensor,
    f0_train: Tensor,
    y: Tensor,
    *,
    steps: int,
    batch_size: int = 128,
    lr: float = 0.05,
    momentum: float = 0.9,
    seed: int = 0,
    num_threads: int | None = None,
) -> Tensor:
    """:func:`train_binary` applied to the linearized model, run in function space (chapter *Linearized networks*).

    SGD with momentum moves ``theta - theta_0`` only along the training gradients ``J_0(x_i)^T``, so after any number
    of steps ``theta - theta_0 = J_tr^T alpha`` and, with ``K(x, x_i) = J_0(x) J_0(x_i)^T``,

    .. math:: f_{lin}(x; \\theta) = f(x; \\theta_0) + \\sum_i \\alpha_i K(x, x_i),

    where ``alpha`` follows the same momentum recursion as ``theta`` with the gradient replaced by the loss
    derivatives ``(sigmoid(f_i) - y_i) / |B|`` placed at the batch's coordinates. This is exact (the same iterates
    up to rounding) and costs ``O(|B| n)`` per step instead of ``O(|B| P)``.

    Parameters
    ----------
    K_train : (n, n) NTK Gram matrix of the training inputs at ``theta_0``.
    f0_train : (n,) outputs at ``theta_0`` (zeros for the difference form ``J_0 (theta - theta_0)``).
    y : (n,) or (n, T) labels in {0, 1}; several columns train ``T`` independent tasks with the same batches.
    steps, batch_size, lr, momentum, seed, num_threads : as in :func:`train_binary`.

    Returns
    -------
    alpha : (n,) or (n, T). Predict with ``f0(x) + K(x, X_tr) @ alpha``.
    """
    _check_protocol(steps, lr, momentum)
    K = _check_gram(K_train, "K_train")
    n = K.shape[0]
    f0 = _check_target(f0_train, n, "f0_train").to(K.dtype)
    if not isinstance(y, Tensor) or y.shape[0] != n or y.ndim not in (1, 2):
        raise ValueError(f"y must have shape ({n},) or ({n}, T), got {tuple(getattr(y, 'shape', ()))}")
    single = y.ndim == 1
    Y = (y[:, None] if single else y).to(K.dtype)
    alpha = torch.zeros_like(Y)
    velocity: Tensor | None = None
    with _num_threads(num_threads):
        for s, idx in enumerate(minibatches(n, batch_size, steps, seed)):
            logits = f0[idx, None] + K[idx] @ alpha
            grad = torch.zeros_like(alpha)
            grad[idx] = (torch.sigmoid(logits) - Y[idx]) / idx.numel()
            velocity = grad if velocity is None else velocity.mul_(momentum).add_(grad)
            alpha = alpha - _step_size(lr, s, steps) * velocity
    return alpha[:, 0] if single else alpha
