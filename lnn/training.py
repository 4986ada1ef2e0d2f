"""The one training loop for small ``nn.Module`` networks: many runs at once, vectorized over runs.

Seeds, step sizes and regularizer strengths of the small networks of chapters *Applications* and *Linearized
networks* are independent runs of one architecture. :func:`train_ensemble` stacks their parameters with
:func:`torch.func.stack_module_state` and steps all of them together: the forward pass vectorized over runs with
:func:`torch.vmap` through :func:`torch.func.functional_call`, and one backward pass of the sum of the runs' losses
(the runs are independent, so this is each run's gradient).
``R`` runs then cost one Python loop of ``steps`` iterations whose products are ``R`` times larger, which is
where a CPU (or a GPU) is efficient (``benchmarks/bench_training.py`` measures it against ``R`` sequential runs).

Per step ``s = 0, ..., S - 1`` and per run ``r``, with the minibatch ``B_s`` of :func:`minibatches` (the same
indices for every run):

.. math::
    g_r = \\nabla_{\\theta_r}\\Big[L_r(\\theta_r; B_s) + \\mathrm{penalty}(\\theta_r)\\Big] + \\lambda_r \\theta_r,
    \\qquad v_r \\leftarrow \\mu v_r + g_r, \\qquad \\theta_r \\leftarrow \\theta_r - \\eta_r\\, c_s\\, v_r,

heavy-ball momentum ``mu`` (plain gradient descent for ``mu = 0``; the update of ``torch.optim.SGD``), per-run
step sizes ``eta_r`` and weight decays ``lambda_r``, and a schedule ``c_s`` (``"constant"``: 1, ``"linear"``:
``1 - s / S``, the protocol of Ortiz-Jimenez et al. 2021), or Adam. A run whose loss or parameters stop being finite
is flagged in :attr:`EnsembleResult.diverged` with the step where it happened; it does not affect the other runs.

Users: chapter *Applications* calls it directly (``lnn.layers.ensemble_train`` is an earlier name of the same
function), and :func:`lnn.ntk.train_binary` (chapter *Linearized networks*) is one run of it with the binary
cross-entropy, momentum and the linear schedule. Both draw their minibatches from :func:`minibatches`, the one
sampler of the package. The other loops of the package with their own stopping rule or protocol
(:func:`lnn.locality.train_to_fit`, :func:`lnn.tutorial_cnn.train_tutorial_cnn`) take their steps with
:func:`batched_value_and_grad`.

Why :func:`lnn.gradient_descent` (``lnn.dynamics``) keeps its own loop: it trains products of matrices
``W_N ... W_1`` held as plain tensors, with the factor gradients in closed form from the prefix and suffix products
(``2N - 1`` matrix products per step and no autograd graph), batched over leading dimensions of the factors, with
the exact step of a divergence checked against a loss buffer. Routing it through ``functional_call`` and autograd
would cost it the closed forms that make it fast (see the Timings page), and it has no ``nn.Module`` to stack.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

__all__ = ["minibatches", "train_ensemble", "batched_value_and_grad", "unstack_modules", "EnsembleResult", "SCHEDULES"]

#: Step-size schedules ``c_s`` for step ``s`` of ``S``.
SCHEDULES: dict[str, Callable[[int, int], float]] = {
    "constant": lambda s, S: 1.0,
    "linear": lambda s, S: 1.0 - s / S,  # linear decay to 0 over the run (Ortiz-Jimenez et al. 2021)
}


def _positive_int(v, name: str, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral | float) or int(v) != v or v < minimum:
        kind = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name} must be a {kind} integer, got {v!r}")
    return int(v)


def minibatches(
    n: int, batch_size: int, steps: int, seed: int = 0, *, generator: torch.Generator | None = None
) -> list[Tensor]:
    """The index sets of ``steps`` minibatches over ``n`` examples: a fresh random permutation each epoch, cut into
    batches of ``batch_size``; the last batch of an epoch holds the remaining ``n mod batch_size`` examples when
    that is not zero, so every example is seen once per epoch. The permutations come from ``generator`` when one
    is given, else from a generator seeded with ``seed``. This is the one sampler of ``lnn``: the network and its
    linearization in chapter *Linearized networks* (:func:`lnn.ntk.train_binary`,
    :func:`lnn.ntk.kernel_train_binary`) and the ensembles of chapter *Applications* see the same batches for
    the same seed.

    Examples
    --------
    >>> [b.tolist() for b in minibatches(5, 2, 4, seed=0)]
    [[4, 0], [1, 3], [2], [3, 4]]
    """
    n = _positive_int(n, "n")
    batch_size = _positive_int(batch_size, "batch_size")
    steps = _positive_int(steps, "steps", minimum=0)
    gen = generator if generator is not None else torch.Generator().manual_seed(int(seed))
    out: list[Tensor] = []
    while len(out) < steps:
        perm = torch.randperm(n, generator=gen)
        out.extend(list(perm.split(batch_size))[: steps - len(out)])
    return out


class EnsembleResult(tuple):
    """What :func:`train_ensemble` returns: unpacks as ``(losses, models)``, and carries the divergence report.

    Attributes
    ----------
    losses : Tensor, shape (records, R)
        The loss of each run on the batch of each recorded step (before that step's update), then the loss on the
        full data after the last update.
    models : list of nn.Module
        ``R`` new modules holding the final parameters.
    step_losses : Tensor, shape (steps, R)
        Every step's minibatch loss (before the update).
    diverged : Tensor of bool, shape (R,)
        Runs whose loss or parameters became NaN or infinite. Their entries of ``losses`` are not finite: average
        over the other runs (``losses[:, ~result.diverged]``) and report how many diverged.
    divergence_step : Tensor of int64, shape (R,)
        The first step whose loss was not finite (``steps`` when only the final parameters or loss were), ``-1``
        for runs that did not diverge.
    """

    def __new__(cls, losses: Tensor, models: list[nn.Module], step_losses: Tensor, params_finite: Tensor):
        self = super().__new__(cls, (losses, models))
        steps = step_losses.shape[0]
        bad = ~torch.isfinite(step_losses)
        any_bad = bad.any(0)
        first = torch.where(any_bad, bad.to(torch.int64).argmax(0), torch.full_like(any_bad, -1, dtype=torch.int64))
        late = (~any_bad) & ((~params_finite) | ~torch.isfinite(losses[-1]))
        self.step_losses = step_losses
        self.divergence_step = torch.where(late, torch.full_like(first, steps), first)
        self.diverged = self.divergence_step >= 0
        return self

    @property
    def losses(self) -> Tensor:
        return self[0]

    @property
    def models(self) -> list[nn.Module]:
        return self[1]

    def __repr__(self) -> str:
        R = self[0].shape[1]
        return f"EnsembleResult({R} runs, {int(self.diverged.sum())} diverged, final losses {self[0][-1].tolist()})"



def unstack_modules(models: Sequence[nn.Module], params: dict[str, Tensor]) -> list[nn.Module]:
    """``R`` new modules: copies of ``models[r]`` holding the stacked parameters ``params[name][r]``, the inverse
    of :func:`torch.func.stack_module_state` for the parameters. The training loops of :func:`train_ensemble` and
    :func:`lnn.locality.train_to_fit` hand their runs back this way; ``models`` are not modified.

    Examples
    --------
    >>> nets = [nn.Linear(2, 1) for _ in range(3)]
    >>> params, _ = torch.func.stack_module_state(nets)
    >>> copies = unstack_modules(nets, {k: v + 1 for k, v in params.items()})
    >>> bool(torch.equal(copies[2].weight, nets[2].weight + 1))
    True
    """
    trained = []
    for r, model in enumerate(models):
        m = copy.deepcopy(model)
        with torch.no_grad():
            for name, p in m.named_parameters():
                p.copy_(params[name][r])
        trained.append(m)
    return trained

def _per_run(value, R: int, name: str, like: Tensor, allow_zero: bool) -> Tensor:
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if t.ndim == 0:
        t = t.expand(R)
    if t.shape != (R,):
        raise ValueError(f"{name} must be a float or a tensor of shape ({R},), got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()) or not bool((t >= 0).all() if allow_zero else (t > 0).all()):
        raise ValueError(f"every {name} must be {'non-negative' if allow_zero else 'positive'} and finite, got {value!r}")
    return t


def _single_run_step(run_loss: Callable[..., Tensor], data_per_run: bool) -> Callable:
    """``grad_and_value`` of one run's loss by ordinary autograd, with the stacked layout (leading dimension 1)."""

    def step(params: dict[str, Tensor], buffers: dict[str, Tensor], *batch: Tensor):
        p = {k: v[0].detach().requires_grad_(True) for k, v in params.items()}
        b = {k: v[0] for k, v in buffers.items()}
        value = run_loss(p, b, *[d[0] for d in batch] if data_per_run else batch)
        grads = torch.autograd.grad(value, list(p.values()))
        return {k: g[None] for k, g in zip(p, grads)}, value.detach()[None]

    return step


def batched_value_and_grad(
    run_loss: Callable[..., Tensor | tuple[Tensor, object]], in_dims: tuple, *, has_aux: bool = False
) -> Callable:
    """The losses of ``R`` independent runs and their gradients, in one vectorized computation.

    ``run_loss(params, *args)`` is one run's scalar loss (or ``(loss, aux)`` with ``has_aux``), ``params`` a dict
    of that run's parameters. The returned ``step(params, *args)`` takes the stacked parameters (leading dimension
    ``R``), evaluates ``vmap(run_loss, in_dims)`` and differentiates the sum of the ``R`` losses by one ordinary
    backward pass; the runs are independent, so

    .. math:: \\nabla_{\\theta_r} \\sum_{r'} L_{r'}(\\theta_{r'}) = \\nabla_{\\theta_r} L_r(\\theta_r),

    each run's gradient (a non-finite loss stays in its own run). It returns ``(grads, losses)``, or
    ``(grads, losses, aux)`` with ``has_aux``. ``vmap(grad(run_loss))`` gives the same numbers (to rounding) with
    more per-operation overhead, and :func:`torch.func.grad` imports ``torch._dynamo`` (seconds) on its first call.
    The training loops of :func:`train_ensemble`, :func:`lnn.locality.train_to_fit` and
    :func:`lnn.tutorial_cnn.train_tutorial_cnn` take their steps with it.

    Examples
    --------
    >>> step = batched_value_and_grad(lambda p, x: (p["w"] * x).sum() ** 2, in_dims=(0, None))
    >>> grads, losses = step({"w": torch.tensor([[1.0, 2.0], [3.0, 4.0]])}, torch.tensor([1.0, 1.0]))
    >>> losses.tolist(), grads["w"].tolist()
    ([9.0, 49.0], [[6.0, 6.0], [14.0, 14.0]])
    """
    batched = torch.vmap(run_loss, in_dims=in_dims)

    def step(params: dict[str, Tensor], *args):
        p = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        out = batched(p, *args)
        values, aux = out if has_aux else (out, None)
        grads = torch.autograd.grad(values.sum(), list(p.values()), allow_unused=True)
        grads = {k: torch.zeros_like(v) if g is None else g for (k, v), g in zip(p.items(), grads)}
        return (grads, values.detach(), aux) if has_aux else (grads, values.detach())

    return step


def train_ensemble(
    models: Sequence[nn.Module],
    loss: Callable[..., Tensor],
    data: Sequence[Tensor],
    *,
    lr: float | Tensor,
    steps: int,
    momentum: float = 0.0,
    optimizer: str = "sgd",
    schedule: str | Callable[[int, int], float] = "constant",
    weight_decay: float | Tensor = 0.0,
    penalty: Callable[[dict[str, Tensor]], Tensor] | None = None,
    batch_size: int | None = None,
    data_per_run: bool = False,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    record_every: int = 1,
    checkpoints: Sequence[int] = (),
    callback: Callable[[int, dict[str, Tensor]], None] | None = None,
) -> EnsembleResult:
    """Train ``R`` independent copies of one architecture at once (the module's update rule, above).

    Parameters
    ----------
    models
        ``R`` modules of identical structure (parameter names and shapes); they are not modified.
    loss
        ``loss(f, *batch) -> scalar``, where ``f(x)`` applies the run's network to ``x``; e.g.
        ``lambda f, X, y: F.cross_entropy(f(X), y)``. It may differentiate ``f`` with respect to its input through
        :mod:`torch.func`.
    data
        Tensors whose first dimension indexes examples, shared by every run; with ``data_per_run=True`` each has a
        leading run dimension ``R`` first (one data set per run).
    lr
        Step size ``eta``, a float or a tensor of shape ``(R,)``.
    steps
        Number of updates ``>= 0``.
    momentum
        Heavy-ball coefficient ``mu`` in ``[0, 1)`` (``optimizer="sgd"`` only).
    optimizer
        ``"sgd"`` or ``"adam"`` (Kingma and Ba 2015, ``betas = (0.9, 0.999)``, ``eps = 1e-8``).
    schedule
        ``"constant"``, ``"linear"`` (``c_s = 1 - s / S``), or a callable ``(s, S) -> c_s``.
    weight_decay
        ``lambda >= 0``, a float or a tensor of shape ``(R,)``: adds ``lambda theta`` to the gradient (the L2
        penalty ``lambda/2 |theta|^2`` on every parameter, as ``torch.optim.SGD``'s ``weight_decay``).
    penalty
        ``penalty(params) -> scalar`` added to each run's loss, with ``params`` the run's parameters by name (e.g.
        an L2 penalty on the end-to-end product of factors rather than on the factors themselves).
    batch_size
        ``None`` for full-batch gradient descent; otherwise minibatches from :func:`minibatches`.
    generator, seed
        The sampler's randomness: a generator, or a seed (default 0) for a fresh one.
    record_every
        Losses are recorded at steps ``0, record_every, ...``; the loss on the full data after the last update is
        appended.
    checkpoints, callback
        ``callback(s, params)`` runs after ``s`` updates for each ``s`` in ``checkpoints`` (``0``: before training),
        with the stacked parameters by name (leading dimension ``R``).

    Returns
    -------
    EnsembleResult
        Unpacks as ``(losses, models)``; ``.diverged`` and ``.divergence_step`` report the runs that diverged.
    """
    models = list(models)
    if len(models) == 0:
        raise ValueError("models must hold at least one module")
    if any(not isinstance(m, nn.Module) for m in models):
        raise ValueError("models must be torch.nn.Module instances")
    steps = _positive_int(steps, "steps", minimum=0)
    record_every = _positive_int(record_every, "record_every")
    if not 0.0 <= float(momentum) < 1.0:
        raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    if optimizer == "adam" and momentum:
        raise ValueError("momentum applies to optimizer='sgd' only (Adam has its own moment estimates)")
    if isinstance(schedule, str):
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {sorted(SCHEDULES)} or a callable (s, S) -> factor, got {schedule!r}")
        schedule = SCHEDULES[schedule]
    elif not callable(schedule):
        raise ValueError(f"schedule must be one of {sorted(SCHEDULES)} or a callable (s, S) -> factor, got {schedule!r}")
    if penalty is not None and not callable(penalty):
        raise ValueError("penalty must be a callable params -> scalar, or None")
    if generator is not None and seed is not None:
        raise ValueError("pass a generator or a seed, not both")
    names = [n for n, _ in models[0].named_parameters()]
    if not names:
        raise ValueError("the models have no parameters to train")
    for m in models[1:]:
        if [n for n, _ in m.named_parameters()] != names or any(
            p.shape != q.shape for p, q in zip(m.parameters(), models[0].parameters())
        ):
            raise ValueError("every model must have the same parameter names and shapes")
    R = len(models)
    data = list(data)
    if len(data) == 0:
        raise ValueError("data must hold at least one tensor")
    if any(not isinstance(t, Tensor) for t in data):
        raise ValueError("data must be a sequence of tensors")
    axis = 1 if data_per_run else 0
    n = data[0].shape[axis]
    for t in data:
        if data_per_run and t.shape[0] != R:
            raise ValueError(f"with data_per_run=True every data tensor needs a leading dimension R = {R}")
        if t.shape[axis] != n:
            raise ValueError("every data tensor must hold the same number of examples")
    if batch_size is not None and (isinstance(batch_size, bool) or not 1 <= int(batch_size) <= n):
        raise ValueError(f"batch_size must lie in [1, {n}], got {batch_size}")
    wanted = {int(c) for c in checkpoints}
    if wanted and callback is None:
        raise ValueError("checkpoints need a callback")
    if any(c < 0 or c > steps for c in wanted):
        raise ValueError(f"checkpoints must lie in 0..steps = {steps}, got {sorted(wanted)}")

    params, buffers = torch.func.stack_module_state(models)
    params = {k: v.detach().clone() for k, v in params.items()}
    ref = params[names[0]]
    lr_t = _per_run(lr, R, "step size lr", ref, allow_zero=False)
    wd_t = _per_run(weight_decay, R, "weight_decay", ref, allow_zero=True)
    use_wd = bool((wd_t > 0).any())
    base = copy.deepcopy(models[0]).to("meta")

    def run_loss(p, b, *batch):
        value = loss(lambda x: torch.func.functional_call(base, (p, b), (x,)), *batch)
        return value if penalty is None else value + penalty(p)

    in_dims = (0, 0) + (0 if data_per_run else None,) * len(data)
    if R == 1:  # one run: no vmap needed
        step_fn = _single_run_step(run_loss, data_per_run)
    else:
        step_fn = batched_value_and_grad(run_loss, in_dims)
    stateful = momentum > 0 or optimizer == "adam"
    velocity = {k: torch.zeros_like(v) for k, v in params.items()} if stateful else None
    second = {k: torch.zeros_like(v) for k, v in params.items()} if optimizer == "adam" else None
    beta1, beta2, adam_eps = 0.9, 0.999, 1e-8
    shape = {k: (R,) + (1,) * (v.ndim - 1) for k, v in params.items()}
    step_losses = torch.empty(steps, R, dtype=ref.dtype, device=ref.device)
    batches = (
        None
        if batch_size is None
        else minibatches(n, int(batch_size), steps, 0 if seed is None else seed, generator=generator)
    )
    if 0 in wanted:
        callback(0, params)
    for t in range(steps):
        if batches is None:
            batch = data
        else:
            idx = batches[t]
            batch = [d[:, idx] if data_per_run else d[idx] for d in data]
        grads, value = step_fn(params, buffers, *batch)
        step_losses[t] = value.detach()
        c = float(schedule(t, steps))
        with torch.no_grad():
            for k in params:
                g = grads[k]
                if use_wd:
                    g = g + wd_t.view(shape[k]) * params[k]
                if second is not None:  # Adam
                    velocity[k].mul_(beta1).add_(g, alpha=1 - beta1)
                    second[k].mul_(beta2).addcmul_(g, g, value=1 - beta2)
                    m_hat = velocity[k] / (1 - beta1 ** (t + 1))
                    v_hat = second[k] / (1 - beta2 ** (t + 1))
                    g = m_hat / (v_hat.sqrt() + adam_eps)
                elif velocity is not None:
                    g = velocity[k].mul_(momentum).add_(g)
                params[k] = params[k] - (lr_t * c).view(shape[k]) * g
        if t + 1 in wanted:
            callback(t + 1, params)
    record = list(range(0, steps, record_every))
    with torch.no_grad():
        final = torch.vmap(run_loss, in_dims=in_dims)(params, buffers, *data)
    losses = torch.cat([step_losses[record], final.detach()[None]], dim=0)
    params_finite = torch.stack([torch.isfinite(v.reshape(R, -1)).all(1) for v in params.values()]).all(0)
    return EnsembleResult(losses, unstack_modules(models, params), step_losses, params_finite)
