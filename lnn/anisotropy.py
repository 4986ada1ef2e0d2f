"""Neural anisotropy directions (NADs): the input directions along which a network's architecture makes a linearly
separable task easy or hard to learn (chapter *Linearized networks*).

Ortiz-Jiménez, Modas, Moosavi-Dezfooli and Frossard (NeurIPS 2020, "Neural anisotropy directions") found that a
CNN cannot learn some linearly separable tasks ``x = (epsilon/2) y v + w`` at all, depending only on the direction
``v``; Ortiz-Jiménez, Moosavi-Dezfooli and Frossard (NeurIPS 2021, "What can linearized neural networks actually
say about generalization?", official code ``gortizji/linearized-networks``, ``neural_kernels/nads.py``) compute
the NADs from the kernel side: the right singular vectors of the *mixed derivative*

.. math:: M \\;=\\; \\nabla_\\theta \\nabla_x f(x; \\theta_0)\\big|_{x = x_0} \\in \\mathbb{R}^{D \\times P},
          \\qquad M M^\\top = \\sum_k \\lambda_k v_k v_k^\\top,

at ``x_0 = 0`` (``D`` input dimensions, ``P`` parameters). ``v_k^T x`` is a feature whose gradient with respect to
the parameters, at the origin, has squared norm ``lambda_k``: a direction with a small ``lambda_k`` moves the
network's parameter gradients (and hence its NTK features ``nabla_theta f``) little, so a linearized model barely
sees a task defined along it. Use a smooth activation (GELU in the paper): at ``x = 0`` with zero biases every
pre-activation sits at ReLU's kink.

Functions
---------
:func:`mixed_derivative`
    The matrix ``M`` (one reverse-mode Jacobian of the input gradient).
:func:`neural_anisotropy_directions`
    The eigenvalues ``lambda_0 >= lambda_1 >= ...`` and the directions ``v_k`` (columns).
:func:`nad_task`
    The paper's linearly separable data set along one direction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.func import grad, jacrev

from ._checks import check_finite, check_floating, check_tensor
from .ntk.kernels import scalar_function

__all__ = ["mixed_derivative", "neural_anisotropy_directions", "nad_task"]


def _as_point(model: nn.Module, at: Tensor | int | Sequence[int]) -> Tensor:
    params = list(model.parameters())
    if not params:
        raise ValueError("model has no parameters: the mixed derivative needs at least one")
    dtype, device = params[0].dtype, params[0].device
    if isinstance(at, Tensor):
        check_floating(at, "at")
        check_finite(at, "at")
        if at.dtype != dtype:
            raise TypeError(f"at has dtype {at.dtype} but the model's parameters are {dtype}: convert one of them")
        return at.detach().to(device)
    shape = (int(at),) if isinstance(at, int) else tuple(int(s) for s in at)
    if isinstance(at, bool) or not shape or any(s < 1 for s in shape):
        raise ValueError(f"at must be an input tensor or a positive input shape, got {at!r}")
    return torch.zeros(shape, dtype=dtype, device=device)


def mixed_derivative(model: nn.Module, at: Tensor | int | Sequence[int]) -> Tensor:
    """The mixed derivative ``M = d/dtheta grad_x f(x; theta)`` at one input, as a ``(D, P)`` matrix (Ortiz-Jiménez
    et al. 2021, section on NADs; chapter *Linearized networks*):

    .. math:: M_{d p} = \\frac{\\partial^2 f(x; \\theta)}{\\partial x_d\\, \\partial \\theta_p}\\Big|_{x = x_0}.

    Row ``d`` is the parameter gradient of the input sensitivity ``df/dx_d``; the columns follow
    ``model.parameters()`` order, each parameter flattened.

    Parameters
    ----------
    model
        A scalar-output network taking a batch ``(n, *input_shape)``.
    at
        The input ``x_0`` (a tensor of shape ``input_shape``, without batch dimension), or ``input_shape`` itself
        (an int or a tuple) for ``x_0 = 0``, the paper's choice.

    Returns
    -------
    Tensor of shape ``(D, P)`` with ``D = prod(input_shape)``.

    Examples
    --------
    >>> lin = nn.Linear(3, 1, bias=False, dtype=torch.float64)   # f(x) = w^T x: grad_x f = w, M = I
    >>> torch.allclose(mixed_derivative(lin, 3), torch.eye(3, dtype=torch.float64))
    True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    x0 = _as_point(model, at)
    f, params = scalar_function(model, "mixed_derivative and the NADs")

    def input_gradient(p: dict) -> Tensor:
        return grad(f, argnums=1)(p, x0).reshape(-1)

    blocks = jacrev(input_gradient)(params)  # name -> (D, *shape)
    D = x0.numel()
    return torch.cat([blocks[k].reshape(D, -1) for k, _ in model.named_parameters()], dim=1)


def neural_anisotropy_directions(model: nn.Module, at: Tensor | int | Sequence[int]) -> tuple[Tensor, Tensor]:
    """The neural anisotropy directions of ``model`` at ``x_0`` (Ortiz-Jiménez et al. 2021; chapter *Linearized
    networks*): the eigendecomposition of ``M M^T`` for the mixed derivative ``M`` of :func:`mixed_derivative`,

    .. math:: M M^\\top = \\sum_{k=0}^{D-1} \\lambda_k\\, v_k v_k^\\top, \\qquad \\lambda_0 \\ge \\lambda_1 \\ge \\dots \\ge 0,

    i.e. the squared singular values of ``M`` and its left singular vectors (the input-space side; the official
    code gets the same from a sparse SVD of the ``P x D`` operator). Each ``v_k`` is defined up to sign; the sign
    is fixed so that its largest-magnitude entry is positive.

    Parameters
    ----------
    model, at
        As in :func:`mixed_derivative`; use ``at = input_shape`` for the origin.

    Returns
    -------
    eigenvalues : (D,) descending.
    directions : (D, D), column ``k`` is ``v_k`` (unit norm, flattened input).
    """
    M = mixed_derivative(model, at)
    lam, V = torch.linalg.eigh(M @ M.T)
    lam, V = lam.flip(0).clamp_min(0), V.flip(1)
    pivot = V.abs().argmax(0)
    signs = torch.sign(V[pivot, torch.arange(V.shape[1])])
    return lam, V * torch.where(signs == 0, 1.0, signs)


def nad_task(
    direction: Tensor,
    n: int,
    *,
    epsilon: float = 1.0,
    sigma: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """A linearly separable data set along one direction, the NAD benchmark of Ortiz-Jiménez et al. (2020, 2021;
    official ``data.linearly_separable_dataset``):

    .. math:: x = \\tfrac{\\varepsilon}{2}\\, y\\, v + (I - v v^\\top) w, \\qquad y = \\pm 1 \\text{ fair coins},
              \\quad w \\sim \\mathcal{N}(0, \\sigma^2 I_D).

    The class is the sign of ``v^T x`` exactly (the margin is ``epsilon/2``), and everything orthogonal to ``v``
    is noise: a linear classifier along ``v`` is perfect, so whether a network learns the task depends only on
    how its architecture treats the direction ``v``.

    Parameters
    ----------
    direction
        ``v``, shape ``(D,)`` (normalized here).
    n
        Number of examples.
    epsilon, sigma
        Margin and noise scale (the paper: 1 and 1).
    generator
        Source of the noise and of the labels.

    Returns
    -------
    x : (n, D), in the dtype of ``direction``.
    labels : (n,) in {0, 1} (``y = 2 * labels - 1``), same dtype.
    """
    check_tensor(direction, "direction")
    check_floating(direction, "direction")
    check_finite(direction, "direction")
    if direction.ndim != 1 or direction.numel() < 2:
        raise ValueError(f"direction must be a vector of length >= 2, got shape {tuple(direction.shape)}")
    norm = direction.norm()
    if norm == 0:
        raise ValueError("direction must be nonzero")
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    for name, v in (("epsilon", epsilon), ("sigma", sigma)):
        if not (math.isfinite(float(v)) and v >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    v = direction / norm
    w = sigma * torch.randn(int(n), v.numel(), generator=generator, dtype=v.dtype)
    w = w - (w @ v)[:, None] * v[None, :]
    labels = torch.randint(0, 2, (int(n),), generator=generator).to(v.dtype)
    x = (epsilon / 2) * (2 * labels - 1)[:, None] * v[None, :] + w
    return x, labels
