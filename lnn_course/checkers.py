"""Checkers for the exercise notebooks in ``exercises/`` (one section per chapter).

Each ``check_*`` function takes what a student wrote (usually a function) and tests it by its *properties* and by
agreement with theory: shapes, invariants, conservation laws, closed forms, scaling laws, and agreement with
``lnn``'s own engine on random inputs drawn inside the checker. No checker contains or prints the reference answer;
when something is wrong the message says what (a transposed result, a missing factor of ``N``, an exponent off by
one, a sign) and where, and on success the checker prints one line of confirmation.

A failed check raises :class:`ExerciseCheckError`, a subclass of :class:`AssertionError`, so checkers work as
``assert``-style tests in pytest and in otter-grader. A ``NotImplementedError`` raised by an unfinished exercise
passes through unchanged, so a student notebook says "not yet implemented" rather than "wrong".

Every checker is deterministic: its random cases come from fixed seeds, so a failure is reproducible.

Examples
--------
>>> import torch, lnn, lnn_course.checkers as chk
>>> def balancedness_gaps(factors):
...     return [b.T @ b - a @ a.T for a, b in zip(factors[:-1], factors[1:])]
>>> chk.check_balancedness_gaps(balancedness_gaps)  # doctest: +ELLIPSIS
✓ Exercise 2.1: balancedness_gaps ...
>>> chk.check_balancedness_gaps(lnn.balancedness_gaps)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
lnn_course.checkers.ExerciseCheckError: Exercise 2.1 (balancedness_gaps): lnn.metrics.balancedness_gaps is not available ...
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

import numpy as np
import torch
from torch import Tensor

from lnn import LpRegression, end_to_end, end_to_end_descent, gaussian_factors
from lnn import balancedness_gaps as _gaps
from lnn import blowup_time as _blowup
from lnn import effective_rank as _erank
from lnn import preconditioned_gradient as _precond
from lnn import scalar_output_velocity as _scalar_velocity
from lnn.locality import adjacent_correlation, ar1_features, surrogate_entanglement

from .guard import Blocked, ReferenceUnavailableError, blocked, references_unavailable  # noqa: F401 (re-exported for answers)

__all__ = [
    "ExerciseCheckError",
    # chapter 1
    "check_factor_gradients",
    "check_hessian_at_origin",
    "check_two_minima",
    # chapter 2
    "check_balancedness_gaps",
    "check_preconditioned_gradient",
    "check_end_to_end_rule",
    "check_singular_value_solution",
    "check_blowup_time",
    # chapter 3
    "check_min_norm_solution",
    "check_effective_rank",
    "check_learning_times",
    "check_incremental_learning",
    # chapter 4
    "check_scalar_output_velocity",
    "check_cut_surrogate",
    "check_spectral_order",
    # chapter 5
    "check_empirical_ntk",
    "check_kernel_gd_residual",
    "check_alignment",
]

F64 = torch.float64


class ExerciseCheckError(AssertionError):
    """An answer failed a check; the message says what is wrong."""


# ------------------------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------------------------
def _fail(label: str, name: str, message: str) -> NoReturn:
    raise ExerciseCheckError(f"{label} ({name}): {message}")


def _passed(label: str, name: str, summary: str) -> None:
    print(f"✓ {label}: {name} {summary}")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _describe(args: Sequence[Any]) -> str:
    parts = []
    for a in args:
        if isinstance(a, Tensor):
            parts.append(f"tensor of shape {tuple(a.shape)}")
        elif isinstance(a, list | tuple) and a and all(isinstance(t, Tensor) for t in a):
            parts.append("[" + ", ".join(f"shape {tuple(t.shape)}" for t in a) + "]")
        elif isinstance(a, torch.nn.Module):
            parts.append(type(a).__name__)
        elif callable(a):
            parts.append(getattr(a, "__name__", type(a).__name__))
        else:
            parts.append(repr(a))
    return ", ".join(parts)


# The references in lnn that each answer must not call (by qualified name; see lnn_course.guard). The checker itself
# uses some of them to judge the answer, outside the student's call.
_NO_AUTOGRAD = "use matrix products only (no autograd)"
BLOCKED: dict[str, tuple[tuple[str, ...], bool]] = {
    "factor_gradients": (("factor_gradients", "_factor_gradients_from_prefix", "objective_hessian"), True),
    "hessian_at_origin": (("objective_hessian",), True),
    "balancedness_gaps": (("balancedness_gaps", "balancedness"), False),
    "preconditioned_gradient": (("preconditioned_gradient", "preconditioner_matrix", "preconditioner_eigenvalues",
                                 "end_to_end_field", "singular_value_velocity", "EndToEndRule.*"), False),
    "end_to_end_rule": (("end_to_end_descent", "gradient_descent", "gradient_flow", "end_to_end_field",
                         "EndToEndRule.*"), False),
    "sigma_closed_form": (("singular_value_closed_form", "blowup_time", "gradient_flow"), False),
    "blowup_time": (("blowup_time", "singular_value_closed_form"), False),
    "min_norm_solution": (("min_norm_least_squares",), False),
    "effective_rank": (("effective_rank",), False),
    "scalar_output_velocity": (("scalar_output_velocity", "preconditioned_gradient", "preconditioner_matrix",
                                "end_to_end_field", "EndToEndRule.*"), False),
    "cut_surrogate": (("surrogate_entanglement", "entanglement_at_level"), False),
    "spectral_order": (("spectral_rearrangement", "_fiedler_order"), False),
    "empirical_ntk": (("empirical_ntk", "parameter_jacobian", "linearize", "LinearizedModel.*", "_jacobian_contraction",
                       "_ntk_vp", "_structured_ntk", "_generic_jacobian", "_structured_jacobian"), False),
    "kernel_gd_residual": (("kernel_gd_residuals", "kernel_regression_gd", "_decay"), False),
    "alignment": (("kernel_alignment",), False),
}


def _blocked(label: str, name: str) -> Blocked | None:
    if name not in BLOCKED:
        return None
    names, autograd = BLOCKED[name]
    hint = f"write {name} yourself from the math in the exercise" + (f"; {_NO_AUTOGRAD}" if autograd else "")
    return blocked(label, names, autograd=autograd, hint=hint)


def _call(label: str, name: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Call the student's function with the references of this exercise unavailable (lnn_course.guard);
    unfinished work (NotImplementedError) passes through, other errors are reported with the arguments that caused
    them."""
    if not callable(fn):
        _fail(label, name, f"expected a function, got {type(fn).__name__}")
    guard = _blocked(label, name)
    try:
        with references_unavailable(guard):
            out = fn(*args)
    except NotImplementedError:
        raise
    except ExerciseCheckError:
        raise
    except Exception as exc:  # noqa: BLE001 - any error in student code becomes a readable failure
        if guard is not None and guard.violations:
            _fail(label, name, guard.message(guard.violations[0]).split(": ", 1)[1])
        raise ExerciseCheckError(
            f"{label} ({name}): your function raised {type(exc).__name__}: {exc}\n"
            f"    called with: {_describe(args)}"
        ) from exc
    if guard is not None and guard.violations:
        _fail(label, name, guard.message(guard.violations[0]).split(": ", 1)[1])
    return out


def _type_name(out: Any) -> str:
    module = type(out).__module__
    return f"{'numpy.' if module.startswith('numpy') else ''}{type(out).__name__}"


def _tensor(label: str, name: str, out: Any, what: str = "result", *, kind: str = "tensor",
            shape: tuple[int, ...] | None = None, finite: bool = True) -> Tensor:
    """The student's output as a float64 tensor, or a failure that names what is wrong with it.

    ``kind`` is what the exercise asks for: ``"tensor"`` (a float64 torch tensor), ``"number"`` (a Python number or a
    0-dimensional float64 tensor) or ``"index"`` (integers: a list or a 1-D integer tensor). ``shape``, if given, is
    the required shape; ``finite`` rejects NaN and inf (every comparison below would otherwise be False for NaN, and a
    NaN would pass a check written as ``if error > tol: fail``)."""
    if out is None:
        _fail(label, name, f"your {what} is None: did you forget a `return` statement?")
    if kind == "index":
        if isinstance(out, Tensor):
            if out.is_floating_point() or out.is_complex() or out.dtype == torch.bool:
                _fail(label, name, f"your {what} has dtype {out.dtype}; expected integers (torch.int64 or a list of int)")
            return out.detach().to(F64)
        if isinstance(out, list | tuple) and all(isinstance(v, int | np.integer) and not isinstance(v, bool) or
                                                 (isinstance(v, Tensor) and v.numel() == 1 and not v.is_floating_point())
                                                 for v in out):
            return torch.tensor([int(v) for v in out], dtype=F64)
        _fail(label, name, f"your {what} is a {_type_name(out)}; expected a list of int (or a 1-D integer tensor)")
    if kind == "number":
        if isinstance(out, bool) or not isinstance(out, int | float | Tensor):
            _fail(label, name, f"your {what} is a {_type_name(out)}; expected one number (a Python float or a "
                  "0-dimensional torch tensor)")
        if isinstance(out, int | float):
            value = torch.tensor(float(out), dtype=F64)
            if finite and not math.isfinite(float(out)):
                _fail(label, name, f"your {what} is {float(out)}, not a finite number")
            return value
        if out.dim() != 0:
            _fail(label, name, f"your {what} is a tensor of shape {tuple(out.shape)}; return one number (a 0-dimensional "
                  "tensor such as the result of .sum(), or a float)")
    elif not isinstance(out, Tensor):
        extra = " (torch.tensor(...) or torch functions from the start)" if isinstance(out, np.ndarray) else ""
        _fail(label, name, f"your {what} is a {_type_name(out)}; expected a torch tensor of dtype torch.float64{extra}")
    if out.is_complex():
        _fail(label, name, f"your {what} is complex ({out.dtype}); expected real numbers (torch.float64)")
    if not out.is_floating_point():
        _fail(label, name, f"your {what} has dtype {out.dtype}; expected real numbers in torch.float64 (did integer "
              "arithmetic or a comparison produce it?)")
    if out.dtype != F64:
        _fail(label, name, f"your {what} has dtype {out.dtype}, but the inputs are float64: a {out.dtype} result keeps "
              "only about 7 significant digits (float16/bfloat16: 3), too few for a check to 1e-9. Compute in "
              "float64 (torch.set_default_dtype(torch.float64), or dtype=torch.float64 where you create tensors)")
    if shape is not None and tuple(out.shape) != tuple(shape):
        hint = ""
        if out.numel() == math.prod(shape) and out.dim() != len(shape):
            hint = " (same entries, extra or missing dimensions: reshape or squeeze it; a (n, 1) column is not a (n,) " \
                   "vector and breaks later cells)"
        elif len(shape) == 2 and tuple(out.shape) == tuple(shape[::-1]) and shape[0] != shape[1]:
            hint = ": did you transpose?"
        _fail(label, name, f"your {what} has shape {tuple(out.shape)}; expected {tuple(shape)}{hint}")
    out = out.detach()
    if finite and not bool(torch.isfinite(out).all()):
        what_bad = "NaN" if bool(torch.isnan(out).any()) else "inf"
        _fail(label, name, f"your {what} contains {what_bad} entries: every entry must be a finite number")
    return out.to(F64)


def _rel(a: Tensor, b: Tensor) -> float:
    """Relative error ``||a - b|| / ||b||`` (absolute when b = 0); inf when ``a`` is not finite or the shapes differ."""
    if tuple(a.shape) != tuple(b.shape) or not bool(torch.isfinite(a).all()):
        return math.inf
    nb = float(torch.linalg.vector_norm(b))
    return float(torch.linalg.vector_norm(a - b)) / (nb if nb > 0 else 1.0)


def _scalar_multiple(a: Tensor, b: Tensor, tol: float = 1e-6) -> float | None:
    """If ``a = c b`` for a scalar ``c`` (to relative ``tol``), return ``c``; else None."""
    if tuple(a.shape) != tuple(b.shape):
        return None
    bb = float((b * b).sum())
    if bb == 0 or not bool(torch.isfinite(a).all()):
        return None
    c = float((a * b).sum()) / bb
    if float(torch.linalg.vector_norm(a - c * b)) <= tol * max(float(torch.linalg.vector_norm(a)), 1e-300):
        return c
    return None


def _factor_message(c: float, N: int | None = None) -> str:
    """Describe a wrong constant factor ``yours = c * truth`` in words."""
    if abs(c + 1) < 1e-6:
        return "has the wrong sign (it is exactly minus the correct value)"
    if N is not None and N > 1:
        if abs(c - 1 / N) < 1e-6:
            return f"is off by a factor of N = {N} (yours is N times too small)"
        if abs(c - N) < 1e-6:
            return f"is off by a factor of N = {N} (yours is N times too large)"
    if abs(c - 0.5) < 1e-6:
        return "is off by a factor of 2 (yours is half the correct value)"
    if abs(c - 2) < 1e-6:
        return "is off by a factor of 2 (yours is twice the correct value)"
    return f"is {c:.6g} times the correct value: a constant factor is wrong"


def _shape_message(what: str, got: tuple[int, ...], want: tuple[int, ...], of: str) -> str:
    msg = f"{what} has shape {got} but {of} has shape {want}"
    if len(got) == 2 and len(want) == 2 and got == want[::-1] and got != want:
        msg += ": did you transpose?"
    return msg


# ==================================================================================================================
# Chapter 1: preliminaries
# ==================================================================================================================
def check_factor_gradients(fn: Callable[[list[Tensor], Tensor], Sequence[Tensor]], label: str = "Exercise 1.2") -> None:
    """Check ``fn(factors, G) -> [dphi/dW_1, ..., dphi/dW_N]``, the gradients of ``phi = ell(W_N ... W_1)`` given
    ``G = nabla ell`` at the end-to-end matrix.

    The truth is taken from directional derivatives (autograd of ``<G, W_{N:1}>``, whose gradient in ``W_j`` is the
    same) on random networks of depths 1 to 4 with unequal widths (so a transposed factor changes the shape) and on a
    network with equal widths (so it does not).
    """
    name = "factor_gradients"
    cases = [[3, 5], [2, 4, 3], [3, 2, 4, 5], [2, 3, 3, 4, 2], [3, 3, 3, 3]]
    worst = 0.0
    for k, dims in enumerate(cases):
        g = _gen(100 + k)
        factors = gaussian_factors(dims, 1.0, generator=g)
        G = torch.randn(dims[-1], dims[0], generator=g, dtype=F64)
        N = len(factors)
        leaves = [W.clone().requires_grad_(True) for W in factors]
        truth = torch.autograd.grad((G * end_to_end(leaves)).sum(), leaves)
        out = _call(label, name, fn, [W.clone() for W in factors], G.clone())
        if isinstance(out, Tensor) or not isinstance(out, Sequence):
            _fail(label, name, f"return a list with one gradient per factor [dphi/dW_1, ..., dphi/dW_N]; got {type(out).__name__}")
        if len(out) != N:
            _fail(label, name, f"for a depth-{N} network (widths {dims}) you returned {len(out)} gradients; expected {N}, one per factor")
        grads = [_tensor(label, name, o, f"gradient for W_{j + 1}") for j, o in enumerate(out)]
        shapes = [tuple(W.shape) for W in factors]
        got = [tuple(t.shape) for t in grads]
        # the usual slips, as functions of the layer j (0-based): the products left and right of G
        eye_l = [torch.eye(dims[j + 1], dtype=F64) for j in range(N)]
        eye_r = [torch.eye(dims[j], dtype=F64) for j in range(N)]
        after = [end_to_end(factors[j + 1:]) if j + 1 < N else eye_l[j] for j in range(N)]  # W_(N:j+2)
        before = [end_to_end(factors[:j]) if j > 0 else eye_r[j] for j in range(N)]  # W_(j:1)
        slips = {
            "you left out the product W_(j-1:1)^T on the right of nabla ell (the layers before W_j)":
                [after[j].T @ G for j in range(N)],
            "you left out the product W_(N:j+1)^T on the left of nabla ell (the layers after W_j)":
                [G @ before[j].T for j in range(N)],
            "the product on the right is not transposed: it must be W_(j-1:1)^T":
                [after[j].T @ G @ before[j] if before[j].shape[0] == G.shape[1] else None for j in range(N)],
            "the product on the left is not transposed: it must be W_(N:j+1)^T":
                [after[j] @ G @ before[j].T if after[j].shape[1] == G.shape[0] else None for j in range(N)],
        }
        if got != shapes and got == shapes[::-1] and N > 1:
            _fail(label, name, f"you returned the gradients in reverse order (shapes {got}): entry 0 must be dphi/dW_1, of shape {shapes[0]}")
        for j in range(N):
            for slip, cands in slips.items():
                if cands[j] is not None and _rel(grads[j], cands[j]) <= 1e-9 and _rel(grads[j], truth[j]) > 1e-9:
                    _fail(label, name, f"your gradient for W_{j + 1} (widths {dims}): {slip}. dphi/dW_j = "
                          "W_(N:j+1)^T nabla ell W_(j-1:1)^T")
            if got[j] != shapes[j]:
                _fail(label, name, _shape_message(f"your gradient for W_{j + 1}", got[j], shapes[j], f"W_{j + 1}") +
                      f" (widths {dims}; dphi/dW_j always has the shape of W_j)")
        right = [j + 1 for j in range(N) if _rel(grads[j], truth[j]) <= 1e-9]
        if len(right) == N:
            worst = max(worst, max(_rel(a, b) for a, b in zip(grads, truth)))
            continue
        if N > 1 and all(_rel(grads[N - 1 - j], truth[j]) <= 1e-9 for j in range(N)):
            _fail(label, name, "you returned the gradients in reverse order: entry 0 must be dphi/dW_1")
        j = next(i for i in range(N) if (i + 1) not in right)
        c = _scalar_multiple(grads[j], truth[j])
        if c is not None:
            _fail(label, name, f"your gradient for W_{j + 1} (widths {dims}, depth {N}) {_factor_message(c, N)}")
        E = torch.randn(shapes[j], generator=g, dtype=F64)
        exact = float((truth[j] * E).sum())
        yours = float((grads[j] * E).sum())
        _fail(label, name,
              f"your gradient for W_{j + 1} has the right shape but wrong values (widths {dims}, depth {N}; "
              f"correct for layers {right or 'none'}). Directional-derivative test: for a random direction E, "
              f"d/de phi(..., W_{j + 1} + e E, ...) at e = 0 is {exact:.6f}, but <your gradient, E> = {yours:.6f}. "
              "Check which partial products stand to the left and right of nabla ell, and their transposes.")
    _passed(label, name, f"matches the directional derivatives of phi on {len(cases)} random networks "
            f"(depths 1-4, max relative error {worst:.1e}).")


def check_hessian_at_origin(fn: Callable[[int], Any], label: str = "Exercise 1.3") -> None:
    """Check ``fn(N)``: the ``N x N`` Hessian at ``w = 0`` of the scalar depth-``N`` objective
    ``f(w_1, ..., w_N) = (w_N ... w_1 - 1)^2``, for ``N = 1..5``, against autograd."""
    name = "hessian_at_origin"
    for N in range(1, 6):

        def f(w: Tensor) -> Tensor:
            return (torch.prod(w) - 1) ** 2

        truth = torch.autograd.functional.hessian(f, torch.zeros(N, dtype=F64))
        H = _call(label, name, fn, N)
        if isinstance(H, Tensor) and H.is_floating_point() and tuple(H.shape) != (N, N):
            _fail(label, name, f"for depth N = {N} the Hessian must be an N x N = {N} x {N} matrix, got shape {tuple(H.shape)}")
        H = _tensor(label, name, H, f"Hessian for N = {N}", shape=(N, N))
        if not bool(torch.isfinite(H).all()):
            _fail(label, name, f"your Hessian for N = {N} has non-finite entries")
        if float((H - H.T).abs().max()) > 1e-12:
            _fail(label, name, f"your Hessian for N = {N} is not symmetric, but second derivatives commute")
        if float((H - truth).abs().max()) <= 1e-10:
            continue
        c = _scalar_multiple(H, truth)
        if c is not None:
            hint = " Did you differentiate (1/2)(w_N...w_1 - 1)^2? This exercise uses (w_N...w_1 - 1)^2." if abs(c - 0.5) < 1e-6 else ""
            _fail(label, name, f"your Hessian for N = {N} {_factor_message(c)}.{hint}")
        if N >= 3:
            _fail(label, name, f"your Hessian for N = {N} is wrong (max entry error {float((H - truth).abs().max()):.3g}). "
                  "Differentiate twice before setting w = 0, and count how many factors w_k are left in each "
                  "second derivative of the product w_N...w_1.")
        _fail(label, name, f"your Hessian for N = {N} is wrong (max entry error {float((H - truth).abs().max()):.3g}). "
              "Write f out as a polynomial in w and differentiate it twice.")
    _passed(label, name, "agrees with autograd for N = 1..5.")


def check_two_minima(fn: Callable[[Tensor], tuple[Sequence[Tensor], Sequence[Tensor]]], label: str = "Exercise 1.4") -> None:
    """Check ``fn(Phi) -> (factors_a, factors_b)``: two global minimizers of the depth-2 objective
    ``phi(W_1, W_2) = (1/2) ||W_2 W_1 - Phi||_F^2`` with the same widths whose midpoint
    ``((W_1^a + W_1^b)/2, (W_2^a + W_2^b)/2)`` is not a minimizer: a witness that ``phi`` is not convex.
    Tried on several random targets ``Phi``."""
    name = "two_global_minima"
    mids = []
    for k, shape in enumerate([(3, 2), (2, 3), (2, 2)]):
        Phi = torch.randn(shape, generator=_gen(200 + k), dtype=F64)
        scale = float(torch.linalg.matrix_norm(Phi)) ** 2 / 2  # the loss at W = 0

        def loss(fs: Sequence[Tensor]) -> float:
            return 0.5 * float(torch.linalg.matrix_norm(end_to_end(list(fs)) - Phi)) ** 2

        out = _call(label, name, fn, Phi.clone())
        if not isinstance(out, Sequence) or len(out) != 2:
            _fail(label, name, "return a pair (factors_a, factors_b) of two networks [W_1, W_2]")
        nets = []
        for tag, net in zip("ab", out):
            if isinstance(net, Tensor) or not isinstance(net, Sequence) or len(net) != 2:
                _fail(label, name, f"factors_{tag} must be a list [W_1, W_2] of two matrices (a depth-2 network)")
            fs = [_tensor(label, name, W, f"W_{i + 1} of factors_{tag}") for i, W in enumerate(net)]
            try:
                W = end_to_end(fs)
            except ValueError as exc:
                _fail(label, name, f"factors_{tag} do not form a network: {exc}")
            if tuple(W.shape) != shape:
                _fail(label, name, _shape_message(f"the product W_2 W_1 of factors_{tag}", tuple(W.shape), shape, "Phi"))
            if loss(fs) > 1e-12 * max(scale, 1.0):
                _fail(label, name, f"factors_{tag} is not a global minimizer: its loss is {loss(fs):.3g} but the minimum "
                      "is 0, reached exactly when W_2 W_1 = Phi")
            nets.append(fs)
        a, b = nets
        if [t.shape for t in a] != [t.shape for t in b]:
            _fail(label, name, "the two minimizers must have the same widths, so that their midpoint is a network too")
        if all(float((x - y).abs().max()) < 1e-9 for x, y in zip(a, b)):
            _fail(label, name, "your two minimizers are the same point")
        mid = loss([(x + y) / 2 for x, y in zip(a, b)])
        if mid <= 1e-6 * max(scale, 1.0):
            _fail(label, name, f"the midpoint of your two minimizers is itself a minimizer (loss {mid:.2e} for Phi of "
                  f"shape {shape}), so phi may be convex along this segment. Find two minimizers whose average is not "
                  "one: what symmetries leave W_2 W_1 unchanged?")
        mids.append(mid)
    _passed(label, name, f"gives two global minima (loss 0) whose midpoint has loss {min(mids):.3g} or more on 3 random "
            "targets: phi is not convex.")


# ==================================================================================================================
# Chapter 2: optimization
# ==================================================================================================================
def check_balancedness_gaps(fn: Callable[[list[Tensor]], Sequence[Tensor]], label: str = "Exercise 2.1") -> None:
    """Check ``fn(factors) -> [D_1, ..., D_{N-1}]`` with ``D_j = W_{j+1}^T W_{j+1} - W_j W_j^T`` (``d_j x d_j``),
    on random networks with unequal widths, against ``lnn``'s own implementation."""
    name = "balancedness_gaps"
    cases = [[3, 4, 2], [2, 5, 3, 4], [4, 3, 3, 2, 5], [3, 6]]
    for k, dims in enumerate(cases):
        factors = gaussian_factors(dims, 1.0, generator=_gen(300 + k))
        N = len(factors)
        truth = _gaps(factors)
        out = _call(label, name, fn, [W.clone() for W in factors])
        if isinstance(out, Tensor) or not isinstance(out, Sequence):
            _fail(label, name, f"return a list [D_1, ..., D_(N-1)]; got {type(out).__name__}")
        if len(out) != N - 1:
            _fail(label, name, f"a depth-{N} network has N - 1 = {N - 1} gaps (one per hidden layer, between W_j and "
                  f"W_(j+1)); you returned {len(out)}")
        for j, (o, D) in enumerate(zip(out, truth), start=1):
            Dj = _tensor(label, name, o, f"D_{j}")
            if tuple(Dj.shape) != tuple(D.shape):
                _fail(label, name, f"your D_{j} has shape {tuple(Dj.shape)}, but D_j compares the two sides of hidden "
                      f"layer j, so it is d_j x d_j = {tuple(D.shape)} for widths {dims}: W_(j+1)^T W_(j+1) and "
                      "W_j W_j^T are both d_j x d_j. Did you transpose?")
            if _rel(Dj, D) > 1e-10:
                c = _scalar_multiple(Dj, D)
                if c is not None and abs(c + 1) < 1e-6:
                    _fail(label, name, f"your D_{j} has the opposite sign: the book's convention is "
                          "D_j = W_(j+1)^T W_(j+1) - W_j W_j^T (the later layer first)")
                if float((Dj - Dj.T).abs().max()) > 1e-10:
                    _fail(label, name, f"your D_{j} is not symmetric, but both W_(j+1)^T W_(j+1) and W_j W_j^T are")
                _fail(label, name, f"your D_{j} is wrong for widths {dims} (relative error {_rel(Dj, D):.2e})")
    _passed(label, name, f"agrees with the definition on {len(cases)} random networks with unequal widths.")


def check_preconditioned_gradient(fn: Callable[[Tensor, Tensor, int], Tensor], label: str = "Exercise 2.2") -> None:
    """Check ``fn(W, G, N) -> P_W(G)``, the end-to-end preconditioner, property by property:

    1. the result has the shape of ``W`` (also for a non-square ``W``);
    2. at depth 1 it is ``G`` (plain gradient descent);
    3. at ``W = I`` every term equals ``G``, so it is ``N G`` (catches a missing factor ``N``);
    4. it is homogeneous of degree ``2 - 2/N`` in ``W`` (catches exponents off by one);
    5. ``u_r v_s^T`` (singular vectors of ``W``) are its eigenvectors (catches left and right swapped);
    6. it agrees with ``lnn`` on random full-rank and rank-deficient matrices.
    """
    name = "preconditioned_gradient"
    g = _gen(400)

    def run(W: Tensor, G: Tensor, N: int) -> Tensor:
        out = _tensor(label, name, _call(label, name, fn, W.clone(), G.clone(), N), f"P_W(G) (depth {N})", finite=False)
        if tuple(out.shape) != tuple(W.shape):
            _fail(label, name, _shape_message("your end-to-end update", tuple(out.shape), tuple(W.shape), "W"))
        if not bool(torch.isfinite(out).all()):
            _fail(label, name, f"your P_W(G) has NaN or inf entries (depth {N}, W of shape {tuple(W.shape)}, "
                  f"singular values {[round(s, 4) for s in torch.linalg.svdvals(W).tolist()]}). Fractional powers of "
                  "slightly negative eigenvalues (from rounding, via eigh) give NaN: take them from the SVD of W.")
        return out

    # 1. shape, on a non-square W
    W = torch.randn(3, 4, generator=g, dtype=F64)
    G = torch.randn(3, 4, generator=g, dtype=F64)
    run(W, G, 3)
    # 2. depth 1
    out = run(W, G, 1)
    if _rel(out, G) > 1e-10:
        _fail(label, name, "at depth N = 1 the end-to-end rule is plain gradient descent, so P_W(G) must equal G")
    # 3. W = I
    Gs = torch.randn(3, 3, generator=g, dtype=F64)
    for N in (2, 3, 4):
        out = run(torch.eye(3, dtype=F64), Gs, N)
        c = _scalar_multiple(out, Gs)
        if c is None or abs(c - N) > 1e-8:
            what = f"{c:.6g} times G" if c is not None else "not a multiple of G"
            detail = _factor_message(c / N, N) if c is not None else "is wrong"
            _fail(label, name, f"at W = I every one of the N terms equals G, so P_I(G) = N G; for N = {N} yours is "
                  f"{what}: it {detail}")
    # 4. homogeneity, 5. eigenvectors, on square full-rank W
    A = torch.randn(4, 4, generator=g, dtype=F64)
    U, S, Vh = torch.linalg.svd(A)
    W = U @ torch.diag(torch.tensor([2.0, 1.5, 1.0, 0.6], dtype=F64)) @ Vh
    G = torch.randn(4, 4, generator=g, dtype=F64)
    for N in (2, 3, 4):
        p1 = run(W, G, N)
        p2 = run(2 * W, G, N)
        degree = math.log2(float(torch.linalg.matrix_norm(p2)) / float(torch.linalg.matrix_norm(p1)))
        want = 2 - 2 / N
        homogeneous = _scalar_multiple(p2, p1, 1e-8) is not None
        if homogeneous and abs(degree - want) > 1e-6:
            _fail(label, name, f"for N = {N} your P_W(G) scales like |W|^{degree:.4g} when W is scaled, but each term "
                  f"(W W^T)^((N-j)/N) G (W^T W)^((j-1)/N) has 2(N-1)/N powers of W, so P_cW(G) = c^(2-2/N) P_W(G) = "
                  f"c^{want:.4g} P_W(G): an off-by-one in the exponents?")
        for r, s in ((0, 1), (2, 0), (1, 1)):
            E = torch.outer(U[:, r], Vh[s])
            out = run(W, E, N)
            if _scalar_multiple(out, E, 1e-7) is None:
                _fail(label, name, f"P_W must map u_r v_s^T (left and right singular vectors of W) to a multiple of "
                      f"itself, but yours does not (N = {N}, r = {r + 1}, s = {s + 1}). Are the powers of W W^T on the "
                      "left of G and those of W^T W on the right?")
    # 6. agreement on random cases, including rank-deficient and rectangular ones
    worst = 0.0
    cases = [(3, 4, None), (5, 2, None), (4, 4, None), (4, 3, 1), (4, 4, 2)]
    for k, (m, n, rank) in enumerate(cases):
        gk = _gen(410 + k)
        if rank is None:
            W = torch.randn(m, n, generator=gk, dtype=F64)
        else:
            W = torch.randn(m, rank, generator=gk, dtype=F64) @ torch.randn(rank, n, generator=gk, dtype=F64)
        G = torch.randn(m, n, generator=gk, dtype=F64)
        for N in (1, 2, 3, 5):
            out = run(W, G, N)
            err = _rel(out, _precond(W, G, N))
            if err > 1e-7:
                deficient = f" W has rank {rank} < min(m, n): remember the convention M^0 = I (the j = 1 and j = N terms " \
                            "contain no power of one of the two Gram matrices at all), and take the powers from the SVD " \
                            "of W (eigh of W W^T errs near its zero eigenvalues, and fractional powers amplify that)." \
                    if rank is not None else ""
                _fail(label, name, f"wrong values for W of shape {(m, n)} at depth {N} (relative error {err:.2e}).{deficient}")
            worst = max(worst, err)
    _passed(label, name, "has the right shape, P = G at N = 1, P_I(G) = N G, degree 2 - 2/N, the singular-vector "
            f"eigenbasis, and agrees with lnn on {len(cases) * 4} random cases (max relative error {worst:.1e}).")


def check_end_to_end_rule(
    fn: Callable[[Tensor, Any, int, float, int], Tensor], label: str = "Exercise 2.2"
) -> None:
    """Check ``fn(W0, loss, N, lr, steps) -> W``: ``steps`` iterations of the end-to-end rule
    ``W <- W - lr P_W(nabla ell(W))`` from ``W0`` (``loss.grad(W)`` gives ``nabla ell``), against ``lnn``."""
    name = "end_to_end_rule"
    g = _gen(450)
    X = torch.randn(20, 4, generator=g, dtype=F64)
    Y = X @ torch.randn(4, 3, generator=g, dtype=F64)
    loss = LpRegression(X, Y, p=2, reduction="mean")
    W0 = 0.3 * torch.randn(3, 4, generator=g, dtype=F64)
    N, lr = 3, 0.05

    def run(steps: int) -> Tensor:
        out = _tensor(label, name, _call(label, name, fn, W0.clone(), loss, N, lr, steps), f"W after {steps} steps")
        if tuple(out.shape) != tuple(W0.shape):
            _fail(label, name, _shape_message(f"your W after {steps} steps", tuple(out.shape), tuple(W0.shape), "W0"))
        return out

    if _rel(run(0), W0) > 1e-14:
        _fail(label, name, "with steps = 0 the rule must return W0 unchanged")
    one = run(1)
    truth1 = end_to_end_descent(W0, loss, N, lr=lr, steps=1).end_to_end
    if _rel(one, truth1) > 1e-9:
        delta, want = one - W0, truth1 - W0
        c = _scalar_multiple(delta, want)
        if c is not None:
            if abs(c + 1) < 1e-6:
                _fail(label, name, "your step goes uphill: the rule subtracts lr P_W(nabla ell)")
            _fail(label, name, f"your first step {_factor_message(c, N)} (is the step size lr applied once?)")
        _fail(label, name, f"your first step is wrong (relative error of the update {_rel(delta, want):.2e}): "
              "W_1 = W_0 - lr P_(W_0)(nabla ell(W_0))")
    many = run(40)
    truth = end_to_end_descent(W0, loss, N, lr=lr, steps=40).end_to_end
    if _rel(many, truth) > 1e-8:
        _fail(label, name, "your first step is right but the result after 40 steps is not (relative error "
              f"{_rel(many, truth):.2e}): do you recompute nabla ell and P at the current W on every step?")
    _passed(label, name, "matches lnn.end_to_end_descent after 0, 1 and 40 steps.")


def _flow_of_one_singular_value(sigma0: float, g: float, N: int, t_end: float) -> float:
    """``sigma(t_end)`` from lnn's own engine: the end-to-end flow of a depth-``N`` network on a ``1 x 1`` matrix with
    the linear loss ``ell(w) = -g w`` is exactly ``d sigma/dt = N sigma^(2-2/N) g`` (RK4, 800 steps: relative error
    below 1e-7 up to 0.9 t*)."""
    from lnn import EndToEndRule, gradient_flow

    run = gradient_flow([torch.tensor([[sigma0]], dtype=F64)], lambda W: -g * W.sum((-2, -1)), time=t_end,
                        dt=t_end / 800, parametrization=EndToEndRule(N))
    return float(run.end_to_end)


def check_singular_value_solution(fn: Callable[[float, float, int, Tensor], Tensor], label: str = "Exercise 2.3") -> None:
    """Check ``fn(sigma0, g, N, t) -> sigma(t)`` (``t`` a 1-D tensor of times) solves
    ``d sigma/dt = N sigma^(2 - 2/N) g`` with ``sigma(0) = sigma0``, for ``N = 1..4``, before any blow-up:

    * the initial condition;
    * the ODE itself, by central differences along the solution (a wrong exponent or factor is identified by
      fitting ``log(d sigma/dt)`` against ``log sigma``);
    * agreement at the end of the time window with lnn's end-to-end flow of a ``1 x 1`` network (RK4).
    """
    name = "sigma_closed_form"
    for N in (1, 2, 3, 4):
        for sigma0, gg in ((0.1, 1.0), (0.02, 0.5)):
            # a window in which sigma grows severalfold: linear (N = 1), exponential (N = 2), up to 0.9 t* (N >= 3)
            t_end = {1: 2 / gg, 2: math.log(20) / (2 * gg)}.get(N) or 0.9 * float(_blowup(sigma0, gg, N))
            t = torch.linspace(0, t_end, 41, dtype=F64)
            s = _tensor(label, name, _call(label, name, fn, sigma0, gg, N, t.clone()), f"sigma(t) for N = {N}",
                        finite=False)
            if tuple(s.shape) != tuple(t.shape):
                _fail(label, name, f"with t of shape {tuple(t.shape)} your sigma(t) has shape {tuple(s.shape)}: "
                      "return one value per time (use torch operations, which act entry by entry)")
            if not bool(torch.isfinite(s).all()):
                bad = float(t[~torch.isfinite(s)][0])
                _fail(label, name, f"your sigma(t) is not finite at t = {bad:.4g} for N = {N}, sigma0 = {sigma0}, "
                      f"g = {gg}, before the solution blows up")
            if abs(float(s[0]) - sigma0) > 1e-12 * sigma0:
                _fail(label, name, f"sigma(0) must equal sigma0 = {sigma0}, yours is {float(s[0]):.6g} (N = {N})")
            h = 1e-6 * t_end
            tm = t[1:-1]
            sp = _tensor(label, name, _call(label, name, fn, sigma0, gg, N, tm + h))
            sm = _tensor(label, name, _call(label, name, fn, sigma0, gg, N, tm - h))
            deriv = (sp - sm) / (2 * h)
            sig = s[1:-1]
            rhs = N * sig ** (2 - 2 / N) * gg
            err = float(((deriv - rhs).abs() / rhs.abs()).max())
            if err > 1e-5:
                if bool((deriv > 0).all()) and bool((sig > 0).all()) and float(sig.max() / sig.min()) > 1.5:
                    A = torch.stack([torch.log(sig), torch.ones_like(sig)], 1)
                    coef = torch.linalg.lstsq(A, torch.log(deriv).unsqueeze(1)).solution.squeeze(1)
                    p, c = float(coef[0]), math.exp(float(coef[1])) / gg
                    resid = float((A @ coef - torch.log(deriv)).abs().max())
                    if resid < 1e-4 and abs(p - (2 - 2 / N)) > 1e-3:
                        _fail(label, name, f"for N = {N} your sigma(t) solves d sigma/dt = c sigma^{p:.4g} g, but the "
                              f"ODE has sigma^(2 - 2/N) = sigma^{2 - 2 / N:.4g}: an exponent is off (check the powers of "
                              "sigma0 and of the bracket in your solution)")
                    if resid < 1e-4:
                        _fail(label, name, f"for N = {N} your sigma(t) solves d sigma/dt = {c:.6g} sigma^(2-2/N) g "
                              f"instead of N sigma^(2-2/N) g: it {_factor_message(c / N, N)} in the rate")
                _fail(label, name, f"your sigma(t) does not solve d sigma/dt = N sigma^(2-2/N) g for N = {N}, "
                      f"sigma0 = {sigma0}, g = {gg}: the relative mismatch of the two sides reaches {err:.2e}")
            if sigma0 != 0.1:
                continue  # the ODE check above already pins the solution down; one simulated flow per depth suffices
            ref = _flow_of_one_singular_value(sigma0, gg, N, t_end)
            if abs(float(s[-1]) - ref) > 1e-6 * ref:
                _fail(label, name, f"your sigma({t_end:.4g}) = {float(s[-1]):.6g} differs from a numerical solution "
                      f"of the ODE ({ref:.6g}) for N = {N}")
    _passed(label, name, "satisfies sigma(0) = sigma0 and d sigma/dt = N sigma^(2-2/N) g (to 1e-5) for N = 1..4, "
            "and agrees with lnn's end-to-end flow of a 1 x 1 network.")


def check_blowup_time(
    fn: Callable[[float, float, int], float],
    sigma_fn: Callable[[float, float, int, Tensor], Tensor] | None = None,
    label: str = "Exercise 2.3",
) -> None:
    """Check ``fn(sigma0, g, N) -> t*``, the finite escape time of ``d sigma/dt = N sigma^(2-2/N) g`` (``inf`` for
    ``N <= 2``), against ``lnn``, with diagnoses of a wrong power of ``sigma0`` or a missing ``N - 2``. With
    ``sigma_fn`` (the closed form) also check that it grows without bound as ``t -> t*``."""
    name = "blowup_time"
    for N in (1, 2):
        t = _tensor(label, name, _call(label, name, fn, 0.1, 1.0, N), f"t* for N = {N}", kind="number", finite=False)
        if t.numel() != 1 or not math.isinf(float(t)) or float(t) < 0:
            _fail(label, name, f"for N = {N} the solution is finite for all t (it grows linearly or exponentially), so "
                  f"t* = inf (math.inf); yours is {t.flatten().tolist()}")
    for N in (3, 4, 6):
        for sigma0, gg in ((0.1, 1.0), (1e-3, 0.5), (0.5, 2.0)):
            truth = float(_blowup(sigma0, gg, N))
            t = _tensor(label, name, _call(label, name, fn, sigma0, gg, N), f"t* for N = {N}", kind="number",
                        finite=False)
            if t.numel() != 1:
                _fail(label, name, f"return a single number, got shape {tuple(t.shape)}")
            val = float(t)
            if math.isfinite(val) and abs(val - truth) <= 1e-9 * truth:
                continue
            if not math.isfinite(val) or val <= 0:
                _fail(label, name, f"for N = {N} the solution blows up at a finite positive time, yours is {val}")
            c = val / truth
            other = _tensor(label, name, _call(label, name, fn, 10 * sigma0, gg, N), f"t* for N = {N}", kind="number",
                            finite=False)
            q = math.log10(float(other) / val) if float(other) > 0 else float("nan")
            want = -(N - 2) / N
            if abs(q - want) > 1e-6:
                _fail(label, name, f"your t* scales like sigma0^{q:.4g} (N = {N}) but must scale like "
                      f"sigma0^(-(N-2)/N) = sigma0^{want:.4g}: a smaller start takes longer to escape")
            if abs(c * (N - 2) - 1) < 1e-6:
                _fail(label, name, f"your t* is off by a factor of N - 2 = {N - 2} (too large)")
            if abs(c / (N - 2) - 1) < 1e-6:
                _fail(label, name, f"your t* is off by a factor of N - 2 = {N - 2} (too small)")
            _fail(label, name, f"your t* {_factor_message(c, N)} (N = {N}, sigma0 = {sigma0}, g = {gg})")
    if sigma_fn is not None:
        for N in (3, 4):
            ts = float(_blowup(0.1, 1.0, N))
            near = _tensor(label, name, _call(label, name, sigma_fn, 0.1, 1.0, N, torch.tensor([ts * (1 - 1e-6)], dtype=F64)))
            if not float(near) > 1e4:
                _fail(label, name, f"your closed form at t = t*(1 - 1e-6) is only {float(near):.4g} for N = {N}: "
                      "closed form and blow-up time disagree")
    _passed(label, name, "is inf for N <= 2 and agrees with the escape time of the ODE for N = 3, 4, 6"
            + (" where your sigma(t) indeed diverges." if sigma_fn is not None else "."))


# ==================================================================================================================
# Chapter 3: implicit bias
# ==================================================================================================================
def check_min_norm_solution(fn: Callable[[Tensor, Tensor], Tensor], label: str = "Exercise 3.1") -> None:
    """Check ``fn(X, y) -> w`` for an underdetermined system (``X`` is ``m x d`` with ``m < d``): ``w`` must
    interpolate (``X w = y``) and lie in the row space of ``X`` (no component in its null space), which together
    characterize the minimum-norm interpolant."""
    name = "min_norm_solution"
    for k, (m, d) in enumerate([(5, 12), (8, 20), (3, 3 + 7)]):
        g = _gen(500 + k)
        X = torch.randn(m, d, generator=g, dtype=F64)
        y = torch.randn(m, generator=g, dtype=F64)
        w = _tensor(label, name, _call(label, name, fn, X.clone(), y.clone()), "w")
        if tuple(w.shape) != (d,):
            extra = " That is one entry per example: w needs one entry per feature (did you use X where X^T belongs?)" \
                if tuple(w.shape) == (m,) else (" A (d, 1) column is not a (d,) vector: squeeze it (keep y 1-D)"
                                                if w.numel() == d else "")
            _fail(label, name, f"X is {m} x {d}, so w must have shape ({d},); yours has shape {tuple(w.shape)}.{extra}")
        fit = float(torch.linalg.vector_norm(X @ w - y)) / float(torch.linalg.vector_norm(y))
        if fit > 1e-8:
            _fail(label, name, f"your w does not fit the data: |X w - y| / |y| = {fit:.2e} (X is {m} x {d}, so exact "
                  "interpolants exist)")
        _, S, Vh = torch.linalg.svd(X, full_matrices=True)
        null = Vh[m:]  # orthonormal basis of the null space of X (X has full row rank)
        off = float(torch.linalg.vector_norm(null @ w)) / float(torch.linalg.vector_norm(w))
        if off > 1e-8:
            _fail(label, name, f"your w fits the data but a fraction {off:.2e} of it lies in the null space of X, "
                  "which only adds norm without changing X w: it is an interpolant, but not the minimum-norm one")
    _passed(label, name, "interpolates and lies in the row space of X on 3 random underdetermined systems: "
            "it is the minimum-norm solution.")


def check_effective_rank(fn: Callable[[Tensor], Any], label: str = "Exercise 3.2") -> None:
    """Check ``fn(W) -> erank(W)``, the effective rank of Roy and Vetterli, by its properties (1 for rank one,
    ``n`` for the identity, invariant to scaling, ``0 ln 0 = 0`` for rank-deficient matrices) and against ``lnn``;
    a result that is the entropy itself, uses a base-2 logarithm, or normalizes squared singular values is named."""
    name = "effective_rank"

    def value(W: Tensor, what: str) -> float:
        out = _tensor(label, name, _call(label, name, fn, W.clone()), f"effective rank of {what}", kind="number",
                      finite=False)
        if not math.isfinite(float(out)):
            zeros = int((torch.linalg.svdvals(W) == 0).sum())
            if zeros:
                _fail(label, name, f"your result is {float(out)} for {what}, which has {zeros} singular value(s) exactly "
                      "0: use the convention 0 ln 0 = 0 (leave the zero singular values out of the sum; 0 * log(0) "
                      "is NaN in floating point)")
            _fail(label, name, f"your effective rank of {what} is {float(out)}, not a finite number")
        return float(out)

    g = _gen(550)
    W = torch.randn(6, 5, generator=g, dtype=F64)
    truth = float(_erank(W))
    got = value(W, "a random 6 x 5 matrix")
    if math.isnan(got):
        _fail(label, name, "your result is NaN for a random full-rank matrix")
    if abs(got - truth) > 1e-9 * truth:
        H = math.log(truth)
        if abs(got - H) < 1e-9:
            _fail(label, name, "you returned the entropy H = -sum p log p; the effective rank is exp(H)")
        if abs(got - 2**H) < 1e-9 or abs(got - math.exp(H / math.log(2))) < 1e-9:
            _fail(label, name, "your logarithm and exponential have different bases (e.g. log2 with exp): use the "
                  "natural log with exp")
        if abs(got - float(_erank(W @ W.T))) < 1e-9 or abs(got - float(_erank((W.T @ W)))) < 1e-9:
            _fail(label, name, "you normalized the squared singular values (the energies); Roy and Vetterli use "
                  "p_r = sigma_r / sum_s sigma_s")
    # exact zeros: svdvals of a diagonal matrix are its |diagonal|, so these singular values are exactly 0 (a
    # product of random factors only gets ~1e-16, where p ln p is tiny but not NaN)
    diag = torch.diag(torch.tensor([3.0, 0.0, 0.0], dtype=F64))
    r1 = value(diag, "diag(3, 0, 0) (rank one, two singular values exactly 0)")
    if abs(r1 - 1) > 1e-12:
        _fail(label, name, f"a rank-one matrix must have effective rank 1, yours is {r1:.6g} for diag(3, 0, 0)")
    two = value(torch.diag(torch.tensor([2.0, 1.0, 0.0, 0.0], dtype=F64)), "diag(2, 1, 0, 0)")
    want = math.exp(-(2 / 3) * math.log(2 / 3) - (1 / 3) * math.log(1 / 3))
    if abs(two - want) > 1e-12 * want:
        _fail(label, name, f"for diag(2, 1, 0, 0) (p = (2/3, 1/3, 0, 0)) the effective rank is {want:.6f}; yours is "
              f"{two:.6g}: the zero singular values must contribute 0 ln 0 = 0")
    ones = torch.outer(torch.arange(1.0, 5.0, dtype=F64), torch.ones(3, dtype=F64))
    r1 = value(ones, "a rank-one 4 x 3 matrix")
    if abs(r1 - 1) > 1e-6:
        _fail(label, name, f"a rank-one matrix must have effective rank 1, yours is {r1:.6g}")
    eye = value(torch.eye(5, dtype=F64), "the 5 x 5 identity")
    if abs(eye - 5) > 1e-9:
        _fail(label, name, f"the 5 x 5 identity (five equal singular values) must have effective rank 5, yours is {eye:.6g}")
    scaled = value(7.5 * W, "7.5 W")
    if abs(scaled - got) > 1e-9 * truth:
        _fail(label, name, f"your effective rank changes when W is multiplied by 7.5 ({got:.6g} -> {scaled:.6g}): "
              "normalize the singular values by their sum")
    if abs(got - truth) > 1e-9 * truth:
        _fail(label, name, f"your effective rank of a random 6 x 5 matrix is {got:.6g}: wrong (relative error "
              f"{abs(got - truth) / truth:.2e})")
    for k in range(4):
        gk = _gen(560 + k)
        rank = 1 + k
        A = torch.randn(7, rank, generator=gk, dtype=F64) @ torch.randn(rank, 6, generator=gk, dtype=F64)
        v, t = value(A, f"a rank-{rank} 7 x 6 matrix"), float(_erank(A))
        if not abs(v - t) <= 1e-6 * t:
            _fail(label, name, f"wrong for a rank-{rank} 7 x 6 matrix ({v:.6g}); remember 0 ln 0 = 0 for the zero "
                  "singular values, which rounding makes about 1e-16 rather than exactly 0")
        if not 1 - 1e-9 <= v <= rank + 1e-6:
            _fail(label, name, f"the effective rank lies between 1 and the rank; yours is {v:.6g} for rank {rank}")
    _passed(label, name, "is 1 for rank one, n for the identity, scale-invariant, and agrees with lnn on random "
            "matrices of ranks 1-5.")


def check_learning_times(fn: Callable[[Tensor, Tensor, Tensor], Any], label: str = "Exercise 3.3") -> None:
    """Check ``fn(singular_values, record_steps, sigma_star) -> times``: for each ``k < len(sigma_star)``, the first
    recorded step at which the ``k``-th largest singular value exceeds ``sigma_star[k] / 2`` (``-1`` if never).
    Checked by the defining property on synthetic histories, not against stored answers."""
    name = "learning_times"
    for k, (centres, every) in enumerate([((300, 800, 1450, 5000), 10), ((120, 125, 990), 5), ((60, 400), 20)]):
        g = _gen(600 + k)
        steps = torch.arange(0, 2000 + 1, every)
        K = len(centres)
        star = torch.sort(torch.rand(K, generator=g, dtype=F64) * 20 + 10, descending=True).values
        width = 40.0 + 20 * torch.rand(K, generator=g, dtype=F64)
        curves = star[None, :] / (1 + torch.exp(-(steps[:, None].to(F64) - torch.tensor(centres, dtype=F64)) / width))
        noise = torch.rand(len(steps), 2, generator=g, dtype=F64) * 1e-3  # two extra, unlearned singular values
        sv = torch.sort(torch.cat([curves, noise], 1), dim=1, descending=True).values
        out = _tensor(label, name, _call(label, name, fn, sv.clone(), steps.clone(), star.clone()), "times", kind="index")
        out = out.flatten()
        if out.numel() != K:
            _fail(label, name, f"return one time per target singular value (len(sigma_star) = {K}); you returned "
                  f"{out.numel()} (singular_values has {sv.shape[1]} columns, more than the targets)")
        for j in range(K):
            t = out[j].item()
            crossed = sv[:, j] > star[j] / 2
            if not bool(crossed.any()):
                if t != -1:
                    _fail(label, name, f"singular value {j + 1} never exceeds sigma*_{j + 1} / 2 in this run, so its "
                          f"time must be -1; yours is {t:g}")
                continue
            if t == -1:
                first = int(steps[int(crossed.to(torch.int64).argmax())])
                _fail(label, name, f"you returned -1 (never learned) for singular value {j + 1}, but it exceeds "
                      f"sigma*_{j + 1} / 2 = {float(star[j] / 2):.4g} from step {first} on")
            if t != int(t) or int(t) not in steps.tolist():
                i = int(t) if t == int(t) else -1
                if 0 <= i < len(steps) and bool(crossed[i]) and (i == 0 or not bool(crossed[i - 1])):
                    _fail(label, name, f"you returned the index {i} into record_steps; return the step itself, "
                          f"record_steps[{i}] = {int(steps[i])}")
                _fail(label, name, f"your time {t:g} for singular value {j + 1} is not one of the recorded steps")
            i = steps.tolist().index(int(t))
            if not bool(crossed[i]):
                if i + 1 < len(steps) and bool(crossed[i + 1]) and not bool(crossed[: i + 1].any()):
                    _fail(label, name, f"off by one record for singular value {j + 1}: at your step {int(t)} it is still "
                          "below sigma*/2; the first step above it is the next record")
                _fail(label, name, f"at your step {int(t)} singular value {j + 1} is {float(sv[i, j]):.4g}, not above "
                      f"sigma*_{j + 1} / 2 = {float(star[j] / 2):.4g}")
            if i > 0 and bool(crossed[:i].any()):
                _fail(label, name, f"singular value {j + 1} already exceeded sigma*_{j + 1} / 2 before your step "
                      f"{int(t)}: return the first such step")
    _passed(label, name, "returns the first recorded crossing of sigma*_k / 2 (or -1) on 3 synthetic runs.")


def check_incremental_learning(times: Mapping[int, Sequence[float]], label: str = "Exercise 3.3") -> None:
    """Check measured learning times ``{depth: [t_1, ..., t_r]}`` show incremental learning: at the largest depth
    the singular values are learned one after another (strictly increasing times, spread ``(max - min) / max`` of at
    least 0.5), at depth 1 roughly together (spread below 0.35; small problems are noisier than the 0.2 seen at
    64 x 64), and the spread at the largest depth is more than twice that at depth 1."""
    name = "incremental learning"
    if not isinstance(times, Mapping) or len(times) < 2 or 1 not in times:
        _fail(label, name, "pass a dict {depth: times} with depth 1 and at least one deeper network")
    clean: dict[int, list[float]] = {}
    spread = {}
    for depth, raw in times.items():
        ts = [float(t) for t in _tensor(label, name, raw, f"times at depth {depth}", kind="index").flatten()]
        if any(t < 0 for t in ts):
            _fail(label, name, f"at depth {depth} some singular values were never learned (time -1): train longer")
        clean[depth] = ts
        spread[depth] = (max(ts) - min(ts)) / max(ts)
    times = clean
    deep = max(times)
    ts = times[deep]
    if any(b <= a for a, b in zip(ts, ts[1:])):
        _fail(label, name, f"at depth {deep} the times {ts} are not strictly increasing: with a small initialization "
              "the singular values should be learned one at a time, largest first")
    if spread[deep] < 0.5:
        _fail(label, name, f"at depth {deep} the times {ts} are too close together (spread {spread[deep]:.2f} of the "
              "last one, expected at least 0.5): is the initialization small?")
    if spread[1] >= 0.35:
        _fail(label, name, f"at depth 1 the times {times[1]} are spread by {spread[1]:.2f} of the last one; a linear "
              "model learns all directions together (is the depth-1 run really a single matrix?)")
    if spread[deep] <= 2 * spread[1]:
        _fail(label, name, f"the spread of the times does not grow with depth ({spread[1]:.2f} at depth 1, "
              f"{spread[deep]:.2f} at depth {deep})")
    _passed(label, name, f"holds: spread of the learning times {spread[1]:.2f} at depth 1 vs {spread[deep]:.2f} at "
            f"depth {deep}, learned one at a time.")


# ==================================================================================================================
# Chapter 4: applications
# ==================================================================================================================
def check_scalar_output_velocity(fn: Callable[[Tensor, Tensor, int], Tensor], label: str = "Exercise 4.1") -> None:
    """Check ``fn(w, grad, N) -> dw/dt`` for a depth-``N`` network with one output, ``W_e = w^T``, under balanced
    initialization: ``-grad`` at ``N = 1``; across ``w`` the step is ``|w|^(2-2/N)`` times ``-grad``; along ``w``
    it is ``N`` times larger; homogeneous of degree ``2 - 2/N`` in ``w``; agreement with ``lnn``."""
    name = "scalar_output_velocity"
    g = _gen(700)
    d = 5

    def run(w: Tensor, gr: Tensor, N: int) -> Tensor:
        out = _call(label, name, fn, w.clone(), gr.clone(), N)
        return _tensor(label, name, out, f"velocity dw/dt (N = {N}, w of shape ({d},))", shape=(d,))

    w = torch.randn(d, generator=g, dtype=F64)
    w = 1.7 * w / torch.linalg.vector_norm(w)
    gr = torch.randn(d, generator=g, dtype=F64)
    if _rel(run(w, gr, 1), -gr) > 1e-10:
        c = _scalar_multiple(run(w, gr, 1), -gr)
        if c is not None and abs(c + 1) < 1e-6:
            _fail(label, name, "at N = 1 the flow is dw/dt = -grad; yours points uphill (+grad)")
        _fail(label, name, "at N = 1 (no overparameterization) the flow must be plain gradient flow, dw/dt = -grad")
    across = gr - (gr @ w) / (w @ w) * w
    along = w * 0.8
    for N in (2, 3, 4):
        nrm = float(torch.linalg.vector_norm(w))
        a = run(w, across, N)
        c = _scalar_multiple(a, -across)
        want = nrm ** (2 - 2 / N)
        if c is None:
            _fail(label, name, f"for a gradient orthogonal to w the velocity must be parallel to -grad (N = {N}); yours "
                  "has a component along another direction")
        if abs(c / want - 1) > 1e-8:
            if c < 0:
                _fail(label, name, f"your velocity points uphill (N = {N}): the flow moves against the gradient")
            if abs(c / want - N) < 1e-6 or abs(c / want - 1 / N) < 1e-6:
                _fail(label, name, f"orthogonally to w your step {_factor_message(c / want, N)} (N = {N}): only the "
                      "component along w gets the extra (N - 1) copies; across w the step is |w|^(2-2/N) times -grad")
            expo = math.log(c) / math.log(nrm)
            _fail(label, name, f"orthogonally to w the step must be |w|^(2-2/N) = |w|^{2 - 2 / N:.4g} times -grad "
                  f"(N = {N}); yours is |w|^{expo:.4g} times -grad: an off-by-one in the exponent?")
        b = run(w, along, N)
        c2 = _scalar_multiple(b, -along)
        if c2 is None or abs(c2 / (N * want) - 1) > 1e-8:
            ratio = (c2 / want) if c2 is not None else float("nan")
            _fail(label, name, f"along w the step must be N = {N} times the step across w (the (N - 1) Pr_w term "
                  f"adds N - 1 copies); yours is {ratio:.6g} times (N = {N})")
        if _scalar_multiple(run(3 * w, gr, N), run(w, gr, N), 1e-8) is None:
            _fail(label, name, f"your velocity is not homogeneous in w (N = {N}): scaling w by 3 must scale dw/dt by "
                  f"3^(2-2/N)")
    # w = 0: the formula's w w^T / |w|^2 is undefined there, but the velocity has a limit: -grad at N = 1 (the
    # (N - 1) term vanishes), 0 for N >= 2 (the factor |w|^(2-2/N) -> 0 and the bracket stays bounded)
    zero = torch.zeros(d, dtype=F64)
    for N in (1, 2, 3):
        out = _tensor(label, name, _call(label, name, fn, zero.clone(), gr.clone(), N),
                      f"velocity at w = 0 (N = {N})", shape=(d,), finite=False)
        limit = -gr if N == 1 else torch.zeros(d, dtype=F64)
        if not bool(torch.isfinite(out).all()):
            _fail(label, name, f"at w = 0 your velocity is NaN or inf (N = {N}): w w^T / |w|^2 is 0/0 there, but "
                  "dw/dt has a limit (-grad for N = 1, 0 for N >= 2): return it (test |w| == 0 first)")
        if float((out - limit).abs().max()) > 1e-12:
            _fail(label, name, f"at w = 0 the velocity is {'-grad' if N == 1 else '0 (the factor |w|^(2-2/N) vanishes)'}"
                  f" for N = {N}; yours differs by {float((out - limit).abs().max()):.3g}")
    worst = 0.0
    for k in range(4):
        gk = _gen(710 + k)
        w = torch.randn(d, generator=gk, dtype=F64)
        gr = torch.randn(d, generator=gk, dtype=F64)
        for N in (2, 3, 5):
            err = _rel(run(w, gr, N), _scalar_velocity(w, gr, N))
            if err > 1e-9:
                _fail(label, name, f"wrong on a random case (N = {N}, relative error {err:.2e})")
            worst = max(worst, err)
    _passed(label, name, "is -grad at N = 1, scales by |w|^(2-2/N) across w and N times that along w, and agrees "
            f"with lnn on 12 random cases (max relative error {worst:.1e}).")


def _as_index_list(label: str, name: str, order: Any, D: int) -> list[int]:
    arr = _tensor(label, name, order, "order", kind="index").flatten()
    if arr.numel() != D or not bool((arr == arr.round()).all()):
        _fail(label, name, f"return a permutation of 0..{D - 1} (length {D}); yours has {arr.numel()} entries")
    idx = [int(v) for v in arr.tolist()]
    if sorted(idx) != list(range(D)):
        missing = sorted(set(range(D)) - set(idx))
        _fail(label, name, f"your order is not a permutation of 0..{D - 1}: missing {missing[:5]}, "
              f"repeated {sorted({i for i in idx if idx.count(i) > 1})[:5]}")
    return idx


def check_cut_surrogate(fn: Callable[[Tensor, list[int]], Any], label: str = "Exercise 4.2") -> None:
    """Check ``fn(C, left) -> s``, the correlation surrogate of entanglement across the cut ``(A, A^c)`` with
    ``A = left``: the sum of ``|C_ij|`` over pairs with ``i`` in ``A`` and ``j`` outside, each pair once. Checked by
    properties: symmetry in ``A <-> A^c``, zero for empty cuts and for block-diagonal ``C`` cut along the blocks,
    ``|A| (D - |A|)`` for an all-ones ``C``, independence of the diagonal and of signs."""
    name = "cut_surrogate"
    D = 6

    def value(C: Tensor, left: list[int], what: str) -> float:
        out = _tensor(label, name, _call(label, name, fn, C.clone(), list(left)), f"surrogate for {what}", kind="number")
        if out.numel() != 1:
            _fail(label, name, f"return one number; yours has shape {tuple(out.shape)}")
        return float(out)

    ones = torch.ones(D, D, dtype=F64)
    v = value(ones, [0, 1], "C = all ones, A = {0, 1}")
    want = 2 * (D - 2)
    if abs(v - want) > 1e-9:
        if abs(v - 2 * want) < 1e-9:
            _fail(label, name, f"off by a factor of 2 (C = all ones, A = {{0, 1}}, yours {v:g}): count each pair "
                  "(i in A, j not in A) once")
        if abs(v - (want + 2)) < 1e-9 or abs(v - (want + 4)) < 1e-9:
            _fail(label, name, "the diagonal entries C_ii must not contribute: a feature does not interact with itself "
                  "across a cut")
        _fail(label, name, f"for C = all ones ({D} features) and A = {{0, 1}} the surrogate is the number of pairs across "
              f"the cut; yours is {v:g}")
    if abs(value(ones, [], "A empty")) > 1e-12 or abs(value(ones, list(range(D)), "A = everything")) > 1e-12:
        _fail(label, name, "an empty cut (A empty or everything) has no pairs across it: the surrogate must be 0")
    g = _gen(800)
    R = torch.randn(D, D, generator=g, dtype=F64)
    C = (R + R.T) / 4
    C.fill_diagonal_(1.0)
    A = [0, 2, 3]
    comp = [i for i in range(D) if i not in A]
    a, b = value(C, A, "a random C"), value(C, comp, "the complement")
    if abs(a - b) > 1e-9 * max(abs(a), 1):
        _fail(label, name, f"the surrogate must not depend on which side is called A: {a:.6g} for A vs {b:.6g} for its "
              "complement")
    Cd = C.clone()
    Cd.fill_diagonal_(5.0)
    if abs(value(Cd, A, "C with another diagonal") - a) > 1e-9 * max(abs(a), 1):
        _fail(label, name, "your surrogate changes with the diagonal of C; only pairs across the cut count")
    if abs(value(-Cd, A, "-C") - a) > 1e-9 * max(abs(a), 1):
        _fail(label, name, "your surrogate changes when C -> -C: use absolute correlations |C_ij|, a strong "
              "negative correlation is as much interaction as a positive one")
    for cut in ([1, 3, 4], [5, 0], [2]):
        brute = sum(abs(float(C[i, j])) for i in cut for j in range(D) if j not in cut)
        got = value(C, cut, f"A = {cut}")
        if abs(got - brute) > 1e-9 * max(brute, 1.0):
            lead = float(C.abs()[: len(cut), len(cut):].sum())
            if abs(got - lead) < 1e-9 * max(lead, 1.0):
                _fail(label, name, f"for A = {cut} your surrogate is the sum over the leading block C[:{len(cut)}, "
                      f"{len(cut)}:]; it must use the indices in A (i in A, j not in A), whatever their positions")
            _fail(label, name, f"for A = {cut} (a random C with {D} features) the surrogate sum_(i in A, j not in A) "
                  f"|C_ij| is {brute:.6g}; yours is {got:.6g}")
    block = torch.zeros(D, D, dtype=F64)
    block[:3, :3] = C[:3, :3]
    block[3:, 3:] = C[3:, 3:]
    if abs(value(block, [0, 1, 2], "a block-diagonal C")) > 1e-12:
        _fail(label, name, "for a block-diagonal C cut between the blocks nothing is correlated across the cut, so the "
              "surrogate must be 0")
    _passed(label, name, "is symmetric in A <-> A^c, counts each pair across the cut once with |C_ij|, ignores the "
            "diagonal, and vanishes for empty and block-aligned cuts.")


def check_spectral_order(fn: Callable[[Tensor], Any], label: str = "Exercise 4.2") -> None:
    """Check ``fn(C) -> order``, a feature ordering from recursive spectral bisection of the ``|C|`` graph:

    * it is a permutation;
    * on four shuffled blocks of strongly correlated features (the blocks weakly correlated in a chain) it puts
      every block in one contiguous run;
    * on 64 shuffled AR(1) features (rho = 0.9) it recovers a local order: the level-1 surrogate is at most
      1.05 x that of the original order and at most 0.6 x that of the shuffled one, and neighbours are more than
      twice as correlated as in the shuffled order.
    """
    name = "spectral_order"
    rng = np.random.default_rng(900)
    # four blocks of four features, shuffled; the blocks' latent factors form a chain (corr 0.5 between neighbours)
    D, m = 16, 600
    latent = rng.standard_normal((m, 4))
    for b in range(1, 4):
        latent[:, b] = 0.5 * latent[:, b - 1] + math.sqrt(0.75) * latent[:, b]
    X = np.repeat(latent, 4, axis=1) + 0.6 * rng.standard_normal((m, D))
    perm = rng.permutation(D)
    C = np.corrcoef(X[:, perm], rowvar=False)
    order = _as_index_list(label, name, _call(label, name, fn, torch.tensor(C)), D)
    block_of = (perm // 4)[order]
    runs = [block_of[i : i + 4] for i in range(0, D, 4)]
    if not all(len(set(r.tolist())) == 1 for r in runs):
        _fail(label, name, f"on 16 features in 4 shuffled blocks of 4 your order does not keep the blocks together "
              f"(block labels along your order: {block_of.tolist()})")
    # AR(1) features in a lost order
    D = 64
    C = torch.corrcoef(ar1_features(2000, D, 0.9, generator=_gen(901)).T)
    perm = torch.randperm(D, generator=_gen(902))
    order = _as_index_list(label, name, _call(label, name, fn, C[perm][:, perm].clone()), D)
    Co = C.abs()
    Cp = Co[perm][:, perm]
    Cr = Cp[order][:, order]
    orig, shuf, yours = (float(surrogate_entanglement(M, 1)) for M in (Co, Cp, Cr))
    adj, adj_shuf = float(adjacent_correlation(Cr)), float(adjacent_correlation(Cp))
    if yours > 1.05 * orig or yours > 0.6 * shuf:
        _fail(label, name, f"on 64 shuffled AR(1) features your order leaves a level-1 surrogate of {yours:.1f}, vs "
              f"{orig:.1f} for the original order and {shuf:.1f} for the shuffled one: the bisection does not find "
              "the low-correlation cut (is it splitting at the median of the Fiedler vector of the Laplacian of |C|?)")
    if adj <= 2 * adj_shuf:
        _fail(label, name, f"neighbours in your order have mean |corr| {adj:.2f}, barely above the shuffled order's "
              f"{adj_shuf:.2f}: recurse into each half")
    _passed(label, name, f"keeps correlated blocks together and reorders shuffled AR(1) features: level-1 surrogate "
            f"{yours:.1f} (original {orig:.1f}, shuffled {shuf:.1f}), neighbour |corr| {adj:.2f} (shuffled {adj_shuf:.2f}).")


# ==================================================================================================================
# Chapter 5: linearized networks and the empirical NTK
# ==================================================================================================================
def _per_parameter_ntk(model: torch.nn.Module, x1: Tensor, x2: Tensor) -> dict[str, Tensor]:
    """The contribution of each named parameter to the empirical NTK, ``J_p(x1) J_p(x2)^T``, by plain autograd."""
    names = [n for n, _ in model.named_parameters()]
    params = [p for _, p in model.named_parameters()]

    def jac(x: Tensor) -> list[Tensor]:
        rows: list[list[Tensor]] = [[] for _ in params]
        for i in range(x.shape[0]):
            out = model(x[i : i + 1]).sum()
            grads = torch.autograd.grad(out, params, allow_unused=True)
            for k, (gk, p) in enumerate(zip(grads, params)):
                rows[k].append((torch.zeros_like(p) if gk is None else gk).reshape(-1))
        return [torch.stack(r) for r in rows]

    J1, J2 = jac(x1), jac(x2)
    return {n: (a @ b.T).detach() for n, a, b in zip(names, J1, J2)}


def _reference_ntk(model: torch.nn.Module, x1: Tensor, x2: Tensor | None) -> Tensor:
    """The reference kernel: ``lnn.ntk.empirical_ntk``."""
    from lnn.ntk import empirical_ntk

    K = empirical_ntk(model, x1, x2)
    return K.reshape(x1.shape[0], (x1 if x2 is None else x2).shape[0]).detach()


def _ntk_models() -> list[torch.nn.Module]:
    torch.manual_seed(0)  # nn.Linear's own initialization; the state is restored by the caller
    a = torch.nn.Sequential(torch.nn.Linear(3, 7), torch.nn.Tanh(), torch.nn.Linear(7, 1)).double()
    b = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 4), torch.nn.GELU(),
                            torch.nn.Linear(4, 1)).double()
    for m in (a, b):
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.1)  # nonzero biases, so a kernel that omits them is visibly wrong
    return [a, b]


def check_empirical_ntk(fn: Callable[..., Tensor], label: str = "Exercise 5.1") -> None:
    """Check ``fn(model, x1, x2=None) -> K`` with ``K[i, k] = <grad_theta f(x1_i), grad_theta f(x2_k)>`` over *all*
    parameters, for scalar-output models: shape ``(n1, n2)``, symmetric positive semi-definite when ``x2`` is
    omitted, the model left unchanged, and agreement with ``lnn.ntk.empirical_ntk``. A kernel
    built from only some of the parameters is named."""
    name = "empirical_ntk"
    state = torch.random.get_rng_state()
    try:
        models = _ntk_models()
    finally:
        torch.random.set_rng_state(state)
    g = _gen(1000)
    worst = 0.0
    for k, model in enumerate(models):
        x1 = torch.randn(5, 3, generator=g, dtype=F64)
        x2 = torch.randn(4, 3, generator=g, dtype=F64)
        before = [p.detach().clone() for p in model.parameters()]
        K12 = _tensor(label, name, _call(label, name, fn, model, x1.clone(), x2.clone()), "K(x1, x2)")
        if any(not torch.equal(p, q) for p, q in zip(model.parameters(), before)):
            _fail(label, name, "your function changed the model's parameters; computing a kernel must not")
        if tuple(K12.shape) != (5, 4):
            _fail(label, name, _shape_message("with 5 points in x1 and 4 in x2 your K", tuple(K12.shape), (5, 4), "K") +
                  ": K[i, k] pairs x1[i] with x2[k], so it is (n1, n2)")
        truth = _reference_ntk(model, x1, x2)
        err = _rel(K12, truth)
        if err > 1e-8:
            parts = _per_parameter_ntk(model, x1, x2)
            names = list(parts)
            for r in range(1, len(names)):
                for subset in itertools.combinations(names, r):
                    if _rel(K12, sum(parts[n] for n in subset)) <= 1e-8:
                        missing = [n for n in names if n not in subset]
                        _fail(label, name, f"your kernel contains only the contribution of the parameters {list(subset)}; "
                              f"it leaves out {missing}. Theta sums over every parameter of the model (use "
                              "model.named_parameters()).")
            c = _scalar_multiple(K12, truth)
            if c is not None:
                _fail(label, name, f"your kernel {_factor_message(c)}")
            if _rel(K12, truth.T.reshape(5, 4)) <= 1e-8:
                _fail(label, name, "your K has the right shape but its entries are scrambled: K[i, k] must pair x1[i] "
                      "with x2[k]")
            _fail(label, name, f"your kernel is wrong (relative error {err:.2e} on a {type(model[1]).__name__} network "
                  f"with {sum(p.numel() for p in model.parameters())} parameters)")
        worst = max(worst, err)
        K11 = _tensor(label, name, _call(label, name, fn, model, x1.clone()), "K(x1) with x2 omitted", shape=(5, 5))
        if float((K11 - K11.T).abs().max()) > 1e-10 * float(K11.abs().max()):
            _fail(label, name, "with x2 omitted K must be symmetric (it is a Gram matrix)")
        if float(torch.linalg.eigvalsh(K11).min()) < -1e-10 * float(K11.abs().max()):
            _fail(label, name, "with x2 omitted K must be positive semi-definite (it is J J^T)")
        worst = max(worst, _rel(K11, _reference_ntk(model, x1, None)))
    _passed(label, name, f"has shape (n1, n2), is a symmetric PSD Gram matrix on one set, and agrees with "
            f"lnn.ntk.empirical_ntk on 2 networks (max relative error {worst:.1e}).")


def check_kernel_gd_residual(fn: Callable[[Tensor, Tensor, float, int], Tensor], label: str = "Exercise 5.2") -> None:
    """Check ``fn(K, r0, lr, t) -> r_t``, the residual after ``t`` steps of gradient descent on the linearized model
    with loss ``(1/2) sum_i r_i^2``, against the iteration ``r <- r - lr K r`` itself; an exponent off by one, a
    wrong sign or a step divided by ``n`` is named."""
    name = "kernel_gd_residual"
    g = _gen(1100)
    n = 6
    A = torch.randn(n, n, generator=g, dtype=F64)
    K = A @ A.T / n + 0.1 * torch.eye(n, dtype=F64)
    r0 = torch.randn(n, generator=g, dtype=F64)
    lr = 0.5 / float(torch.linalg.eigvalsh(K).max())

    def iterate(t: int, step: float) -> Tensor:
        r = r0.clone()
        for _ in range(t):
            r = r - step * (K @ r)
        return r

    for t in (0, 1, 7, 25):
        out = _tensor(label, name, _call(label, name, fn, K.clone(), r0.clone(), lr, t),
                      f"r_t for t = {t} (r0 has shape ({n},))", shape=(n,))
        truth = iterate(t, lr)
        if _rel(out, truth) <= 1e-9:
            continue
        if t == 0:
            _fail(label, name, "at t = 0 no step has been taken: r_0 must be returned unchanged")
        for s in (t - 1, t + 1):
            if s >= 0 and _rel(out, iterate(s, lr)) <= 1e-9:
                _fail(label, name, f"off by one in the exponent: for t = {t} you return the residual after {s} steps")
        if _rel(out, iterate(t, lr / n)) <= 1e-9:
            _fail(label, name, "your step size is divided by n: this exercise uses the loss (1/2) sum_i r_i^2 "
                  "(no mean), so the update is r <- r - lr K r")
        if _rel(out, iterate(t, 2 * lr)) <= 1e-9:
            _fail(label, name, "your step is twice too large: the gradient of (1/2) sum_i r_i^2 carries no factor 2")
        if float(torch.linalg.vector_norm(out)) > float(torch.linalg.vector_norm(r0)):
            _fail(label, name, f"your residual grows (|r_t| > |r_0| at t = {t}) although lr < 2 / lambda_max: "
                  "gradient descent multiplies it by (I - lr K), not (I + lr K)")
        _fail(label, name, f"wrong residual at t = {t} (relative error {_rel(out, truth):.2e})")
    _passed(label, name, "matches t steps of gradient descent for t = 0, 1, 7, 25.")


def check_alignment(fn: Callable[[Tensor, Tensor], Any], label: str = "Exercise 5.3") -> None:
    """Check ``fn(K, y) -> A``, kernel-target alignment ``<K, y y^T>_F / (|K|_F |y y^T|_F)``, by its properties:
    ``A(y y^T, y) = 1``, ``A(I, y) = 1/sqrt(n)`` for labels in ``{+-1}``, invariance to scaling ``K`` or ``y``
    (including ``y -> -y``), ``|A| <= 1``."""
    name = "alignment"

    def value(K: Tensor, y: Tensor, what: str) -> float:
        out = _tensor(label, name, _call(label, name, fn, K.clone(), y.clone()), f"alignment for {what}", kind="number")
        if out.numel() != 1:
            _fail(label, name, f"return one number; for {what} yours has shape {tuple(out.shape)}")
        return float(out)

    g = _gen(1200)
    n = 8
    y = torch.where(torch.rand(n, generator=g, dtype=F64) > 0.5, 1.0, -1.0).to(F64)
    y[0], y[1] = 1.0, -1.0
    ideal = value(torch.outer(y, y), y, "K = y y^T")
    if abs(ideal - 1) > 1e-9:
        if abs(ideal - n) < 1e-9 or abs(ideal - 1 / n) < 1e-9:
            _fail(label, name, f"for K = y y^T the alignment must be 1, yours is {ideal:.6g}: off by a factor of n = {n}; "
                  "normalize by |K|_F |y y^T|_F, with |y y^T|_F = |y|^2")
        _fail(label, name, f"the ideal kernel K = y y^T must have alignment exactly 1; yours is {ideal:.6g}")
    eye = value(torch.eye(n, dtype=F64), y, "K = I")
    if abs(eye - 1 / math.sqrt(n)) > 1e-9:
        _fail(label, name, f"for K = I and y in {{+1, -1}}^{n} the alignment is y^T y / (sqrt(n) n) = 1/sqrt({n}); yours is "
              f"{eye:.6g}")
    A = torch.randn(n, n, generator=g, dtype=F64)
    K = A @ A.T
    base = value(K, y, "a random PSD K")
    if abs(value(3.0 * K, y, "3 K") - base) > 1e-9:
        _fail(label, name, "your alignment changes when K is scaled by 3: divide by |K|_F")
    if abs(value(K, 2.5 * y, "2.5 y") - base) > 1e-9:
        _fail(label, name, "your alignment changes when y is scaled: divide by |y y^T|_F = |y|^2 (not by n, which "
              "equals |y|^2 only for labels +-1)")
    if abs(value(K, -y, "-y") - base) > 1e-9:
        _fail(label, name, "your alignment changes when y -> -y, but y y^T does not")
    B = torch.randn(n, n, generator=g, dtype=F64)
    S = (B + B.T) / 2  # symmetric, indefinite
    S = S - 1.5 * (y @ S @ y) / (y @ y) ** 2 * torch.outer(y, y) if float(y @ S @ y) >= 0 else S
    neg = value(S, y, "an indefinite symmetric K with y^T K y < 0")
    truth = float(y @ S @ y) / (float(torch.linalg.matrix_norm(S)) * float(y @ y))
    if abs(neg - truth) > 1e-9:
        if abs(neg + truth) < 1e-9:
            _fail(label, name, f"for an indefinite K with y^T K y < 0 the alignment is negative ({truth:.6g}); yours is "
                  f"{neg:.6g}: no absolute value, the cosine keeps its sign")
        _fail(label, name, f"for an indefinite symmetric K your alignment is {neg:.6g}; the cosine <K, y y^T>_F / "
              f"(|K|_F |y y^T|_F) is {truth:.6g}")
    if not -1 - 1e-12 <= base <= 1 + 1e-12:
        _fail(label, name, f"an alignment is a cosine between matrices, in [-1, 1]; yours is {base:.6g}")
    _passed(label, name, "is 1 for the ideal kernel, 1/sqrt(n) for K = I, a cosine in [-1, 1], and invariant to the "
            "scale of K and y.")
