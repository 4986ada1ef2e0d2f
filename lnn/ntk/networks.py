"""The networks of chapter *Linearized networks*: :func:`mlp` and :func:`lenet` with LeCun initialization, and
the test :func:`is_dense_network` for the architectures whose Gram matrix has the dense layer-wise form."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

__all__ = ["mlp", "lenet", "is_dense_network", "ELEMENTWISE_ACTIVATIONS", "ACTIVATIONS", "flat_modules"]

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

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "softplus": nn.Softplus,
    "silu": nn.SiLU,
    "identity": nn.Identity,
}


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
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    layers: list[nn.Module] = []
    for j, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        linear = nn.Linear(d_in, d_out, dtype=dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(d_out, d_in, generator=generator, dtype=dtype) / math.sqrt(d_in))
            linear.bias.zero_()
        layers.append(linear)
        if j < len(dims) - 2:
            layers.append(ACTIVATIONS[activation]())
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
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    channels = [int(c) for c in channels]
    hidden = [int(h) for h in hidden]
    if len(channels) != 2 or any(c < 1 for c in channels):
        raise ValueError(f"channels must be two positive integers, got {channels}")
    if any(h < 1 for h in hidden):
        raise ValueError(f"hidden widths must be positive, got {hidden}")
    if isinstance(image_size, bool) or int(image_size) != image_size or image_size < 4 or image_size % 4:
        raise ValueError(f"image_size must be a positive multiple of 4, got {image_size!r}")
    act = ACTIVATIONS[activation]
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


def flat_modules(model: nn.Module) -> list[nn.Module] | None:
    """The leaf modules of nested ``nn.Sequential`` containers, in call order; None for any other container."""
    if isinstance(model, nn.Sequential):
        out: list[nn.Module] = []
        for child in model:
            sub = flat_modules(child)
            if sub is None:
                return None
            out.extend(sub)
        return out
    return [model]


def is_dense_network(model: nn.Module) -> bool:
    """Whether ``model`` is a (nested) ``nn.Sequential`` of ``nn.Linear`` layers and parameter-free elementwise
    activations (an optional ``nn.Flatten`` may come before the first linear layer), ending in a linear layer with
    one output, each layer used once: the dense networks, whose kernel is a sum over layers of products of two
    small Gram matrices. :func:`empirical_ntk` and :func:`parameter_jacobian` take their layer-wise path for a
    wider class, convolutional networks such as :func:`lenet` included (``lnn.ntk.kernels.layerwise_modules``)."""
    modules = flat_modules(model)
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
