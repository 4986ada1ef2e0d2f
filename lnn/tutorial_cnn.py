"""The TensorFlow MNIST tutorial convolutional network at 8x8 digits scale, and its overparameterized variant
(chapter *Applications*, section "Acceleration by overparameterization", after Arora, Cohen and Hazan 2018, §8).

The network (TensorFlow's ``tutorials/image/mnist/convolutional.py``) is

    conv 5x5, 1 -> 32, ReLU, max-pool 2x2  ->  conv 5x5, 32 -> 64, ReLU, max-pool 2x2
    ->  dense 512, ReLU, dropout 0.5  ->  dense 10,

with "same" padding. On 8x8 digits the two pools take 8x8 to 4x4 to 2x2 (28 -> 14 -> 7 on MNIST), so the first dense
layer has fan-in ``2 * 2 * 64 = 256`` instead of 3136. Every weight is truncated normal (cut at two standard
deviations) with standard deviation 0.1; the first dense layer uses ``0.35`` by default, which keeps
``fan_in * sigma^2`` (about 31.4) as on MNIST. Biases are 0 for the first convolution and 0.1 elsewhere.

*Overparameterized* (ACH18 §8): each dense weight ``W`` (``in x out``, applied as ``x W``) is replaced by a product
``W = A B`` with a new square factor ``B`` (``512 x 512`` and ``10 x 10``), also truncated normal with standard
deviation 0.1. The training loss is

.. math:: L = \\frac{1}{b}\\sum_{i \\in \\text{batch}} \\operatorname{CE}(f(x_i), y_i)
          + \\lambda \\cdot \\tfrac12 \\sum_{\\text{dense}} \\big(\\|W\\|_F^2 + \\|b\\|^2\\big),
          \\qquad \\lambda = 5 \\cdot 10^{-4},

with the penalty on the product ``W`` (``penalty="product"``, the paper's choice), on each factor
(``penalty="factors"``), or absent (``penalty="none"``). Training is SGD with heavy-ball momentum 0.9 (TensorFlow's
form ``v <- mu v + g``, ``theta <- theta - eta v``), batch 64, step ``0.01 * 0.95^epoch``.

Many networks (seeds, variants with the same parameter shapes) are trained at once through :func:`torch.vmap`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .training import batched_value_and_grad

__all__ = [
    "WEIGHT_DECAY",
    "accuracy",
    "dense_weights",
    "l2_penalty",
    "train_tutorial_cnn",
    "tutorial_cnn_forward",
    "tutorial_cnn_init",
]

WEIGHT_DECAY = 5e-4
_PENALTIES = ("product", "factors", "none")


def _truncated_normal(shape: Sequence[int], std: float, generator: torch.Generator) -> Tensor:
    t = torch.empty(*shape, dtype=torch.float32)
    torch.nn.init.trunc_normal_(t, mean=0.0, std=std, a=-2 * std, b=2 * std, generator=generator)
    return t


def tutorial_cnn_init(
    seed: int,
    *,
    overparameterized: bool = False,
    side: int = 8,
    widths: tuple[int, int, int] = (32, 64, 512),
    classes: int = 10,
) -> dict[str, Tensor]:
    """Parameters of the tutorial CNN for ``side x side`` one-channel images, as a dict of float32 tensors.

    ``widths`` are the two convolutions' channels and the hidden dense width (the tutorial's ``(32, 64, 512)``).
    Each weight is truncated normal with the standard deviation that keeps ``fan_in * sigma^2`` equal to the
    tutorial's on MNIST (``sigma = 0.1`` there): ``sigma = 0.1 * sqrt(fan_in_MNIST / fan_in)``. At full widths on
    8x8 images this leaves every layer at 0.1 except the first dense one, 0.35.

    The first dense weight is ``fc1_w`` (``fan_in x hidden``, ``fan_in = (side // 4)^2 * widths[1]``); with
    ``overparameterized=True`` it is the product ``fc1_w @ fc1_w2`` with a new ``hidden x hidden`` factor
    ``fc1_w2``, and likewise ``fc2_w @ fc2_w2`` with a ``classes x classes`` factor. The first factors are drawn
    exactly as the original network's weights from the same seed, so both variants share their convolutions.
    """
    if side % 4 or side < 4:
        raise ValueError(f"side must be a positive multiple of 4 (two 2x2 pools), got {side}")
    c1, c2, hidden = (int(w) for w in widths)
    if min(c1, c2, hidden, classes) < 1:
        raise ValueError(f"widths and classes must be positive, got {widths}, {classes}")
    gen = torch.Generator().manual_seed(int(seed))
    fan_in = (side // 4) ** 2 * c2

    def std(fan, fan_mnist):
        return 0.1 * math.sqrt(fan_mnist / fan)

    p = {
        "conv1_w": _truncated_normal((c1, 1, 5, 5), std(25, 25), gen),
        "conv1_b": torch.zeros(c1),
        "conv2_w": _truncated_normal((c2, c1, 5, 5), std(25 * c1, 25 * 32), gen),
        "conv2_b": torch.full((c2,), 0.1),
        "fc1_w": _truncated_normal((fan_in, hidden), std(fan_in, 7 * 7 * 64), gen),
        "fc1_b": torch.full((hidden,), 0.1),
        "fc2_w": _truncated_normal((hidden, classes), std(hidden, 512), gen),
        "fc2_b": torch.full((classes,), 0.1),
    }
    if overparameterized:
        p["fc1_w2"] = _truncated_normal((hidden, hidden), std(hidden, 512), gen)
        p["fc2_w2"] = _truncated_normal((classes, classes), std(classes, 10), gen)
    return p


def dense_weights(params: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """End-to-end dense weights ``(W_1, W_2)``: the factors multiplied out when the network is overparameterized."""
    w1, w2 = params["fc1_w"], params["fc2_w"]
    if "fc1_w2" in params:
        w1 = w1 @ params["fc1_w2"]
        w2 = w2 @ params["fc2_w2"]
    return w1, w2


def tutorial_cnn_forward(params: dict[str, Tensor], x: Tensor, dropout_mask: Tensor | None = None) -> Tensor:
    """Logits for images ``x`` of shape ``(n, side, side)`` (or ``(n, 1, side, side)``).

    ``dropout_mask`` (shape ``(n, hidden)``, entries 0 or ``1/keep``) multiplies the first dense layer's output in
    training; ``None`` evaluates without dropout. With the factors of an overparameterized network the dense layers
    apply them in sequence, ``(x A) B``, as the layers of a deeper linear network would.
    """
    if x.ndim == 3:
        x = x.unsqueeze(1)
    h = F.max_pool2d(F.relu(F.conv2d(x, params["conv1_w"], params["conv1_b"], padding=2)), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, params["conv2_w"], params["conv2_b"], padding=2)), 2)
    # TensorFlow flattens NHWC; the order of a flattening does not matter for a freshly initialized dense layer.
    h = h.flatten(1) @ params["fc1_w"]
    if "fc1_w2" in params:
        h = h @ params["fc1_w2"]
    h = F.relu(h + params["fc1_b"])
    if dropout_mask is not None:
        h = h * dropout_mask
    h = h @ params["fc2_w"]
    if "fc2_w2" in params:
        h = h @ params["fc2_w2"]
    return h + params["fc2_b"]


def l2_penalty(params: dict[str, Tensor], penalty: str = "product") -> Tensor:
    """``(1/2) sum (||W||_F^2 + ||b||^2)`` over the dense layers: on the product ``W`` (``"product"``), on each
    factor (``"factors"``), or 0 (``"none"``)."""
    if penalty not in _PENALTIES:
        raise ValueError(f"penalty must be one of {_PENALTIES}, got {penalty!r}")
    biases = params["fc1_b"].square().sum() + params["fc2_b"].square().sum()
    if penalty == "none":
        return 0.0 * biases
    if penalty == "product":
        w = sum(W.square().sum() for W in dense_weights(params))
    else:
        w = sum(params[k].square().sum() for k in ("fc1_w", "fc2_w", "fc1_w2", "fc2_w2") if k in params)
    return 0.5 * (w + biases)


def train_tutorial_cnn(
    runs: Sequence[dict[str, Tensor]],
    X: Tensor,
    y: Tensor,
    *,
    penalty: str | Sequence[str] = "product",
    steps: int,
    lr: float = 0.01,
    decay: float = 0.95,
    momentum: float = 0.9,
    batch_size: int = 64,
    keep: float = 0.5,
    weight_decay: float = WEIGHT_DECAY,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, list[dict[str, Tensor]]]:
    """Train ``R`` tutorial CNNs of identical parameter shapes at once, the tutorial's way.

    ``penalty`` is one name for every run or one per run (``"product"``, ``"factors"``, ``"none"``; for a network
    that is not overparameterized ``"factors"`` is the same as ``"product"``). Step ``t`` uses minibatch ``t`` of a reshuffled pass over ``(X, y)`` (the same batches for every run), a fresh
    dropout mask per run, the step size ``lr * decay ** floor(t * batch_size / n)`` (decayed once per epoch), and
    heavy-ball momentum on the gradient of ``CE + weight_decay * l2_penalty(params, penalty)``.

    Returns
    -------
    ce, l2
        Tensors of shape ``(steps, R)``: the minibatch cross-entropy and ``weight_decay * penalty`` before each
        step (their sum is the loss the paper plots); a diverged run shows NaN or inf.
    trained
        ``R`` dicts of final parameters.
    """
    runs = list(runs)
    if not runs:
        raise ValueError("runs must hold at least one parameter dict")
    keys = list(runs[0])
    for r in runs[1:]:
        if list(r) != keys or any(r[k].shape != runs[0][k].shape for k in keys):
            raise ValueError("every run must have the same parameter names and shapes")
    if X.ndim not in (3, 4) or X.shape[0] != y.shape[0]:
        raise ValueError(f"X must hold images (n, side, side) matching y, got {tuple(X.shape)} and {tuple(y.shape)}")
    if not 1 <= batch_size <= X.shape[0]:
        raise ValueError(f"batch_size must lie in [1, {X.shape[0]}], got {batch_size}")
    if not 0 < keep <= 1:
        raise ValueError(f"keep must lie in (0, 1], got {keep}")
    if not (lr > 0 and 0 < decay <= 1 and 0 <= momentum < 1):
        raise ValueError(f"need lr > 0, 0 < decay <= 1, 0 <= momentum < 1; got {lr}, {decay}, {momentum}")
    R, n = len(runs), X.shape[0]
    names = [penalty] * R if isinstance(penalty, str) else list(penalty)
    if len(names) != R or any(p not in _PENALTIES for p in names):
        raise ValueError(f"penalty must be one of {_PENALTIES} or a list of {R} of them, got {penalty!r}")
    on_product = torch.tensor([float(p == "product") for p in names])
    on_factors = torch.tensor([float(p == "factors") for p in names])
    hidden = runs[0]["fc1_b"].shape[0]
    params = {k: torch.stack([r[k] for r in runs]).clone() for k in keys}
    velocity = {k: torch.zeros_like(v) for k, v in params.items()}

    def parts(p, xb, yb, mask, c_product, c_factors):
        ce = F.cross_entropy(tutorial_cnn_forward(p, xb, mask), yb)
        l2 = weight_decay * (c_product * l2_penalty(p, "product") + c_factors * l2_penalty(p, "factors"))
        return ce + l2, (ce, l2)

    step_fn = batched_value_and_grad(parts, (0, None, None, 0, 0, 0), has_aux=True)
    ce_rec, l2_rec = torch.empty(steps, R), torch.empty(steps, R)
    order, cursor, epoch_len = None, n, n / batch_size
    for t in range(steps):
        if cursor + batch_size > n:
            order, cursor = torch.randperm(n, generator=generator), 0
        idx = order[cursor : cursor + batch_size]
        cursor += batch_size
        mask = (torch.rand(R, batch_size, hidden, generator=generator) < keep).float() / keep
        grads, _, (ce, l2) = step_fn(params, X[idx], y[idx], mask, on_product, on_factors)
        ce_rec[t], l2_rec[t] = ce.detach(), l2.detach()
        eta = lr * decay ** math.floor(t / epoch_len)
        with torch.no_grad():
            for k in params:
                velocity[k] = momentum * velocity[k] + grads[k]
                params[k] = params[k] - eta * velocity[k]
    trained = [{k: v[r].clone() for k, v in params.items()} for r in range(R)]
    return ce_rec, l2_rec, trained


def accuracy(predict, x: Tensor, y: Tensor) -> float:
    """Fraction of correct predictions (the book's one ``accuracy``; chapters *Applications* and *Linearized
    networks*): ``predict(x)`` gives logits, ``(n, classes)`` (arg-max) or ``(n,)`` /
    ``(n, 1)`` (positive means class 1). A prediction that is not finite counts as wrong."""
    with torch.no_grad():
        out = predict(x)
        if out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]
        finite = torch.isfinite(out) if out.ndim == 1 else torch.isfinite(out).all(1)
        guess = out.argmax(1) if out.ndim == 2 else (out > 0).to(y.dtype)
        return ((guess == y) & finite).float().mean().item()
