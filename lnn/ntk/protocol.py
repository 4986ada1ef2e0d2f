"""The chapter's training protocol (chapter *Linearized networks*): minibatch SGD with momentum and a linearly
decaying step, for a network and, in function space, for its linearization."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from .diagnostics import check_gram, check_target

__all__ = ["minibatches", "train_binary", "kernel_train_binary"]

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
    y = check_target(y, X.shape[0], "y")
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
    K = check_gram(K_train, "K_train")
    n = K.shape[0]
    f0 = check_target(f0_train, n, "f0_train").to(K.dtype)
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
