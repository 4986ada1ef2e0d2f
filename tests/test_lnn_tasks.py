"""Unit tests of lnn.tasks (objectives, their normalizations and closed-form gradients, synthetic targets, the
nuclear-norm baseline), lnn.tensor (CP) and lnn.metrics."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lnn


def autograd_check(objective, W):
    leaf = W.clone().requires_grad_(True)
    objective(leaf).sum().backward()
    value, G = objective.value_and_grad(W)
    assert G.shape == W.shape
    assert torch.allclose(G, leaf.grad, atol=1e-12, rtol=1e-10)
    return value


@settings(max_examples=20, deadline=None)
@given(p=st.sampled_from([2.0, 3.0, 4.0]), reduction=st.sampled_from(["mean", "sum", "half_sum"]), seed=st.integers(0, 999))
def test_lp_regression_value_normalization_and_gradient(p, reduction, seed):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(12, 5, generator=g, dtype=torch.float64)
    Y = torch.randn(12, 2, generator=g, dtype=torch.float64)
    W = torch.randn(3, 2, 5, generator=g, dtype=torch.float64)  # a batch of 3 runs
    obj = lnn.LpRegression(X, Y, p=p, reduction=reduction)
    value = autograd_check(obj, W)
    R = X @ W.mT - Y
    c = {"mean": 1 / R[0].numel(), "sum": 1.0, "half_sum": 0.5}[reduction]
    assert torch.allclose(value, c / p * (R.abs() ** p).sum((-2, -1)), rtol=1e-13)


def test_sensing_completion_and_their_reductions():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(7, 3, 4, generator=g, dtype=torch.float64)
    y = torch.randn(7, generator=g, dtype=torch.float64)
    W = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    for reduction, c in [("mean", 1 / 7), ("sum", 1.0), ("half_sum", 0.5)]:
        obj = lnn.MatrixSensing(A, y, reduction)
        value = autograd_check(obj, W)
        r = torch.einsum("mij,bij->bm", A, W) - y
        assert torch.allclose(value, c * (r**2).sum(-1), rtol=1e-13)
    T = torch.randn(5, 6, generator=g, dtype=torch.float64)
    mask = lnn.random_mask(T.shape, 11, generator=g)
    assert int(mask.sum()) == 11
    comp = lnn.Completion(T, mask)  # mean over the observed entries
    Wc = torch.randn(4, 5, 6, generator=g, dtype=torch.float64)
    value = autograd_check(comp, Wc)
    assert torch.allclose(value, ((Wc - T)[..., mask] ** 2).mean(-1), rtol=1e-13)
    assert torch.allclose(comp.test_error(T.expand(2, 5, 6)), torch.zeros(2, dtype=torch.float64))
    # tensors too
    T3 = torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    comp3 = lnn.Completion(T3, lnn.random_mask(T3.shape, 20, generator=g), reduction="half_sum")
    autograd_check(comp3, torch.randn(3, 4, 5, generator=g, dtype=torch.float64))


def test_diagonal_sensing_sees_only_the_diagonal():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(4, 6, generator=g, dtype=torch.float64)
    obj = lnn.diagonal_sensing(a, torch.zeros(4, dtype=torch.float64))
    W = torch.randn(6, 6, generator=g, dtype=torch.float64)
    off = W - torch.diag_embed(W.diagonal())
    assert float(obj(off)) == 0.0
    assert float(obj.grad(W).triu(1).abs().max()) == 0.0  # gradients stay diagonal


def test_objectives_reject_wrong_shapes():
    obj = lnn.LpRegression(torch.ones(5, 3), torch.ones(5, 2))
    with pytest.raises(ValueError, match="expects W of shape"):
        obj(torch.ones(3, 2))
    with pytest.raises(ValueError, match="same number of rows"):
        lnn.LpRegression(torch.ones(5, 3), torch.ones(4, 2))
    with pytest.raises(ValueError, match="reduction"):
        lnn.MatrixSensing(torch.ones(2, 3, 3), torch.ones(2), reduction="avg")
    with pytest.raises(ValueError, match="shape of target"):
        lnn.Completion(torch.ones(3, 3), torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="shape of target"):
        lnn.Completion(torch.ones(3, 3), torch.ones(2, 3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="observes no entry in some run"):
        lnn.Completion(torch.ones(3, 3), torch.stack([torch.ones(3, 3), torch.zeros(3, 3)]).bool())
    with pytest.raises(ValueError, match="observes no entry"):
        lnn.Completion(torch.ones(3, 3), torch.zeros(3, 3, dtype=torch.bool))


def test_low_rank_matrix_rank_and_scale():
    M = lnn.low_rank_matrix(30, 20, 4, generator=torch.Generator().manual_seed(0))
    s = torch.linalg.svdvals(M)
    assert float(s[3]) > 1e-6 and float(s[4]) < 1e-10 * float(s[0])
    assert float(torch.linalg.matrix_norm(M)) == pytest.approx(math.sqrt(600), rel=1e-12)


def test_nuclear_norm_completion_is_feasible_and_not_worse_than_the_truth():
    g = torch.Generator().manual_seed(0)
    M = lnn.low_rank_matrix(20, 20, 2, generator=g)
    mask = lnn.random_mask(M.shape, 200, generator=g)
    Z = lnn.nuclear_norm_completion(M, mask, iterations=2000)
    assert float((Z - M)[mask].abs().max()) == 0.0  # exactly feasible by construction
    # the minimizer's nuclear norm is at most that of any feasible point, e.g. the truth
    assert float(lnn.nuclear_norm(Z)) <= float(lnn.nuclear_norm(M)) * (1 + 1e-6)
    # converged: another penalty parameter reaches the same minimum value (ADMM's limit does not depend on rho)
    Z2 = lnn.nuclear_norm_completion(M, mask, rho=1.0, iterations=2000)
    assert float(lnn.nuclear_norm(Z2)) == pytest.approx(float(lnn.nuclear_norm(Z)), rel=1e-6)
    # with ample observations of a rank-1 matrix the minimizer is the truth itself
    M1 = lnn.low_rank_matrix(30, 30, 1, generator=g)
    Z1 = lnn.nuclear_norm_completion(M1, lnn.random_mask(M1.shape, 500, generator=g), iterations=1000)
    assert float(((Z1 - M1) ** 2).mean()) < 1e-12


def test_svt_is_the_prox_of_the_nuclear_norm():
    M = torch.diag(torch.tensor([3.0, 1.0, 0.2], dtype=torch.float64))
    out = lnn.singular_value_threshold(M, 0.5)
    assert torch.allclose(out, torch.diag(torch.tensor([2.5, 0.5, 0.0], dtype=torch.float64)))


def test_cp_tensor_components_and_gradients():
    g = torch.Generator().manual_seed(0)
    factors = lnn.cp_gaussian_factors([3, 4, 5], 2, 1.0, batch_shape=(2,), generator=g)
    T = lnn.cp_tensor(factors)
    assert T.shape == (2, 3, 4, 5)
    manual = sum(
        torch.einsum("bi,bj,bk->bijk", factors[0][..., r], factors[1][..., r], factors[2][..., r]) for r in range(2)
    )
    assert torch.allclose(T, manual, atol=1e-13)
    G = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    leaves = [A.clone().requires_grad_(True) for A in factors]
    (lnn.cp_tensor(leaves) * G).sum().backward()
    for mine, leaf in zip(lnn.cp_factor_gradients(factors, G), leaves):
        assert torch.allclose(mine, leaf.grad, atol=1e-12)
    norms = lnn.cp_component_norms(factors)
    assert norms.shape == (2, 2)
    one = [A[..., :1] for A in factors]
    assert torch.allclose(torch.linalg.vector_norm(lnn.cp_tensor(one), dim=(-3, -2, -1)), norms[:, 0])
    U = lnn.unfold(T[0], 1)
    assert U.shape == (4, 15) and int(torch.linalg.matrix_rank(U)) <= 2
    with pytest.raises(ValueError, match="components R"):
        lnn.cp_tensor([torch.ones(3, 2), torch.ones(3, 3)])


def test_effective_rank():
    assert float(lnn.effective_rank(torch.eye(5, dtype=torch.float64))) == pytest.approx(5.0, rel=1e-12)
    rank_one = torch.outer(torch.arange(1.0, 4.0), torch.ones(6)).double()
    assert float(lnn.effective_rank(rank_one)) == pytest.approx(1.0, rel=1e-9)
    D = torch.diag(torch.tensor([2.0, 1.0, 1.0], dtype=torch.float64))
    p = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
    assert float(lnn.effective_rank(D)) == pytest.approx(float(torch.exp(-(p * p.log()).sum())), rel=1e-12)
    batch = torch.stack([torch.eye(3, dtype=torch.float64), D])
    assert lnn.effective_rank(batch).shape == (2,)
    with pytest.raises(ValueError, match="zero matrix"):
        lnn.effective_rank(torch.zeros(3, 3))


def test_norms_margin_and_balancedness():
    W = torch.diag(torch.tensor([3.0, 4.0], dtype=torch.float64))
    assert float(lnn.nuclear_norm(W)) == pytest.approx(7.0)
    assert float(lnn.schatten_norm(W, 2)) == pytest.approx(5.0)
    assert float(lnn.schatten_norm(W, float("inf"))) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="positive"):
        lnn.schatten_norm(W, 0)
    Phi = torch.diag(torch.tensor([2.0, 1.0], dtype=torch.float64))
    assert float(lnn.deficiency_margin(Phi + 0.25 * torch.eye(2, dtype=torch.float64), Phi)) == pytest.approx(1 - 0.25 * math.sqrt(2))
    factors = [torch.eye(2, dtype=torch.float64), 2 * torch.eye(2, dtype=torch.float64)]
    (D,) = lnn.balancedness_gaps(factors)
    assert torch.allclose(D, 3 * torch.eye(2, dtype=torch.float64))
    assert float(lnn.balancedness(factors)) == pytest.approx(3 * math.sqrt(2))
    assert float(lnn.balancedness(factors[:1])) == 0.0


@pytest.mark.parametrize("reduction", ["mean", "sum", "half_sum"])
def test_completion_with_one_mask_per_run(reduction):
    """A mask per run (chapter 3's sweep over the number of observations) gives each run the loss and gradient of
    its own single-mask Completion, to rounding."""
    gen = torch.Generator().manual_seed(0)
    target = torch.randn(5, 4, dtype=torch.float64, generator=gen)
    masks = torch.stack([lnn.random_mask((5, 4), k, generator=gen) for k in (3, 8, 20)])
    W = torch.randn(3, 5, 4, dtype=torch.float64, generator=gen)
    value, grad = lnn.Completion(target, masks, reduction).value_and_grad(W)
    for r in range(3):
        v, g = lnn.Completion(target, masks[r], reduction).value_and_grad(W[r])
        assert torch.allclose(value[r], v, rtol=1e-14, atol=0) and torch.allclose(grad[r], g, rtol=1e-14, atol=0)
    assert lnn.Completion(target, masks).num_observed.tolist() == [3, 8, 20]
