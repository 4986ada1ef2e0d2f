"""Tests of lnn.regression: the l_p minimum by Newton's method and the iterations-to-target bookkeeping."""

from __future__ import annotations

import math

import pytest
import torch

import lnn
from lnn.regression import (
    DivergenceGuard,
    best_over_step_sizes,
    iterations_to_target,
    lp_regression_minimum,
    relative_excess_loss,
)


def _data(m=40, d=5, d_out=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(m, d, generator=g, dtype=torch.float64) * torch.logspace(0, -1, d, dtype=torch.float64)
    Y = X @ torch.randn(d, d_out, generator=g, dtype=torch.float64) + 0.5 * torch.randn(m, d_out, generator=g, dtype=torch.float64)
    return X, Y


def test_p2_is_least_squares():
    X, Y = _data(d_out=3)
    W, loss = lp_regression_minimum(X, Y, p=2)
    W_ls = torch.linalg.lstsq(X, Y).solution.T
    assert torch.allclose(W, W_ls, atol=1e-12)
    assert math.isclose(float(loss), float(lnn.LpRegression(X, Y, 2)(W_ls)), rel_tol=1e-12)


@pytest.mark.parametrize("p", [3.0, 4.0, 6.0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "half_sum"])
def test_lp_minimum_is_stationary_and_minimal(p, reduction):
    X, Y = _data(d_out=2, seed=1)
    obj = lnn.LpRegression(X, Y, p, reduction)
    W, loss = lp_regression_minimum(X, Y, p, reduction)
    # first-order optimality: the gradient is at rounding level relative to its size at W = 0
    g0 = obj.grad(torch.zeros_like(W)).norm()
    assert float(obj.grad(W).norm() / g0) < 1e-10
    # convexity: random perturbations never lower the loss
    g = torch.Generator().manual_seed(2)
    pert = 1e-3 * torch.randn(20, *W.shape, generator=g, dtype=torch.float64)
    assert bool((obj(W + pert) >= loss - 1e-14).all())


def test_lp_minimum_doctest_value():
    X = torch.tensor([[1.0], [1.0]], dtype=torch.float64)
    Y = torch.tensor([0.0, 2.0], dtype=torch.float64)
    W, loss = lp_regression_minimum(X, Y, p=4)
    assert abs(float(W) - 1) < 1e-10 and abs(float(loss) - 0.25) < 1e-14


def test_lp_minimum_errors():
    X, Y = _data()
    with pytest.raises(ValueError, match="p >= 2"):
        lp_regression_minimum(X, Y, p=1.5)
    with pytest.raises(ValueError, match="same number of rows"):
        lp_regression_minimum(X, Y[:-1], p=4)
    with pytest.raises(ValueError, match="one \\(m, d_in\\) matrix"):
        lp_regression_minimum(X.unsqueeze(0), Y, p=4)
    with pytest.raises(ValueError, match="did not converge"):
        lp_regression_minimum(X, Y, p=8, max_iter=1)


def test_iterations_to_target_and_relative_gap():
    # two runs: one halves its gap each step, one never moves below 1e-1 of its gap
    t = torch.arange(30, dtype=torch.float64)
    run_a = 1.0 + 2.0 * 0.5**t
    run_b = 1.0 + 2.0 * torch.full_like(t, 0.5)
    run_b[0] = 3.0
    losses = torch.stack([run_a, run_b], -1)
    rel = relative_excess_loss(losses, 1.0)
    assert torch.allclose(rel[:, 0], 0.5**t)
    it = iterations_to_target(losses, 1.0, target=1e-4)
    assert it.tolist() == [14, -1]  # 0.5^14 = 6.1e-5 < 1e-4 <= 0.5^13
    with pytest.raises(ValueError, match="start above"):
        relative_excess_loss(losses, 5.0)


def test_iterations_to_target_stay():
    # a run that dips below the target at step 3, spikes at step 5 and settles from step 7 on
    rel = torch.tensor([1.0, 1e-2, 1e-3, 1e-5, 1e-5, 1e-1, 1e-3, 1e-6, 1e-7], dtype=torch.float64)
    settled = torch.tensor([1.0] + [1e-6] * 8, dtype=torch.float64)  # below from step 1 on
    losses = torch.stack([1.0 + rel, 1.0 + settled], -1)
    assert iterations_to_target(losses, 1.0, 1e-4).tolist() == [3, 1]
    assert iterations_to_target(losses, 1.0, 1e-4, stay=True).tolist() == [7, 1]
    # ending above the target: never
    up = torch.tensor([[2.0], [1.00001], [1.5]], dtype=torch.float64)
    assert iterations_to_target(up, 1.0, 1e-4, stay=True).tolist() == [-1]
    assert iterations_to_target(up, 1.0, 1e-4).tolist() == [1]


def test_nonfinite_losses_never_count():
    losses = torch.tensor([[2.0], [float("nan")], [torch.finfo(torch.float64).max]], dtype=torch.float64)
    assert iterations_to_target(losses, 1.0).tolist() == [-1]
    assert iterations_to_target(losses, 1.0, stay=True).tolist() == [-1]


def test_best_over_step_sizes():
    iters = torch.tensor([[-1, 50], [30, 40], [30, -1], [-1, -1]]).T  # dim 1 = 4 step sizes, 2 runs
    lrs = [0.1, 0.2, 0.4, 0.8]
    best, lr, edge = best_over_step_sizes(iters, lrs, dim=1)
    assert best.tolist() == [30, 40]
    assert lr.tolist() == [0.2, 0.2]  # ties go to the smaller step size
    assert edge.tolist() == [False, False]
    best, lr, edge = best_over_step_sizes(torch.tensor([[5], [-1]]), [1.0, 2.0], dim=0)
    assert best.tolist() == [5] and lr.tolist() == [1.0] and edge.tolist() == [True]
    best, lr, edge = best_over_step_sizes(torch.tensor([[-1], [-1]]), [1.0, 2.0])
    assert best.tolist() == [-1] and math.isnan(lr.item()) and edge.tolist() == [False]
    with pytest.raises(ValueError, match="step sizes"):
        best_over_step_sizes(iters, [0.1, 0.2], dim=1)


def test_divergence_guard_sweep_matches_unguarded_runs():
    X, Y = _data(m=30, d=4, seed=3)
    obj = lnn.LpRegression(X, Y, p=4)
    W0 = torch.zeros(1, 4, dtype=torch.float64)
    lrs = torch.tensor([0.01, 0.05, 50.0], dtype=torch.float64)  # the last one diverges
    with pytest.raises(FloatingPointError):
        lnn.gradient_descent([W0.expand(3, 1, 4).clone()], obj, lr=lrs, steps=60)
    guard = DivergenceGuard(obj, ceiling=1e3 * float(obj(W0)))
    traj = lnn.gradient_descent([W0.expand(3, 1, 4).clone()], guard, lr=lrs, steps=60)
    for k in range(2):
        ref = lnn.gradient_descent([W0], obj, lr=float(lrs[k]), steps=60)
        assert torch.allclose(traj.losses[:, k], ref.losses, rtol=1e-12, atol=0)  # batched BLAS: rounding only
    assert bool(torch.isfinite(traj.losses).all())
    assert float(traj.losses[-1, 2]) > guard.ceiling
    assert iterations_to_target(traj.losses, float(lp_regression_minimum(X, Y, 4)[1]), 0.5)[2] == -1
    with pytest.raises(ValueError, match="ceiling"):
        DivergenceGuard(obj, ceiling=0.0)
