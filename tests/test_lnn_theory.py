"""Unit tests of lnn.theory: the preconditioner P_W, the scalar-output form, singular-value dynamics, the
convergence bound and loop integrals. Each test is a theorem of chapter Optimization checked numerically."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lnn


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@settings(max_examples=25, deadline=None)
@given(m=st.integers(1, 4), n=st.integers(1, 4), depth=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_preconditioner_matrix_is_the_operator_and_has_the_predicted_spectrum(m, n, depth, seed):
    W, G = rand(m, n, seed=seed), rand(m, n, seed=seed + 1)
    P = lnn.preconditioner_matrix(W, depth)
    # column-major vec: vec(G) = G.T.reshape(-1)
    op = lnn.preconditioned_gradient(W, G, depth)
    assert torch.allclose(P @ G.T.reshape(-1), op.T.reshape(-1), atol=1e-12)
    assert float((P - P.T).abs().max()) <= 1e-12  # symmetric
    eig = torch.linalg.eigvalsh(P)
    pred = lnn.preconditioner_eigenvalues(W, depth)
    # eigvalsh of a symmetric matrix with entries O(1): errors ~1e-15 * ||P||; 1e-10 leaves ample room
    assert torch.allclose(eig, pred, atol=1e-10 * max(1.0, float(pred.abs().max())))
    assert float(eig.min()) >= -1e-12  # PSD


def test_preconditioner_eigenvectors_are_outer_products_of_singular_vectors():
    W, N = rand(3, 4, seed=3), 3
    U, S, Vh = torch.linalg.svd(W, full_matrices=True)
    s_left = torch.cat([S, torch.zeros(3 - S.numel(), dtype=W.dtype)])
    s_right = torch.cat([S, torch.zeros(4 - S.numel(), dtype=W.dtype)])
    for r in range(3):
        for rp in range(4):
            E = torch.outer(U[:, r], Vh[rp])
            lam = sum(
                (s_left[r] ** (2 * (N - j) / N) if j != N else 1.0) * (s_right[rp] ** (2 * (j - 1) / N) if j != 1 else 1.0)
                for j in range(1, N + 1)
            )
            assert torch.allclose(lnn.preconditioned_gradient(W, E, N), lam * E, atol=1e-12)
    # on the diagonal lambda_rr = N sigma_r^(2 - 2/N)
    for r in range(3):
        E = torch.outer(U[:, r], Vh[r])
        assert torch.allclose(lnn.preconditioned_gradient(W, E, N), N * S[r] ** (2 - 2 / N) * E, atol=1e-12)


def test_preconditioner_is_symmetric_under_reversing_j():
    # The blog writes the exponents swapped; the sum is the same (chapter Optimization).
    W, G, N = rand(3, 3, seed=4), rand(3, 3, seed=5), 4
    U, S, Vh = torch.linalg.svd(W)
    left = lambda a: U @ torch.diag(S ** (2 * a)) @ U.T if a else torch.eye(3, dtype=W.dtype)
    right = lambda b: Vh.T @ torch.diag(S ** (2 * b)) @ Vh if b else torch.eye(3, dtype=W.dtype)
    swapped = sum(left((j - 1) / N) @ G @ right((N - j) / N) for j in range(1, N + 1))
    assert torch.allclose(lnn.preconditioned_gradient(W, G, N), swapped, atol=1e-12)


def test_depth_one_preconditioner_is_the_identity_and_batches_work():
    W, G = rand(2, 3, 4, seed=6), rand(2, 3, 4, seed=7)
    assert torch.equal(lnn.preconditioned_gradient(W, G, 1), G)
    batched = lnn.preconditioned_gradient(W, G, 3)
    for b in range(2):
        assert torch.allclose(batched[b], lnn.preconditioned_gradient(W[b], G[b], 3), atol=1e-14)


@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_scalar_output_form_equals_the_preconditioner(depth):
    w, grad = rand(6, seed=8), rand(6, seed=9)
    general = -lnn.preconditioned_gradient(w[None, :], grad[None, :], depth)[0]
    assert torch.allclose(lnn.scalar_output_velocity(w, grad, depth), general, atol=1e-13)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_singular_value_velocity_matches_a_simulated_finite_difference(depth):
    # Balanced init, tiny step: the finite difference of sigma equals the ODE up to O(eta) (SCIENCE E2.4).
    g = torch.Generator().manual_seed(0)
    target = lnn.low_rank_matrix(5, 4, 2, generator=g)
    X = torch.randn(40, 4, generator=g, dtype=torch.float64)
    loss = lnn.LpRegression(X, X @ target.T)
    W0 = 0.3 * torch.randn(5, 4, generator=g, dtype=torch.float64)
    eta, steps = 1e-4, 200
    run = lnn.gradient_descent(lnn.balanced_factors(W0, depth), loss, lr=eta, steps=steps)
    fd = (torch.linalg.svdvals(run.end_to_end) - torch.linalg.svdvals(W0)) / (eta * steps)
    # the ODE averaged over the interval: trapezoid of the two endpoints, error O((eta*steps)^2) relative
    ode = 0.5 * (
        lnn.singular_value_velocity(W0, loss.grad(W0), depth)
        + lnn.singular_value_velocity(run.end_to_end, loss.grad(run.end_to_end), depth)
    )
    rel = float(((fd - ode).abs() / ode.abs()).max())
    assert rel < 5e-3, rel  # SCIENCE E2.4 measured ~4e-4 for this step size


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_singular_value_closed_form_solves_the_ode(depth):
    s0, gval = 1e-2, 0.7
    t = torch.linspace(0, 0.9 * float(lnn.blowup_time(s0, gval, depth)) if depth >= 3 else 2.0, 2001, dtype=torch.float64)
    sigma = lnn.singular_value_closed_form(s0, gval, depth, t)
    # centred finite difference vs the right-hand side N sigma^(2-2/N) g, relative error O(dt^2)
    dt = float(t[1] - t[0])
    fd = (sigma[2:] - sigma[:-2]) / (2 * dt)
    rhs = depth * sigma[1:-1] ** (2 - 2 / depth) * gval
    assert float(((fd - rhs).abs() / rhs).max()) < 1e-3
    assert float(sigma[0]) == pytest.approx(s0, rel=1e-12)


def test_blowup_time_is_where_the_closed_form_escapes():
    s0, gval, N = 1e-3, 2.0, 3
    t_star = float(lnn.blowup_time(s0, gval, N))
    assert t_star == pytest.approx(s0 ** (-1 / 3) / gval, rel=1e-12)
    assert math.isinf(float(lnn.singular_value_closed_form(s0, gval, N, 1.0001 * t_star)))
    assert float(lnn.singular_value_closed_form(s0, gval, N, 0.999 * t_star)) > 1e3
    assert math.isinf(float(lnn.blowup_time(s0, gval, 2)))


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_linear_convergence_bound_holds_along_the_run(depth):
    # SCIENCE E2.7: Phi = Q1 diag(3, 2, 1.5, 1) Q2^T, W(0) = Phi + E with ||E||_F = 0.5, so the margin is c = 0.5.
    g = torch.Generator().manual_seed(0)
    Q1, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
    Q2, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
    Phi = Q1 @ torch.diag(torch.tensor([3.0, 2.0, 1.5, 1.0], dtype=torch.float64)) @ Q2.T
    E = torch.randn(4, 4, generator=g, dtype=torch.float64)
    W0 = Phi + 0.5 * E / torch.linalg.matrix_norm(E)
    c = float(lnn.deficiency_margin(W0, Phi))
    assert c == pytest.approx(0.5, abs=1e-12)
    loss = lambda W: 0.5 * ((W - Phi) ** 2).sum((-2, -1))
    eta = 1e-2
    run = lnn.gradient_descent(lnn.balanced_factors(W0, depth), loss, lr=eta, steps=600, record=["singular_values"], every=10)
    bound = lnn.linear_convergence_bound(run.losses[0], c, depth, eta * torch.arange(601, dtype=torch.float64))
    # GD with eta = 1e-2 follows the flow within O(eta); SCIENCE measured max ratio 1.000 (N=1) to 0.85 (N=4)
    assert float((run.losses / bound).max()) <= 1 + 1e-9
    assert float(run["singular_values"][:, -1].min()) >= c


def test_loop_integral_vanishes_for_a_gradient_field_and_not_for_the_end_to_end_field():
    g = torch.Generator().manual_seed(1)
    A = torch.diag(torch.tensor([1.0, 4.0, 0.25], dtype=torch.float64))  # anisotropic quadratic, scalar output
    b = torch.tensor([[1.0, -0.5, 0.3]], dtype=torch.float64)
    loss = lambda W: 0.5 * ((W - b) @ A @ (W - b).mT).sum((-2, -1))
    center = torch.tensor([[0.6, 0.4, -0.2]], dtype=torch.float64)
    E1 = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    E2 = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    # N = 1: the field is -grad ell, a gradient field: circulation is quadrature error only (O(segments^-2) ~ 1e-15)
    c1 = lnn.loop_integral(lnn.end_to_end_field(loss, 1), center, E1, E2, 0.3, segments=400)
    assert abs(c1) < 1e-10
    for N in (2, 3):
        cN = lnn.loop_integral(lnn.end_to_end_field(loss, N), center, E1, E2, 0.3, segments=400)
        assert abs(cN) > 1e-3, (N, cN)  # SCIENCE E2.5: 0.017-0.57 for such losses


def test_objective_hessian_at_the_origin():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(3, 20, generator=g, dtype=torch.float64)
    Y = torch.randn(2, 20, generator=g, dtype=torch.float64)
    loss = lnn.LpRegression(X.T, Y.T, reduction="half_sum")
    zero2 = [torch.zeros(3, 3, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64)]
    H2 = lnn.objective_hessian(zero2, loss)
    ev = torch.linalg.eigvalsh(H2)
    assert float(ev.min()) < -1e-3 and float(ev.max()) == pytest.approx(-float(ev.min()), rel=1e-10)
    zero3 = [torch.zeros(3, 3, dtype=torch.float64), torch.zeros(3, 3, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64)]
    assert float(lnn.objective_hessian(zero3, loss).abs().max()) < 1e-12
