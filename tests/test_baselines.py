"""Tests of lnn.baselines: the explicit solutions that chapter Implicit bias compares gradient descent with."""

import pytest
import torch

import lnn
from lnn.baselines import min_l1_nonnegative, min_norm_least_squares, zero_fill_completion


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_min_norm_interpolates_and_is_orthogonal_to_the_null_space():
    X, y = rand(5, 12, seed=1), rand(5, seed=2)
    w = min_norm_least_squares(X, y)
    assert torch.allclose(X @ w, y, atol=1e-12)
    # any other interpolant differs by a null-space vector, orthogonal to w, hence is longer
    null = torch.linalg.svd(X, full_matrices=True).Vh[5:]
    assert float((null @ w).abs().max()) < 1e-12
    other = w + null.T @ rand(7, seed=3)
    assert torch.allclose(X @ other, y, atol=1e-12) and other.norm() > w.norm()


def test_gradient_descent_from_zero_reaches_the_min_norm_solution():
    X, y = rand(4, 9, seed=4), rand(4, seed=5)
    task = lnn.LpRegression(X, y, p=2, reduction="sum")
    run = lnn.gradient_descent([torch.zeros(1, 9, dtype=torch.float64)], task, lr=0.02, steps=4000)
    assert torch.allclose(run.end_to_end[0], min_norm_least_squares(X, y), atol=1e-8)


def test_min_norm_matrix_targets_and_bad_shapes():
    X, Y = rand(3, 6, seed=6), rand(3, 2, seed=7)
    assert min_norm_least_squares(X, Y).shape == (6, 2)
    with pytest.raises(ValueError, match="rows of X"):
        min_norm_least_squares(X, rand(4, seed=8))


def test_min_l1_nonnegative_recovers_a_sparse_vector():
    A = rand(10, 30, seed=9)
    x = torch.zeros(30, dtype=torch.float64)
    x[3], x[17] = 1.0, 2.0
    sol = min_l1_nonnegative(A, A @ x)
    assert sol.shape == (30,) and bool((sol >= -1e-12).all())
    assert torch.allclose(A @ sol, A @ x, atol=1e-8)
    assert float(sol.sum()) <= 3.0 + 1e-8  # the sparse vector is feasible, so the optimum is at most its l1 norm
    assert torch.allclose(sol, x, atol=1e-6)  # and with 10 Gaussian measurements of a 2-sparse vector it is unique


def test_min_l1_nonnegative_infeasible_and_bad_shapes():
    A = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="no nonnegative solution"):
        min_l1_nonnegative(A, torch.tensor([-1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        min_l1_nonnegative(A, torch.tensor([1.0, 2.0], dtype=torch.float64))


def test_zero_fill_is_what_depth_one_gradient_descent_returns():
    T = lnn.low_rank_matrix(6, 5, 2, generator=torch.Generator().manual_seed(0))
    mask = lnn.random_mask(T.shape, 12, generator=torch.Generator().manual_seed(1))
    task = lnn.Completion(T, mask, reduction="sum")
    run = lnn.gradient_descent([torch.zeros(6, 5, dtype=torch.float64)], task, lr=0.1, steps=200)
    assert torch.allclose(run.end_to_end, zero_fill_completion(T, mask), atol=1e-12)
    Tt = lnn.random_cp_tensor([3, 4, 2], 1, generator=torch.Generator().manual_seed(2))
    m = lnn.random_mask(Tt.shape, 5, generator=torch.Generator().manual_seed(3))
    Z = zero_fill_completion(Tt, m)
    assert torch.equal(Z[m], Tt[m]) and bool((Z[~m] == 0).all())
    with pytest.raises(ValueError, match="same shape"):
        zero_fill_completion(T, mask[:, :4])
