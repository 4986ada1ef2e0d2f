"""Tests for lnn.layers: overparameterized dense layers and the ensemble trainer (chapter Applications)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lnn
from lnn.layers import OverparameterizedLinear, collapse, count_parameters, ensemble_train, overparameterize


def _mlp(seed: int, dtype=torch.float32) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).to(dtype)


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("init", ["balanced", "identity"])
def test_from_linear_computes_the_same_function(depth: int, init: str) -> None:
    torch.manual_seed(0)
    dense = nn.Linear(7, 4).double()
    deep = OverparameterizedLinear.from_linear(dense, depth=depth, widths=4 if init == "identity" else None, init=init)
    x = torch.randn(9, 7, dtype=torch.float64)
    assert torch.allclose(deep(x), dense(x), atol=1e-12)
    assert len(deep.factors) == depth
    assert lnn.dims_of(list(deep.factors)) == [7] + [4] * (depth - 1) + [4]


def test_balanced_factorization_is_balanced() -> None:
    torch.manual_seed(1)
    dense = nn.Linear(6, 8).double()
    deep = OverparameterizedLinear.from_linear(dense, depth=3)
    assert float(lnn.balancedness([p.detach() for p in deep.factors])) < 1e-12


def test_fresh_layer_and_to_linear() -> None:
    layer = OverparameterizedLinear(5, 3, depth=2, dtype=torch.float64)
    x = torch.randn(4, 5, dtype=torch.float64)
    assert torch.allclose(layer.to_linear()(x), layer(x), atol=1e-12)
    assert "dims=[5, 3, 3]" in repr(layer)


def test_from_linear_does_not_consume_the_global_rng() -> None:
    dense = nn.Linear(4, 3)
    torch.manual_seed(5)
    OverparameterizedLinear.from_linear(dense, depth=2).to_linear()
    after = torch.rand(1)
    torch.manual_seed(5)
    assert torch.equal(after, torch.rand(1))


def test_overparameterize_and_collapse_roundtrip() -> None:
    model = _mlp(0, torch.float64)
    deep = overparameterize(model, depth=2)
    assert isinstance(model[0], nn.Linear), "the original model must be untouched"
    assert isinstance(deep[0], OverparameterizedLinear) and isinstance(deep[2], OverparameterizedLinear)
    x = torch.randn(10, 6, dtype=torch.float64)
    assert torch.allclose(deep(x), model(x), atol=1e-12)
    # perturb the factors: the collapsed network still computes the same function as the deep one
    with torch.no_grad():
        for p in deep.parameters():
            p.add_(0.1 * torch.randn_like(p))
    flat = collapse(deep)
    assert all(not isinstance(m, OverparameterizedLinear) for m in flat.modules())
    assert torch.allclose(flat(x), deep(x), atol=1e-12)
    assert count_parameters(flat) == count_parameters(model)
    assert count_parameters(deep) == (6 * 5 + 5 * 5 + 5) + (5 * 3 + 3 * 3 + 3)


def test_bad_arguments() -> None:
    dense = nn.Linear(6, 4)
    with pytest.raises(ValueError, match="hidden widths"):
        OverparameterizedLinear.from_linear(dense, depth=2, widths=2)
    with pytest.raises(ValueError, match="identity"):
        OverparameterizedLinear.from_linear(dense, depth=2, widths=3, init="identity")
    with pytest.raises(ValueError, match="init"):
        OverparameterizedLinear.from_linear(dense, depth=2, init="orthogonal")
    with pytest.raises(ValueError, match="depth"):
        OverparameterizedLinear.from_linear(dense, depth=0)
    with pytest.raises(ValueError, match="torch.nn.Linear"):
        OverparameterizedLinear.from_linear(nn.Conv1d(1, 1, 3))
    with pytest.raises(ValueError, match="no torch.nn.Linear"):
        overparameterize(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="widths"):
        OverparameterizedLinear(6, 4, depth=3, widths=[4])


def test_first_step_follows_the_end_to_end_rule() -> None:
    """One GD step on balanced factors moves W by -lr P_W(G) + O(lr^2) (Arora, Cohen, Hazan 2018)."""
    torch.manual_seed(2)
    dense = nn.Linear(5, 4).double()
    x, y = torch.randn(20, 5, dtype=torch.float64), torch.randn(20, 4, dtype=torch.float64)
    G = torch.autograd.grad(F.mse_loss(dense(x), y), dense.weight)[0]
    devs = []
    for lr in (1e-2, 5e-3):
        deep = OverparameterizedLinear.from_linear(dense, depth=3)
        grads = torch.autograd.grad(F.mse_loss(deep(x), y), list(deep.factors))
        with torch.no_grad():
            for p, g in zip(deep.factors, grads):
                p.sub_(lr * g)
        step = deep.weight.detach() - dense.weight.detach()
        devs.append(torch.linalg.matrix_norm(step + lr * lnn.preconditioned_gradient(dense.weight.detach(), G, 3)))
    assert 3.8 < float(devs[0] / devs[1]) < 4.2


def _ensemble_data():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(40, 6, generator=g)
    y = torch.randint(3, (40,), generator=g)
    return X, y


def test_ensemble_train_matches_a_plain_loop() -> None:
    X, y = _ensemble_data()
    models = [_mlp(s) for s in range(3)]
    lrs = torch.tensor([0.1, 0.2, 0.05])
    losses, trained = ensemble_train(
        models, lambda f, a, b: F.cross_entropy(f(a), b), [X, y], lr=lrs, steps=5, momentum=0.5
    )
    assert losses.shape == (6, 3)
    for r, m in enumerate(models):
        ref = _mlp(r)
        opt = torch.optim.SGD(ref.parameters(), lr=float(lrs[r]), momentum=0.5)
        for _ in range(5):
            opt.zero_grad()
            F.cross_entropy(ref(X), y).backward()
            opt.step()
        for p, q in zip(ref.parameters(), trained[r].parameters()):
            assert torch.allclose(p, q, atol=1e-5)
        assert torch.allclose(losses[-1, r], F.cross_entropy(ref(X), y).detach(), atol=1e-5)
    # the input models are untouched
    assert torch.equal(models[0][0].weight, _mlp(0)[0].weight)


def test_ensemble_train_adam_matches_torch_adam() -> None:
    X, y = _ensemble_data()
    losses, trained = ensemble_train(
        [_mlp(0)], lambda f, a, b: F.cross_entropy(f(a), b), [X, y], lr=0.01, steps=4, optimizer="adam"
    )
    ref = _mlp(0)
    opt = torch.optim.Adam(ref.parameters(), lr=0.01)
    for _ in range(4):
        opt.zero_grad()
        F.cross_entropy(ref(X), y).backward()
        opt.step()
    for p, q in zip(ref.parameters(), trained[0].parameters()):
        assert torch.allclose(p, q, atol=1e-5)


def test_ensemble_train_minibatches_and_per_run_data() -> None:
    X, y = _ensemble_data()
    Xr = torch.stack([X, 2 * X])
    yr = torch.stack([y, y])
    losses, trained = ensemble_train(
        [_mlp(0), _mlp(1)],
        lambda f, a, b: F.cross_entropy(f(a), b),
        [Xr, yr],
        lr=0.1,
        steps=7,
        batch_size=16,
        data_per_run=True,
        generator=torch.Generator().manual_seed(0),
        record_every=3,
    )
    assert losses.shape == (len(range(0, 7, 3)) + 1, 2)
    assert torch.isfinite(losses).all()
    assert torch.allclose(losses[-1, 1], F.cross_entropy(trained[1](2 * X), y).detach(), atol=1e-5)


def test_ensemble_train_divergent_run_stays_isolated() -> None:
    X, y = _ensemble_data()
    losses, _ = ensemble_train(
        [_mlp(0), _mlp(0)], lambda f, a, b: ((f(a) - 1.0) ** 2).mean(), [X * 100, y], lr=torch.tensor([1e3, 1e-6]), steps=20
    )
    assert not torch.isfinite(losses[-1, 0])
    assert torch.isfinite(losses[:, 1]).all()


def test_ensemble_train_bad_arguments() -> None:
    X, y = _ensemble_data()
    loss = lambda f, a, b: F.cross_entropy(f(a), b)  # noqa: E731
    with pytest.raises(ValueError, match="same parameter"):
        ensemble_train([_mlp(0), nn.Linear(6, 3)], loss, [X, y], lr=0.1, steps=1)
    with pytest.raises(ValueError, match="lr"):
        ensemble_train([_mlp(0), _mlp(1)], loss, [X, y], lr=torch.tensor([0.1, 0.1, 0.1]), steps=1)
    with pytest.raises(ValueError, match="positive"):
        ensemble_train([_mlp(0)], loss, [X, y], lr=-0.1, steps=1)
    with pytest.raises(ValueError, match="optimizer"):
        ensemble_train([_mlp(0)], loss, [X, y], lr=0.1, steps=1, optimizer="rmsprop")
    with pytest.raises(ValueError, match="batch_size"):
        ensemble_train([_mlp(0)], loss, [X, y], lr=0.1, steps=1, batch_size=1000)
    with pytest.raises(ValueError, match="at least one"):
        ensemble_train([], loss, [X, y], lr=0.1, steps=1)
