"""Unit tests of lnn.dynamics: gradient descent against its definition, the conservation law, the exact
one-step identity, the end-to-end rule at O(step), batching, the normalized step, gradient flow and errors."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lnn


def regression(seed=0, d_in=6, d_out=4, m=30):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(m, d_in, generator=g, dtype=torch.float64)
    Y = torch.randn(m, d_out, generator=g, dtype=torch.float64)
    return lnn.LpRegression(X, Y), g


@settings(max_examples=15, deadline=None)
@given(dims=st.lists(st.integers(1, 5), min_size=2, max_size=5), seed=st.integers(0, 2**16))
def test_gradient_descent_equals_step_by_step_factorized_descent(dims, seed):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(10, dims[0], generator=g, dtype=torch.float64)
    Y = torch.randn(10, dims[-1], generator=g, dtype=torch.float64)
    loss = lnn.LpRegression(X, Y)
    factors = lnn.gaussian_factors(dims, 0.5, generator=g)
    lr, steps = 0.05, 7
    run = lnn.gradient_descent(factors, loss, lr=lr, steps=steps)
    manual = [W.clone() for W in factors]
    for _ in range(steps):
        G = loss.grad(lnn.end_to_end(manual))
        grads = lnn.factor_gradients(manual, G)
        manual = [W - lr * D for W, D in zip(manual, grads)]
    for a, b in zip(run.factors, manual):
        assert torch.allclose(a, b, atol=1e-13, rtol=0)  # same operations: rounding only
    # and the inputs were not modified
    assert run.losses.shape == (steps + 1,)
    assert float(run.losses[0]) == pytest.approx(float(loss(lnn.end_to_end(factors))), rel=1e-14)


def test_gradient_descent_with_a_plain_callable_uses_autograd_and_agrees():
    loss, g = regression()
    factors = lnn.gaussian_factors([6, 5, 4], 0.5, generator=g)
    a = lnn.gradient_descent(factors, loss, lr=0.05, steps=20)
    b = lnn.gradient_descent(factors, lambda W: loss(W), lr=0.05, steps=20)
    assert torch.allclose(a.end_to_end, b.end_to_end, atol=1e-13)


def test_the_exact_one_step_identity_for_balancedness():
    # D_j' - D_j = eta^2 (G_{j+1}^T G_{j+1} - G_j G_j^T), exactly, for any widths and any init (SCIENCE E2.1)
    loss, g = regression()
    factors = lnn.gaussian_factors([6, 5, 7, 4], 1.0, generator=g)
    for eta in (1e-1, 1e-2, 1e-3):
        grads = lnn.factor_gradients(factors, loss.grad(lnn.end_to_end(factors)))
        after = lnn.gradient_descent(factors, loss, lr=eta, steps=1).factors
        for j, (D0, D1) in enumerate(zip(lnn.balancedness_gaps(factors), lnn.balancedness_gaps(after))):
            predicted = eta**2 * (grads[j + 1].mT @ grads[j + 1] - grads[j] @ grads[j].mT)
            assert float((D1 - D0 - predicted).abs().max()) <= 1e-12


@pytest.mark.parametrize("depth", [2, 3])
def test_balancedness_drift_halves_with_the_step_size(depth):
    # Over a fixed horizon eta*T = 5 the drift of D_j is O(eta * horizon): halving eta halves it.
    loss, g = regression(1)
    W0 = torch.randn(4, 6, generator=g, dtype=torch.float64)
    W0 = 0.3 * W0 / torch.linalg.matrix_norm(W0)
    factors = lnn.balanced_factors(W0, depth)
    drifts = []
    for eta in (2e-2, 1e-2):
        run = lnn.gradient_descent(factors, loss, lr=eta, steps=round(5 / eta), record=["balancedness"], every=10)
        drifts.append(float(run["balancedness"].max()))
    ratio = drifts[0] / drifts[1]
    assert 1.8 <= ratio <= 2.2, (drifts, ratio)  # first-order in eta, SCIENCE E2.1 measured 2.0


@pytest.mark.parametrize("depth", [2, 3])
def test_factorized_descent_tracks_the_end_to_end_rule_at_order_eta(depth):
    loss, g = regression(2)
    W0 = torch.randn(4, 6, generator=g, dtype=torch.float64)
    W0 = 0.5 * W0 / torch.linalg.matrix_norm(W0)
    gaps = []
    for eta in (2e-2, 1e-2):
        steps = round(4 / eta)
        fact = lnn.gradient_descent(lnn.balanced_factors(W0, depth), loss, lr=eta, steps=steps, record=["end_to_end"], every=5)
        e2e = lnn.end_to_end_descent(W0, loss, depth, lr=eta, steps=steps, record=["end_to_end"], every=5)
        gaps.append(float(torch.linalg.matrix_norm(fact["end_to_end"] - e2e["end_to_end"]).max()))
    assert gaps[0] > 0
    assert 1.6 <= gaps[0] / gaps[1] <= 2.4, gaps  # O(eta): SCIENCE E2.2 uses [1.6, 2.4] for N = 2, 3


def test_width_independence_of_balanced_trajectories():
    loss, g = regression(3)
    W0 = 0.4 * torch.randn(4, 6, generator=g, dtype=torch.float64)
    narrow = lnn.gradient_descent(lnn.balanced_factors(W0, 3), loss, lr=1e-2, steps=300)
    wide = lnn.gradient_descent(lnn.balanced_factors(W0, 3, widths=10), loss, lr=1e-2, steps=300)
    assert torch.allclose(narrow.end_to_end, wide.end_to_end, atol=1e-12)


def test_batched_runs_equal_sequential_runs_and_per_run_step_sizes():
    loss, g = regression(4)
    factors = lnn.gaussian_factors([6, 8, 8, 4], 0.3, batch_shape=(3,), generator=g)
    lrs = torch.tensor([0.01, 0.02, 0.04], dtype=torch.float64)
    batched = lnn.gradient_descent(factors, loss, lr=lrs, steps=50, record=["singular_values", "norms"], every=10)
    assert batched.losses.shape == (51, 3)
    assert batched["singular_values"].shape == (6, 3, 4)
    assert batched["norms"].shape == (6, 3, 3)
    assert torch.allclose(batched.flow_time[-1], 50 * lrs)
    for b in range(3):
        single = lnn.gradient_descent([W[b] for W in factors], loss, lr=float(lrs[b]), steps=50)
        assert torch.allclose(batched.end_to_end[b], single.end_to_end, atol=1e-13)


def test_normalized_step_follows_the_gradient_flow_path():
    # One scalar per run multiplies the gradient, so the path is the GD path with a varying step size: at the same
    # accumulated flow time both are close to gradient flow (within O(step)).
    loss, g = regression(5)
    W0 = 0.5 * torch.randn(4, 6, generator=g, dtype=torch.float64)
    factors = lnn.balanced_factors(W0, 2)
    norm = lnn.gradient_descent(factors, loss, lr=1e-3, steps=400, optimizer="normalized")
    T = float(norm.flow_time[-1])
    flow = lnn.gradient_flow(factors, loss, time=round(T, 2), dt=0.01)
    gd_final = lnn.gradient_descent(factors, loss, lr=1e-3, steps=round(T, 2) * 1000)
    diff_norm = float(torch.linalg.matrix_norm(norm.end_to_end - flow.end_to_end))
    diff_gd = float(torch.linalg.matrix_norm(gd_final.end_to_end - flow.end_to_end))
    assert diff_norm < 10 * max(diff_gd, 1e-3), (diff_norm, diff_gd)
    # and it is really a rescaling of each step: flow time grows faster than the plain lr would give
    assert T > 400 * 1e-3


def test_gradient_flow_rk4_error_estimate_is_honest():
    loss, g = regression(6)
    factors = lnn.balanced_factors(0.3 * torch.randn(4, 6, generator=g, dtype=torch.float64), 3)
    coarse = lnn.gradient_flow(factors, loss, time=2.0, dt=0.1, estimate_error=True)
    reference = lnn.gradient_flow(factors, loss, time=2.0, dt=0.0125)
    actual = float((coarse.end_to_end - reference.end_to_end).abs().max())
    assert coarse.error_estimate > 0
    assert actual <= 3 * coarse.error_estimate + 1e-14  # Richardson estimate of a 4th-order method
    euler = lnn.gradient_flow(factors, loss, time=2.0, dt=0.01, method="euler")
    gd = lnn.gradient_descent(factors, loss, lr=0.01, steps=200)
    assert torch.allclose(euler.end_to_end, gd.end_to_end, atol=1e-14)


def test_end_to_end_rk4_flow_matches_balanced_factor_flow():
    # The end-to-end theorem for gradient flow: both integrated with RK4 at dt = 0.01 (error ~1e-10).
    loss, g = regression(7)
    W0 = 0.5 * torch.randn(4, 6, generator=g, dtype=torch.float64)
    fact = lnn.gradient_flow(lnn.balanced_factors(W0, 3), loss, time=1.0, dt=0.01)
    e2e = lnn.gradient_flow([W0], loss, time=1.0, dt=0.01, parametrization=lnn.EndToEndRule(3))
    assert float((fact.end_to_end - e2e.end_to_end).abs().max()) < 1e-8


def test_recording_and_stopping():
    loss, g = regression(8, d_in=4, d_out=4, m=4)  # square and consistent: the loss can reach 0
    factors = lnn.gaussian_factors([4, 4, 4], 1.0, generator=g)
    run = lnn.gradient_descent(factors, loss, lr=0.05, steps=20000, stop_below=1e-8, every=25,
                               record={"trace": lambda W, ps: W.diagonal(dim1=-2, dim2=-1).sum(-1)})
    assert run.steps_run < 20000 and run.steps_run % 25 == 0
    assert float(run.final_loss) < 1e-8
    assert run["trace"].shape == (len(run.record_steps),)
    first = int(run.first_step_below(1e-8))
    assert 0 < first <= run.steps_run and float(run.losses[first - 1]) >= 1e-8
    assert torch.equal(run["loss"], run.losses[run.record_steps])


def test_nan_mid_run_raises_naming_the_step():
    loss, g = regression(9)
    factors = lnn.gaussian_factors([6, 8, 4], 3.0, generator=g)
    with pytest.raises(FloatingPointError, match=r"at step \d+"):
        lnn.gradient_descent(factors, loss, lr=5.0, steps=400, every=50)


def test_nan_step_is_exact():
    # A loss that is finite until step 7 and NaN afterwards: the error names step 7 although records are every 5.
    counter = {"n": 0}

    def loss(W):
        counter["n"] += 1
        value = (W**2).sum((-2, -1))
        return value if counter["n"] <= 7 else value * float("nan")

    with pytest.raises(FloatingPointError, match="at step 7"):
        lnn.gradient_descent([torch.ones(2, 2, dtype=torch.float64)], loss, lr=0.01, steps=20, every=5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(lr=0.0, steps=3), "positive"),
        (dict(lr=-0.1, steps=3), "positive"),
        (dict(lr=float("nan"), steps=3), "positive"),
        (dict(lr=0.1, steps=-1), "steps"),
        (dict(lr=0.1, steps=3, optimizer="adam"), "optimizer"),
        (dict(lr=0.1, steps=3, record=["nope"]), "unknown record"),
        (dict(lr=torch.tensor(-0.1, dtype=torch.float64), steps=3), "positive"),
        (dict(lr=torch.tensor([0.1, 0.2], dtype=torch.float64), steps=3), "batch shape"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, message):
    loss, g = regression()
    factors = lnn.gaussian_factors([6, 5, 4], 1.0, generator=g)
    with pytest.raises(ValueError, match=message):
        lnn.gradient_descent(factors, loss, **kwargs)


def test_bad_factors_raise_value_error():
    loss, _ = regression()
    with pytest.raises(ValueError, match="depth must be >= 1"):
        lnn.gradient_descent([], loss, lr=0.1, steps=1)
    with pytest.raises(ValueError, match="do not chain"):
        lnn.gradient_descent([torch.ones(5, 6), torch.ones(4, 4)], loss, lr=0.1, steps=1)
    with pytest.raises(ValueError, match="batch dimensions"):
        lnn.gradient_descent([torch.ones(2, 5, 6), torch.ones(3, 4, 5)], loss, lr=0.1, steps=1)
    with pytest.raises(ValueError, match="expects W of shape"):
        lnn.gradient_descent([torch.ones(3, 6, dtype=torch.float64)], loss, lr=0.1, steps=1)
    with pytest.raises(ValueError, match="depth must be >= 1"):
        lnn.end_to_end_descent(torch.ones(4, 6, dtype=torch.float64), loss, 0, lr=0.1, steps=1)
    with pytest.raises(ValueError, match="integer number of steps"):
        lnn.gradient_flow([torch.ones(4, 6, dtype=torch.float64)], loss, time=1.0, dt=0.3)


def test_cp_parametrization_learns_a_rank_one_tensor_with_one_component():
    g = torch.Generator().manual_seed(0)
    T = lnn.random_cp_tensor([6, 6, 6], 1, generator=g)
    task = lnn.Completion(T, lnn.random_mask(T.shape, 120, generator=g), reduction="sum")
    factors = lnn.cp_gaussian_factors([6, 6, 6], 36, 1e-4, generator=g)
    run = lnn.gradient_descent(factors, task, lr=5e-3, steps=3000, optimizer="normalized",
                               parametrization=lnn.CPProduct(), stop_below=1e-10, every=50)
    assert float(task.relative_error(run.end_to_end)) < 1e-2
    norms = lnn.cp_component_norms(run.params).sort(descending=True).values
    assert float(norms[1]) < 1e-3 * float(norms[0])  # one component carries the fit: low tensor rank


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_runs_on_cuda_when_given_cuda_tensors():
    loss_cpu, g = regression()
    loss = lnn.LpRegression(loss_cpu.X.cuda(), loss_cpu.Y.cuda())
    factors = [W.cuda() for W in lnn.gaussian_factors([6, 5, 4], 0.5, generator=g)]
    run = lnn.gradient_descent(factors, loss, lr=0.05, steps=10)
    assert run.end_to_end.device.type == "cuda"
    cpu = lnn.gradient_descent([W.cpu() for W in factors], loss_cpu, lr=0.05, steps=10)
    assert torch.allclose(run.end_to_end.cpu(), cpu.end_to_end, atol=1e-12)


def test_normalized_step_epsilon_and_flow_stopping():
    loss, g = regression(10, d_in=4, d_out=4, m=4)
    factors = lnn.gaussian_factors([4, 4, 4], 1.0, generator=g)
    a = lnn.gradient_descent(factors, loss, lr=1e-2, steps=50, optimizer="normalized")
    b = lnn.gradient_descent(factors, loss, lr=1e-2, steps=50, optimizer="normalized", eps=1e3)
    # a huge epsilon turns the normalized step into plain GD with step lr / eps (up to the sqrt(s_hat) term)
    assert float(b.flow_time[-1]) < 1e-3 < float(a.flow_time[-1])
    with pytest.raises(ValueError, match="eps"):
        lnn.gradient_descent(factors, loss, lr=1e-2, steps=5, optimizer="normalized", eps=0.0)
    full = lnn.gradient_flow(factors, loss, time=50.0, dt=0.05, every=10)
    threshold = float(full.losses[500])  # a loss the flow reaches half-way
    flow = lnn.gradient_flow(factors, loss, time=50.0, dt=0.05, stop_below=threshold, every=10)
    assert flow.steps_run < 1000 and float(flow.final_loss) < threshold
    assert torch.equal(flow.losses, full.losses[: flow.steps_run + 1])


def test_a_custom_parametrization_plugs_into_the_driver():
    # W = A^T with one parameter A: the direction is G^T. Descending A must equal descending W directly.
    class Transposed:
        def check(self, params):
            return tuple(params[0].shape[:-2])

        def forward(self, params):
            return params[0].mT, None

        def direction(self, params, cache, G):
            return [G.mT]

    loss, g = regression(11)
    W0 = torch.randn(4, 6, generator=g, dtype=torch.float64)
    via_A = lnn.gradient_descent([W0.mT.contiguous()], loss, lr=0.02, steps=30, parametrization=Transposed())
    direct = lnn.gradient_descent([W0], loss, lr=0.02, steps=30)
    assert torch.allclose(via_A.end_to_end, direct.end_to_end, atol=1e-14)


def test_first_step_below_per_run():
    """The free function that Trajectory.first_step_below and chapter 4 use: per run, NaN never below, -1 if never."""
    losses = torch.tensor([[3.0, 1.0, 5.0], [0.5, float("nan"), 4.0], [0.2, 0.1, 4.5]], dtype=torch.float64)
    assert lnn.first_step_below(losses, 1.0).tolist() == [1, 2, -1]
    assert lnn.first_step_below(losses.numpy(), 0.3).tolist() == [2, 2, -1]  # numpy curves, as chapter 4 passes
    runs = torch.stack([losses, 2 * losses], dim=-1)  # several trailing run dimensions
    assert lnn.first_step_below(runs, 1.0).shape == (3, 2)
    with pytest.raises(ValueError, match="leading dimension"):
        lnn.first_step_below(torch.tensor(0.5), 1.0)
