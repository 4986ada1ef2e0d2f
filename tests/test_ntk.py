"""Tests of lnn.ntk (chapter *Linearized networks*): the empirical NTK against an independent Jacobian-contraction
baseline written here the PyTorch tutorial's way, the linearized module against the explicit Jacobian, the
closed-form kernel regression against actual gradient descent, and the function-space training against training
the linearized module itself."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from lnn.ntk import (
    lenet,
    LinearizedModel,
    eigenfunction_labels,
    empirical_ntk,
    energy_concentration,
    is_dense_network,
    kernel_alignment,
    kernel_eigh,
    kernel_gd_residuals,
    kernel_regression_gd,
    kernel_train_binary,
    linearize,
    minibatches,
    mlp,
    parameter_jacobian,
    rotation_ratios,
    train_binary,
)

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def jc_baseline(net: nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """Jacobian contraction as in the PyTorch NTK tutorial: vmap(jacrev) per-example Jacobians, then einsum."""
    params = {k: v.detach() for k, v in net.named_parameters()}

    def f_single(p, x):
        return functional_call(net, p, (x.unsqueeze(0),)).squeeze(0)

    jac1 = vmap(jacrev(f_single), (None, 0))(params, x1)
    jac2 = vmap(jacrev(f_single), (None, 0))(params, x2)
    jac1 = [j.flatten(2) for j in jac1.values()]
    jac2 = [j.flatten(2) for j in jac2.values()]
    return torch.stack([torch.einsum("Naf,Mbf->NMab", a, b) for a, b in zip(jac1, jac2)]).sum(0)[:, :, 0, 0]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


class SkipNet(nn.Module):
    """Not an nn.Sequential: the empirical NTK must fall back to torch.func."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 6, dtype=F64)
        self.b = nn.Linear(6, 1, dtype=F64)
        self.skip = nn.Linear(4, 1, dtype=F64)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x))) + self.skip(x)


# ---------------------------------------------------------------------------------------------------------------
# the empirical NTK
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu", "softplus"])
def test_layerwise_ntk_matches_jacobian_contraction(activation):
    net = mlp([64, 100, 100, 1], activation, generator=gen(0))
    x1 = torch.randn(120, 64, dtype=F64, generator=gen(1))
    x2 = torch.randn(70, 64, dtype=F64, generator=gen(2))
    assert rel(empirical_ntk(net, x1), jc_baseline(net, x1, x1)) < 1e-12
    K12 = empirical_ntk(net, x1, x2)
    assert K12.shape == (120, 70)
    assert rel(K12, jc_baseline(net, x1, x2)) < 1e-12


def test_all_methods_agree_and_chunking_does_not_matter():
    net = mlp([10, 20, 15, 1], "tanh", generator=gen(3))
    x1 = torch.randn(33, 10, dtype=F64, generator=gen(4))
    x2 = torch.randn(21, 10, dtype=F64, generator=gen(5))
    ref = jc_baseline(net, x1, x2)
    for method in ["auto", "structured", "jacobian", "ntk_vp"]:
        for chunk in [None, 10]:
            assert rel(empirical_ntk(net, x1, x2, method=method, chunk_size=chunk), ref) < 1e-12, (method, chunk)
    assert rel(empirical_ntk(net, x1, x2, chunk_size=1), ref) < 1e-12


def test_symmetric_gram_is_psd():
    net = mlp([8, 30, 1], "relu", generator=gen(6))
    x = torch.randn(40, 8, dtype=F64, generator=gen(7))
    K = empirical_ntk(net, x)
    assert torch.equal(K, K.T) or rel(K, K.T) < 1e-14
    assert torch.linalg.eigvalsh(K).min() > -1e-10 * K.abs().max()


def test_dense_variants_nested_flatten_no_bias():
    net = nn.Sequential(
        nn.Flatten(),
        nn.Sequential(nn.Linear(12, 9, dtype=F64), nn.GELU()),
        nn.Linear(9, 7, bias=False, dtype=F64),
        nn.Softplus(),
        nn.Tanh(),  # two activations in a row compose elementwise
        nn.Linear(7, 1, dtype=F64),
    )
    assert is_dense_network(net)
    x = torch.randn(15, 3, 4, dtype=F64, generator=gen(8))
    ref = jc_baseline(net, x, x)
    assert rel(empirical_ntk(net, x, method="structured"), ref) < 1e-12
    J = parameter_jacobian(net, x)
    assert J.shape == (15, sum(p.numel() for p in net.parameters()))
    assert rel(J @ J.T, ref) < 1e-12


def test_fallback_for_other_architectures():
    net = SkipNet()
    assert not is_dense_network(net)
    x = torch.randn(11, 4, dtype=F64, generator=gen(9))
    ref = jc_baseline(net, x, x)
    assert rel(empirical_ntk(net, x), ref) < 1e-12
    assert rel(empirical_ntk(net, x, method="ntk_vp"), ref) < 1e-12
    with pytest.raises(ValueError, match="structured"):
        empirical_ntk(net, x, method="structured")
    J = parameter_jacobian(net, x)
    assert rel(J @ J.T, ref) < 1e-12


def test_jacobian_contraction_with_small_memory_budget(monkeypatch):
    import lnn.ntk.kernels

    net = SkipNet()
    x1 = torch.randn(11, 4, dtype=F64, generator=gen(40))
    x2 = torch.randn(6, 4, dtype=F64, generator=gen(41))
    monkeypatch.setattr(lnn.ntk.kernels, "_MAX_BLOCK_ELEMENTS", 16)  # one input per block, Jacobians recomputed, not cached
    assert rel(empirical_ntk(net, x1, x2, method="jacobian"), jc_baseline(net, x1, x2)) < 1e-12
    assert rel(empirical_ntk(net, x1, method="jacobian"), jc_baseline(net, x1, x1)) < 1e-12


def test_shared_layer_is_not_treated_as_dense():
    layer = nn.Linear(5, 5, dtype=F64)
    net = nn.Sequential(layer, nn.Tanh(), layer, nn.Tanh(), nn.Linear(5, 1, dtype=F64))
    assert not is_dense_network(net)
    x = torch.randn(6, 5, dtype=F64, generator=gen(10))
    assert rel(empirical_ntk(net, x), jc_baseline(net, x, x)) < 1e-12


def test_float32_model_gives_float32_kernel():
    net = mlp([5, 7, 1], generator=gen(13), dtype=torch.float32)
    x = torch.randn(4, 5, generator=gen(14))
    K = empirical_ntk(net, x)
    assert K.dtype == torch.float32
    assert rel(K.double(), jc_baseline(copy.deepcopy(net).double(), x.double(), x.double())) < 1e-5


def test_empirical_ntk_rejects_bad_input():
    net = mlp([5, 7, 1], generator=gen(15))
    x = torch.randn(4, 5, dtype=F64)
    with pytest.raises(ValueError, match="input shape"):
        empirical_ntk(net, x, torch.randn(4, 6, dtype=F64))
    with pytest.raises(ValueError, match="dtype"):
        empirical_ntk(net, x.float())
    with pytest.raises(ValueError, match="batch dimension"):
        empirical_ntk(net, torch.randn(5, dtype=F64))
    with pytest.raises(ValueError, match="first linear layer"):
        empirical_ntk(net, torch.randn(4, 6, dtype=F64))
    with pytest.raises(ValueError, match="method"):
        empirical_ntk(net, x, method="magic")
    with pytest.raises(ValueError, match="chunk_size"):
        empirical_ntk(net, x, chunk_size=0)
    wide = nn.Sequential(nn.Linear(5, 3, dtype=F64))
    with pytest.raises(ValueError, match="scalar-output"):
        empirical_ntk(wide, x)
    with pytest.raises(ValueError, match="nn.Module"):
        empirical_ntk(lambda z: z, x)


def test_mlp_initialization():
    net = mlp([64, 100, 100, 1], generator=gen(16))
    assert sum(p.numel() for p in net.parameters()) == 16701
    assert all(p.dtype == F64 for p in net.parameters())
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert all(float(lin.bias.detach().abs().max()) == 0.0 for lin in linears)
    std = linears[1].weight.std().item()
    assert abs(std - 0.1) < 0.01  # N(0, 1/fan_in) with fan_in = 100
    assert torch.equal(mlp([3, 4, 1], generator=gen(1))[0].weight, mlp([3, 4, 1], generator=gen(1))[0].weight)
    with pytest.raises(ValueError):
        mlp([3])
    with pytest.raises(ValueError):
        mlp([3, 0, 1])
    with pytest.raises(ValueError, match="activation"):
        mlp([3, 4, 1], "swish-ish")


# ---------------------------------------------------------------------------------------------------------------
# the linearized model
# ---------------------------------------------------------------------------------------------------------------


def test_linearize_exactness():
    net = mlp([6, 12, 12, 1], "relu", generator=gen(17))
    original = copy.deepcopy(net.state_dict())
    x = torch.randn(25, 6, dtype=F64, generator=gen(18))
    lin = linearize(net)
    assert isinstance(lin, LinearizedModel)
    assert [p.shape for p in lin.parameters()] == [p.shape for p in net.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(lin.parameters(), net.parameters()))
    assert torch.equal(lin(x), net(x))
    J0 = parameter_jacobian(net, x)
    f0 = net(x).reshape(-1).detach()
    with torch.no_grad():
        for p in lin.parameters():
            p.add_(0.3 * torch.randn(p.shape, dtype=F64, generator=gen(19)))
    delta = torch.cat([(p - p0).flatten() for p, p0 in zip(lin.parameters(), lin.theta0())]).detach()
    out = lin(x).reshape(-1)
    assert rel(out.detach(), f0 + J0 @ delta) < 1e-12
    c = torch.randn(25, dtype=F64, generator=gen(20))
    grad = torch.cat([g.flatten() for g in torch.autograd.grad(out @ c, list(lin.parameters()))])
    assert rel(grad, J0.T @ c) < 1e-12
    # its NTK is K0 at any theta, and the original model was not touched
    assert rel(empirical_ntk(lin, x, method="jacobian"), J0 @ J0.T) < 1e-12
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in original.items())


def test_linearized_model_trains_with_any_optimizer_and_leaves_model_alone():
    net = mlp([4, 10, 1], "tanh", generator=gen(21))
    before = [p.detach().clone() for p in net.parameters()]
    lin = linearize(net)
    x = torch.randn(30, 4, dtype=F64, generator=gen(22))
    y = torch.sin(x[:, :1])
    opt = torch.optim.Adam(lin.parameters(), lr=1e-2)
    losses = []
    for _ in range(50):
        loss = ((lin(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(before, lin.theta0()))


def test_linearize_keeps_buffers_frozen_and_rejects_parameterless():
    net = nn.Sequential(nn.Linear(3, 5, dtype=F64), nn.BatchNorm1d(5, dtype=F64), nn.ReLU(), nn.Linear(5, 1, dtype=F64))
    net.eval()
    lin = linearize(net).eval()
    x = torch.randn(8, 3, dtype=F64, generator=gen(23))
    assert torch.allclose(lin(x), net(x), rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match="no parameters"):
        linearize(nn.ReLU())


# ---------------------------------------------------------------------------------------------------------------
# kernel diagnostics
# ---------------------------------------------------------------------------------------------------------------


def random_psd(n: int, seed: int) -> torch.Tensor:
    A = torch.randn(n, n + 3, dtype=F64, generator=gen(seed))
    return A @ A.T


def test_kernel_alignment_values():
    y = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0], dtype=F64)
    assert kernel_alignment(torch.outer(y, y), y).item() == pytest.approx(1.0, abs=1e-15)
    K = random_psd(5, 24)
    a = kernel_alignment(K, y).item()
    assert a == pytest.approx((y @ K @ y / (torch.linalg.matrix_norm(K) * 5)).item(), rel=1e-14)
    assert kernel_alignment(3.0 * K, y).item() == pytest.approx(a, rel=1e-14)
    # centering removes the constant direction: yy^T + c 11^T is perfectly aligned once centered
    K_const = torch.outer(y, y) + 7.0
    assert kernel_alignment(K_const, y).item() < 0.5
    yc = y - y.mean()
    assert kernel_alignment(K_const, y, centered=True).item() == pytest.approx(
        (torch.linalg.matrix_norm(torch.outer(yc, yc)) / (yc @ yc)).item(), rel=1e-12
    )
    assert kernel_alignment(torch.outer(yc, yc) + 7.0, y, centered=True).item() == pytest.approx(1.0, abs=1e-12)
    assert kernel_alignment(K, y[:, None]).item() == pytest.approx(a, rel=1e-14)  # (n, 1) targets are accepted
    with pytest.raises(ValueError, match="square"):
        kernel_alignment(torch.ones(3, 4, dtype=F64), torch.ones(3, dtype=F64))
    with pytest.raises(ValueError, match="shape"):
        kernel_alignment(K, torch.ones(4, dtype=F64))
    with pytest.raises(ValueError, match="undefined"):
        kernel_alignment(K, torch.ones(5, dtype=F64), centered=True)


def test_kernel_eigh_order_signs_and_energy():
    K = random_psd(12, 25)
    lam, U = kernel_eigh(K)
    assert bool((lam[:-1] >= lam[1:]).all())
    assert rel(U @ torch.diag(lam) @ U.T, K) < 1e-12
    cols = torch.arange(12)
    assert bool((U[U.abs().argmax(0), cols] > 0).all())
    y = torch.randn(12, dtype=F64, generator=gen(26))
    C = energy_concentration(U, y)
    assert C.shape == (12,) and bool((C[1:] >= C[:-1]).all()) and C[-1].item() == pytest.approx(1.0, abs=1e-13)
    assert energy_concentration(U[:, :3], U[:, 0])[0].item() == pytest.approx(1.0, abs=1e-13)
    with pytest.raises(ValueError):
        energy_concentration(U, torch.zeros(12, dtype=F64))
    with pytest.raises(ValueError):
        kernel_eigh(torch.ones(2, 3, dtype=F64))


def test_eigenfunction_labels():
    K = random_psd(20, 27) + 5.0  # positive entries: the top eigenvector is one-signed
    lam, U = kernel_eigh(K)
    assert bool((U[:, 0] > 0).all())
    labels = eigenfunction_labels(U, [1, 3])
    assert labels.shape == (2, 20)
    assert torch.equal(labels[1], (U[:, 3] > 0).to(F64))
    assert torch.equal(eigenfunction_labels(U, 2), (U[:, 2] > 0).to(F64))
    with pytest.raises(ValueError, match="index 0"):
        eigenfunction_labels(U, [0, 1])
    with pytest.raises(ValueError, match="eigen-index"):
        eigenfunction_labels(U, 20)
    one_signed = U.clone()
    one_signed[:, 1] = one_signed[:, 1].abs()
    with pytest.raises(ValueError, match="one-signed"):
        eigenfunction_labels(one_signed, 1)


def test_rotation_ratios():
    K0 = random_psd(15, 28)
    lam, U = kernel_eigh(K0)
    assert torch.allclose(rotation_ratios(lam, U, 4.0 * K0), torch.ones(15, dtype=F64), atol=1e-12)
    K_T = K0 + 10 * torch.outer(U[:, 3], U[:, 3])
    r = rotation_ratios(lam, U[:, :8], K_T)
    assert r.shape == (8,) and int(r.argmax()) == 3
    with pytest.raises(ValueError, match="shapes"):
        rotation_ratios(lam, U, K0[:5, :5])


# ---------------------------------------------------------------------------------------------------------------
# closed-form kernel regression and function-space training
# ---------------------------------------------------------------------------------------------------------------


def test_kernel_gd_residuals_match_iteration():
    K = random_psd(10, 29)
    r0 = torch.randn(10, dtype=F64, generator=gen(30))
    eta = 0.9 / torch.linalg.eigvalsh(K).max().item()
    r = r0.clone()
    history = [r0.clone()]
    for _ in range(30):
        r = r - eta * K @ r
        history.append(r.clone())
    assert rel(kernel_gd_residuals(K, r0, lr=eta, steps=30), history[30]) < 1e-10
    all_steps = kernel_gd_residuals(K, r0, lr=eta, steps=[0, 5, 30])
    assert all_steps.shape == (3, 10) and rel(all_steps[1], history[5]) < 1e-10
    assert torch.allclose(all_steps[0], r0, atol=1e-13)
    # "sum" doubles the step and "mean" divides the doubled step by n
    assert rel(kernel_gd_residuals(K, r0, lr=eta / 2, steps=30, reduction="sum"), history[30]) < 1e-10
    assert rel(kernel_gd_residuals(K, r0, lr=eta * 5, steps=30, reduction="mean"), history[30]) < 1e-10
    # a step beyond 2 / lambda_max diverges along the top eigenvector, as the iteration does
    r_big = r0.clone()
    eta_big = 2.5 / torch.linalg.eigvalsh(K).max().item()
    for _ in range(5):
        r_big = r_big - eta_big * K @ r_big
    assert rel(kernel_gd_residuals(K, r0, lr=eta_big, steps=5), r_big) < 1e-10
    with pytest.raises(ValueError, match="reduction"):
        kernel_gd_residuals(K, r0, lr=eta, steps=3, reduction="max")
    with pytest.raises(ValueError, match="steps"):
        kernel_gd_residuals(K, r0, lr=eta, steps=-1)
    with pytest.raises(ValueError, match="lr"):
        kernel_gd_residuals(K, r0, lr=0.0, steps=3)


def test_kernel_regression_gd_matches_gd_on_features():
    """Explicit features Phi (a linear model f = f0 + Phi w), rank-deficient kernel, GD on 1/2 sum r^2."""
    g = gen(31)
    Phi = torch.randn(18, 6, dtype=F64, generator=g)  # 12 train + 6 test rows, only 6 features: K_tr is singular
    f0 = torch.randn(18, dtype=F64, generator=g)
    y = torch.randn(12, dtype=F64, generator=g)
    tr, te = slice(0, 12), slice(12, 18)
    K = Phi @ Phi.T
    eta = 0.5 / torch.linalg.eigvalsh(K[tr, tr]).max().item()
    w = torch.zeros(6, dtype=F64)
    for _ in range(40):
        w = w - eta * Phi[tr].T @ (f0[tr] + Phi[tr] @ w - y)
    f_tr, f_te = kernel_regression_gd(K[tr, tr], y, f0[tr], lr=eta, steps=40, K_test_train=K[te, tr], f0_test=f0[te])
    assert rel(f_tr, f0[tr] + Phi[tr] @ w) < 1e-9
    assert rel(f_te, f0[te] + Phi[te] @ w) < 1e-9
    f_tr_all, f_te_all = kernel_regression_gd(K[tr, tr], y, f0[tr], lr=eta, steps=[0, 40], K_test_train=K[te, tr],
                                              f0_test=f0[te], eigh=torch.linalg.eigh(K[tr, tr]))
    assert f_te_all.shape == (2, 6) and torch.allclose(f_te_all[0], f0[te], atol=1e-12)
    assert rel(f_te_all[1], f_te) < 1e-12
    assert kernel_regression_gd(K[tr, tr], y, f0[tr], lr=eta, steps=3)[1] is None
    with pytest.raises(ValueError, match="neither"):
        kernel_regression_gd(K[tr, tr], y, f0[tr], lr=eta, steps=3, K_test_train=K[te, tr])
    with pytest.raises(ValueError, match="K_test_train"):
        kernel_regression_gd(K[tr, tr], y, f0[tr], lr=eta, steps=3, K_test_train=K[te, :5], f0_test=f0[te])


def test_minibatches_are_seeded_epochs():
    batches = minibatches(10, 4, 7, seed=1)
    assert [len(b) for b in batches] == [4, 4, 2, 4, 4, 2, 4]
    assert sorted(torch.cat(batches[:3]).tolist()) == list(range(10))
    assert all(torch.equal(a, b) for a, b in zip(batches, minibatches(10, 4, 7, seed=1)))
    assert not all(torch.equal(a, b) for a, b in zip(batches, minibatches(10, 4, 7, seed=2)))
    with pytest.raises(ValueError):
        minibatches(10, 0, 3)


def test_function_space_training_equals_training_the_linearization():
    net = mlp([5, 16, 16, 1], "relu", generator=gen(32))
    X = torch.randn(90, 5, dtype=F64, generator=gen(33))
    y = (X[:, 0] + X[:, 1] ** 2 > 1).to(F64)
    tr = torch.arange(70)
    lin = linearize(net)
    losses = train_binary(lin, X[tr], y[tr], steps=25, batch_size=16, lr=0.1, seed=4)
    assert losses.shape == (25,)
    K = empirical_ntk(net, X)
    f0 = net(X).reshape(-1).detach()
    alpha = kernel_train_binary(K[tr][:, tr], f0[tr], y[tr], steps=25, batch_size=16, lr=0.1, seed=4)
    with torch.no_grad():
        assert rel(f0 + K[:, tr] @ alpha, lin(X).reshape(-1)) < 1e-10
    # several tasks at once equal one task at a time
    Y2 = torch.stack([y, 1 - y], 1)
    both = kernel_train_binary(K[tr][:, tr], f0[tr], Y2[tr], steps=25, batch_size=16, lr=0.1, seed=4)
    assert both.shape == (70, 2) and rel(both[:, 0], alpha) < 1e-14


def test_train_binary_learns_and_restores_threads():
    net = mlp([2, 32, 1], "relu", generator=gen(34))
    X = torch.randn(200, 2, dtype=F64, generator=gen(35))
    y = (X[:, 0] * X[:, 1] > 0).to(F64)
    threads = torch.get_num_threads()
    seen = []
    losses = train_binary(net, X, y, steps=300, batch_size=32, lr=0.1, num_threads=1, checkpoints=[0, 150, 300],
                          callback=lambda s: seen.append((s, torch.get_num_threads())))
    assert torch.get_num_threads() == threads
    assert [s for s, _ in seen] == [0, 150, 300] and all(n == 1 for _, n in seen)
    assert losses[-20:].mean() < 0.5 * losses[:20].mean()
    acc = ((net(X).reshape(-1) > 0).to(F64) == y).to(F64).mean()
    assert acc > 0.85
    with pytest.raises(ValueError, match="steps"):
        train_binary(net, X, y, steps=0)
    with pytest.raises(ValueError, match="momentum"):
        train_binary(net, X, y, steps=3, momentum=1.0)
    with pytest.raises(ValueError, match="num_threads"):
        train_binary(net, X, y, steps=3, num_threads=0)
    with pytest.raises(ValueError, match="shape"):
        train_binary(net, X, y[:10], steps=3)
    with pytest.raises(ValueError, match="shape"):
        kernel_train_binary(torch.eye(5, dtype=F64), torch.zeros(5, dtype=F64), torch.zeros(4, dtype=F64), steps=3)


def test_lenet_sizes_init_and_inputs():
    net = lenet(generator=torch.Generator().manual_seed(0))
    # conv 1->6 (60) + conv 6->16 (880) + dense 64-120 (7800) + 120-84 (10164) + 84-1 (85)
    assert sum(p.numel() for p in net.parameters()) == 18989
    x = torch.randn(5, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert net(x).shape == (5, 1)
    assert torch.equal(net(x), net(x.reshape(5, 1, 8, 8)))
    conv2 = net[5]
    # LeCun-normal: variance 1/fan_in = 1/54 for 2,304 weights; the sample variance is within 10% (6 sigma ~ 18%/3)
    assert abs(conv2.weight.var().item() * 54 - 1) < 0.1
    assert all(float(m.bias.detach().abs().max()) == 0 for m in net if hasattr(m, "bias") and m.bias is not None)
    assert lenet(dtype=torch.float32)[2].weight.dtype == torch.float32
    with pytest.raises(ValueError, match="image_size must be a positive multiple of 4"):
        lenet(image_size=6)


def test_lenet_layerwise_ntk_agrees_with_jacobian_contraction():
    """The convolutional layers' sum-over-positions form against the PyTorch tutorial's Jacobian contraction, in
    float64: measured ~2e-15 relative (sums of ~1000 products); 1e-13 leaves a factor 50 for other BLAS orders."""
    net = lenet(generator=gen(50))
    x1 = torch.randn(25, 64, dtype=F64, generator=gen(51))
    x2 = torch.randn(9, 1, 8, 8, dtype=F64, generator=gen(52))
    assert rel(empirical_ntk(net, x1, method="structured"), jc_baseline(net, x1, x1)) < 1e-13
    assert rel(empirical_ntk(net, x1, x2.reshape(9, 64)), jc_baseline(net, x1, x2.reshape(9, 64))) < 1e-13
    J = parameter_jacobian(net, x1)
    assert J.shape == (25, 18989)
    assert rel(J @ J.T, jc_baseline(net, x1, x1)) < 1e-13


def test_layerwise_ntk_conv_variants_and_per_layer_fallback():
    """Strided and padded convolutions, max-pooling, a 1x1 convolution on a 1x1 map (where the per-position Gram
    form is cheaper than explicit gradients, so both forms run) and a LayerNorm (no closed form: its own VJP)."""
    import lnn.ntk.kernels as kernels

    net = nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, 16, 3, stride=2, padding=1, dtype=F64),
        nn.Tanh(),
        nn.Conv2d(16, 32, 2, dtype=F64),
        nn.MaxPool2d(3),
        nn.Conv2d(32, 64, 1, dtype=F64),
        nn.Flatten(),
        nn.LayerNorm(64, dtype=F64),
        nn.Linear(64, 1, dtype=F64),
    )
    modules = kernels.layerwise_modules(net)
    assert modules is not None
    x1 = torch.randn(13, 64, dtype=F64, generator=gen(53))
    x2 = torch.randn(7, 64, dtype=F64, generator=gen(54))
    layers, inputs, deltas = kernels._layer_inputs_and_sensitivities(modules, x1)
    forms = [kernels._gram_factors(m, a, d) is not None for m, a, d in zip(layers, inputs, deltas)]
    assert forms == [False, False, True, False, False]
    assert rel(empirical_ntk(net, x1, x2), jc_baseline(net, x1, x2)) < 1e-13
    assert rel(empirical_ntk(net, x1, chunk_size=4), jc_baseline(net, x1, x1)) < 1e-13
    J = parameter_jacobian(net, x1)
    assert rel(J @ J.T, jc_baseline(net, x1, x1)) < 1e-13
    net.train()
    with_dropout = nn.Sequential(nn.Linear(4, 3, dtype=F64), nn.Dropout(0.5), nn.Linear(3, 1, dtype=F64))
    assert kernels.layerwise_modules(with_dropout) is None  # random in training mode: generic route
    assert kernels.layerwise_modules(with_dropout.eval()) is not None


def test_nan_input_is_an_error():
    net = mlp([3, 4, 1], generator=gen(55))
    x = torch.randn(5, 3, dtype=F64, generator=gen(56))
    x[2, 1] = float("nan")
    with pytest.raises(ValueError, match="x1 contains 1 NaN or infinite entries"):
        empirical_ntk(net, x)
    with pytest.raises(ValueError, match="x2 contains 1 NaN or infinite entries"):
        empirical_ntk(net, x[:2], x)
    with pytest.raises(ValueError, match="NaN or infinite"):
        parameter_jacobian(net, x)


def test_kernel_regression_gd_beyond_stability_limit_raises():
    A = torch.randn(6, 6, dtype=F64, generator=gen(57))
    K = A @ A.T
    y = torch.randn(6, dtype=F64, generator=gen(58))
    lam_max = torch.linalg.eigvalsh(K).max().item()
    kernel_regression_gd(K, y, torch.zeros(6, dtype=F64), lr=1.99 / lam_max, steps=10)  # stable: no error
    with pytest.raises(FloatingPointError, match=r"exceeds 2 / lambda_max"):
        kernel_regression_gd(K, y, torch.zeros(6, dtype=F64), lr=2.01 / lam_max, steps=10)
    with pytest.raises(FloatingPointError, match="diverges"):  # "sum" doubles the step
        kernel_regression_gd(K, y, torch.zeros(6, dtype=F64), lr=1.01 / lam_max, steps=10, reduction="sum")


def test_symmetric_gram_from_upper_blocks_equals_the_full_product():
    """From 512 inputs the symmetric Gram matrix is computed from the blocks on and above the diagonal and mirrored:
    it equals the general (x1, x2) route to rounding (measured ~3e-16) and is exactly symmetric."""
    net = lenet(generator=gen(60))
    x = torch.randn(600, 64, dtype=F64, generator=gen(61))
    K = empirical_ntk(net, x)
    assert torch.equal(K, K.T)
    assert rel(K, empirical_ntk(net, x, x)) < 1e-14
    assert rel(K, empirical_ntk(net, x, chunk_size=97)) < 1e-14
