"""Tests of lnn.tutorial_cnn: the TensorFlow tutorial CNN at digits scale and its overparameterized variant."""

import math

import pytest
import torch

from lnn.tutorial_cnn import (
    accuracy,
    dense_weights,
    l2_penalty,
    train_tutorial_cnn,
    tutorial_cnn_forward,
    tutorial_cnn_init,
)


def test_init_keeps_fan_in_sigma_squared_of_the_mnist_tutorial() -> None:
    p = tutorial_cnn_init(0)
    assert p["fc1_w"].shape == (256, 512) and p["fc2_w"].shape == (512, 10)
    assert p["conv1_w"].shape == (32, 1, 5, 5) and p["conv2_w"].shape == (64, 32, 5, 5)
    # truncated at two standard deviations: 0.35 for the first dense layer (256 * 0.35^2 = 3136 * 0.1^2), 0.1 elsewhere
    assert 0.69 < float(p["fc1_w"].abs().max()) <= 0.7 + 1e-6
    assert 0.19 < float(p["conv2_w"].abs().max()) <= 0.2 + 1e-6
    assert torch.equal(p["conv1_b"], torch.zeros(32)) and torch.allclose(p["fc1_b"], torch.full((512,), 0.1))
    q = tutorial_cnn_init(0, widths=(8, 16, 128))
    # quarter widths: every std doubles except the first convolution's and the 10x10 factor's
    assert 1.39 < float(q["fc1_w"].abs().max()) <= 1.4 + 1e-6
    assert 0.39 < float(q["conv2_w"].abs().max()) <= 0.4 + 1e-6
    o = tutorial_cnn_init(0, overparameterized=True)
    assert o["fc1_w2"].shape == (512, 512) and o["fc2_w2"].shape == (10, 10)
    for k in p:  # the first factors are the original network's weights
        assert torch.equal(p[k], o[k])
    with pytest.raises(ValueError, match="multiple of 4"):
        tutorial_cnn_init(0, side=6)


def test_forward_applies_the_factors_in_sequence_and_the_penalties() -> None:
    p = tutorial_cnn_init(1, overparameterized=True, widths=(4, 8, 16))
    x = torch.rand(5, 8, 8) - 0.5
    W1, W2 = dense_weights(p)
    assert torch.allclose(W1, p["fc1_w"] @ p["fc1_w2"])
    collapsed = {k: v for k, v in p.items() if not k.endswith("w2")}
    collapsed["fc1_w"], collapsed["fc2_w"] = W1, W2
    assert torch.allclose(tutorial_cnn_forward(p, x), tutorial_cnn_forward(collapsed, x), atol=1e-5)
    bias = 0.5 * (p["fc1_b"].square().sum() + p["fc2_b"].square().sum())
    assert torch.allclose(l2_penalty(p, "product"), 0.5 * (W1.square().sum() + W2.square().sum()) + bias)
    factors = sum(p[k].square().sum() for k in ("fc1_w", "fc1_w2", "fc2_w", "fc2_w2"))
    assert torch.allclose(l2_penalty(p, "factors"), 0.5 * factors + bias)
    assert float(l2_penalty(p, "none")) == 0.0
    with pytest.raises(ValueError, match="penalty"):
        l2_penalty(p, "weights")
    # dropout mask of zeros leaves only the biases after the first dense layer
    out = tutorial_cnn_forward(p, x, torch.zeros(5, 16))
    assert torch.allclose(out, (p["fc2_b"]).expand(5, 10))


def test_training_records_ce_and_l2_and_is_deterministic() -> None:
    gen = torch.Generator().manual_seed(0)
    X, y = torch.rand(40, 8, 8, generator=gen) - 0.5, torch.randint(10, (40,), generator=gen)
    runs = [tutorial_cnn_init(s, overparameterized=True, widths=(4, 8, 16)) for s in range(3)]
    kwargs = {"penalty": ["product", "factors", "none"], "steps": 6, "batch_size": 8}
    ce, l2, trained = train_tutorial_cnn(runs, X, y, generator=torch.Generator().manual_seed(2), **kwargs)
    assert ce.shape == l2.shape == (6, 3) and len(trained) == 3
    assert torch.allclose(l2[0, 0], 5e-4 * l2_penalty(runs[0], "product"))
    assert torch.allclose(l2[0, 1], 5e-4 * l2_penalty(runs[1], "factors"))
    assert (l2[:, 2] == 0).all() and torch.isfinite(ce).all()
    ce2, _, _ = train_tutorial_cnn(runs, X, y, generator=torch.Generator().manual_seed(2), **kwargs)
    assert torch.equal(ce, ce2)
    with pytest.raises(ValueError, match="penalty"):
        train_tutorial_cnn(runs, X, y, penalty=["product"], steps=1, batch_size=8)
    with pytest.raises(ValueError, match="same parameter names"):
        train_tutorial_cnn([runs[0], tutorial_cnn_init(0, widths=(4, 8, 16))], X, y, steps=1, batch_size=8)


def test_training_lowers_the_loss_and_decays_the_step_per_epoch() -> None:
    gen = torch.Generator().manual_seed(0)
    X = torch.rand(64, 8, 8, generator=gen) - 0.5
    y = (X.mean((1, 2)) > X.mean()).long()
    run = [tutorial_cnn_init(0, widths=(4, 8, 16), classes=2)]
    ce, _, _ = train_tutorial_cnn(run, X, y, penalty="none", steps=80, batch_size=16, keep=1.0, lr=0.05,
                                  generator=torch.Generator().manual_seed(1))
    assert ce[-8:].mean() < 0.9 * math.log(2)


def test_accuracy_counts_non_finite_predictions_as_wrong() -> None:
    y = torch.tensor([0, 1, 1])
    assert accuracy(lambda x: torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]), None, y) == 1.0
    assert accuracy(lambda x: torch.tensor([[1.0, 0.0], [float("nan"), 1.0], [0.0, 1.0]]), None, y) == pytest.approx(2 / 3)
    yb = torch.tensor([0.0, 1.0, 1.0])
    assert accuracy(lambda x: torch.tensor([-1.0, 2.0, float("nan")]), None, yb) == pytest.approx(2 / 3)
    assert accuracy(lambda x: torch.tensor([[-1.0], [2.0], [3.0]]), None, yb) == 1.0
