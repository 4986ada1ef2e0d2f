"""Tests of lnn.anisotropy (neural anisotropy directions, chapter *Linearized networks*): the mixed derivative
against closed forms (a linear model, a one-hidden-layer network) and against finite differences for a CNN, the
directions' invariances, and the NAD data set's construction."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lnn.anisotropy import mixed_derivative, nad_task, neural_anisotropy_directions

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def one_hidden(d: int, m: int, seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(d, m, dtype=F64), nn.GELU(), nn.Linear(m, 1, dtype=F64))
    with torch.no_grad():
        net[0].bias.normal_()  # nonzero biases, so that the sigma'' term is exercised
    return net


def test_linear_model_has_identity_mixed_derivative():
    lin = nn.Linear(5, 1, dtype=F64)
    M = mixed_derivative(lin, 5)
    # f = w^T x + b: grad_x f = w, so d/dw = I and d/db = 0
    assert M.shape == (5, 6)
    assert torch.equal(M[:, :5], torch.eye(5, dtype=F64)) and torch.equal(M[:, 5], torch.zeros(5, dtype=F64))


def test_one_hidden_layer_closed_form():
    # f(x) = v^T s(W x + b) + c at x = 0: grad_x f = W^T (v * s'(b)), and
    # M M^T = W^T diag(s'(b)^2) W + |v * s'(b)|^2 I + W^T diag(v^2 s''(b)^2) W.
    d, m = 6, 9
    net = one_hidden(d, m, 0)
    W, b, v = net[0].weight.detach(), net[0].bias.detach(), net[2].weight.detach()[0]
    z = b.clone().requires_grad_(True)
    (s1,) = torch.autograd.grad(nn.functional.gelu(z).sum(), z, create_graph=True)
    (s2,) = torch.autograd.grad(s1.sum(), z)
    s1 = s1.detach()
    expected = W.T @ torch.diag(s1**2) @ W + (v * s1).pow(2).sum() * torch.eye(d, dtype=F64)
    expected = expected + W.T @ torch.diag(v**2 * s2**2) @ W
    M = mixed_derivative(net, d)
    assert M.shape == (d, sum(p.numel() for p in net.parameters()))
    assert ((M @ M.T - expected).abs().max() / expected.abs().max()).item() < 1e-13
    lam, V = neural_anisotropy_directions(net, d)
    assert torch.allclose(lam, torch.linalg.eigvalsh(expected).flip(0), rtol=1e-12, atol=0)
    assert torch.allclose(V.T @ V, torch.eye(d, dtype=F64), atol=1e-12)
    assert bool((lam[:-1] >= lam[1:]).all())
    assert bool((V[V.abs().argmax(0), torch.arange(d)] > 0).all())  # sign convention


def test_cnn_mixed_derivative_matches_finite_differences():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Unflatten(1, (1, 4, 4)), nn.Conv2d(1, 2, 3, padding=1, dtype=F64), nn.GELU(),
                        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(8, 1, dtype=F64))
    x0 = torch.randn(16, dtype=F64, generator=gen(2))
    M = mixed_derivative(net, x0)
    # d/dtheta_p of grad_x f, by central differences of the input gradient in each parameter
    params = list(net.parameters())
    h, cols = 1e-5, []

    def input_gradient():
        x = x0.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(net(x[None]).sum(), x)
        return g

    with torch.no_grad():
        pass
    for p in params:
        flat = p.data.view(-1)
        for i in range(flat.numel()):
            old = flat[i].item()
            flat[i] = old + h
            gp = input_gradient()
            flat[i] = old - h
            gm = input_gradient()
            flat[i] = old
            cols.append((gp - gm) / (2 * h))
    fd = torch.stack(cols, 1)
    # central differences in float64: error O(h^2) + rounding 1e-16 / h ~ 1e-11
    assert ((M - fd).abs().max() / fd.abs().max()).item() < 1e-8


def test_directions_of_gaussian_mlp_rotate_with_the_input():
    # rotating the first layer's weights, W1 -> W1 R^T, rotates every NAD by R (the MLP's NADs carry no
    # input structure of their own: with i.i.d. Gaussian weights their distribution is rotation invariant)
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(6, 20, dtype=F64), nn.GELU(), nn.Linear(20, 20, dtype=F64), nn.GELU(),
                        nn.Linear(20, 1, dtype=F64))
    lam, V = neural_anisotropy_directions(net, 6)
    R, _ = torch.linalg.qr(torch.randn(6, 6, dtype=F64, generator=gen(4)))
    with torch.no_grad():
        net[0].weight.copy_(net[0].weight @ R.T)
    lam_r, V_r = neural_anisotropy_directions(net, 6)
    assert torch.allclose(lam_r, lam, rtol=1e-10, atol=0)
    overlap = (V_r.T @ (R @ V)).abs()  # |<v_k', R v_k>| = 1 for distinct eigenvalues
    assert torch.allclose(overlap.diagonal(), torch.ones(6, dtype=F64), atol=1e-8)


def test_nad_task_construction():
    v = torch.randn(10, dtype=F64, generator=gen(5))
    x, labels = nad_task(v, 2000, epsilon=1.0, sigma=1.0, generator=gen(6))
    u = v / v.norm()
    y = 2 * labels - 1
    assert x.shape == (2000, 10) and set(labels.tolist()) <= {0.0, 1.0}
    assert torch.allclose(x @ u, 0.5 * y, atol=1e-14)  # exact margin eps / 2 along v
    noise = x - (x @ u)[:, None] * u[None, :]
    # noise variance per orthogonal direction is sigma^2 = 1 (D - 1 = 9 directions, 2000 samples: +-5%)
    assert abs(noise.pow(2).sum(1).mean().item() / 9 - 1) < 0.05
    assert 0.45 < labels.mean().item() < 0.55


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: nad_task(torch.zeros(4, dtype=F64), 5), "nonzero"),
        (lambda: nad_task(torch.ones(4, dtype=F64), 0), "positive integer"),
        (lambda: nad_task(torch.ones(4, dtype=F64), 5, sigma=-1.0), "sigma"),
        (lambda: nad_task(torch.ones(2, 2, dtype=F64), 5), "vector"),
        (lambda: mixed_derivative(nn.Linear(3, 1, dtype=F64), torch.zeros(3)), "dtype"),
        (lambda: mixed_derivative(nn.Linear(3, 2, dtype=F64), 3), "scalar-output"),
        (lambda: mixed_derivative(nn.Linear(3, 1, dtype=F64), 0), "input shape"),
    ],
)
def test_bad_input_is_named(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_nad_task_rejects_numpy():
    import numpy as np

    with pytest.raises(TypeError, match="torch.Tensor"):
        nad_task(np.ones(4), 5)
    assert math.isfinite(1.0)
