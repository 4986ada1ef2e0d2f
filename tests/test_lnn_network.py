"""Unit tests of lnn.network: the end-to-end matrix, the gradient formula and the initializations.

Tolerances: identities that hold exactly in real arithmetic are checked at 1e-12 in float64 (a few hundred
roundings of unit-size numbers, each ~1e-16).
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lnn

TOL = 1e-12


def dims_strategy(max_depth=4, max_width=6):
    return st.lists(st.integers(1, max_width), min_size=2, max_size=max_depth + 1)


@settings(max_examples=30, deadline=None)
@given(dims=dims_strategy(), seed=st.integers(0, 2**16))
def test_end_to_end_is_the_ordered_product(dims, seed):
    g = torch.Generator().manual_seed(seed)
    factors = lnn.gaussian_factors(dims, 1.0, generator=g)
    expected = factors[0]
    for W in factors[1:]:
        expected = W @ expected
    W_e = lnn.end_to_end(factors)
    assert W_e.shape == (dims[-1], dims[0])
    assert torch.allclose(W_e, expected, atol=TOL, rtol=0)


@settings(max_examples=30, deadline=None)
@given(dims=dims_strategy(), seed=st.integers(0, 2**16), batch=st.sampled_from([(), (3,), (2, 2)]))
def test_factor_gradients_match_autograd(dims, seed, batch):
    g = torch.Generator().manual_seed(seed)
    factors = lnn.gaussian_factors(dims, 1.0, batch_shape=batch, generator=g)
    target = torch.randn(*batch, dims[-1], dims[0], generator=g, dtype=torch.float64)

    def loss(W):  # a non-quadratic convex loss, so G is not linear in W
        return ((W - target) ** 4).sum((-2, -1)) / 4 + (W**2).sum((-2, -1))

    leaves = [W.clone().requires_grad_(True) for W in factors]
    loss(lnn.end_to_end(leaves)).sum().backward()
    W_e = lnn.end_to_end(factors)
    G = (W_e - target) ** 3 + 2 * W_e
    ours = lnn.factor_gradients(factors, G)
    for mine, leaf in zip(ours, leaves):
        assert mine.shape == leaf.shape
        scale = max(1.0, float(leaf.grad.abs().max()))
        assert float((mine - leaf.grad).abs().max()) <= TOL * scale


@settings(max_examples=30, deadline=None)
@given(
    d_in=st.integers(1, 6),
    d_out=st.integers(1, 6),
    depth=st.integers(1, 5),
    extra=st.integers(0, 3),
    seed=st.integers(0, 2**16),
)
def test_balanced_factors_reproduce_W_and_are_balanced(d_in, d_out, depth, extra, seed):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(d_out, d_in, generator=g, dtype=torch.float64)
    widths = [min(d_in, d_out) + extra] * (depth - 1)
    factors = lnn.balanced_factors(W, depth, widths)
    assert len(factors) == depth
    assert lnn.dims_of(factors) == [d_in] + widths + [d_out]
    assert torch.allclose(lnn.end_to_end(factors), W, atol=TOL, rtol=0)
    for D in lnn.balancedness_gaps(factors):
        assert float(D.abs().max()) <= TOL * max(1.0, float(W.abs().max()) ** 2)


def test_balanced_factors_batched_and_singular_values_split_evenly():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(4, 3, 5, generator=g, dtype=torch.float64)
    factors = lnn.balanced_factors(W, 3)
    assert torch.allclose(lnn.end_to_end(factors), W, atol=TOL)
    # every layer carries sigma_r(W)^(1/N)
    s = torch.linalg.svdvals(W)
    for F in factors:
        assert torch.allclose(torch.linalg.svdvals(F)[..., : s.shape[-1]], s ** (1 / 3), atol=1e-12)


def test_balanced_factors_refuses_a_bottleneck_below_the_rank():
    W = torch.eye(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="smaller than the rank"):
        lnn.balanced_factors(W, 2, widths=[2])
    # a rank-1 matrix fits through a width-1 bottleneck
    u = torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64)
    R = u @ u.T
    assert torch.allclose(lnn.end_to_end(lnn.balanced_factors(R, 3, widths=[1, 1])), R, atol=TOL)


def test_gaussian_factors_gain_and_determinism():
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = lnn.gaussian_factors([50, 50, 50, 50], 0.1, batch_shape=(200,), generator=g1)
    b = lnn.gaussian_factors([50, 50, 50, 50], 0.1, batch_shape=(200,), generator=g2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert all(x.dtype == torch.float64 for x in a)
    # E ||W_e x||^2 = scale^2 ||x||^2: average over 200 draws and 50 unit inputs, ~3% statistical error
    gain = torch.linalg.matrix_norm(lnn.end_to_end(a)) ** 2 / 50
    assert abs(float(gain.mean()) - 0.1**2) < 0.15 * 0.1**2


def test_identity_and_orthogonal_factors():
    I = lnn.identity_factors([4, 4, 4], 9.0)
    assert torch.allclose(lnn.end_to_end(I), 9.0 * torch.eye(4, dtype=torch.float64))
    g = torch.Generator().manual_seed(1)
    Q = lnn.orthogonal_factors([3, 5, 4], 8.0, batch_shape=(2,), generator=g)
    per_layer = 8.0 ** 0.5
    assert torch.allclose(Q[0].mT @ Q[0], per_layer**2 * torch.eye(3, dtype=torch.float64), atol=1e-12)  # 5x3: orthonormal columns
    assert torch.allclose(Q[1] @ Q[1].mT, per_layer**2 * torch.eye(4, dtype=torch.float64), atol=1e-12)  # 4x5: orthonormal rows


@pytest.mark.parametrize(
    "bad, message",
    [
        (lambda: lnn.end_to_end([]), "depth must be >= 1"),
        (lambda: lnn.end_to_end([torch.ones(3, 2), torch.ones(4, 4)]), "do not chain"),
        (lambda: lnn.end_to_end([torch.ones(3)]), "at least 2 dimensions"),
        (lambda: lnn.factor_gradients([torch.ones(3, 2)], torch.ones(2, 3)), "end-to-end shape"),
        (lambda: lnn.balanced_factors(torch.ones(2, 2), 0), "depth must be >= 1"),
        (lambda: lnn.balanced_factors(torch.ones(2, 2), 2.5), "integer"),
        (lambda: lnn.gaussian_factors([3], 1.0), "depth N >= 1"),
        (lambda: lnn.gaussian_factors([3, 0, 2], 1.0), "width must be >= 1"),
        (lambda: lnn.gaussian_factors([3, 2], -1.0), "scale must be positive"),
        (lambda: lnn.end_to_end([torch.ones(2, 2, dtype=torch.float64), torch.ones(2, 2, dtype=torch.float32)]), "dtype"),
    ],
)
def test_bad_input_raises_a_named_value_error(bad, message):
    with pytest.raises(ValueError, match=message):
        bad()


def test_one_initialization_scale_per_run():
    scales = torch.tensor([1e-3, 1e-2, 1e-1], dtype=torch.float64)
    g = torch.Generator().manual_seed(2)
    batched = lnn.gaussian_factors([5, 6, 4], scales, batch_shape=(3,), generator=g)
    g = torch.Generator().manual_seed(2)
    unit = lnn.gaussian_factors([5, 6, 4], 1.0, batch_shape=(3,), generator=g)
    for b, s in enumerate(scales.tolist()):
        assert torch.allclose(lnn.end_to_end([W[b] for W in batched]), s * lnn.end_to_end([W[b] for W in unit]), rtol=1e-12)
    I = lnn.identity_factors([3, 3, 3, 3], scales, batch_shape=(3,))
    assert torch.allclose(lnn.end_to_end(I), scales[:, None, None] * torch.eye(3, dtype=torch.float64), rtol=1e-12)
    with pytest.raises(ValueError, match="batch shape"):
        lnn.gaussian_factors([5, 6, 4], scales, batch_shape=(2,))
    with pytest.raises(ValueError, match="positive"):
        lnn.identity_factors([3, 3], torch.tensor([1.0, -1.0]), batch_shape=(2,))
