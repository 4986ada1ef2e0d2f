"""Gram matrices of the empirical NTK and parameter Jacobians (chapter *Linearized networks*)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from .networks import ELEMENTWISE_ACTIVATIONS, flat_modules, lenet, mlp  # noqa: F401 (mlp, lenet: doctests)

__all__ = ["empirical_ntk", "parameter_jacobian", "layerwise_modules", "scalar_function", "PER_EXAMPLE_MAPS"]

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
        if not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            raise ValueError(f"{name} contains {bad} NaN or infinite entries: the kernel would be NaN")
    if x1.shape[1:] != x2.shape[1:]:
        raise ValueError(f"x1 and x2 must share the input shape, got {tuple(x1.shape)} and {tuple(x2.shape)}")
    return x1, x2


def _check_layerwise_input(modules: list[nn.Module], x: Tensor) -> None:
    first = next(m for m in modules if any(True for _ in m.parameters()))
    if not isinstance(first, nn.Linear):
        return  # the forward pass reports a mismatch
    before = modules[: modules.index(first)]
    flat = math.prod(x.shape[1:])
    reshaped = any(isinstance(m, nn.Flatten | nn.Unflatten) for m in before)
    if (x.ndim != 2 and not reshaped) or (not reshaped and flat != first.in_features) or (
        all(isinstance(m, nn.Flatten) for m in before) and before and flat != first.in_features
    ):
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
# Layer by layer: inputs and backpropagated sensitivities of each parametrized layer, no Jacobian
# ----------------------------------------------------------------------------------------------------------------

#: Parameter-free modules that act on each example separately, through which the layer-wise path backpropagates.
PER_EXAMPLE_MAPS: tuple[type[nn.Module], ...] = ELEMENTWISE_ACTIVATIONS + (
    nn.Flatten,
    nn.Unflatten,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
)
_BATCH_STATISTICS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


def _is_unfoldable_conv(m: nn.Module) -> bool:
    return (
        type(m) is nn.Conv2d
        and m.groups == 1
        and m.padding_mode == "zeros"
        and not isinstance(m.padding, str)
    )


def layerwise_modules(model: nn.Module) -> list[nn.Module] | None:
    """The modules of ``model`` in call order when :func:`empirical_ntk` can take its layer-wise path, else None.

    That path needs a (nested) ``nn.Sequential`` whose parameter-free modules are known per-example maps
    (:data:`PER_EXAMPLE_MAPS`: elementwise activations, pooling, flatten/unflatten, dropout in ``eval()`` mode) and
    whose layers are each used once. Dense (``nn.Linear``) and convolutional (``nn.Conv2d``, zero padding, one
    group) layers get closed forms; any other layer with parameters (not a batch-statistics layer in training
    mode) gets its own per-example Jacobian by ``torch.func.vjp``, the fallback for that layer only."""
    if not isinstance(model, nn.Sequential):
        return None
    modules = flat_modules(model)
    if not modules:
        return None
    seen: set[int] = set()
    has_params = False
    for m in modules:
        params = list(m.parameters())
        if any(id(p) in seen for p in params) or id(m) in seen:
            return None  # a layer used twice shares parameters: its Jacobian is a sum, use the generic route
        seen.add(id(m))
        seen.update(id(p) for p in params)
        if params:
            has_params = True
            if isinstance(m, _BATCH_STATISTICS) and m.training:
                return None
        elif isinstance(m, nn.Dropout | nn.Dropout1d | nn.Dropout2d | nn.AlphaDropout):
            if m.training and m.p > 0:
                return None
        elif not isinstance(m, PER_EXAMPLE_MAPS) or any(True for _ in m.buffers()):
            return None
    return modules if has_params else None


def _layer_forward(m: nn.Module, h: Tensor) -> Tensor:
    """``m(h)`` with the layer's parameters detached (sensitivities only flow through activations)."""
    if isinstance(m, nn.Linear):
        return nn.functional.linear(h, m.weight.detach(), None if m.bias is None else m.bias.detach())
    if isinstance(m, nn.Conv2d):
        return m._conv_forward(h, m.weight.detach(), None if m.bias is None else m.bias.detach())
    params = {k: v.detach() for k, v in m.named_parameters()}
    return functional_call(m, params, (h,))


def _layer_inputs_and_sensitivities(modules: list[nn.Module], x: Tensor) -> tuple[list, list[Tensor], list[Tensor]]:
    """For each layer with parameters: the layer, its input ``a`` (n, ...) and the sensitivity
    ``delta = d f / d z`` (n, *z.shape[1:]) of the scalar output to the layer's output ``z``, from one forward and
    one backward pass over the batch (valid because every module acts on each example separately)."""
    layers, inputs, outputs = [], [], []
    with torch.enable_grad():
        h = x.detach()
        for m in modules:
            if any(True for _ in m.parameters()):
                layers.append(m)
                inputs.append(h.detach())
                z = _layer_forward(m, h)
                if not z.requires_grad:
                    z.requires_grad_(True)  # the first layer: a leaf of the backward pass
                outputs.append(z)
                h = z
            else:
                h = m(h)
        if h.numel() != x.shape[0]:
            raise ValueError(f"empirical NTK tools need a scalar-output model; model(x) gave {h.numel() // max(x.shape[0], 1)} outputs")
        # a scalar and no grad_outputs: torch imports sympy (seconds) on the first call given grad_outputs
        deltas = torch.autograd.grad(h.sum(), outputs)
    return layers, inputs, [d.detach() for d in deltas]


def _conv_patches(m: nn.Conv2d, a: Tensor) -> Tensor:
    """The input patches of a 2-D convolution, shape (n, C_in * kh * kw, positions)."""
    return nn.functional.unfold(a, m.kernel_size, dilation=m.dilation, padding=m.padding, stride=m.stride)


def _layer_gradients(m: nn.Module, a: Tensor, delta: Tensor) -> dict[int, Tensor]:
    """The per-example gradient of each parameter of layer ``m``, flattened: ``{id(param): (n, numel)}``.

    Dense: ``dW = delta a^T``, ``db = delta``. Convolution: the weight gradient is a sum over output positions of
    outer products, ``dW = sum_p delta[:, p] u_p^T`` with the input patches ``u_p`` (one batched product), and
    ``db = sum_p delta[:, p]``. Other layers: a VJP per example (``torch.func``)."""
    n = a.shape[0]
    if isinstance(m, nn.Linear):
        a2, d2 = a.reshape(-1, a.shape[-1]), delta.reshape(-1, delta.shape[-1])
        if a.ndim == 2:
            out = {id(m.weight): (d2[:, :, None] * a2[:, None, :]).reshape(n, -1)}
        else:  # a linear layer on (n, ..., d_in): sum over the extra positions
            a3, d3 = a.reshape(n, -1, a.shape[-1]), delta.reshape(n, -1, delta.shape[-1])
            out = {id(m.weight): torch.bmm(d3.transpose(1, 2), a3).reshape(n, -1)}
        if m.bias is not None:
            out[id(m.bias)] = delta.reshape(n, -1, delta.shape[-1]).sum(1)
        return out
    if _is_unfoldable_conv(m):
        U = _conv_patches(m, a)  # (n, D, P)
        D = delta.reshape(n, delta.shape[1], -1)  # (n, C_out, P)
        out = {id(m.weight): torch.bmm(D, U.transpose(1, 2)).reshape(n, -1)}
        if m.bias is not None:
            out[id(m.bias)] = D.sum(2)
        return out
    params = {k: v.detach() for k, v in m.named_parameters()}
    ids = {k: id(v) for k, v in m.named_parameters()}

    def grad_one(ai: Tensor, di: Tensor) -> dict[str, Tensor]:
        _, pullback = vjp(lambda p: functional_call(m, p, (ai.unsqueeze(0),)), params)
        return pullback(di.unsqueeze(0))[0]

    grads = vmap(grad_one)(a, delta)
    return {ids[k]: g.reshape(n, -1) for k, g in grads.items()}


def _gram_factors(m: nn.Module, a: Tensor, delta: Tensor) -> tuple[Tensor, Tensor] | None:
    """For a dense or convolutional layer whose per-pair cost is lower in Gram form: ``(U, D)`` of shapes
    (n, P, d + 1) and (n, P, c) with ``<dW_i, dW_j> + <db_i, db_j> = sum_{p,q} (U_ip . U_jq)(D_ip . D_jq)``
    (the input patches with a column of ones for the bias, and the sensitivities at the P output positions).
    None when the explicit per-example gradients are cheaper."""
    n = a.shape[0]
    if isinstance(m, nn.Linear):
        U = a.reshape(n, -1, a.shape[-1])
        D = delta.reshape(n, -1, delta.shape[-1])
    elif _is_unfoldable_conv(m):
        U = _conv_patches(m, a).transpose(1, 2)
        D = delta.reshape(n, delta.shape[1], -1).transpose(1, 2)
    else:
        return None
    P, d, c = U.shape[1], U.shape[2], D.shape[2]
    bias = m.bias is not None
    if P * P * (d + bias + c) >= c * (d + bias):  # explicit gradients: c (d + 1) per pair of inputs
        return None
    if bias:
        U = torch.cat([U, torch.ones_like(U[..., :1])], dim=2)
    return U.contiguous(), D.contiguous()


def _layerwise_ntk(modules: list[nn.Module], x1: Tensor, x2: Tensor | None, chunk_size: int | None) -> Tensor:
    """K = sum over layers of each layer's contribution, from per-layer Gram factors or explicit gradients."""
    layers, in1, d1 = _layer_inputs_and_sensitivities(modules, x1)
    if x2 is None:
        in2, d2 = in1, d1
    else:
        _, in2, d2 = _layer_inputs_and_sensitivities(modules, x2)
    n1, n2 = x1.shape[0], (x1 if x2 is None else x2).shape[0]
    grams1, grams2, explicit1, explicit2 = [], [], [], []
    for m, a1, e1, a2, e2 in zip(layers, in1, d1, in2, d2):
        g1 = _gram_factors(m, a1, e1)
        if g1 is not None:
            grams1.append(g1)
            grams2.append(g1 if x2 is None else _gram_factors(m, a2, e2))
        else:
            explicit1.extend(_layer_gradients(m, a1, e1).values())
            if x2 is not None:
                explicit2.extend(_layer_gradients(m, a2, e2).values())
    F1 = torch.cat(explicit1, dim=1) if explicit1 else None
    F2 = F1 if x2 is None else (torch.cat(explicit2, dim=1) if explicit2 else None)
    widest = max([n2 * U.shape[1] ** 2 for U, _ in grams1] + [n2])
    step = _chunk(chunk_size, widest)

    def rows(s: int, e: int, c: int = 0) -> Tensor:
        """Rows s:e of K, columns c: onwards."""
        m = n2 - c
        block = F1[s:e] @ F2[c:].T if F1 is not None else torch.zeros(e - s, m, dtype=x1.dtype, device=x1.device)
        for (U1, D1), (U2, D2) in zip(grams1, grams2):
            if U1.shape[1] == 1:  # dense: (a a'^T + 1) * (delta delta'^T)
                block.addcmul_(U1[s:e, 0] @ U2[c:, 0].T, D1[s:e, 0] @ D2[c:, 0].T)
            else:
                P = U1.shape[1]
                uu = U1[s:e].reshape(-1, U1.shape[2]) @ U2[c:].reshape(-1, U2.shape[2]).T
                dd = D1[s:e].reshape(-1, D1.shape[2]) @ D2[c:].reshape(-1, D2.shape[2]).T
                block += (uu * dd).reshape(e - s, P, m, P).sum((1, 3))
        return block

    if x2 is None and n1 >= 512:
        # symmetric: compute the blocks on and above the diagonal only (8 row blocks: 36 of 64, about 56% of the work)
        step = min(step, -(-n1 // 8))
        K = torch.empty(n1, n2, dtype=x1.dtype, device=x1.device)
        for s in range(0, n1, step):
            e = min(s + step, n1)
            block = rows(s, e, s)
            K[s:e, e:] = block[:, e - s :]
            K[e:, s:e] = block[:, e - s :].T
            diagonal = block[:, : e - s]
            K[s:e, s:e] = 0.5 * (diagonal + diagonal.T)  # exactly symmetric
        return K
    if step >= n1:
        return rows(0, n1)
    K = torch.empty(n1, n2, dtype=x1.dtype, device=x1.device)
    for s in range(0, n1, step):
        K[s : s + step] = rows(s, min(s + step, n1))
    return K


def _layerwise_jacobian(modules: list[nn.Module], model: nn.Module, x: Tensor) -> Tensor:
    layers, inputs, deltas = _layer_inputs_and_sensitivities(modules, x)
    pieces: dict[int, Tensor] = {}
    for m, a, d in zip(layers, inputs, deltas):
        pieces.update(_layer_gradients(m, a, d))
    return torch.cat([pieces[id(p)] for p in model.parameters()], dim=1)


# ----------------------------------------------------------------------------------------------------------------
# Any architecture: torch.func
# ----------------------------------------------------------------------------------------------------------------


def scalar_function(
    model: nn.Module, tool: str = "empirical NTK tools"
) -> tuple[Callable[[dict, Tensor], Tensor], dict[str, Tensor]]:
    """``(f, params)``: ``f(p, x)`` is ``model``'s scalar output on one input ``x`` (no batch dimension) with the
    parameters ``p`` (a dict by name), through :func:`torch.func.functional_call`, so that :mod:`torch.func`
    transforms can differentiate it in ``p`` and in ``x``; ``params`` holds the model's parameters, detached.
    ``f`` raises a :class:`ValueError` naming ``tool`` when the model's output is not a scalar. The Jacobian
    contraction here and :func:`lnn.anisotropy.mixed_derivative` (the mixed derivative in ``x`` and ``p``) use it.

    Examples
    --------
    >>> net = nn.Linear(3, 1, dtype=torch.float64)
    >>> f, params = scalar_function(net)
    >>> x = torch.ones(3, dtype=torch.float64)
    >>> bool(torch.allclose(f(params, x), net(x[None])[0, 0]))
    True
    """
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def f_single(p: dict, x: Tensor) -> Tensor:
        out = functional_call(model, (p, buffers), (x.unsqueeze(0),))
        if out.numel() != 1:
            raise ValueError(f"{tool} need a scalar-output model; model(x) gave {out.numel()} outputs")
        return out.reshape(())

    return f_single, params


def _generic_jacobian(model: nn.Module, x: Tensor, chunk_size: int | None) -> Tensor:
    f_single, params = scalar_function(model)
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

    For a (nested) ``nn.Sequential`` of known layers (:func:`layerwise_modules`: dense, convolutional, pooling,
    elementwise activations; the chapter's :func:`mlp` and :func:`lenet`) the full Jacobian is never formed. One
    forward and one backward pass give, for each layer with parameters, its input ``a(x)`` and the sensitivity
    ``delta(x) = d f(x) / d z`` of the output to the layer's output ``z``. A dense layer ``z = W a + b`` has
    ``d f / d W = delta a^T``, so it contributes

    .. math:: \\big(a(x)^\\top a(x') + 1\\big)\\,\\big(\\delta(x)^\\top \\delta(x')\\big),

    a product of two small Gram matrices (the ``+ 1`` is the bias). A convolution's weight gradient is a sum over
    output positions ``p`` of outer products of the sensitivity and the input patch ``u_p(x)`` there,
    ``d f / d W = sum_p delta_p u_p^T``, so it contributes

    .. math:: \\sum_{p, q} \\big(u_p(x)^\\top u_q(x') + 1\\big)\\,\\big(\\delta_p(x)^\\top \\delta_q(x')\\big),

    a sum of products of per-position Gram matrices. For each layer the cheaper of this Gram form and the
    explicit per-example gradient (``C_out x C_in k^2`` numbers, one batched product over the unfolded patches)
    is used; a layer of any other kind gets its per-example gradient from ``torch.func.vjp`` (the fallback for
    that layer only). For other architectures ``method="jacobian"`` contracts per-example Jacobians
    (``vmap(jacrev)``) and ``"ntk_vp"`` uses NTK-vector products, both from :mod:`torch.func` (Novak et al. 2022).
    All methods are exact up to rounding.

    Parameters
    ----------
    model : nn.Module
        Scalar-output model: ``model(x)`` has shape ``(n,)`` or ``(n, 1)``. All parameters share one dtype.
    x1 : Tensor, shape (n1, *input_shape)
        First set of inputs, in the parameters' dtype.
    x2 : Tensor, shape (n2, *input_shape), optional
        Second set; ``None`` means ``x1`` (the symmetric Gram matrix, computed with one pass).
    method : {"auto", "structured", "jacobian", "ntk_vp"}
        ``"auto"`` is ``"structured"`` (layer by layer) when :func:`layerwise_modules` accepts the model and
        ``"jacobian"`` otherwise.
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
    modules = layerwise_modules(model)
    if method == "structured" and modules is None:
        raise ValueError(
            "method='structured' needs an nn.Sequential of layers used once, with parameter-free modules that act "
            "on each example (activations, pooling, flatten; see layerwise_modules); use method='jacobian' or 'ntk_vp'"
        )
    if method in ("auto", "structured") and modules is not None:
        _check_layerwise_input(modules, x1)
        return _layerwise_ntk(modules, x1, x2, chunk_size)
    if method == "ntk_vp":
        return _ntk_vp(model, x1, x2_, chunk_size).detach()
    return _jacobian_contraction(model, x1, x2, chunk_size).detach()


def parameter_jacobian(model: nn.Module, x: Tensor, *, chunk_size: int | None = None) -> Tensor:
    """The explicit Jacobian ``J[i] = nabla_theta f(x_i; theta)`` of a scalar-output model, shape ``(n, P)``, its
    columns ordered as ``torch.cat([p.flatten() for p in model.parameters()])`` (chapter *Linearized networks*).

    With it the linearization is linear regression on fixed features, ``f_lin(X) = f(X; theta_0) + J (theta -
    theta_0)``, and ``K = J J^T``. Networks accepted by :func:`layerwise_modules` use the layer-wise forms
    (``d f / d W = delta a^T`` for a dense layer, a sum over positions for a convolution); other models
    ``vmap(jacrev)`` in chunks of ``chunk_size`` inputs. Memory is ``n * P`` entries.
    """
    x, _ = _check_inputs(model, x, None)
    modules = layerwise_modules(model)
    if modules is not None:
        _check_layerwise_input(modules, x)
        return _layerwise_jacobian(modules, model, x)
    return _generic_jacobian(model, x, chunk_size).detach()
