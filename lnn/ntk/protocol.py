"""The chapter's training protocol (chapter *Linearized networks*): minibatch SGD with momentum and a linearly
decaying step, for a network and, in function space, for its linearization."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from ..threads import limit_threads
from ..training import SCHEDULES, minibatches, train_ensemble
from .diagnostics import check_gram, check_target

__all__ = ["minibatches", "train_binary", "kernel_train_binary"]

# ----------------------------------------------------------------------------------------------------------------
# Public: the chapter's training protocol, for a network and, in function space, for its linearization
# ----------------------------------------------------------------------------------------------------------------


def _step_size(lr: float, s: int, steps: int) -> float:
    return lr * SCHEDULES["linear"](s, steps)  # linear decay to 0 over the run


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

    for ``s = 0, ..., S - 1`` (the update of ``torch.optim.SGD``), with the minibatches of
    :func:`lnn.training.minibatches`. It is one run of :func:`lnn.training.train_ensemble` (``schedule="linear"``),
    whose final parameters are written back into ``model``; to train several seeds or step sizes at once, call
    that function with several models. Works for networks and for :class:`LinearizedModel`.
    ``callback(s)`` runs after ``s`` steps for each ``s`` in ``checkpoints`` (``0`` = before training).
    ``num_threads`` sets torch's thread count during training (restored after, :func:`lnn.threads.limit_threads`):
    small models train several times faster on one thread, where each step is dominated by synchronization.
    Returns the minibatch losses, shape ``(steps,)``.
    """
    _check_protocol(steps, lr, momentum)
    if not isinstance(X, Tensor) or X.ndim < 2:
        raise ValueError(f"X must be a tensor of shape (n, *input_shape), got {getattr(X, 'shape', type(X).__name__)}")
    with limit_threads(num_threads):
        return _train_binary(model, X, y, steps, batch_size, lr, momentum, seed, checkpoints, callback)


def _bce_logits(f, X: Tensor, y: Tensor) -> Tensor:
    return nn.functional.binary_cross_entropy_with_logits(f(X).reshape(-1), y)


def _train_binary(model, X, y, steps, batch_size, lr, momentum, seed, checkpoints, callback) -> Tensor:
    y = check_target(y, X.shape[0], "y")
    if y.dtype != X.dtype:
        y = y.to(X.dtype)
    wanted = sorted({int(c) for c in checkpoints})
    named = list(model.named_parameters())

    def write_back(params: dict[str, Tensor]) -> None:
        with torch.no_grad():
            for name, p in named:
                p.copy_(params[name][0])

    def at_checkpoint(s: int, params: dict[str, Tensor]) -> None:
        write_back(params)
        callback(s)

    result = train_ensemble(
        [model],
        _bce_logits,
        [X, y],
        lr=lr,
        steps=steps,
        momentum=momentum,
        schedule="linear",
        batch_size=min(int(batch_size), X.shape[0]),
        seed=seed,
        checkpoints=wanted if callback is not None else (),
        callback=at_checkpoint if callback is not None else None,
    )
    write_back({name: p.detach()[None] for name, p in zip((n for n, _ in named), result.models[0].parameters())})
    return result.step_losses[:, 0]


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
    K = check_gram(K_train, "K_train")
    n = K.shape[0]
    f0 = check_target(f0_train, n, "f0_train").to(K.dtype)
    if not isinstance(y, Tensor) or y.shape[0] != n or y.ndim not in (1, 2):
        raise ValueError(f"y must have shape ({n},) or ({n}, T), got {tuple(getattr(y, 'shape', ()))}")
    single = y.ndim == 1
    Y = (y[:, None] if single else y).to(K.dtype)
    alpha = torch.zeros_like(Y)
    velocity: Tensor | None = None
    with limit_threads(num_threads):
        for s, idx in enumerate(minibatches(n, batch_size, steps, seed)):
            logits = f0[idx, None] + K[idx] @ alpha
            grad = torch.zeros_like(alpha)
            grad[idx] = (torch.sigmoid(logits) - Y[idx]) / idx.numel()
            velocity = grad if velocity is None else velocity.mul_(momentum).add_(grad)
            alpha = alpha - _step_size(lr, s, steps) * velocity
    return alpha[:, 0] if single else alpha
