"""The one training loop for small networks (lnn.training): batched runs equal sequential ones, the options do what
their formulas say, divergence is reported per run, and train_binary is torch.optim.SGD with the linear schedule."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lnn.ntk import mlp, train_binary
from lnn.training import minibatches, train_ensemble

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().abs().max() / b.detach().abs().max())


def data(n: int = 60):
    X = torch.randn(n, 5, dtype=F64, generator=gen(100))
    y = (X[:, 0] - X[:, 2] > 0).to(F64)
    return X, y


def bce(f, X, y):
    return F.binary_cross_entropy_with_logits(f(X).reshape(-1), y)


def test_train_binary_is_sgd_with_momentum_and_linear_decay():
    """float64, 40 steps: the two routes do the same arithmetic in a different order; measured ~1e-16."""
    X, y = data()
    net = mlp([5, 12, 1], "tanh", generator=gen(101))
    ref = mlp([5, 12, 1], "tanh", generator=gen(101))
    steps, lr = 40, 0.2
    opt = torch.optim.SGD(ref.parameters(), lr=lr, momentum=0.9)
    ref_losses = []
    for s, idx in enumerate(minibatches(60, 16, steps, seed=3)):
        for group in opt.param_groups:
            group["lr"] = lr * (1 - s / steps)
        loss = bce(ref, X[idx], y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        ref_losses.append(loss.item())
    losses = train_binary(net, X, y, steps=steps, batch_size=16, lr=lr, momentum=0.9, seed=3)
    assert rel(losses, torch.tensor(ref_losses, dtype=F64)) < 1e-12
    for p, q in zip(net.parameters(), ref.parameters()):
        assert rel(p.detach(), q.detach()) < 1e-12


def test_batched_runs_equal_sequential_runs():
    X, y = data()
    models = [mlp([5, 12, 1], generator=gen(110 + r)) for r in range(3)]
    lrs = torch.tensor([0.05, 0.1, 0.3], dtype=F64)
    kw = dict(steps=30, momentum=0.5, schedule="linear", batch_size=25, seed=7)
    batched = train_ensemble(models, bce, [X, y], lr=lrs, **kw)
    for r in range(3):
        one = train_ensemble([models[r]], bce, [X, y], lr=lrs[r].item(), **kw)
        assert rel(batched.losses[:, r], one.losses[:, 0]) < 1e-12  # float64, measured ~1e-16
        for p, q in zip(batched.models[r].parameters(), one.models[0].parameters()):
            assert rel(p, q) < 1e-12
    assert not batched.diverged.any() and (batched.divergence_step == -1).all()


def test_weight_decay_is_the_l2_penalty_and_schedules_apply():
    X, y = data()
    models = [mlp([5, 8, 1], generator=gen(120))]
    lam = 0.3
    wd = train_ensemble(models, bce, [X, y], lr=0.1, steps=20, weight_decay=lam)
    pen = train_ensemble(
        models, bce, [X, y], lr=0.1, steps=20, penalty=lambda p: lam / 2 * sum((v**2).sum() for v in p.values())
    )
    plain = train_ensemble(models, bce, [X, y], lr=0.1, steps=20)
    for p, q, r in zip(wd.models[0].parameters(), pen.models[0].parameters(), plain.models[0].parameters()):
        assert rel(p, q) < 1e-12
    assert rel(wd.losses[-1] - plain.losses[-1], plain.losses[-1]) > 1e-3  # the decay changed the run
    # a schedule that is zero after the first step equals one step of gradient descent
    first = train_ensemble(models, bce, [X, y], lr=0.1, steps=5, schedule=lambda s, S: float(s == 0))
    one = train_ensemble(models, bce, [X, y], lr=0.1, steps=1)
    for p, q in zip(first.models[0].parameters(), one.models[0].parameters()):
        assert torch.equal(p, q)


def test_divergence_is_flagged_per_run():
    X, y = data()
    models = [mlp([5, 8, 1], generator=gen(130)) for _ in range(3)]
    sq = lambda f, a, b: ((f(a).reshape(-1) - b) ** 2).mean()  # noqa: E731
    res = train_ensemble(models, sq, [X * 30, y], lr=torch.tensor([1e-4, 50.0, 1e-3], dtype=F64), steps=60)
    losses, trained = res  # unpacks like ensemble_train's pair
    assert res.diverged.tolist() == [False, True, False]
    step = int(res.divergence_step[1])
    assert 0 < step < 60 and torch.isfinite(res.step_losses[:step, 1]).all()
    assert not torch.isfinite(res.step_losses[step, 1])
    assert torch.isfinite(losses[:, [0, 2]]).all()
    assert "1 diverged" in repr(res)


def test_one_sampler_and_bad_options():
    batches = minibatches(10, 4, 6, generator=gen(3))
    assert [len(b) for b in batches] == [4, 4, 2, 4, 4, 2]
    assert sorted(torch.cat(batches[3:]).tolist()) == list(range(10))
    X, y = data()
    models = [mlp([5, 8, 1], generator=gen(140))]
    with pytest.raises(ValueError, match="schedule"):
        train_ensemble(models, bce, [X, y], lr=0.1, steps=2, schedule="cosine")
    with pytest.raises(ValueError, match="weight_decay"):
        train_ensemble(models, bce, [X, y], lr=0.1, steps=2, weight_decay=-1.0)
    with pytest.raises(ValueError, match="checkpoints need a callback"):
        train_ensemble(models, bce, [X, y], lr=0.1, steps=2, checkpoints=[1])
    with pytest.raises(ValueError, match="checkpoints must lie"):
        train_ensemble(models, bce, [X, y], lr=0.1, steps=2, checkpoints=[3], callback=lambda s, p: None)
    with pytest.raises(ValueError, match="generator or a seed"):
        train_ensemble(models, bce, [X, y], lr=0.1, steps=2, batch_size=4, seed=1, generator=gen(1))
    with pytest.raises(ValueError, match="no parameters"):
        train_ensemble([nn.ReLU()], bce, [X, y], lr=0.1, steps=2)
