"""Tests for lnn.locality: IGC regularizer, entanglement, feature rearrangement, task generators (chapter Applications)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lnn.locality import (
    abs_correlation,
    adjacent_correlation,
    ar1_features,
    canonical_partitions,
    entanglement_at_level,
    gram_entanglement,
    input_gradient_change,
    is_same_slots,
    is_same_task,
    is_same_templates,
    patch_mask,
    spectral_rearrangement,
    surrogate_entanglement,
)


# ---------------------------------------------------------------------------------------------- AR(1) features
def test_ar1_features_have_geometric_correlations() -> None:
    X = ar1_features(20000, 6, 0.8, generator=torch.Generator().manual_seed(0))
    C = abs_correlation(X)
    assert X.shape == (20000, 6) and X.dtype == torch.float64
    assert abs(float(X.var(0).mean()) - 1.0) < 0.05
    for lag in (1, 2, 3):
        assert abs(float(torch.diagonal(C, offset=lag).mean()) - 0.8**lag) < 0.03
    with pytest.raises(ValueError, match="rho"):
        ar1_features(10, 4, 1.0)


def test_abs_correlation_handles_constant_features() -> None:
    X = torch.randn(50, 3, dtype=torch.float64)
    X[:, 1] = 2.0
    C = abs_correlation(X)
    assert torch.all(C[1] == 0) and torch.allclose(torch.diagonal(C)[[0, 2]], torch.ones(2, dtype=torch.float64))
    assert float(adjacent_correlation(C)) == pytest.approx(0.0)


# ---------------------------------------------------------------------------------------------- partitions
def test_canonical_partitions() -> None:
    (A, B), = canonical_partitions(8, 1)
    assert A.tolist() == [0, 1, 2, 3] and B.tolist() == [4, 5, 6, 7]
    parts = canonical_partitions(10, 2)
    assert [a.tolist() for a, _ in parts] == [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]
    for a, b in parts:
        assert sorted(a.tolist() + b.tolist()) == list(range(10))
    with pytest.raises(ValueError, match="level"):
        canonical_partitions(4, 3)


def test_surrogate_on_a_block_diagonal_correlation() -> None:
    C = torch.block_diag(torch.ones(4, 4), torch.ones(4, 4)).double()
    assert float(surrogate_entanglement(C, 1)) == 0.0
    perm = torch.tensor([0, 4, 1, 5, 2, 6, 3, 7])
    assert float(surrogate_entanglement(C[perm][:, perm], 1)) == 8.0  # 4 + 4 pairs of one block split by the cut
    # level 2: each block of 2 against the rest of its own 4-block: 2 x 2 ones
    assert float(surrogate_entanglement(C, 2)) == 4.0


# ---------------------------------------------------------------------------------------------- rearrangement
def test_spectral_rearrangement_recovers_a_scrambled_order() -> None:
    g = torch.Generator().manual_seed(0)
    X = ar1_features(2000, 32, 0.9, generator=g)
    perm = torch.randperm(32, generator=g)
    C = abs_correlation(X)
    Cp = C[perm][:, perm]
    order = spectral_rearrangement(Cp)
    assert sorted(order.tolist()) == list(range(32))
    Cr = Cp[order][:, order]
    for level in (1, 2, 3):
        assert float(surrogate_entanglement(Cr, level)) <= 1.05 * float(surrogate_entanglement(C, level))
    assert float(surrogate_entanglement(Cr, 1)) <= 0.6 * float(surrogate_entanglement(Cp, 1))
    assert float(adjacent_correlation(Cr)) > 0.85  # orientation makes neighbours as correlated as in the original


def test_orientation_keeps_blocks_and_improves_neighbours() -> None:
    g = torch.Generator().manual_seed(3)
    X = ar1_features(1000, 16, 0.9, generator=g)
    perm = torch.randperm(16, generator=g)
    Cp = abs_correlation(X)[perm][:, perm]
    plain = spectral_rearrangement(Cp, orient=False)
    oriented = spectral_rearrangement(Cp)
    for level in (1, 2, 3):
        blocks_plain = {frozenset(plain[a].tolist()) for a, _ in canonical_partitions(16, level)}
        blocks_orient = {frozenset(oriented[a].tolist()) for a, _ in canonical_partitions(16, level)}
        assert blocks_plain == blocks_orient  # the same blocks, possibly in mirrored positions
    assert float(adjacent_correlation(Cp[oriented][:, oriented])) >= float(adjacent_correlation(Cp[plain][:, plain]))


def test_spectral_rearrangement_bad_input() -> None:
    with pytest.raises(ValueError, match="symmetric"):
        spectral_rearrangement(torch.tensor([[1.0, 0.5], [0.2, 1.0]]))
    with pytest.raises(ValueError, match="non-negative"):
        spectral_rearrangement(torch.tensor([[1.0, -0.5], [-0.5, 1.0]]))


# ---------------------------------------------------------------------------------------------- entanglement
def _explicit_state(X: torch.Tensor, theta: float, labels=None) -> torch.Tensor:
    """psi = sum_i y_i phi(x_i1) ⊗ ... ⊗ phi(x_iD) as a dense 2^D vector (tiny D only)."""
    m, D = X.shape
    psi = torch.zeros(2**D, dtype=torch.float64)
    for i in range(m):
        v = torch.ones(1, dtype=torch.float64)
        for f in range(D):
            a = math.pi * theta * X[i, f]
            v = torch.kron(v, torch.stack([torch.cos(a), torch.sin(a)]))
        psi += (1.0 if labels is None else float(labels[i])) * v
    return psi


@pytest.mark.parametrize("labels", [None, torch.tensor([1, -1, 1, 1, -1, 1.0])])
def test_gram_entanglement_matches_the_explicit_state(labels) -> None:
    X = torch.rand(6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    theta = 0.7
    psi = _explicit_state(X, theta, labels).reshape(2, 2, 2, 2)
    # partition A = {0, 2}: bring A's modes to the front
    M = psi.permute(0, 2, 1, 3).reshape(4, 4)
    s = torch.linalg.svdvals(M)
    c = s**2 / (s**2).sum()
    c = c[c > 1e-15]
    entropy = -(c * c.log()).sum()
    geometric = (1 - c.max()).sqrt()
    e, gm = gram_entanglement(X, [0, 2], theta=theta, labels=labels)
    assert abs(float(e - entropy)) < 1e-9 and abs(float(gm - geometric)) < 1e-9


def test_entanglement_is_zero_for_identical_samples_and_bounded() -> None:
    X = torch.rand(1, 6, dtype=torch.float64).expand(5, 6).clone()
    e, g = gram_entanglement(X, [0, 1, 2], theta=0.3)
    assert float(e) < 1e-9 and float(g) < 1e-6
    Y = ar1_features(60, 8, 0.5, generator=torch.Generator().manual_seed(1))
    e, g = entanglement_at_level(Y, 2, theta=0.3)
    assert 0 <= float(e) <= math.log(60) + 1e-9 and 0 <= float(g) <= 1


def test_gram_entanglement_bad_input() -> None:
    X = torch.rand(5, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="proper subset"):
        gram_entanglement(X, [0, 1, 2, 3])
    with pytest.raises(ValueError, match="proper subset"):
        gram_entanglement(X, [0, 0])
    with pytest.raises(ValueError, match="labels"):
        gram_entanglement(X, [0], labels=torch.ones(3))
    with pytest.raises(ValueError, match="2-D"):
        gram_entanglement(X[0], [0])


# ---------------------------------------------------------------------------------------------- IsSame and IGC
def test_is_same_task() -> None:
    T = is_same_templates(4, 5, generator=torch.Generator().manual_seed(0))
    x, y = is_same_task(400, 10, T, length=40, noise=0.0, generator=torch.Generator().manual_seed(1))
    a, b = is_same_slots(40, 5, 10)
    assert (a.start, a.stop, b.start, b.stop) == (10, 15, 25, 30)
    assert x.shape == (400, 1, 40) and y.shape == (400,)
    assert 0.4 < float(y.mean()) < 0.6
    same = (x[:, 0, a] == x[:, 0, b]).all(1).float()
    assert torch.equal(same, y)
    assert float(x[:, 0, : a.start].abs().max()) == 0.0
    with pytest.raises(ValueError, match="length"):
        is_same_slots(20, 8, 10)


def test_igc_is_one_for_additive_networks_and_rank_one_products() -> None:
    torch.manual_seed(0)
    L = 12
    I, J = patch_mask(L, slice(0, 3)), patch_mask(L, slice(6, 9))
    x = torch.randn(16, 1, L, dtype=torch.float64)
    w = torch.randn(L, dtype=torch.float64)
    linear = lambda z: (z[:, 0] * w).sum(-1) + torch.sin(z[:, 0, 6:9]).sum(-1)  # noqa: E731  additive in patches
    assert abs(float(input_gradient_change(linear, x, I, J)) - 1.0) < 1e-12
    u, v = torch.randn(3, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    rank_one = lambda z: (z[:, 0, 0:3] @ u) * (z[:, 0, 6:9] @ v)  # noqa: E731
    assert abs(float(input_gradient_change(rank_one, x, I, J)) - 1.0) < 1e-12
    U, V = torch.randn(3, 3, dtype=torch.float64), torch.randn(3, 3, dtype=torch.float64)
    rank_three = lambda z: ((z[:, 0, 0:3] @ U) * (z[:, 0, 6:9] @ V)).sum(-1)  # noqa: E731
    assert float(input_gradient_change(rank_three, x, I, J)) < 0.9


def test_igc_differentiates_through_autograd_and_per_sample_masks() -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 10, 1))
    x = torch.randn(8, 1, 10)
    I, J = patch_mask(10, slice(0, 3)), patch_mask(10, slice(6, 9))
    f = lambda z: net(z).squeeze(-1)  # noqa: E731
    r = input_gradient_change(f, x, I, J)
    r.backward()
    assert 0 <= float(r.detach()) <= 1 + 1e-6
    assert net[0].weight.grad is not None and torch.isfinite(net[0].weight.grad).all()
    # per-sample masks that all equal the shared ones give the same value
    r2 = input_gradient_change(f, x, I.expand(8, 1, 10), J.expand(8, 1, 10))
    assert torch.allclose(r.detach(), r2.detach())
    with pytest.raises(ValueError, match="at least 2"):
        input_gradient_change(f, x[:1], I, J)
    with pytest.raises(ValueError, match="no position"):
        patch_mask(10, slice(12, 14))


def _tiny_classifier(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 1))


def test_train_to_fit_stops_after_patience_and_freezes_finished_runs() -> None:
    from lnn.locality import train_to_fit

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 64, 1, 4, generator=gen)
    y = (x[:, :, 0, 0] > 0).float()  # linearly separable: a linear model fits it
    y[2] = (torch.rand(64, generator=gen) < 0.5).float()  # random labels: a linear model cannot fit them

    def loss(f, xb, yb):
        logits = f(xb).squeeze(-1)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, yb), logits

    models = [_tiny_classifier(s) for s in range(3)]
    epochs, history, trained = train_to_fit(models, loss, [x, y], lr=0.5, momentum=0.0, batch_size=16, patience=3,
                                            max_epochs=60, generator=torch.Generator().manual_seed(1))
    assert epochs[:2].max() < 60 and epochs[2] == 60  # the separable runs stop, the random-label run never fits
    for r in range(2):  # stopped exactly patience + 1 epochs into a run of perfect epochs
        e = int(epochs[r])
        assert (history[e - 4 : e, r] == 1).all() and (e == 4 or history[e - 5, r] < 1)
    assert history.shape == (60, 3)
    # a finished run's parameters stay where they were when it stopped: retraining with a larger cap changes nothing
    epochs2, _, trained2 = train_to_fit(models, loss, [x, y], lr=0.5, momentum=0.0, batch_size=16, patience=3,
                                        max_epochs=80, generator=torch.Generator().manual_seed(1))
    assert torch.equal(epochs2[:2], epochs[:2])
    for a, b in zip(trained[0].parameters(), trained2[0].parameters()):
        assert torch.equal(a, b)
    # Adam runs too
    ep_adam, _, _ = train_to_fit(models[:2], loss, [x[:2], y[:2]], lr=0.05, optimizer="adam", batch_size=16,
                                 patience=2, max_epochs=60, generator=torch.Generator().manual_seed(1))
    assert ep_adam.max() < 60
    # stopped runs are dropped from the computation: the run that never fits ends exactly as when trained alone
    # (Adam, so the per-run step counts matter too)
    together = train_to_fit(models, loss, [x, y], lr=0.05, optimizer="adam", batch_size=16, patience=2,
                            max_epochs=60, generator=torch.Generator().manual_seed(1))
    alone = train_to_fit(models[2:], loss, [x[2:], y[2:]], lr=0.05, optimizer="adam", batch_size=16, patience=2,
                         max_epochs=60, generator=torch.Generator().manual_seed(1))
    assert together[0][:2].max() < 60 and together[0][2] == 60
    for a, b in zip(together[2][2].parameters(), alone[2][0].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # a stopped run keeps reporting the accuracy it stopped with
    e = int(together[0][0])
    assert (together[1][e:, 0] == 1).all()


def test_train_to_fit_rejects_bad_input() -> None:
    from lnn.locality import train_to_fit

    x, y = torch.zeros(2, 8, 1, 4), torch.zeros(2, 8)
    models = [_tiny_classifier(0), _tiny_classifier(1)]
    loss = lambda f, xb, yb: (f(xb).sum(), f(xb).squeeze(-1))  # noqa: E731
    with pytest.raises(ValueError, match="leading run dimension"):
        train_to_fit(models, loss, [x[0], y[0]])
    with pytest.raises(ValueError, match="batch_size"):
        train_to_fit(models, loss, [x, y], batch_size=9)
    with pytest.raises(ValueError, match="optimizer"):
        train_to_fit(models, loss, [x, y], batch_size=4, optimizer="rmsprop")
