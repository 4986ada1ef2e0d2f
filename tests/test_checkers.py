"""The exercise checkers in lnn_course/checkers.py accept correct answers and reject typical wrong ones with a message
that says what is wrong (a transposed result, a missing factor of N, an exponent off by one, a sign, NaN, a numpy
array, a float32 answer, ...), and keep lnn's reference answers unavailable while they run a student's function.

Correct answers are the solutions in exercises/source (tests/exercise_solutions.py); wrong answers are the mistakes
students make (the list of REVIEWS.md section C and more).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import lnn
import lnn_course.checkers as chk
from exercise_solutions import solution


class ref:
    """The correct answers: the solutions of exercises/source (never lnn's references, which the checkers block)."""

    factor_gradients = staticmethod(solution("factor_gradients"))
    balancedness_gaps = staticmethod(solution("balancedness_gaps"))
    preconditioned_gradient = staticmethod(solution("preconditioned_gradient"))
    end_to_end_rule = staticmethod(solution("end_to_end_rule"))
    sigma_closed_form = staticmethod(solution("sigma_closed_form"))
    blowup_time = staticmethod(solution("blowup_time"))
    effective_rank = staticmethod(solution("effective_rank"))
    scalar_output_velocity = staticmethod(solution("scalar_output_velocity"))
    empirical_ntk = staticmethod(solution("empirical_ntk"))
    alignment = staticmethod(solution("alignment"))

F64 = torch.float64


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    yield
    torch.set_default_dtype(old)


def passes(check, *answers, capsys=None):
    check(*answers)
    if capsys is not None:
        out = capsys.readouterr().out
        assert out.startswith("✓ Exercise"), out


def fails(check, *answers, contains: tuple[str, ...] = ()) -> str:
    with pytest.raises(chk.ExerciseCheckError) as info:
        check(*answers)
    message = str(info.value)
    for text in contains:
        assert text in message, f"expected {text!r} in the message:\n{message}"
    assert message.startswith("Exercise "), message
    return message


# ------------------------------------------------------------------------------------------------------------------
# common behaviour
# ------------------------------------------------------------------------------------------------------------------
def test_unfinished_exercise_passes_through_as_not_implemented():
    def stub(*args):
        raise NotImplementedError("Exercise 2.2: not yet implemented (fill in preconditioned_gradient)")

    with pytest.raises(NotImplementedError, match="not yet implemented"):
        chk.check_preconditioned_gradient(stub)


def test_errors_in_student_code_are_reported_with_the_arguments():
    def broken(W, G, N):
        return W @ G  # shapes (3, 4) @ (3, 4) do not multiply

    fails(chk.check_preconditioned_gradient, broken, contains=("raised RuntimeError", "tensor of shape (3, 4)"))


def test_missing_return_is_named():
    def no_return(W, G, N):
        W @ G.T

    fails(chk.check_preconditioned_gradient, no_return, contains=("None", "`return`"))


def test_check_error_is_an_assertion_error():
    assert issubclass(chk.ExerciseCheckError, AssertionError)


def test_checkers_never_print_on_failure(capsys):
    fails(chk.check_balancedness_gaps, lambda fs: [-D for D in ref.balancedness_gaps(fs)])
    assert capsys.readouterr().out == ""


# ------------------------------------------------------------------------------------------------------------------
# chapter 1
# ------------------------------------------------------------------------------------------------------------------
def test_factor_gradients(capsys):
    passes(chk.check_factor_gradients, ref.factor_gradients, capsys=capsys)
    fails(chk.check_factor_gradients, lambda fs, G: [g.mT for g in ref.factor_gradients(fs, G)],
          contains=("gradient for W_1 has shape (3, 5) but W_1 has shape (5, 3): did you transpose?",))
    fails(chk.check_factor_gradients, lambda fs, G: ref.factor_gradients(fs, G)[::-1], contains=("reverse order",))
    fails(chk.check_factor_gradients, lambda fs, G: [-g for g in ref.factor_gradients(fs, G)], contains=("wrong sign",))
    fails(chk.check_factor_gradients, lambda fs, G: ref.factor_gradients(fs, G)[:-1] if len(fs) > 1 else [G],
          contains=("you returned 1 gradients; expected 2",))

    def untransposed_right(fs, G):  # W_(N:j+1)^T G W_(j-1:1): the right factor's transpose is missing
        grads = []
        for j in range(len(fs)):
            after = lnn.end_to_end(fs[j + 1 :]) if j + 1 < len(fs) else torch.eye(fs[j].shape[0])
            before = lnn.end_to_end(fs[:j]) if j > 0 else torch.eye(fs[0].shape[1])
            grads.append(after.T @ G @ before)
        return grads

    fails(chk.check_factor_gradients, untransposed_right, contains=("raised RuntimeError",))  # the student's own crash


def test_hessian_at_origin(capsys):
    truth = solution("hessian_at_origin")  # autograd is blocked while the checker runs an answer

    passes(chk.check_hessian_at_origin, truth, capsys=capsys)
    fails(chk.check_hessian_at_origin, lambda N: truth(N) / 2, contains=("off by a factor of 2", "(1/2)"))
    fails(chk.check_hessian_at_origin, lambda N: -truth(N), contains=("wrong sign",))
    fails(chk.check_hessian_at_origin, lambda N: truth(N) + (N >= 3) * (torch.ones(N, N) - torch.eye(N)),
          contains=("N = 3", "count how many factors w_k are left"))
    fails(chk.check_hessian_at_origin, lambda N: torch.zeros(N + 1, N + 1), contains=("N x N = 1 x 1",))


def test_two_minima(capsys):
    def sign_flip(Phi):
        a = lnn.balanced_factors(Phi, 2)
        return a, [-W for W in a]

    passes(chk.check_two_minima, sign_flip, capsys=capsys)

    def same(Phi):
        a = lnn.balanced_factors(Phi, 2)
        return a, [W.clone() for W in a]

    fails(chk.check_two_minima, same, contains=("same point",))

    def rescaled(Phi):  # (2 W_1, W_2 / 2): a minimizer, and the midpoint (1.5 W_1, 0.75 W_2) is not (valid!)
        a = lnn.balanced_factors(Phi, 2)
        return a, [2 * a[0], a[1] / 2]

    passes(chk.check_two_minima, rescaled)

    def not_minimal(Phi):
        a = lnn.balanced_factors(Phi, 2)
        return a, [a[0], 1.1 * a[1]]

    fails(chk.check_two_minima, not_minimal, contains=("factors_b is not a global minimizer",))

    def transposed(Phi):
        a = lnn.balanced_factors(Phi.T, 2)
        return a, [-W for W in a]

    fails(chk.check_two_minima, transposed, contains=("did you transpose?",))


# ------------------------------------------------------------------------------------------------------------------
# chapter 2
# ------------------------------------------------------------------------------------------------------------------
def test_balancedness_gaps(capsys):
    passes(chk.check_balancedness_gaps, ref.balancedness_gaps, capsys=capsys)
    fails(chk.check_balancedness_gaps, lambda fs: [-D for D in ref.balancedness_gaps(fs)], contains=("opposite sign",))
    fails(chk.check_balancedness_gaps, lambda fs: [b @ b.T - a.T @ a for a, b in zip(fs[:-1], fs[1:])],
          contains=("raised RuntimeError",))  # the two terms do not even have one shape
    fails(chk.check_balancedness_gaps, lambda fs: [b @ b.T for b in fs[1:]], contains=("d_j x d_j", "Did you transpose?"))
    fails(chk.check_balancedness_gaps, lambda fs: ref.balancedness_gaps(fs) + [torch.zeros(1, 1)],
          contains=("N - 1 =",))


def _precond_variant(W, G, N, *, left_exp, right_exp, scale=1.0, swap=False):
    """sum_j (W W^T)^left_exp(j) G (W^T W)^right_exp(j), through the SVD (a deliberately wrong P_W)."""
    U, s, Vh = torch.linalg.svd(W, full_matrices=False)
    total = torch.zeros_like(G)
    for j in range(1, N + 1):
        a, b = left_exp(j), right_exp(j)
        if swap:  # (W^T W)^a G (W W^T)^b: only defined for square W
            term = G if a == 0 else Vh.T @ torch.diag(s ** (2 * a)) @ Vh @ G
            term = term if b == 0 else term @ U @ torch.diag(s ** (2 * b)) @ U.T
        else:
            term = G if a == 0 else U @ torch.diag(s ** (2 * a)) @ U.T @ G
            term = term if b == 0 else term @ Vh.T @ torch.diag(s ** (2 * b)) @ Vh
        total = total + term
    return scale * total


def test_preconditioned_gradient(capsys):
    passes(chk.check_preconditioned_gradient, ref.preconditioned_gradient, capsys=capsys)
    fails(chk.check_preconditioned_gradient, lambda W, G, N: ref.preconditioned_gradient(W, G, N).mT,
          contains=("your end-to-end update has shape (4, 3) but W has shape (3, 4): did you transpose?",))
    fails(chk.check_preconditioned_gradient, lambda W, G, N: ref.preconditioned_gradient(W, G, N) / N,
          contains=("off by a factor of N = 2",))
    def off_by_one(W, G, N):  # (W W^T)^((N-j+1)/N) on the left
        if N == 1:
            return G.clone()
        return _precond_variant(W, G, N, left_exp=lambda j: (N - j + 1) / N, right_exp=lambda j: (j - 1) / N)

    fails(chk.check_preconditioned_gradient, off_by_one, contains=("off-by-one in the exponents", "c^1"))
    swapped = lambda W, G, N: (_precond_variant(W, G, N, left_exp=lambda j: (N - j) / N,  # noqa: E731
                                                right_exp=lambda j: (j - 1) / N, swap=True)
                               if W.shape[0] == W.shape[1] and N > 1 else ref.preconditioned_gradient(W, G, N))
    fails(chk.check_preconditioned_gradient, swapped, contains=("on the left of G",))

    def via_eigh(W, G, N):  # (W W^T)^a from eigh: NaN at rank-deficient W
        total = torch.zeros_like(G)
        lam_l, Q_l = torch.linalg.eigh(W @ W.T)
        lam_r, Q_r = torch.linalg.eigh(W.T @ W)
        for j in range(1, N + 1):
            a, b = (N - j) / N, (j - 1) / N
            left = Q_l @ torch.diag(lam_l**a) @ Q_l.T if a else torch.eye(W.shape[0])
            right = Q_r @ torch.diag(lam_r**b) @ Q_r.T if b else torch.eye(W.shape[1])
            total = total + left @ G @ right
        return total

    message = fails(chk.check_preconditioned_gradient, via_eigh)
    assert "NaN" in message or "rank" in message, message

    fails(chk.check_preconditioned_gradient, lambda W, G, N: ref.preconditioned_gradient(W, G, N + 1) if N == 1 else
          ref.preconditioned_gradient(W, G, N), contains=("depth N = 1", "plain gradient descent"))


def test_end_to_end_rule(capsys):
    def rule(W0, loss, N, lr, steps):
        return ref.end_to_end_rule(W0, loss, N, lr, steps)

    passes(chk.check_end_to_end_rule, rule, capsys=capsys)

    def uphill(W0, loss, N, lr, steps):
        W = W0.clone()
        for _ in range(steps):
            W = W + lr * ref.preconditioned_gradient(W, loss.grad(W), N)
        return W

    fails(chk.check_end_to_end_rule, uphill, contains=("uphill",))

    def frozen_gradient(W0, loss, N, lr, steps):
        W, G = W0.clone(), loss.grad(W0)
        for _ in range(steps):
            W = W - lr * ref.preconditioned_gradient(W, G, N)
        return W

    fails(chk.check_end_to_end_rule, frozen_gradient, contains=("recompute",))
    fails(chk.check_end_to_end_rule, lambda W0, loss, N, lr, steps: W0 - steps * lr * loss.grad(W0))


def _closed_form(sigma0, g, N, t):
    return ref.sigma_closed_form(sigma0, g, N, t)


def test_singular_value_solution(capsys):
    passes(chk.check_singular_value_solution, _closed_form, capsys=capsys)

    def inverted_power(sigma0, g, N, t):  # outer power -(N-2)/N instead of -N/(N-2)
        if N <= 2:
            return _closed_form(sigma0, g, N, t)
        return (sigma0 ** (-(N - 2) / N) - (N - 2) * g * t) ** (-(N - 2) / N)

    fails(chk.check_singular_value_solution, inverted_power, contains=("sigma(0) must equal sigma0", "N = 3"))

    def rate_missing_two(sigma0, g, N, t):
        return sigma0 * torch.exp(g * t) if N == 2 else _closed_form(sigma0, g, N, t)

    fails(chk.check_singular_value_solution, rate_missing_two, contains=("N = 2", "off by a factor of N = 2"))

    def rate_times_n(sigma0, g, N, t):
        return _closed_form(sigma0, N * g, N, t) if N == 1 else _closed_form(sigma0, g, N, t)

    passes(chk.check_singular_value_solution, rate_times_n)  # N * g = g at N = 1: not a mistake

    def power_of_sigma(sigma0, g, N, t):  # solves d sigma/dt = N sigma^(2 - 1/N) g instead
        if N == 1:
            return _closed_form(sigma0, g, N, t)
        p = 2 - 1 / N
        return (sigma0 ** (1 - p) + (1 - p) * N * g * t) ** (1 / (1 - p))

    fails(chk.check_singular_value_solution, power_of_sigma, contains=("an exponent is off", "sigma^1.5"))
    fails(chk.check_singular_value_solution, lambda s, g, N, t: _closed_form(s, g, N, t)[:-1], contains=("shape",))
    fails(chk.check_singular_value_solution, lambda s, g, N, t: _closed_form(s, g, N, t) + 0.001,
          contains=("sigma(0) must equal sigma0",))


def test_blowup_time(capsys):
    def t_star(sigma0, g, N):
        return float(ref.blowup_time(sigma0, g, N))

    passes(chk.check_blowup_time, t_star, _closed_form, capsys=capsys)
    passes(chk.check_blowup_time, t_star)
    fails(chk.check_blowup_time, lambda s, g, N: math.inf if N <= 2 else t_star(s, g, N) * (N - 2),
          contains=("off by a factor of N - 2",))
    fails(chk.check_blowup_time, lambda s, g, N: math.inf if N <= 2 else s ** (-N / (N - 2)) / ((N - 2) * g),
          contains=("scales like sigma0^",))
    fails(chk.check_blowup_time, lambda s, g, N: 1.0 / g, contains=("t* = inf",))


# ------------------------------------------------------------------------------------------------------------------
# chapter 3
# ------------------------------------------------------------------------------------------------------------------
def test_min_norm_solution(capsys):
    passes(chk.check_min_norm_solution, lambda X, y: torch.linalg.pinv(X) @ y, capsys=capsys)

    def plus_null(X, y):
        w = torch.linalg.pinv(X) @ y
        null = torch.linalg.svd(X, full_matrices=True).Vh[-1]
        return w + 0.3 * null

    fails(chk.check_min_norm_solution, plus_null, contains=("null space", "not the minimum-norm"))
    fails(chk.check_min_norm_solution, lambda X, y: torch.linalg.solve(X @ X.T, y), contains=("did you use X where",))
    fails(chk.check_min_norm_solution,
          lambda X, y: torch.linalg.solve(X.T @ X + 0.1 * torch.eye(X.shape[1]), X.T @ y), contains=("does not fit",))


def test_effective_rank(capsys):
    passes(chk.check_effective_rank, ref.effective_rank, capsys=capsys)

    def entropy(W):
        return torch.log(ref.effective_rank(W))

    fails(chk.check_effective_rank, entropy, contains=("entropy",))

    def squared(W):
        s = torch.linalg.svdvals(W) ** 2
        p = s / s.sum()
        p = p[p > 0]
        return torch.exp(-(p * torch.log(p)).sum())

    fails(chk.check_effective_rank, squared, contains=("squared singular values",))

    def base_two(W):
        s = torch.linalg.svdvals(W)
        p = s / s.sum()
        p = p[p > 0]
        return torch.exp(-(p * torch.log2(p)).sum())

    fails(chk.check_effective_rank, base_two, contains=("bases",))

    def no_zero_convention(W):
        s = torch.linalg.svdvals(W)
        s = torch.where(s < 1e-12 * s.max(), torch.zeros_like(s), s)
        p = s / s.sum()
        return torch.exp(-(p * torch.log(p)).sum())

    fails(chk.check_effective_rank, no_zero_convention, contains=("0 ln 0 = 0",))


def _learning_times(sv, steps, star):
    out = []
    for k in range(len(star)):
        above = sv[:, k] > star[k] / 2
        out.append(int(steps[int(above.to(torch.int64).argmax())]) if bool(above.any()) else -1)
    return out


def test_learning_times(capsys):
    passes(chk.check_learning_times, _learning_times, capsys=capsys)

    def index(sv, steps, star):
        out = []
        for k in range(len(star)):
            above = sv[:, k] > star[k] / 2
            out.append(int(above.to(torch.int64).argmax()) if bool(above.any()) else -1)
        return out

    fails(chk.check_learning_times, index, contains=("index", "record_steps["))

    def last_below(sv, steps, star):
        out = []
        for k in range(len(star)):
            above = sv[:, k] > star[k] / 2
            i = int(above.to(torch.int64).argmax())
            out.append(int(steps[max(i - 1, 0)]) if bool(above.any()) else -1)
        return out

    fails(chk.check_learning_times, last_below, contains=("off by one record",))
    fails(chk.check_learning_times, lambda sv, steps, star: [t if t >= 0 else 0 for t in _learning_times(sv, steps, star)],
          contains=("must be -1",))
    fails(chk.check_learning_times, lambda sv, steps, star: _learning_times(sv, steps, torch.cat([star, star[:2]])),
          contains=("one time per target singular value",))


def test_incremental_learning(capsys):
    passes(chk.check_incremental_learning, {1: [700, 620, 660], 3: [100, 500, 700]}, capsys=capsys)
    fails(chk.check_incremental_learning, {1: [700, 620, 660], 3: [100, 700, 500]}, contains=("not strictly increasing",))
    fails(chk.check_incremental_learning, {1: [700, 200, 660], 3: [100, 500, 700]}, contains=("at depth 1",))
    fails(chk.check_incremental_learning, {1: [700, 620, 660], 3: [100, -1, 700]}, contains=("never learned",))
    fails(chk.check_incremental_learning, {3: [100, 500, 700]}, contains=("depth 1",))


# ------------------------------------------------------------------------------------------------------------------
# chapter 4
# ------------------------------------------------------------------------------------------------------------------
def test_scalar_output_velocity(capsys):
    passes(chk.check_scalar_output_velocity, ref.scalar_output_velocity, capsys=capsys)

    def no_momentum(w, g, N):
        return -torch.linalg.vector_norm(w) ** (2 - 2 / N) * g

    fails(chk.check_scalar_output_velocity, no_momentum, contains=("along w the step must be N = 2 times",))

    def exponent(w, g, N):
        n = torch.linalg.vector_norm(w)
        return -n ** (2 - 1 / N) * (g + (N - 1) * (w @ g) / n**2 * w) if N > 1 else -g

    fails(chk.check_scalar_output_velocity, exponent, contains=("off-by-one in the exponent",))
    fails(chk.check_scalar_output_velocity, lambda w, g, N: -ref.scalar_output_velocity(w, g, N), contains=("uphill",))


def _cut(C, left):
    inside = torch.zeros(C.shape[0], dtype=torch.bool)
    inside[list(left)] = True
    return C.abs()[inside][:, ~inside].sum()


def test_cut_surrogate(capsys):
    passes(chk.check_cut_surrogate, _cut, capsys=capsys)
    fails(chk.check_cut_surrogate, lambda C, left: 2 * _cut(C, left), contains=("factor of 2", "once"))

    def signed(C, left):
        inside = torch.zeros(C.shape[0], dtype=torch.bool)
        inside[list(left)] = True
        return C[inside][:, ~inside].sum()

    fails(chk.check_cut_surrogate, signed, contains=("absolute correlations",))

    def with_diagonal(C, left):
        return _cut(C, left) + C.diagonal()[list(left)].abs().sum()

    fails(chk.check_cut_surrogate, with_diagonal, contains=("diagonal",))


def _spectral_order(C):
    A = C.abs()

    def bisect(idx):
        if len(idx) <= 2:
            return idx
        sub = A[idx][:, idx]
        fiedler = torch.linalg.eigh(torch.diag(sub.sum(1)) - sub).eigenvectors[:, 1]
        ranked = [idx[i] for i in torch.argsort(fiedler).tolist()]
        return bisect(ranked[: len(ranked) // 2]) + bisect(ranked[len(ranked) // 2 :])

    return bisect(list(range(C.shape[0])))


def test_spectral_order(capsys):
    passes(chk.check_spectral_order, _spectral_order, capsys=capsys)
    fails(chk.check_spectral_order, lambda C: list(range(C.shape[0] - 1)) + [0], contains=("not a permutation",))
    fails(chk.check_spectral_order, lambda C: list(range(C.shape[0])), contains=("keep the blocks together",))

    def one_split(C):  # a single bisection, halves left in their original (shuffled) order
        A = C.abs()
        fiedler = torch.linalg.eigh(torch.diag(A.sum(1)) - A).eigenvectors[:, 1]
        ranked = torch.argsort(fiedler).tolist()
        half = len(ranked) // 2
        return sorted(ranked[:half]) + sorted(ranked[half:])

    message = fails(chk.check_spectral_order, one_split)
    assert "blocks" in message or "neighbours" in message or "surrogate" in message, message


# ------------------------------------------------------------------------------------------------------------------
# chapter 5
# ------------------------------------------------------------------------------------------------------------------
def _ntk(model, x1, x2=None):
    return ref.empirical_ntk(model, x1, x2)


def test_empirical_ntk(capsys):
    passes(chk.check_empirical_ntk, _ntk, capsys=capsys)
    fails(chk.check_empirical_ntk, lambda m, x1, x2=None: _ntk(m, x1, x2).T, contains=("did you transpose?",))
    fails(chk.check_empirical_ntk, lambda m, x1, x2=None: 2 * _ntk(m, x1, x2), contains=("factor of 2",))

    def weights_only(model, x1, x2=None):
        x2 = x1 if x2 is None else x2
        rows = []
        for xs in (x1, x2):
            J = []
            for x in xs:
                weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
                grads = torch.autograd.grad(model(x[None]).sum(), weights)
                J.append(torch.cat([g.reshape(-1) for g in grads]))
            rows.append(torch.stack(J))
        return rows[0] @ rows[1].T

    fails(chk.check_empirical_ntk, weights_only, contains=("leaves out", "bias"))

    def mutating(model, x1, x2=None):
        with torch.no_grad():
            next(model.parameters()).mul_(1.0)
            next(model.parameters()).add_(1e-3)
        return _ntk(model, x1, x2)

    fails(chk.check_empirical_ntk, mutating, contains=("changed the model's parameters",))


def test_per_parameter_contributions_sum_to_the_reference_kernel():
    """The diagnosis "your kernel omits some parameters" relies on per-parameter kernels that add up to the NTK."""
    model = chk._ntk_models()[1]
    x1, x2 = torch.randn(4, 3, dtype=torch.float64), torch.randn(3, 3, dtype=torch.float64)
    parts = chk._per_parameter_ntk(model, x1, x2)
    assert len(parts) == len(list(model.parameters()))
    assert torch.allclose(sum(parts.values()), chk._reference_ntk(model, x1, x2), rtol=1e-10, atol=1e-12)


def _residual(K, r0, lr, t):
    return torch.linalg.matrix_power(torch.eye(K.shape[0]) - lr * K, t) @ r0


def test_kernel_gd_residual(capsys):
    passes(chk.check_kernel_gd_residual, _residual, capsys=capsys)
    fails(chk.check_kernel_gd_residual, lambda K, r0, lr, t: _residual(K, r0, lr, t + 1),
          contains=("at t = 0",))
    fails(chk.check_kernel_gd_residual, lambda K, r0, lr, t: _residual(K, r0, lr, max(t - 1, 0)),
          contains=("off by one in the exponent", "after 0 steps"))
    fails(chk.check_kernel_gd_residual, lambda K, r0, lr, t: _residual(K, r0, lr / K.shape[0], t),
          contains=("divided by n",))
    fails(chk.check_kernel_gd_residual, lambda K, r0, lr, t: _residual(K, r0, -lr, t), contains=("grows",))


def test_alignment(capsys):
    passes(chk.check_alignment, ref.alignment, capsys=capsys)
    fails(chk.check_alignment, lambda K, y: (y @ K @ y) / torch.linalg.matrix_norm(K), contains=("factor of n",))
    fails(chk.check_alignment, lambda K, y: (y @ K @ y) / (torch.linalg.matrix_norm(K) * len(y)),
          contains=("scaled", "|y|^2"))
    fails(chk.check_alignment, lambda K, y: (y @ K @ y) / (K.trace() * (y @ y)), contains=("K = I", "1/sqrt(8)"))


def test_checkers_are_deterministic(capsys):
    chk.check_spectral_order(_spectral_order)
    first = capsys.readouterr().out
    chk.check_spectral_order(_spectral_order)
    assert capsys.readouterr().out == first


def test_checkers_leave_the_global_random_state_alone():
    torch.manual_seed(123)
    np.random.seed(123)
    expected_torch, expected_np = torch.rand(3), np.random.rand(3)
    torch.manual_seed(123)
    np.random.seed(123)
    chk.check_empirical_ntk(_ntk)
    chk.check_spectral_order(_spectral_order)
    chk.check_learning_times(_learning_times)
    assert torch.equal(torch.rand(3), expected_torch) and np.array_equal(np.random.rand(3), expected_np)


# ------------------------------------------------------------------------------------------------------------------
# REVIEWS.md section C: wrong answers that used to pass or crash the checker
# ------------------------------------------------------------------------------------------------------------------
def _per_layer(change):
    """A factor_gradients answer that is right except on the layers ``change(j, N)`` returns a new gradient for."""

    def answer(fs, G):
        grads = ref.factor_gradients(fs, G)
        return [change(j, len(fs), fs, G, g) for j, g in enumerate(grads)]

    return answer


def _dropped_right(j, N, fs, G, g):  # W_(N:j+1)^T G without W_(j-1:1)^T: only the first layer is right
    after = lnn.end_to_end(fs[j + 1:]) if j + 1 < N else torch.eye(G.shape[0])
    return after.T @ G if j > 0 else g


@pytest.mark.parametrize("answer, message", [
    (_per_layer(lambda j, N, fs, G, g: N * g), "off by a factor of N = 2 (yours is N times too large)"),
    (_per_layer(lambda j, N, fs, G, g: g / N), "off by a factor of N = 2 (yours is N times too small)"),
    (_per_layer(lambda j, N, fs, G, g: -g if j > 0 else g), "gradient for W_2 (widths [2, 4, 3], depth 2) has the wrong sign"),
    (_per_layer(lambda j, N, fs, G, g: -g if j == N - 1 and N >= 3 else g), "W_3 (widths [3, 2, 4, 5], depth 3) has the wrong sign"),
    (_per_layer(_dropped_right), "gradient for W_2 (widths [2, 4, 3]): you left out the product W_(j-1:1)^T on the right"),
    (_per_layer(lambda j, N, fs, G, g: g.to(torch.float32)), "dtype torch.float32, but the inputs are float64"),
    (_per_layer(lambda j, N, fs, G, g: g.numpy()), "is a numpy.ndarray; expected a torch tensor"),
    (_per_layer(lambda j, N, fs, G, g: g * float("nan")), "contains NaN"),
])
def test_factor_gradients_diagnoses_every_depth_without_crashing(answer, message):
    fails(chk.check_factor_gradients, answer, contains=(message,))


def test_factor_gradients_equal_widths_slips():
    """At equal widths (the case [3, 3, 3, 3]) a dropped or untransposed product has the right shape."""
    calls = []

    def untransposed_when_square(fs, G):
        calls.append(len(fs))
        grads = ref.factor_gradients(fs, G)
        if len({W.shape for W in fs}) == 1 and len(fs) == 3:
            before = lnn.end_to_end(fs[:1])
            grads[1] = lnn.end_to_end(fs[2:]).T @ G @ before
        return grads

    fails(chk.check_factor_gradients, untransposed_when_square,
          contains=("W_2 (widths [3, 3, 3, 3])", "not transposed: it must be W_(j-1:1)^T"))


def _numpy(x):
    return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


# (checker, correct answer, how to spoil its output, the message): each spoiled answer must fail with the message
SPOILED = [
    # 1.3: numpy, list, wrong shape, float32
    ("check_hessian_at_origin", "hessian_at_origin", _numpy, "numpy.ndarray; expected a torch tensor"),
    ("check_hessian_at_origin", "hessian_at_origin", lambda H: H.tolist(), "is a list; expected a torch tensor"),
    ("check_hessian_at_origin", "hessian_at_origin", lambda H: H.reshape(-1), "must be an N x N"),
    ("check_hessian_at_origin", "hessian_at_origin", lambda H: H.float(), "float32, but the inputs are float64"),
    ("check_hessian_at_origin", "hessian_at_origin", lambda H: H.long(), "dtype torch.int64; expected real numbers"),
    # 1.4: NaN factors
    ("check_two_minima", "two_global_minima", lambda ab: (ab[0], [ab[1][0] * float("nan"), ab[1][1]]), "contains NaN"),
    # 2.1
    ("check_balancedness_gaps", "balancedness_gaps", lambda Ds: [D.float() for D in Ds], "float32"),
    ("check_balancedness_gaps", "balancedness_gaps", lambda Ds: [D + float("inf") for D in Ds], "contains inf"),
    # 2.2
    ("check_preconditioned_gradient", "preconditioned_gradient", lambda P: P.float(), "float32"),
    ("check_preconditioned_gradient", "preconditioned_gradient", _numpy, "numpy.ndarray"),
    ("check_end_to_end_rule", "end_to_end_rule", lambda W: W.float(), "float32"),
    # 2.3
    ("check_singular_value_solution", "sigma_closed_form", lambda s: s.float(), "float32"),
    ("check_singular_value_solution", "sigma_closed_form", lambda s: s[:, None], "your sigma(t) has shape (41, 1)"),
    ("check_blowup_time", "blowup_time", lambda t: np.array([t]), "numpy.ndarray; expected one number"),
    ("check_blowup_time", "blowup_time", lambda t: torch.tensor(t, dtype=torch.float32), "float32"),
    # 3.1: NaN, (d, 1), numpy
    ("check_min_norm_solution", "min_norm_solution", lambda w: w * float("nan"), "contains NaN"),
    ("check_min_norm_solution", "min_norm_solution", lambda w: w[:, None], "(d, 1) column is not a (d,) vector"),
    ("check_min_norm_solution", "min_norm_solution", _numpy, "numpy.ndarray"),
    # 3.2: numpy, list, shape (1,), NaN, float32
    ("check_effective_rank", "effective_rank", _numpy, "numpy.ndarray; expected one number"),
    ("check_effective_rank", "effective_rank", lambda r: [float(r)], "is a list; expected one number"),
    ("check_effective_rank", "effective_rank", lambda r: r.reshape(1), "shape (1,); return one number"),
    ("check_effective_rank", "effective_rank", lambda r: r * float("nan"), "not a finite number"),
    ("check_effective_rank", "effective_rank", lambda r: r.float(), "float32"),
    # 3.3
    ("check_learning_times", "learning_times", lambda ts: [float(t) for t in ts], "expected a list of int"),
    ("check_learning_times", "learning_times", lambda ts: [-1] * len(ts), "you returned -1 (never learned)"),
    # 4.1
    ("check_scalar_output_velocity", "scalar_output_velocity", lambda v: v[:, None], "expected (5,)"),
    ("check_scalar_output_velocity", "scalar_output_velocity", lambda v: v.float(), "float32"),
    ("check_scalar_output_velocity", "scalar_output_velocity", lambda v: v * float("nan"), "contains NaN"),
    # 4.2: NaN
    ("check_cut_surrogate", "cut_surrogate", lambda v: v * float("nan"), "contains NaN"),
    ("check_cut_surrogate", "cut_surrogate", _numpy, "numpy.ndarray"),
    ("check_spectral_order", "spectral_order", lambda o: torch.tensor(o, dtype=torch.float64), "expected integers"),
    # 5.1
    ("check_empirical_ntk", "empirical_ntk", lambda K: K.float(), "float32"),
    ("check_empirical_ntk", "empirical_ntk", lambda K: K[..., None], "(5, 4, 1)"),
    # 5.2: numpy, (n, 1)
    ("check_kernel_gd_residual", "kernel_gd_residual", _numpy, "numpy.ndarray"),
    ("check_kernel_gd_residual", "kernel_gd_residual", lambda r: r[:, None], "(6, 1); expected (6,)"),
    ("check_kernel_gd_residual", "kernel_gd_residual", lambda r: r.tolist(), "is a list"),
    # 5.3
    ("check_alignment", "alignment", lambda a: a.float(), "float32"),
    ("check_alignment", "alignment", lambda a: a * float("nan"), "contains NaN"),
]


@pytest.mark.parametrize("checker, answer, spoil, message", SPOILED,
                         ids=[f"{c[6:]}-{k}" for k, (c, *_rest) in enumerate(SPOILED)])
def test_spoiled_outputs_are_rejected_with_a_message(checker, answer, spoil, message):
    good = solution(answer)

    def spoiled(*args):
        return spoil(good(*args))

    fails(getattr(chk, checker), spoiled, contains=(message,))


def test_cut_surrogate_that_ignores_which_indices_are_in_A():
    def leading_block(C, left):  # symmetric, zero for empty cuts, right for A = {0, 1}: only the positions are wrong
        k = len(left)
        return C.abs()[:k, k:].sum()

    fails(chk.check_cut_surrogate, leading_block, contains=("leading block", "indices in A"))


def test_effective_rank_on_exact_zero_singular_values():
    def naive(W):  # no 0 ln 0 convention: NaN as soon as a singular value is exactly 0
        s = torch.linalg.svdvals(W)
        p = s / s.sum()
        return torch.exp(-(p * torch.log(p)).sum())

    fails(chk.check_effective_rank, naive, contains=("exactly 0", "0 ln 0 = 0"))


def test_alignment_with_abs_fails_on_an_indefinite_kernel():
    good = solution("alignment")
    fails(chk.check_alignment, lambda K, y: good(K, y).abs(), contains=("no absolute value",))


def test_scalar_output_velocity_at_zero_and_factor_n():
    good = solution("scalar_output_velocity")

    def natural(w, g, N):  # the formula as written: 0/0 = NaN at w = 0
        n = torch.linalg.vector_norm(w)
        return -n ** (2 - 2 / N) * (g + (N - 1) * (w @ g) / n**2 * w)

    fails(chk.check_scalar_output_velocity, natural, contains=("at w = 0", "NaN"))
    fails(chk.check_scalar_output_velocity, lambda w, g, N: N * good(w, g, N) if N > 1 else good(w, g, N),
          contains=("off by a factor of N = 2", "across w"))


def test_float32_message_is_about_precision_not_a_factor():
    message = fails(chk.check_preconditioned_gradient, lambda W, G, N: ref.preconditioned_gradient(W.float(), G.float(), N))
    assert "float32" in message and "significant digits" in message and "times the correct value" not in message


# ------------------------------------------------------------------------------------------------------------------
# the reference answer is not one line away
# ------------------------------------------------------------------------------------------------------------------
def _delegate(path):
    def get():
        obj = lnn
        for part in path.split("."):
            obj = getattr(obj, part)
        return obj

    return get


# (checker, an answer that delegates to lnn's reference): every exercise with a reference in lnn
DELEGATES = [
    ("check_factor_gradients", lambda fs, G: lnn.factor_gradients(fs, G), "lnn.network.factor_gradients"),
    ("check_factor_gradients",
     lambda fs, G: list(torch.autograd.grad((G * lnn.end_to_end([W.requires_grad_() for W in fs])).sum(), fs)),
     "no autograd"),
    ("check_hessian_at_origin",
     lambda N: torch.autograd.functional.hessian(lambda w: (torch.prod(w) - 1) ** 2, torch.zeros(N)), "no autograd"),
    ("check_balancedness_gaps", lambda fs: lnn.balancedness_gaps(fs), "lnn.metrics.balancedness_gaps"),
    ("check_preconditioned_gradient", lambda W, G, N: lnn.preconditioned_gradient(W, G, N),
     "lnn.theory.preconditioned_gradient"),
    ("check_end_to_end_rule", lambda W0, loss, N, lr, steps: lnn.end_to_end_descent(W0, loss, N, lr=lr, steps=steps).end_to_end,
     "end_to_end_descent"),
    ("check_singular_value_solution", lambda s, g, N, t: lnn.singular_value_closed_form(s, g, N, t),
     "lnn.theory.singular_value_closed_form"),
    ("check_blowup_time", lambda s, g, N: float(lnn.blowup_time(s, g, N)), "lnn.theory.blowup_time"),
    ("check_min_norm_solution", lambda X, y: lnn.baselines.min_norm_least_squares(X, y), "min_norm_least_squares"),
    ("check_effective_rank", lambda W: lnn.effective_rank(W), "lnn.metrics.effective_rank"),
    ("check_scalar_output_velocity", lambda w, g, N: lnn.scalar_output_velocity(w, g, N), "scalar_output_velocity"),
    ("check_scalar_output_velocity", lambda w, g, N: -lnn.preconditioned_gradient(w[None], g[None], N)[0],
     "preconditioned_gradient"),
    ("check_spectral_order", lambda C: lnn.locality.spectral_rearrangement(C).tolist(), "spectral_rearrangement"),
    ("check_empirical_ntk", lambda m, x1, x2=None: lnn.ntk.empirical_ntk(m, x1, x2), "empirical_ntk"),
    ("check_empirical_ntk",
     lambda m, x1, x2=None: lnn.ntk.parameter_jacobian(m, x1) @ lnn.ntk.parameter_jacobian(m, x1 if x2 is None else x2).T,
     "parameter_jacobian"),
    ("check_kernel_gd_residual", lambda K, r0, lr, t: lnn.ntk.kernel_gd_residuals(K, r0, lr=lr, steps=t), "kernel_gd_residuals"),
    ("check_alignment", lambda K, y: lnn.ntk.kernel_alignment(K, y), "kernel_alignment"),
]


@pytest.mark.parametrize("checker, answer, names", DELEGATES, ids=[f"{c[6:]}-{k}" for k, (c, *_r) in enumerate(DELEGATES)])
def test_references_are_unavailable_while_the_answer_runs(checker, answer, names):
    message = fails(getattr(chk, checker), answer, contains=("is not available while the checker runs your function",
                                                             "from the math"))
    assert names in message, message


def test_a_renamed_or_caught_reference_is_still_caught():
    from lnn.metrics import effective_rank as renamed

    def sneaky(W):
        try:
            return lnn.effective_rank(W)
        except Exception:  # noqa: BLE001 - the student's attempt to get around the block
            return renamed(W)

    fails(chk.check_effective_rank, sneaky, contains=("lnn.metrics.effective_rank is not available",))


def test_references_work_again_after_a_check():
    chk.check_effective_rank(ref.effective_rank)
    W = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    assert float(lnn.effective_rank(W)) > 1  # the block ends with the checker's call of the answer
