"""Errors at the door (REVIEWS.md D.1, issue 17): every bad input of the review's list gets a clear TypeError or
ValueError that names the problem, raised at the boundary of lnn instead of deep inside torch; and the one
degenerate point with a well-defined limit (the scalar-output velocity at w = 0) returns it.

Each case asserts the exception type and a distinctive part of the message. The table of the closing report is
this file: (input, exception, message)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lnn

F64, F32 = torch.float64, torch.float32


def _regression(dtype=F64, device="cpu", n=6, d_in=4, d_out=3):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, d_in, generator=g, dtype=F64).to(dtype=dtype, device=device)
    Y = torch.randn(n, d_out, generator=g, dtype=F64).to(dtype=dtype, device=device)
    return lnn.LpRegression(X, Y)


# --- the objective is the checked interface: shape, dtype and device of W against the data ------------------------
def test_float32_factors_with_float64_objective():
    loss = _regression(F64)
    factors = lnn.gaussian_factors([4, 5, 3], 0.5, generator=torch.Generator().manual_seed(1), dtype=F32)
    with pytest.raises(TypeError, match=r"W \(the end-to-end matrix of the parameters\) is torch.float32 but the "
                       r"data of LpRegression is torch.float64"):
        lnn.gradient_descent(factors, loss, lr=0.1, steps=3)
    with pytest.raises(TypeError, match="is torch.float32 but the data of LpRegression is torch.float64"):
        lnn.end_to_end_descent(lnn.end_to_end(factors), loss, 2, lr=0.1, steps=3)


def test_objective_on_another_device():
    loss = _regression(F64, device="meta")  # the meta device: shapes and dtypes without storage, any machine
    factors = lnn.gaussian_factors([4, 5, 3], 0.5, generator=torch.Generator().manual_seed(1))
    with pytest.raises(TypeError, match="is on device cpu but the data of LpRegression is on meta"):
        lnn.gradient_descent(factors, loss, lr=0.1, steps=3)
    with pytest.raises(TypeError, match="is on device cpu but the data of LpRegression is on meta"):
        loss.value_and_grad(torch.zeros(3, 4, dtype=F64))


def test_wrong_shape_names_both_sides():
    loss = _regression()
    with pytest.raises(ValueError, match=r"LpRegression expects W of shape \(\.\.\., \(3, 4\)\), got W .* of shape \(2, 4\)"):
        lnn.gradient_descent([torch.ones(5, 4, dtype=F64), torch.ones(2, 5, dtype=F64)], loss, lr=0.1, steps=1)


def test_lp_regression_mixed_dtypes():
    X = torch.ones(5, 3, dtype=F32)
    Y = torch.ones(5, 2, dtype=F64)
    with pytest.raises(TypeError, match=r"Y is torch.float64 but X is torch.float32; they must share a dtype"):
        lnn.LpRegression(X, Y)


def test_matrix_sensing_with_numpy():
    A = np.ones((4, 2, 3))
    y = np.ones(4)
    with pytest.raises(TypeError, match=r"A must be a torch.Tensor, got numpy.ndarray \(convert it with torch.as_tensor"):
        lnn.MatrixSensing(A, y)
    with pytest.raises(TypeError, match="y must be a torch.Tensor, got numpy.ndarray"):
        lnn.MatrixSensing(torch.ones(4, 2, 3, dtype=F64), y)


# --- NaN and inf are reported as such ------------------------------------------------------------------------
def test_nan_in_the_data():
    X = torch.ones(5, 3, dtype=F64)
    X[2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"X contains non-finite entries \(1 NaN, 0 inf out of 15\)"):
        lnn.LpRegression(X, torch.ones(5, 2, dtype=F64))
    A = torch.ones(4, 2, 3, dtype=F64)
    with pytest.raises(ValueError, match=r"y contains non-finite entries \(0 NaN, 1 inf out of 4\)"):
        lnn.MatrixSensing(A, torch.tensor([1.0, float("inf"), 0.0, 0.0], dtype=F64))


def test_nan_in_the_initial_factors_is_not_a_step_size_problem():
    loss = _regression()
    factors = lnn.gaussian_factors([4, 5, 3], 0.5, generator=torch.Generator().manual_seed(1))
    factors[1][0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"initial parameters contain NaN or inf \(parameter 2 of 2.*no step was taken"):
        lnn.gradient_descent(factors, loss, lr=0.1, steps=3)


def test_nan_from_a_callable_loss_at_step_0():
    target = torch.full((3, 4), float("nan"), dtype=F64)  # a hand-written loss with NaN data: autograd path
    factors = lnn.gaussian_factors([4, 5, 3], 0.5, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match=r"the loss is nan at the initial parameters \(step 0, before any step"):
        lnn.gradient_descent(factors, lambda W: ((W - target) ** 2).sum((-2, -1)), lr=0.1, steps=3)


def test_divergence_is_still_a_floating_point_error():
    # the other side of the line: a finite start that blows up is the step size's fault, and says so
    loss = _regression()
    factors = lnn.gaussian_factors([4, 5, 3], 1.0, generator=torch.Generator().manual_seed(1))
    with pytest.raises(FloatingPointError, match=r"at step [1-9]\d*; the step size lr is probably too large"):
        lnn.gradient_descent(factors, loss, lr=1e3, steps=200)


def test_preconditioned_gradient_mixed_dtypes_and_nan():
    W = torch.eye(3, dtype=F32)
    with pytest.raises(TypeError, match=r"W is torch.float32 but G is torch.float64; they must share a dtype"):
        lnn.preconditioned_gradient(W, torch.eye(3, dtype=F64), 2)
    W = torch.eye(3, dtype=F64)
    W[0, 1] = float("nan")
    with pytest.raises(ValueError, match=r"W contains non-finite entries \(1 NaN"):
        lnn.preconditioned_gradient(W, torch.eye(3, dtype=F64), 2)
    with pytest.raises(ValueError, match=r"G contains non-finite entries \(0 NaN, 1 inf"):
        G = torch.eye(3, dtype=F64)
        G[1, 1] = float("inf")
        lnn.preconditioned_gradient(torch.eye(3, dtype=F64), G, 2)


def test_effective_rank_nan_and_int():
    W = torch.eye(3, dtype=F64)
    W[2, 2] = float("nan")
    with pytest.raises(ValueError, match=r"W contains non-finite entries \(1 NaN"):
        lnn.effective_rank(W)
    with pytest.raises(TypeError, match=r"W must have a floating dtype \(e.g. torch.float64\), got torch.int64"):
        lnn.effective_rank(torch.eye(3, dtype=torch.int64))


# --- integers that must be integers, tensors that must be tensors, positive scales -------------------------------
def test_random_mask_fractional_count():
    with pytest.raises(ValueError, match=r"num_observed must be an integer >= 1, got 2.5"):
        lnn.random_mask((4, 4), num_observed=2.5)
    assert int(lnn.random_mask((4, 4), num_observed=2.0, generator=torch.Generator().manual_seed(0)).sum()) == 2


def test_loop_integral_fractional_segments():
    field = lnn.end_to_end_field(_regression(n=6, d_in=2, d_out=1), 2)
    center = torch.tensor([[1.0, 0.5]], dtype=F64)
    E1, E2 = torch.tensor([[1.0, 0.0]], dtype=F64), torch.tensor([[0.0, 1.0]], dtype=F64)
    with pytest.raises(ValueError, match=r"segments must be an integer >= 3, got 10.5"):
        lnn.loop_integral(field, center, E1, E2, 0.1, segments=10.5)


def test_singular_value_velocity_with_numpy():
    with pytest.raises(TypeError, match=r"W must be a torch.Tensor, got numpy.ndarray"):
        lnn.singular_value_velocity(np.eye(3), np.eye(3), 2)


def test_cp_gaussian_factors_scale_and_dims():
    with pytest.raises(ValueError, match=r"scale must be a positive finite number, got -1"):
        lnn.cp_gaussian_factors([3, 3, 3], 2, -1)
    with pytest.raises(ValueError, match=r"every mode size d_n must be an integer >= 1, got 0"):
        lnn.cp_gaussian_factors([3, 0, 3], 2, 0.1)
    with pytest.raises(ValueError, match=r"dims must list the mode sizes"):
        lnn.cp_gaussian_factors([], 2, 0.1)
    with pytest.raises(ValueError, match=r"rank must be an integer >= 1, got 0"):
        lnn.cp_gaussian_factors([3, 3], 0, 0.1)


# --- the right limit ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [2, 3, 5])
def test_scalar_output_velocity_at_zero_is_its_limit(depth):
    grad = torch.tensor([0.3, -1.2, 0.7], dtype=F64)
    v0 = lnn.scalar_output_velocity(torch.zeros(3, dtype=F64), grad, depth)
    assert torch.equal(v0, torch.zeros(3, dtype=F64))  # not NaN: the limit as w -> 0 is 0
    # and the limit is approached continuously: |v(w)| <= N ||w||^{2-2/N} ||grad|| for a small w
    w = 1e-8 * torch.tensor([1.0, 2.0, -1.0], dtype=F64)
    bound = depth * float(torch.linalg.vector_norm(w)) ** (2 - 2 / depth) * float(torch.linalg.vector_norm(grad))
    assert float(torch.linalg.vector_norm(lnn.scalar_output_velocity(w, grad, depth))) <= bound
    # depth 1 is plain gradient flow, -grad, also at w = 0
    assert torch.equal(lnn.scalar_output_velocity(torch.zeros(3, dtype=F64), grad, 1), -grad)


def test_completion_and_diagonal_sensing_at_the_door():
    with pytest.raises(TypeError, match=r"target must have a floating dtype .* got torch.int64"):
        lnn.Completion(torch.ones(3, 3, dtype=torch.int64), torch.ones(3, 3, dtype=torch.bool))
    target = torch.ones(3, 3, dtype=F64)
    target[0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"target contains non-finite entries \(0 NaN, 1 inf out of 9\)"):
        lnn.Completion(target, torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"a must be a torch.Tensor, got numpy.ndarray"):
        lnn.diagonal_sensing(np.ones((3, 2)), torch.ones(3, dtype=F64))
