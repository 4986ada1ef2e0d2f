"""Tests of lnn.hierarchical: hierarchical tensor factorization (chapter Implicit bias)."""

import math

import pytest
import torch

import lnn
from lnn.hierarchical import (
    HTProduct,
    ht_gaussian_factors,
    ht_local_component_norms,
    ht_mode_tree,
    ht_num_levels,
    ht_tensor,
    matricize,
)


def test_order_two_is_a_depth_two_matrix_factorization():
    A1, A2 = torch.randn(3, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    out = torch.randn(4, 1, dtype=torch.float64)
    expected = A1 @ torch.diag(out[:, 0]) @ A2.T
    assert torch.allclose(ht_tensor([A1, A2, out]), expected, atol=1e-12)


def test_order_four_matches_the_explicit_sum():
    g = torch.Generator().manual_seed(0)
    p = ht_gaussian_factors([2, 3, 2, 3], [4, 5], 1.0, generator=g)
    A11, A12, A13, A14, A21, A22, out = p
    left = torch.einsum("as,bs,sr->abr", A11, A12, A21)
    right = torch.einsum("cs,ds,sr->cdr", A13, A14, A22)
    expected = torch.einsum("abr,cdr,r->abcd", left, right, out[:, 0])
    assert torch.allclose(ht_tensor(p), expected, atol=1e-12)


def test_batched_runs_are_independent():
    g = torch.Generator().manual_seed(1)
    p = ht_gaussian_factors([2, 2, 3, 2], 3, 0.7, batch_shape=(2,), generator=g)
    T = ht_tensor(p)
    assert T.shape == (2, 2, 2, 3, 2)
    for b in range(2):
        assert torch.allclose(T[b], ht_tensor([q[b] for q in p]), atol=1e-12)


def test_gradient_matches_finite_differences():
    g = torch.Generator().manual_seed(2)
    p = ht_gaussian_factors([2, 3, 2, 2], [3, 2], 0.8, generator=g)
    G = torch.randn(2, 3, 2, 2, generator=g, dtype=torch.float64)
    param = HTProduct()
    W, cache = param.forward(p)
    grads = param.direction(p, cache, G)
    eps = 1e-6
    for i, P in enumerate(p):
        E = torch.randn(P.shape, generator=g, dtype=torch.float64)
        plus = [q + eps * E if j == i else q for j, q in enumerate(p)]
        minus = [q - eps * E if j == i else q for j, q in enumerate(p)]
        fd = ((ht_tensor(plus) - ht_tensor(minus)) * G).sum() / (2 * eps)
        assert abs(float(fd - (grads[i] * E).sum())) < 1e-7 * max(1.0, abs(float(fd)))


def test_gradient_descent_fits_a_fully_observed_tensor():
    T = torch.full((2, 2, 2, 2), 0.25, dtype=torch.float64)
    task = lnn.Completion(T, torch.ones(T.shape, dtype=torch.bool), reduction="sum")
    p = ht_gaussian_factors([2, 2, 2, 2], 2, 0.5, generator=torch.Generator().manual_seed(0))
    run = lnn.gradient_descent(p, task, lr=0.1, steps=1500, parametrization=HTProduct())
    assert float(run.final_loss) < 1e-5
    assert torch.allclose(run.end_to_end, ht_tensor(run.params), atol=1e-12)


def test_local_component_vectors_share_their_velocity():
    """Each of the three weight vectors of a local component has d/dt ||x||^2 = -2 <grad ell, W_component>, the same
    value: the conservation law behind incremental learning of local components."""
    g = torch.Generator().manual_seed(3)
    p = ht_gaussian_factors([3, 3, 3, 3], [4, 3], 0.6, generator=g)
    G = torch.randn(3, 3, 3, 3, generator=g, dtype=torch.float64)
    param = HTProduct()
    grads = param.direction(p, param.forward(p)[1], G)
    # level 2 (the root's children), node 0 and 1 with parent = output; component s
    for s in range(3):
        rates = [(p[4][:, s] * grads[4][:, s]).sum(), (p[5][:, s] * grads[5][:, s]).sum(), p[6][s, 0] * grads[6][s, 0]]
        assert max(abs(float(r - rates[0])) for r in rates) < 1e-12 * max(1.0, abs(float(rates[0])))
    # level 1, node (modes 0, 1) with parent A^(2,1), component s
    for s in range(4):
        rates = [(p[0][:, s] * grads[0][:, s]).sum(), (p[1][:, s] * grads[1][:, s]).sum(), (p[4][s] * grads[4][s]).sum()]
        assert max(abs(float(r - rates[0])) for r in rates) < 1e-12 * max(1.0, abs(float(rates[0])))


def test_local_component_norms_shapes_and_values():
    p = ht_gaussian_factors([2, 2, 2, 2, 2, 2, 2, 2], [3, 4, 5], 1.0, generator=torch.Generator().manual_seed(4))
    norms = ht_local_component_norms(p)
    assert [tuple(n.shape) for n in norms] == [(4, 3), (2, 4), (1, 5)]
    # level 1, node 0: columns s of leaves 0, 1 and row s of the first level-2 factor
    s = 1
    expected = p[0][:, s].norm() * p[1][:, s].norm() * p[8][s].norm()
    assert torch.allclose(norms[0][0, s], expected)
    # root level: columns of the two level-3 factors and the output entry
    expected = p[12][:, 2].norm() * p[13][:, 2].norm() * p[14][2, 0].abs()
    assert torch.allclose(norms[2][0, 2], expected)


def test_mode_tree_and_matricization():
    assert ht_mode_tree(4) == [[(0,), (1,), (2,), (3,)], [(0, 1), (2, 3)], [(0, 1, 2, 3)]]
    assert ht_num_levels(8) == 3
    T = torch.arange(24.0).reshape(2, 3, 4)
    M = matricize(T, (2, 0))
    assert M.shape == (8, 3) and M[1 * 2 + 1, 2] == T[1, 2, 1]
    assert torch.equal(matricize(T, (0,)), lnn.unfold(T, 0))
    B = torch.stack([T, 2 * T])
    assert torch.equal(matricize(B, (1,), batch_dims=1)[1], 2 * matricize(T, (1,)))


def test_rank_of_tree_matricizations_is_bounded_by_widths():
    p = ht_gaussian_factors([3, 3, 3, 3], [2, 1], 1.0, generator=torch.Generator().manual_seed(5))
    T = ht_tensor(p)
    assert torch.linalg.matrix_rank(matricize(T, (0, 1))) == 1  # R_2 = 1 component across the root
    assert torch.linalg.matrix_rank(matricize(T, (0,))) <= 2


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda: ht_num_levels(3), "power of two"),
        (lambda: ht_gaussian_factors([2, 2, 2], 2, 0.1), "power of two"),
        (lambda: ht_gaussian_factors([2, 2, 2, 2], [2], 0.1), "widths"),
        (lambda: ht_gaussian_factors([2, 2], 2, -1.0), "positive"),
        (lambda: ht_tensor([torch.ones(2, 2), torch.ones(2, 2)]), "2N - 1"),
        (lambda: ht_tensor([torch.ones(2, 2), torch.ones(2, 3), torch.ones(2, 1)]), "same number of columns"),
        (lambda: ht_tensor([torch.ones(2, 2), torch.ones(2, 2), torch.ones(3, 1)]), "output weight"),
        (lambda: matricize(torch.ones(2, 2, 2), (0, 0)), "distinct"),
    ],
)
def test_bad_input_raises(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()
