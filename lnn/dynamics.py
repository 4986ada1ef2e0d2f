"""Training dynamics: gradient descent, the normalized global step, the end-to-end rule and gradient flow.

One driver runs every method. A *parametrization* says how parameters produce the end-to-end matrix and which
direction each parameter moves given ``G = nabla ell`` at that matrix:

* :class:`~lnn.network.FactorProduct` (the default): factors ``[W_1..W_N]``, product ``W_{N:1}``, closed-form factor gradients
  (chapter *Preliminaries*);
* :class:`~lnn.theory.EndToEndRule`: one matrix ``W`` moved by ``P_W(G)``, the end-to-end update rule (chapter *Optimization*);
* :class:`~lnn.tensor.CPProduct`: CP factor matrices and the tensor they sum to (chapter *Implicit bias*).

Optimizers: ``"gd"``, plain gradient descent ``theta <- theta - lr * g``, and ``"normalized"``, the global step of
the papers' GroupRMSprop: per run ``s_t = 0.99 s_{t-1} + 0.01 sum ||g||^2``, ``s_hat = s_t / (1 - 0.99^t)``,
``theta <- theta - lr * g / (sqrt(s_hat) + eps)`` with ``eps = 1e-4`` by default. The epsilon is absolute, so it
interacts with the loss normalization: when gradients are far below ``eps`` (a tiny initialization under a "mean"
loss) the step degenerates to plain GD with step ``lr / eps``. It multiplies every gradient of a run by the same scalar, so it
follows the gradient-flow path on another clock (the accumulated ``flow_time``) and leaves the implicit bias
unchanged, unlike per-coordinate methods such as Adam.

Every step evaluates the loss of every run into a device buffer (no host synchronization); the buffer is scanned
at record points, so a loss that turns NaN or inf raises :class:`FloatingPointError` naming the exact step.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from ._checks import check_floating, check_nonnegative_int, check_positive
from .metrics import balancedness
from .network import FactorProduct
from .tasks import as_value_and_grad
from .tensor import CPProduct as CPProduct  # re-exported: lnn.dynamics.CPProduct keeps working
from .theory import EndToEndRule

# Defined here. FactorProduct, EndToEndRule, CPProduct and as_value_and_grad live with their math (lnn.network,
# lnn.theory, lnn.tensor, lnn.tasks) and stay importable from this module too.
__all__ = [
    "Parametrization",
    "Trajectory",
    "first_step_below",
    "gradient_descent",
    "end_to_end_descent",
    "gradient_flow",
]

Recorder = Callable[[Tensor, list[Tensor]], Tensor]


# --------------------------------------------------------------------------------------------------------------
# the parametrization interface (the parametrizations live next to their math: FactorProduct in lnn.network,
# EndToEndRule in lnn.theory, CPProduct in lnn.tensor, HTProduct in lnn.hierarchical)
# --------------------------------------------------------------------------------------------------------------
class Parametrization(Protocol):
    """How parameters produce the end-to-end matrix or tensor, and which way each parameter moves.

    Any object with these three methods can be passed as ``parametrization=`` to :func:`gradient_descent` and
    :func:`gradient_flow` (the book's own are :class:`~lnn.network.FactorProduct`, :class:`~lnn.theory.EndToEndRule`, :class:`~lnn.tensor.CPProduct` and
    :class:`lnn.hierarchical.HTProduct`). Every parameter is a matrix with the same leading batch dimensions.

    ``check(params) -> batch_shape``
        Validate the parameters (raise :class:`ValueError` naming the problem) and return the batch shape.
    ``forward(params) -> (W, cache)``
        The end-to-end matrix or tensor and anything the direction can reuse (e.g. partial products).
    ``direction(params, cache, G) -> list``
        Given ``G = nabla ell(W)``, the direction each parameter descends along: the gradient of
        ``ell(forward(params))`` for a true parametrization, ``P_W(G)`` for the end-to-end rule.

    The three parametrizations of the book follow :prf:ref:`prelim-lem-gradient`, :prf:ref:`thm-opt-end-to-end` and :prf:ref:`ib-prop-component`.

    Examples
    --------
    >>> import lnn
    >>> all(hasattr(p, "direction") for p in (lnn.FactorProduct(), lnn.EndToEndRule(2), lnn.CPProduct()))
    True
    """

    def check(self, params: list[Tensor]) -> tuple[int, ...]: ...

    def forward(self, params: list[Tensor]) -> tuple[Tensor, Any]: ...

    def direction(self, params: list[Tensor], cache: Any, G: Tensor) -> list[Tensor]: ...


# --------------------------------------------------------------------------------------------------------------
# recording
# --------------------------------------------------------------------------------------------------------------
def _rec_singular_values(W: Tensor, params: list[Tensor]) -> Tensor:
    return torch.linalg.svdvals(W)


def _rec_end_to_end(W: Tensor, params: list[Tensor]) -> Tensor:
    return W.clone()


def _rec_norms(W: Tensor, params: list[Tensor]) -> Tensor:
    return torch.stack([torch.linalg.vector_norm(p, dim=(-2, -1)) for p in params], -1)


def _rec_balancedness(W: Tensor, params: list[Tensor]) -> Tensor:
    return balancedness(params)


def _rec_params(W: Tensor, params: list[Tensor]) -> list[Tensor]:  # type: ignore[return]
    return [p.clone() for p in params]


BUILTIN_RECORDERS: dict[str, Recorder] = {
    "end_to_end": _rec_end_to_end,
    "singular_values": _rec_singular_values,
    "norms": _rec_norms,
    "balancedness": _rec_balancedness,
    "params": _rec_params,  # type: ignore[dict-item]
}


def _resolve_recorders(record: Sequence[str] | Mapping[str, Recorder] | None) -> dict[str, Recorder]:
    if record is None:
        return {}
    if isinstance(record, str):
        record = [record]
    if isinstance(record, Mapping):
        items = dict(record)
    else:
        items = {}
        for name in record:
            if name == "loss":
                continue  # losses are kept every step in Trajectory.losses
            if name not in BUILTIN_RECORDERS:
                raise ValueError(
                    f"unknown record {name!r}; built-ins are {sorted(BUILTIN_RECORDERS) + ['loss']}, "
                    "or pass a dict name -> callable(W, params)"
                )
            items[name] = BUILTIN_RECORDERS[name]
    return items


@dataclass
class Trajectory:
    """The outcome of a run.

    Returned by the drivers of :doc:`/book/01_preliminaries` and :doc:`/book/02_optimization`.

    Attributes
    ----------
    params
        Final parameters (``factors`` is an alias).
    end_to_end
        Final end-to-end matrix or tensor.
    losses
        Loss of every run at every step ``0..steps_run``, shape ``(steps_run + 1, *loss_shape)``.
    flow_time
        Accumulated step size ``sum_t lr_t`` at every step, shape ``(steps_run + 1, *batch)``: the gradient-flow
        time reached (``lr * t`` for plain gradient descent).
    record_steps
        Steps at which ``records`` were taken (every ``every`` steps, plus the last).
    records
        Name -> tensor stacked over ``record_steps`` (``"params"`` gives a list of lists).
    error_estimate
        :func:`gradient_flow` with ``estimate_error=True``: the Richardson estimate of the error in the final
        end-to-end matrix; ``None`` otherwise.

    Examples
    --------
    >>> import torch, lnn
    >>> loss = lambda W: 0.5 * ((W - 1.0) ** 2).sum((-2, -1))
    >>> run = lnn.gradient_descent([torch.ones(1, 1, dtype=torch.float64) * 0.5], loss, lr=0.5, steps=4)
    >>> run.steps_run, run.losses.shape, int(run.first_step_below(0.01))
    (4, torch.Size([5]), 2)
    """

    params: list[Tensor]
    end_to_end: Tensor
    losses: Tensor
    flow_time: Tensor
    record_steps: Tensor
    records: dict[str, Tensor | list] = field(default_factory=dict)
    error_estimate: float | None = None

    @property
    def factors(self) -> list[Tensor]:
        return self.params

    @property
    def steps_run(self) -> int:
        return self.losses.shape[0] - 1

    @property
    def final_loss(self) -> Tensor:
        return self.losses[-1]

    def __getitem__(self, name: str) -> Tensor | list:
        if name == "loss":
            return self.losses[self.record_steps]
        return self.records[name]

    def first_step_below(self, threshold: float) -> Tensor:
        """First step at which each run's loss is ``< threshold`` (``-1`` if never), shape ``loss_shape``:
        :func:`first_step_below` of :attr:`losses`."""
        return first_step_below(self.losses, threshold)


def first_step_below(losses: Tensor, threshold: float) -> Tensor:
    """The first row ``t`` with ``losses[t] < threshold``, per run (per trailing index), ``-1`` for a run that never
    gets there; a NaN loss never counts as below. ``losses`` has shape ``(records, *runs)``, like
    :attr:`Trajectory.losses` or the losses of :func:`lnn.training.train_ensemble` (chapter *Applications* times
    how fast the original and the overparameterized networks reach a loss level with it).

    Examples
    --------
    >>> first_step_below(torch.tensor([[3.0, 1.0], [0.5, float("nan")], [0.2, 2.0]]), 1.0)
    tensor([ 1, -1])
    """
    losses = torch.as_tensor(losses)
    if losses.ndim == 0:
        raise ValueError("losses must have a leading dimension of records (steps), got a scalar")
    below = losses < threshold
    first = below.to(torch.int64).argmax(0)
    return torch.where(below.any(0), first, torch.full_like(first, -1))


# --------------------------------------------------------------------------------------------------------------
# the driver
# --------------------------------------------------------------------------------------------------------------
def _want_progress(progress: bool | None, steps: int) -> bool:
    if progress is not None:
        return bool(progress)
    if os.environ.get("LNN_QUIET"):
        return False
    return steps >= 5000 and "ipykernel" in sys.modules


def _run(
    params: Sequence[Tensor],
    loss: Callable[[Tensor], Tensor],
    parametrization,
    *,
    lr: float,
    steps: int,
    optimizer: str,
    record: Sequence[str] | Mapping[str, Recorder] | None,
    every: int,
    stop_below: float | None,
    progress: bool | None,
    method: str = "euler",
    eps: float = 1e-4,
) -> Trajectory:
    steps = check_nonnegative_int(steps, "steps")
    every = check_nonnegative_int(every, "every")
    if every == 0:
        raise ValueError("every must be >= 1")
    if optimizer not in ("gd", "normalized"):
        raise ValueError(f"optimizer must be 'gd' or 'normalized', got {optimizer!r}")
    if method not in ("euler", "rk4"):
        raise ValueError(f"method must be 'euler' or 'rk4', got {method!r}")
    check_positive(eps, "eps")
    if method == "rk4" and optimizer != "gd":
        raise ValueError("the rk4 integrator runs plain gradient flow (optimizer='gd')")
    # The boundary: everything about the parameters and their fit to the objective is checked here, once.
    if isinstance(params, Tensor):
        raise ValueError("params must be a list of tensors (e.g. the factors [W_1, ..., W_N]), got a single tensor")
    batch_shape = parametrization.check(list(params))
    params = [p.detach().clone() for p in params]
    ref = params[0]
    check_floating(ref, "the parameters")
    for j, p in enumerate(params, start=1):
        if ref.device.type != "meta" and not bool(torch.isfinite(p).all()):
            raise ValueError(
                f"the initial parameters contain NaN or inf (parameter {j} of {len(params)}, shape {tuple(p.shape)}); "
                "no step was taken"
            )
    lr_run = _check_lr(lr, batch_shape, ref)
    value_and_grad = as_value_and_grad(loss)
    recorders = _resolve_recorders(record)
    nb = len(batch_shape)

    def evaluate(ps: list[Tensor]):
        W, cache = parametrization.forward(ps)
        value, G = value_and_grad(W)
        return W, cache, value, G

    W0, _ = parametrization.forward(params)
    if hasattr(loss, "check_input"):  # an Objective: shape, dtype and device of W against its data
        loss.check_input(W0, f"W (the end-to-end {'matrix' if W0.ndim - nb == 2 else 'tensor'} of the parameters)")
    W, cache, value, G = evaluate(params)
    if not isinstance(value, Tensor) or value.shape not in (torch.Size(batch_shape), torch.Size([])):
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"loss must return one value per run (shape {tuple(batch_shape)}) or a scalar, got {shape}")
    if not bool(torch.isfinite(value).all()):
        raise ValueError(
            f"the loss is {value.flatten()[~torch.isfinite(value.flatten())][0].item()} at the initial parameters "
            "(step 0, before any step was taken): the objective's data or the loss function produce NaN/inf there"
        )
    if not bool(torch.isfinite(G).all()):
        raise ValueError(
            "the gradient of the loss is NaN or inf at the initial parameters (step 0, before any step was taken)"
        )
    losses = torch.empty((steps + 1, *value.shape), dtype=value.dtype, device=value.device)
    flow = torch.zeros((steps + 1, *batch_shape), dtype=ref.dtype, device=ref.device)
    rec_steps: list[int] = []
    recs: dict[str, list] = {name: [] for name in recorders}
    s = torch.zeros(batch_shape, dtype=ref.dtype, device=ref.device)
    lr_t = lr_run
    uniform_lr = float(lr) if not isinstance(lr, Tensor) or lr.numel() == 1 else None
    checked = 0  # losses[:checked] have been verified finite
    bar = None
    if _want_progress(progress, steps):
        try:  # an optional dependency (pip install lnn[progress]): without it there is no bar
            from tqdm.auto import tqdm
        except ImportError:
            tqdm = None
        if tqdm is not None:
            bar = tqdm(total=steps, leave=False)

    def take_record(t: int, W: Tensor, ps: list[Tensor]) -> None:
        rec_steps.append(t)
        for name, fn in recorders.items():
            out = fn(W, ps)
            recs[name].append(out.detach().clone() if isinstance(out, Tensor) else out)

    def check_finite(upto: int) -> None:
        nonlocal checked
        chunk = losses[checked:upto]
        bad = ~torch.isfinite(chunk)
        if chunk.numel() and bool(bad.any()):
            flat = bad.reshape(bad.shape[0], -1).any(1)
            step = checked + int(flat.to(torch.int64).argmax())
            raise FloatingPointError(
                f"the loss became {losses[step].flatten()[bad[step - checked].flatten()][0].item()} at step {step}; "
                "the step size lr is probably too large for this initialization"
            )
        checked = upto

    # Non-finite losses are found exactly from the buffer whenever it is scanned, so scanning need not happen at
    # every step; a stopping rule is tested at every record point.
    sync_every = every if stop_below is not None else max(every, 128)
    t = 0
    while True:
        losses[t] = value
        if t % every == 0 or t == steps:
            take_record(t, W, params)
        if t % sync_every == 0 or t == steps:  # the only host synchronizations of the loop
            check_finite(t + 1)
            if stop_below is not None and bool((losses[t] < stop_below).all()):
                break
            if bar is not None:
                bar.update(t - bar.n)
        if t == steps:
            break
        if method == "rk4":
            params = _rk4_step(params, parametrization, value_and_grad, lr_run.reshape(*batch_shape, 1, 1), cache, G)
            flow[t + 1] = flow[t] + lr_run
        else:
            dirs = parametrization.direction(params, cache, G)
            if optimizer == "normalized":
                sq = sum(d.pow(2).sum(dim=tuple(range(nb, d.ndim))) for d in dirs)
                s = 0.99 * s + 0.01 * sq
                s_hat = s / (1 - 0.99 ** (t + 1))
                lr_t = lr_run / (torch.sqrt(s_hat) + eps)
                step = lr_t.reshape(*batch_shape, 1, 1)  # every parameter is a (batch of) matrices
                for p, d in zip(params, dirs):
                    p.sub_(d * step)
            elif uniform_lr is not None:
                for p, d in zip(params, dirs):
                    p.sub_(d, alpha=uniform_lr)
            else:
                step = lr_run.reshape(*batch_shape, 1, 1)
                for p, d in zip(params, dirs):
                    p.sub_(d * step)
            flow[t + 1] = flow[t] + lr_t
        t += 1
        W, cache, value, G = evaluate(params)
    if bar is not None:
        bar.close()
    losses = losses[: t + 1]
    flow = flow[: t + 1]
    check_finite(t + 1)
    records: dict[str, Tensor | list] = {}
    for name, vals in recs.items():
        records[name] = torch.stack(vals) if vals and isinstance(vals[0], Tensor) else vals
    return Trajectory(
        params=params,
        end_to_end=W,
        losses=losses,
        flow_time=flow,
        record_steps=torch.tensor(rec_steps, dtype=torch.int64),
        records=records,
    )


def _check_lr(lr: float | Tensor, batch_shape: tuple[int, ...], ref: Tensor) -> Tensor:
    """Step sizes as a tensor of shape ``batch_shape``: a positive number, or one positive value per run."""
    if isinstance(lr, Tensor):
        if lr.numel() != 1 and tuple(lr.shape) != tuple(batch_shape):
            raise ValueError(f"lr must be a number or a tensor of the batch shape {tuple(batch_shape)}, got shape {tuple(lr.shape)}")
        if not bool(torch.isfinite(lr).all()) or bool((lr <= 0).any()):
            raise ValueError(f"lr (step size) must be positive and finite for every run, got {lr}")
        return lr.to(dtype=ref.dtype, device=ref.device).expand(batch_shape).clone()
    value = check_positive(lr, "lr (step size)")
    return torch.full(batch_shape, value, dtype=ref.dtype, device=ref.device)


def _rk4_step(params, parametrization, value_and_grad, h, cache, G):
    def velocity(ps, cache=None, G=None):
        if cache is None:
            W, cache = parametrization.forward(ps)
            G = value_and_grad(W)[1]
        return [-d for d in parametrization.direction(ps, cache, G)]

    k1 = velocity(params, cache, G)
    k2 = velocity([p + 0.5 * h * k for p, k in zip(params, k1)])
    k3 = velocity([p + 0.5 * h * k for p, k in zip(params, k2)])
    k4 = velocity([p + h * k for p, k in zip(params, k3)])
    return [p + (h / 6) * (a + 2 * b + 2 * c + d) for p, a, b, c, d in zip(params, k1, k2, k3, k4)]


def gradient_descent(
    factors: Sequence[Tensor],
    loss: Callable[[Tensor], Tensor],
    *,
    lr: float,
    steps: int,
    optimizer: str = "gd",
    parametrization=None,
    record: Sequence[str] | Mapping[str, Recorder] | None = None,
    every: int = 1,
    stop_below: float | None = None,
    progress: bool | None = None,
    eps: float = 1e-4,
) -> Trajectory:
    """Gradient descent on the factors of a deep linear network (chapter *Optimization*):

    .. math:: W_j \\leftarrow W_j - \\eta \\, W_{N:j+1}^\\top \\nabla\\ell(W_{N:1}) W_{j-1:1}^\\top, \\quad j = 1..N,

    all factors updated simultaneously from the same point. ``optimizer="normalized"`` replaces ``eta`` by the
    global normalized step described in the module docstring.

    The method of :prf:ref:`prelim-prop-euler`; its conservation law is :prf:ref:`thm-opt-conservation`.

    Parameters
    ----------
    factors
        ``[W_1..W_N]`` with shapes ``(..., d_j, d_{j-1})``; shared leading batch dimensions are independent runs.
        Not modified.
    loss
        Maps the end-to-end matrix (batched or not) to one loss per run (or a scalar); an
        :class:`lnn.tasks.Objective` supplies its gradient in closed form, any other callable goes through autograd.
    lr, steps
        Step size ``eta > 0`` (or a tensor of one step size per run, shape of the batch) and number of steps.
    parametrization
        :class:`~lnn.network.FactorProduct` (default), :class:`~lnn.tensor.CPProduct` or :class:`~lnn.theory.EndToEndRule`.
    record
        Names among ``"end_to_end"``, ``"singular_values"``, ``"norms"`` (factor Frobenius norms),
        ``"balancedness"`` (``max_j ||D_j||_F``), ``"params"``, or a dict ``name -> f(W, params)``; taken every
        ``every`` steps and at the last step. Losses are always kept at every step.
    stop_below
        Stop at the first record point where every run's loss is below this value.
    progress
        Show a progress bar (default: only for long runs in a Jupyter kernel, never when ``LNN_QUIET`` is set;
        needs the optional ``tqdm``).
    eps
        The absolute epsilon of ``optimizer="normalized"`` (ignored by plain gradient descent).

    Raises
    ------
    ValueError
        Factors that do not chain, an empty list (depth < 1), a non-positive step size.
    FloatingPointError
        The loss becomes NaN or infinite; the message names the step.

    Examples
    --------
    >>> import torch, lnn
    >>> g = torch.Generator().manual_seed(0)
    >>> X = torch.randn(20, 3, generator=g, dtype=torch.float64)
    >>> loss = lnn.LpRegression(X, X @ torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64))
    >>> factors = lnn.gaussian_factors([3, 4, 1], 0.5, generator=g)
    >>> run = lnn.gradient_descent(factors, loss, lr=0.1, steps=2000)
    >>> float(run.final_loss) < 1e-10, float(run.losses[0]) > 0.1
    (True, True)
    """
    return _run(
        factors,
        loss,
        parametrization or FactorProduct(),
        lr=lr,
        steps=steps,
        optimizer=optimizer,
        record=record,
        every=every,
        stop_below=stop_below,
        progress=progress,
        eps=eps,
    )


def end_to_end_descent(
    W: Tensor,
    loss: Callable[[Tensor], Tensor],
    depth: int,
    *,
    lr: float,
    steps: int,
    optimizer: str = "gd",
    record: Sequence[str] | Mapping[str, Recorder] | None = None,
    every: int = 1,
    stop_below: float | None = None,
    progress: bool | None = None,
    eps: float = 1e-4,
) -> Trajectory:
    """The discrete end-to-end update rule of a depth-``N`` network under balanced initialization
    (Arora, Cohen, Hazan 2018; chapter *Optimization*):

    .. math:: W \\leftarrow W - \\eta \\, P_W(\\nabla\\ell(W)).

    It agrees with factorized gradient descent from balanced factors up to ``O(eta)`` over a fixed time. Same
    arguments and result as :func:`gradient_descent`; ``result.params == [W_final]``.

    Derived in :prf:ref:`thm-opt-end-to-end`; used in :ref:`Acceleration by depth: ℓp regression <opt-acceleration>`.

    Examples
    --------
    >>> import torch, lnn
    >>> loss = lambda W: 0.5 * ((W - 1.0) ** 2).sum((-2, -1))
    >>> run = lnn.end_to_end_descent(torch.full((1, 1), 0.5, dtype=torch.float64), loss, 2, lr=0.1, steps=200)
    >>> round(run.end_to_end.item(), 6)
    1.0
    """
    return gradient_descent(
        [W], loss, lr=lr, steps=steps, optimizer=optimizer, parametrization=EndToEndRule(depth), record=record,
        every=every, stop_below=stop_below, progress=progress, eps=eps,
    )


def gradient_flow(
    params: Sequence[Tensor],
    loss: Callable[[Tensor], Tensor],
    *,
    time: float,
    dt: float,
    parametrization=None,
    method: str = "rk4",
    record: Sequence[str] | Mapping[str, Recorder] | None = None,
    every: int = 1,
    stop_below: float | None = None,
    estimate_error: bool = False,
    progress: bool | None = None,
) -> Trajectory:
    """Gradient flow ``d theta/dt = -direction(theta)`` up to ``time`` with fixed steps ``dt``.

    ``method="rk4"`` (classical Runge-Kutta, global error ``O(dt^4)``) or ``"euler"`` (which is gradient descent
    with ``lr = dt``, error ``O(dt)``). The parametrization defaults to :class:`~lnn.network.FactorProduct`; pass
    ``EndToEndRule(depth)`` with ``params=[W]`` for the end-to-end flow ``dW/dt = -P_W(nabla ell)``.

    With ``estimate_error=True`` the flow is integrated again with ``dt/2``; the result is the finer run and
    ``result.error_estimate`` is the Richardson estimate of its error in the final end-to-end matrix,
    ``max|W_dt - W_{dt/2}| / (2^p - 1)`` with ``p`` the order of the method (with ``stop_below`` the two runs may
    stop at different times, so do not combine the two). ``stop_below`` ends the flow at the first record point
    where every run's loss is below it. Chapters *Preliminaries* and
    *Optimization* use it as the reference for "gradient flow".

    The limit of :prf:ref:`prelim-prop-euler`.

    Examples
    --------
    >>> import math, torch, lnn
    >>> loss = lambda W: 0.5 * (W ** 2).sum((-2, -1))  # depth 1: dW/dt = -W, so W(t) = W(0) e^{-t}
    >>> flow = lnn.gradient_flow([torch.ones(1, 1, dtype=torch.float64)], loss, time=1.0, dt=0.01)
    >>> abs(flow.end_to_end.item() - math.exp(-1.0)) < 1e-10
    True
    """
    time = check_positive(time, "time")
    dt = check_positive(dt, "dt")
    steps = max(1, round(time / dt))
    if not math.isclose(steps * dt, time, rel_tol=1e-9):
        raise ValueError(f"time / dt must be an integer number of steps, got time={time}, dt={dt}")
    parametrization = parametrization or FactorProduct()

    def run(h: float, n: int, k: int) -> Trajectory:
        return _run(
            params, loss, parametrization, lr=h, steps=n, optimizer="gd", record=record, every=k,
            stop_below=stop_below, progress=progress, method=method,
        )

    if not estimate_error:
        return run(dt, steps, every)
    coarse = run(dt, steps, every)
    fine = run(dt / 2, 2 * steps, 2 * every)
    order = 4 if method == "rk4" else 1
    fine.error_estimate = float((coarse.end_to_end - fine.end_to_end).abs().max()) / (2**order - 1)
    return fine
