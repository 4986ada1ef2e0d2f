"""Locality in convolutional networks: the input-gradient-change regularizer, data entanglement and feature
rearrangement (chapter *Applications*).

* **Countering locality** (Razin, Maman, Cohen 2022). The implicit regularization of a convolutional network
  favours interactions between nearby parts of the input. The input-gradient-change (IGC) regularizer
  (:func:`input_gradient_change`) penalizes a network whose sensitivity to one patch does not change when a distant
  patch changes, i.e. it rewards long-range interactions. :func:`is_same_task` generates a small task whose label
  depends on two distant patterns.
* **Which data suits a locally connected network** (Alexander, De La Vega, Razin, Cohen 2023). A locally connected
  network fits data well when the data has low entanglement under the canonical partitions of its features
  (contiguous blocks against the rest, :func:`canonical_partitions`). :func:`surrogate_entanglement` measures it
  from correlations; :func:`gram_entanglement` computes the exact quantity for a small sample;
  :func:`spectral_rearrangement` reorders features (recursive spectral bisection) to lower it.
  :func:`ar1_features` makes features with a known local order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = [
    "ar1_features",
    "abs_correlation",
    "adjacent_correlation",
    "canonical_partitions",
    "surrogate_entanglement",
    "gram_entanglement",
    "entanglement_at_level",
    "spectral_rearrangement",
    "is_same_templates",
    "is_same_slots",
    "is_same_task",
    "patch_mask",
    "input_gradient_change",
    "train_to_fit",
]


def _check_positive_int(value: int, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_data(X: Tensor, name: str = "X") -> Tensor:
    if not isinstance(X, Tensor) or X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D tensor (samples, features), got {getattr(X, 'shape', type(X))}")
    return X


# --------------------------------------------------------------------------------------------------------------
# synthetic features with a known local structure
# --------------------------------------------------------------------------------------------------------------
def ar1_features(
    m: int,
    D: int,
    rho: float = 0.9,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """``m`` samples of ``D`` stationary AR(1) features (chapter *Applications*, feature rearrangement):

    .. math:: x_1 \\sim \\mathcal N(0, 1), \\qquad x_{i+1} = \\rho\\, x_i + \\sqrt{1 - \\rho^2}\\, \\varepsilon_i,

    so every feature has unit variance and ``corr(x_i, x_j) = rho^{|i-j|}``: neighbours in the given order are the
    most correlated, the structure a locally connected network likes. Returns shape ``(m, D)``.
    """
    m, D = _check_positive_int(m, "m"), _check_positive_int(D, "D")
    if not -1.0 < float(rho) < 1.0:
        raise ValueError(f"rho must lie in (-1, 1) for a stationary AR(1) sequence, got {rho}")
    eps = torch.randn(m, D, generator=generator, dtype=dtype)
    X = torch.empty(m, D, dtype=dtype)
    X[:, 0] = eps[:, 0]
    c = math.sqrt(1.0 - rho**2)
    for i in range(1, D):
        X[:, i] = rho * X[:, i - 1] + c * eps[:, i]
    return X


def abs_correlation(X: Tensor) -> Tensor:
    """Absolute Pearson correlation matrix ``|corr(x_i, x_j)|`` of the columns of ``X`` (shape ``(D, D)``).

    Constant features (zero variance) get zero correlation with everything."""
    X = _check_data(X)
    Xc = X - X.mean(0)
    std = Xc.norm(dim=0)
    safe = torch.where(std > 0, std, torch.ones_like(std))
    Z = Xc / safe
    C = (Z.mT @ Z).abs()
    C = torch.where((std > 0).unsqueeze(0) & (std > 0).unsqueeze(1), C, torch.zeros_like(C))
    return C.clamp(max=1.0)


def adjacent_correlation(C: Tensor) -> Tensor:
    """Mean ``|corr|`` between features that are neighbours in the current order, ``mean_i C[i, i+1]``."""
    if C.ndim != 2 or C.shape[0] != C.shape[1] or C.shape[0] < 2:
        raise ValueError(f"C must be a square matrix with at least 2 features, got shape {tuple(C.shape)}")
    return torch.diagonal(C, offset=1).mean()


# --------------------------------------------------------------------------------------------------------------
# canonical partitions and entanglement
# --------------------------------------------------------------------------------------------------------------
def canonical_partitions(D: int, level: int) -> list[tuple[Tensor, Tensor]]:
    """The canonical partitions of ``D`` ordered features at ``level`` (Alexander et al. 2023).

    Split ``0..D-1`` into ``2^level`` contiguous blocks (sizes differing by at most one, larger blocks first, as
    :func:`numpy.array_split`); each block against the rest of the features is one partition ``(A, A^c)``. At
    level 1 the two blocks define the same cut, so a single partition (first half, second half) is returned. These
    are the cuts a locally connected network with a binary-tree structure sees, one level of the tree at a time.
    """
    D = _check_positive_int(D, "D", 2)
    level = _check_positive_int(level, "level")
    blocks = 2**level
    if blocks > D:
        raise ValueError(f"level {level} needs at least 2^{level} = {blocks} features, got D = {D}")
    sizes = [D // blocks + (1 if b < D % blocks else 0) for b in range(blocks)]
    idx = torch.arange(D)
    parts, start = [], 0
    for size in sizes:
        block = idx[start : start + size]
        rest = torch.cat([idx[:start], idx[start + size :]])
        parts.append((block, rest))
        start += size
    return parts[:1] if level == 1 else parts


def surrogate_entanglement(C: Tensor, level: int) -> Tensor:
    """Correlation surrogate of the entanglement at ``level``: the mean over the canonical partitions ``(A, A^c)``
    of the cut weight

    .. math:: \\operatorname{cut}(A) = \\sum_{i \\in A} \\sum_{j \\notin A} |\\operatorname{corr}(x_i, x_j)|

    (chapter *Applications*). ``C`` is the ``|corr|`` matrix in the current feature order (permute it as
    ``C[p][:, p]`` to evaluate an order ``p``). Low values mean that features interact mostly within contiguous
    blocks.
    """
    if C.ndim != 2 or C.shape[0] != C.shape[1]:
        raise ValueError(f"C must be a square |corr| matrix, got shape {tuple(C.shape)}")
    cuts = [C[A][:, B].sum() for A, B in canonical_partitions(C.shape[0], level)]
    return torch.stack(cuts).mean()


def _angle_gram(X: Tensor, features: Tensor, theta: float) -> Tensor:
    """``G[i, k] = prod_{f in features} cos(pi theta (x_{i f} - x_{k f}))``, computed as a sum of logs of |cos| and
    a sign, to stay accurate when many features multiply."""
    Xf = X[:, features]
    diff = Xf.unsqueeze(1) - Xf.unsqueeze(0)  # (m, m, |A|)
    cos = torch.cos(math.pi * theta * diff)
    sign = torch.where(cos < 0, -1.0, 1.0).to(X.dtype).prod(-1)
    logabs = torch.log(cos.abs().clamp_min(torch.finfo(X.dtype).tiny)).sum(-1)
    return sign * torch.exp(logabs)


def _psd_factor(G: Tensor) -> Tensor:
    """``V`` with ``V^T V = G`` for a symmetric PSD ``G`` (eigenvalues clipped at 0), shape ``(rank, m)``."""
    evals, evecs = torch.linalg.eigh(G)
    keep = evals > evals.abs().max() * G.shape[0] * torch.finfo(G.dtype).eps
    return evals[keep].sqrt().unsqueeze(1) * evecs[:, keep].mT


def gram_entanglement(
    X: Tensor,
    block: Sequence[int] | Tensor,
    *,
    theta: float = 0.1,
    labels: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Exact entanglement of the empirical data state under the partition (``block``, rest) (Alexander et al. 2023).

    Each feature value is embedded as the unit vector ``(cos(pi theta x), sin(pi theta x))`` and a sample as the
    tensor product of its features' embeddings, so the data state is ``psi = sum_i phi_A(x_i) ⊗ phi_B(x_i)`` for a
    partition ``A | B`` of the features (optionally with sign ``+-1`` labels, ``psi = sum_i y_i phi(x_i)``). Only
    Gram matrices are needed:

    .. math:: G_A[i, k] = \\prod_{f \\in A} \\cos\\big(\\pi\\theta\\,(x_{i f} - x_{k f})\\big), \\qquad
              G_A = V_A^\\top V_A,\\quad G_B = V_B^\\top V_B,

    and the Schmidt coefficients of ``psi`` are the singular values ``s_r`` of ``V_A \\operatorname{diag}(y) V_B^T``.
    With ``c_r = s_r^2 / sum s^2``, the entanglement entropy is ``-sum c_r ln c_r`` (between 0 and ``ln m``) and
    the geometric entanglement is ``sqrt(1 - max_r c_r)``.

    Parameters
    ----------
    X
        Data, shape ``(m, D)``; keep ``m`` to a few hundred (the cost is ``O(m^2 D + m^3)``). Scale features to a
        bounded range (e.g. ``[0, 1]``) so that ``theta`` sets how finely the embedding resolves values.
    block
        Feature indices of side ``A``; the rest is side ``B``.
    theta
        Embedding angle as a fraction of ``pi``.
    labels
        Optional ``+-1`` labels of shape ``(m,)``.

    Returns
    -------
    ``(entropy, geometric)`` as 0-d tensors.
    """
    X = _check_data(X)
    m, D = X.shape
    A = torch.as_tensor(block, dtype=torch.long).flatten()
    if A.numel() == 0 or A.numel() >= D or A.unique().numel() != A.numel() or A.min() < 0 or A.max() >= D:
        raise ValueError(f"block must list distinct feature indices in [0, {D}) forming a proper subset, got {A.tolist()}")
    if not float(theta) > 0:
        raise ValueError(f"theta must be positive, got {theta}")
    mask = torch.ones(D, dtype=torch.bool)
    mask[A] = False
    B = torch.arange(D)[mask]
    X = X.to(torch.float64)
    VA = _psd_factor(_angle_gram(X, A, theta))
    VB = _psd_factor(_angle_gram(X, B, theta))
    if labels is not None:
        y = torch.as_tensor(labels, dtype=torch.float64).flatten()
        if y.shape != (m,):
            raise ValueError(f"labels must have shape ({m},), got {tuple(y.shape)}")
        VA = VA * y
    s = torch.linalg.svdvals(VA @ VB.mT)
    c = s**2 / (s**2).sum()
    nz = c[c > 0]
    entropy = -(nz * nz.log()).sum()
    geometric = (1.0 - c.max()).clamp_min(0.0).sqrt()
    return entropy, geometric


def entanglement_at_level(
    X: Tensor,
    level: int,
    *,
    theta: float = 0.1,
    labels: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Mean of :func:`gram_entanglement` (entropy, geometric) over the canonical partitions at ``level``."""
    X = _check_data(X)
    values = [gram_entanglement(X, A, theta=theta, labels=labels) for A, _ in canonical_partitions(X.shape[1], level)]
    return torch.stack([v[0] for v in values]).mean(), torch.stack([v[1] for v in values]).mean()


# --------------------------------------------------------------------------------------------------------------
# feature rearrangement
# --------------------------------------------------------------------------------------------------------------
def _fiedler_order(C: Tensor) -> Tensor:
    """Indices ``0..n-1`` sorted by the Fiedler vector of the graph Laplacian ``L = diag(C 1) - C``."""
    W = C.clone()
    W.fill_diagonal_(0.0)
    L = torch.diag(W.sum(1)) - W
    _, evecs = torch.linalg.eigh(L)
    v = evecs[:, 1]
    # the sign of an eigenvector is arbitrary: fix it so the result does not depend on the LAPACK build
    k = int(v.abs().argmax())
    if v[k] < 0:
        v = -v
    return torch.sort(v, stable=True).indices


def spectral_rearrangement(C: Tensor, leaf_size: int = 2, *, orient: bool = True) -> Tensor:
    """A feature order that puts strongly correlated features close together (chapter *Applications*).

    Recursive spectral bisection of the graph whose edge weights are ``C`` (e.g. ``|corr|``): sort the features of
    a group by the Fiedler vector (eigenvector of the second-smallest eigenvalue) of the group's Laplacian
    ``L = diag(C 1) - C``, split at the median into two halves (the first one takes the extra feature when the
    size is odd), recurse until groups have at most ``leaf_size`` features, and read the groups left to right
    (depth-first). Each split approximates a balanced minimum cut, so the canonical cuts of the returned order
    carry little correlation. Alexander et al. (2023) use METIS for the balanced cuts; spectral bisection is the
    classical relaxation of the same problem and needs only an eigensolver.

    With ``orient=True`` each pair of halves is joined, bottom-up, in whichever of the four orientations
    (either half reversed or not) puts the most correlated pair of features at the junction. Reversing a half
    keeps its set of features, so the blocks, and with them every canonical cut, are unchanged; only the
    correlation between neighbours improves.

    Returns a permutation ``p`` (LongTensor): the new order is ``X[:, p]`` and ``C[p][:, p]``.
    """
    if C.ndim != 2 or C.shape[0] != C.shape[1]:
        raise ValueError(f"C must be a square matrix of edge weights, got shape {tuple(C.shape)}")
    if not torch.allclose(C, C.mT):
        raise ValueError("C must be symmetric")
    if bool((C < 0).any()):
        raise ValueError("C must have non-negative entries (use |corr|)")
    leaf_size = _check_positive_int(leaf_size, "leaf_size")
    C = C.to(torch.float64)

    def join(left: Tensor, right: Tensor) -> Tensor:
        if not orient:
            return torch.cat([left, right])
        options = [(left, right), (left.flip(0), right), (left, right.flip(0)), (left.flip(0), right.flip(0))]
        scores = [float(C[a[-1], b[0]]) for a, b in options]
        a, b = options[max(range(4), key=scores.__getitem__)]  # first best: ties keep the unflipped order
        return torch.cat([a, b])

    def split(group: Tensor) -> Tensor:
        if group.numel() <= leaf_size:
            return group
        ordered = group[_fiedler_order(C[group][:, group])]
        half = group.numel() - group.numel() // 2
        return join(split(ordered[:half]), split(ordered[half:]))

    return split(torch.arange(C.shape[0]))


# --------------------------------------------------------------------------------------------------------------
# the IsSame task and the input-gradient-change regularizer
# --------------------------------------------------------------------------------------------------------------
def is_same_templates(num_classes: int, patch: int, *, generator: torch.Generator | None = None) -> Tensor:
    """``num_classes`` random class patterns of length ``patch`` (i.i.d. N(0, 1) entries), shape ``(K, patch)``.

    Train and test sets of :func:`is_same_task` must share the same templates."""
    num_classes = _check_positive_int(num_classes, "num_classes", 2)
    patch = _check_positive_int(patch, "patch")
    return torch.randn(num_classes, patch, generator=generator)


def is_same_slots(length: int, patch: int, distance: int) -> tuple[slice, slice]:
    """The two pattern slots of :func:`is_same_task`: ``patch`` wide, ``distance`` apart, centred in ``length``."""
    length, patch = _check_positive_int(length, "length"), _check_positive_int(patch, "patch")
    distance = _check_positive_int(distance, "distance", 0)
    span = 2 * patch + distance
    if span > length:
        raise ValueError(f"two patterns of width {patch} at distance {distance} need length >= {span}, got {length}")
    start = (length - span) // 2
    return slice(start, start + patch), slice(start + patch + distance, start + span)


def is_same_task(
    n: int,
    distance: int,
    templates: Tensor,
    *,
    length: int = 64,
    noise: float = 0.5,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """A 1-D *IsSame* task (chapter *Applications*; a toy version of IsSameClass in Razin, Maman, Cohen 2022).

    Each input of ``length`` positions holds two noisy class patterns, in the slots of :func:`is_same_slots`,
    ``distance`` positions apart, on a background of Gaussian noise. The label is 1 when both patterns come from
    the same class and 0 otherwise (balanced). Nothing about one slot alone predicts the label: the network must
    relate two regions ``distance`` apart.

    .. math:: x = \\text{noise}\\cdot\\varepsilon + T_{c_1} \\text{ on slot 1} + T_{c_2} \\text{ on slot 2},\\qquad
              y = \\mathbb 1[c_1 = c_2].

    Returns ``x`` of shape ``(n, 1, length)`` (one channel, float32) and ``y`` of shape ``(n,)`` (float32).
    """
    n = _check_positive_int(n, "n")
    if templates.ndim != 2 or templates.shape[0] < 2:
        raise ValueError(f"templates must have shape (num_classes >= 2, patch), got {tuple(templates.shape)}")
    if not float(noise) >= 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    K, patch = templates.shape
    a, b = is_same_slots(length, patch, distance)
    c1 = torch.randint(K, (n,), generator=generator)
    same = torch.rand(n, generator=generator) < 0.5
    offset = torch.randint(1, K, (n,), generator=generator)
    c2 = torch.where(same, c1, (c1 + offset) % K)
    x = noise * torch.randn(n, 1, length, generator=generator)
    x[:, 0, a] += templates[c1]
    x[:, 0, b] += templates[c2]
    return x.float(), same.float()


def patch_mask(length: int, where: slice, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """A 0/1 mask of shape ``(length,)`` that is 1 on the positions ``where`` (a slice)."""
    length = _check_positive_int(length, "length")
    mask = torch.zeros(length, dtype=dtype)
    mask[where] = 1
    if mask.sum() == 0:
        raise ValueError(f"the patch {where} selects no position of a length-{length} input")
    return mask


def input_gradient_change(
    f: Callable[[Tensor], Tensor],
    x: Tensor,
    mask_i: Tensor,
    mask_j: Tensor,
    *,
    eps: float | None = None,
) -> Tensor:
    """The input-gradient-change (IGC) regularizer of Razin, Maman and Cohen (2022) (chapter *Applications*).

    For each sample ``x_b`` of the batch let ``g_b = d f(x_b) / d x_b`` restricted to patch ``I`` and ``g'_b`` the
    same gradient after patch ``J`` of ``x_b`` is replaced by patch ``J`` of the next sample (the batch shifted by
    one). The regularizer is the mean absolute cosine

    .. math:: R = \\frac1B \\sum_b \\frac{|\\langle g_b, g'_b\\rangle|}{\\max(\\|g_b\\|\\,\\|g'_b\\|, \\epsilon)}.

    A network in which the effect of patch ``I`` does not depend on patch ``J`` has ``g' = g`` and ``R = 1``; adding
    ``coef * R`` to the loss pushes towards interactions between the two patches. The official code draws ``I`` and
    ``J`` at random among preset patches at every step; calling this function for both orders and averaging is the
    same penalty in expectation.

    Parameters
    ----------
    f
        The network's scalar output per sample, ``f(x) -> (B,)`` (the logit for a binary task; the logit of the
        true class for a multi-class one). Written with :mod:`torch.func`, so it composes with ordinary autograd
        (``loss.backward()``) and with :func:`torch.func.grad` / :func:`torch.vmap` over parameters.
    x
        A batch of inputs, shape ``(B, ...)``, ``B >= 2``.
    mask_i, mask_j
        0/1 masks marking patches ``I`` and ``J`` (see :func:`patch_mask`), broadcastable to ``x``: one mask for
        the whole batch (e.g. shape ``(length,)`` for inputs ``(B, channels, length)``) or one per sample (shape
        ``(B, 1, length)``), for instance to alternate which of two patches plays ``I``.
    eps
        Guards the division (default: the smallest normal number of ``x``'s dtype). Keep it tiny: a larger
        ``eps`` lets training lower ``R`` by merely shrinking the input gradients, without any interaction.
    """
    if x.ndim < 2 or x.shape[0] < 2:
        raise ValueError(f"x must be a batch of at least 2 samples, got shape {tuple(x.shape)}")

    def total(inp: Tensor) -> Tensor:
        return f(inp).sum()

    mi, mj = mask_i.to(x.dtype), mask_j.to(x.dtype)
    shuffled = x * (1 - mj) + torch.roll(x, shifts=-1, dims=0) * mj
    both = torch.cat([x, shuffled])
    g = torch.func.grad(total)(both).reshape(2, *x.shape) * mi  # gradients before / after the swap, on patch I
    g = g.reshape(2, x.shape[0], -1)
    dot = (g[0] * g[1]).sum(-1)
    norms = g[0].norm(dim=-1) * g[1].norm(dim=-1)
    tiny = torch.finfo(x.dtype).tiny if eps is None else float(eps)
    return (dot.abs() / norms.clamp_min(tiny)).mean()


# --------------------------------------------------------------------------------------------------------------
# training the way the official code does: to a perfect training accuracy, plus patience
# --------------------------------------------------------------------------------------------------------------
def train_to_fit(
    models: Sequence[torch.nn.Module],
    loss: Callable[..., tuple[Tensor, Tensor]],
    data: Sequence[Tensor],
    *,
    lr: float = 1e-2,
    momentum: float = 0.9,
    optimizer: str = "sgd",
    batch_size: int = 64,
    patience: int = 20,
    max_epochs: int = 150,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, list[torch.nn.Module]]:
    """Train ``R`` binary classifiers at once until each fits its training set, as in the official code of
    Razin, Maman and Cohen (2022) (chapter *Applications*, "Countering the locality bias").

    SGD with heavy-ball momentum (``v <- mu v + g``, ``theta <- theta - lr v``; the official code's optimizer), or
    Adam (``optimizer="adam"``, ``betas = (0.9, 0.999)``, ``eps = 1e-8``), on minibatches of a reshuffled pass over
    each run's data. After every epoch the run's *training accuracy* is the accuracy of its predictions on the
    batches of that epoch (made before each update, as the official trainer records it); a run stops, its
    parameters frozen, once that accuracy has been 1 for more than ``patience`` epochs in a row, or after
    ``max_epochs``. A stopped run is no longer computed, and its recorded accuracy stays at its last value.

    Parameters
    ----------
    models
        ``R`` modules of identical structure, not modified.
    loss
        ``loss(f, x, y, *rest) -> (scalar, logits)`` with ``logits`` of shape ``(b,)`` (class 1 when positive);
        ``f`` applies the run's network.
    data
        Tensors with a leading run dimension ``R`` then examples: ``(x, y, *rest)``, ``y`` in ``{0, 1}``.

    Returns
    -------
    epochs
        Epochs trained per run, shape ``(R,)`` (``max_epochs`` for a run that never met the rule).
    train_accuracy
        Per-epoch training accuracy, shape ``(epochs run, R)``.
    trained
        ``R`` new modules with the final parameters.
    """
    import copy

    from .training import batched_value_and_grad, unstack_modules

    models = list(models)
    if not models:
        raise ValueError("models must hold at least one module")
    R = len(models)
    data = list(data)
    if len(data) < 2 or any(t.shape[0] != R for t in data):
        raise ValueError(f"data must be (x, y, ...) tensors with a leading run dimension R = {R}")
    n = data[0].shape[1]
    if any(t.shape[1] != n for t in data):
        raise ValueError("every data tensor must hold the same number of examples")
    batch_size = _check_positive_int(batch_size, "batch_size")
    if batch_size > n:
        raise ValueError(f"batch_size must be <= {n}, got {batch_size}")
    patience = _check_positive_int(patience, "patience", 0)
    max_epochs = _check_positive_int(max_epochs, "max_epochs")
    if not (lr > 0 and 0 <= momentum < 1):
        raise ValueError(f"need lr > 0 and 0 <= momentum < 1, got {lr}, {momentum}")
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    params, buffers = torch.func.stack_module_state(models)
    params = {k: v.detach().clone() for k, v in params.items()}
    base = copy.deepcopy(models[0]).to("meta")

    def run_loss(p, b, *batch):
        return loss(lambda x: torch.func.functional_call(base, (p, b), (x,)), *batch)

    step_fn = batched_value_and_grad(run_loss, (0, 0) + (0,) * len(data), has_aux=True)
    velocity = {k: torch.zeros_like(v) for k, v in params.items()}
    second = {k: torch.zeros_like(v) for k, v in params.items()}
    counts = torch.zeros(R)  # Adam's step count per run (frozen runs do not advance)
    active = torch.ones(R)
    streak = torch.zeros(R, dtype=torch.long)
    epochs = torch.full((R,), max_epochs, dtype=torch.long)
    history = []
    per_epoch = n // batch_size
    for epoch in range(max_epochs):
        order = torch.randperm(n, generator=generator)
        correct = torch.zeros(R)
        # Only the runs still training are computed: a frozen run costs nothing (same results, less work).
        live = active.nonzero().flatten()
        every = live.numel() == R
        sub_params = params if every else {k: v[live] for k, v in params.items()}
        sub_buffers = buffers if every else {k: v[live] for k, v in buffers.items()}
        sub_data = data if every else [t[live] for t in data]
        for k in range(per_epoch):
            idx = order[k * batch_size : (k + 1) * batch_size]
            batch = [t[:, idx] for t in sub_data]
            grads, _, logits = step_fn(sub_params, sub_buffers, *batch)
            correct[live] += ((logits.detach() > 0).to(batch[1].dtype) == batch[1]).float().sum(1)
            counts[live] += 1
            with torch.no_grad():
                for name in sub_params:
                    g = grads[name]
                    if optimizer == "adam":
                        shape = (live.numel(),) + (1,) * (g.ndim - 1)
                        m1 = 0.9 * velocity[name][live] + 0.1 * g
                        m2 = 0.999 * second[name][live] + 0.001 * g * g
                        velocity[name][live], second[name][live] = m1, m2
                        c = counts[live].clamp_min(1).view(shape)
                        g = (m1 / (1 - 0.9**c)) / ((m2 / (1 - 0.999**c)).sqrt() + 1e-8)
                    else:
                        v1 = momentum * velocity[name][live] + g
                        velocity[name][live] = v1
                        g = v1
                    sub_params[name] = sub_params[name] - lr * g
        if not every:
            for name in params:
                params[name][live] = sub_params[name]
        acc = correct / (per_epoch * batch_size)
        if history:  # a frozen run keeps the accuracy it stopped with
            acc = torch.where(active > 0, acc, history[-1])
        history.append(acc)
        streak = torch.where(acc >= 1.0, streak + 1, torch.zeros_like(streak))
        done = (streak > patience) & (active > 0)
        epochs[done] = epoch + 1
        active[done] = 0.0
        if not bool(active.any()):
            break
    return epochs, torch.stack(history), unstack_modules(models, params)
