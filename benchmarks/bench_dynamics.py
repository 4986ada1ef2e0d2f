"""Benchmark: lnn.gradient_descent against the plain PyTorch training loop on deep matrix completion.

Run with ``make bench`` (or ``python benchmarks/bench_dynamics.py``). Prints, all measured in this one run on this
machine:

* one run: lnn vs the plain loop (factors as ``nn.Parameter``, autograd through the product, ``torch.optim.SGD``);
* 16 runs: one batched lnn call vs 16 sequential plain loops;
* the batched lnn run's matrix-multiply rate as a fraction of the machine's own batched-matmul rate;
* the largest difference between lnn's and the plain loop's end-to-end matrices (they must agree to rounding).

The setting is the book's deep matrix completion (Arora, Cohen, Hu, Luo 2019 scaled down): a 100 x 100 rank-5
target, 2000 observed entries (20%), depth 3, width 100, mean squared error over the observed entries; ``--n``
changes the size (observing 20% of the entries).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from torch import nn

import lnn


def problem(n: int, rank: int, observed: int, seed: int, dtype: torch.dtype):
    g = torch.Generator().manual_seed(seed)
    target = lnn.low_rank_matrix(n, n, rank, generator=g, dtype=dtype)
    mask = lnn.random_mask((n, n), observed, generator=g)
    return target, mask


def plain_pytorch_loop(factors, target, mask, lr: float, steps: int) -> torch.Tensor:
    """What a reader would write without lnn: parameters, autograd through the product, torch.optim.SGD."""
    params = [nn.Parameter(W.clone()) for W in factors]
    opt = torch.optim.SGD(params, lr=lr)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        W = params[0]
        for P in params[1:]:
            W = P @ W
        loss = ((W - target)[mask] ** 2).mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        W = params[0]
        for P in params[1:]:
            W = P @ W
    return W.detach()


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeats: int = 3):
    best, out = float("inf"), None
    for _ in range(repeats):
        _sync()
        t0 = time.perf_counter()
        out = fn()
        _sync()
        best = min(best, time.perf_counter() - t0)
    return best, out


def matmul_rate(batch: int, n: int, dtype: torch.dtype, device: str, reps: int = 200) -> float:
    """FLOP/s of ``torch.bmm`` on ``batch`` pairs of ``n x n`` matrices (best of three)."""
    a = torch.randn(batch, n, n, dtype=dtype, device=device)
    b = torch.randn(batch, n, n, dtype=dtype, device=device)
    torch.bmm(a, b)

    def run():
        for _ in range(reps):
            torch.bmm(a, b)

    t, _ = timed(run)
    return 2 * batch * n**3 * reps / t


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    parser.add_argument("--device", default="cpu", help="cpu or cuda: every tensor of both routes lives there")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    n, N, steps, R = args.n, args.depth, args.steps, args.runs
    lr = 0.5  # stable for this problem from a unit-gain init (mean-over-Omega loss); the loss falls ~25x in 300 steps
    observed = round(0.2 * n * n)  # 2000 entries at n = 100, as in the book's completion experiments
    target, mask = problem(n, 5, observed, 0, dtype)
    target, mask = target.to(args.device), mask.to(args.device)
    task = lnn.Completion(target, mask, reduction="mean")
    g = torch.Generator().manual_seed(1)
    single = [W.to(args.device) for W in lnn.gaussian_factors([n] * (N + 1), 1.0, generator=g, dtype=dtype)]
    batch = [W.to(args.device) for W in lnn.gaussian_factors([n] * (N + 1), 1.0, batch_shape=(R,), generator=g, dtype=dtype)]

    # warm up both paths (first matmul, allocator)
    lnn.gradient_descent(single, task, lr=lr, steps=5)
    plain_pytorch_loop(single, target, mask, lr, 5)

    t_plain, W_plain = timed(lambda: plain_pytorch_loop(single, target, mask, lr, steps))
    t_lnn, run = timed(lambda: lnn.gradient_descent(single, task, lr=lr, steps=steps))
    agree = float((run.end_to_end - W_plain).abs().max() / W_plain.abs().max())

    t_seq, _ = timed(lambda: [plain_pytorch_loop([W[r] for W in batch], target, mask, lr, steps) for r in range(R)], repeats=1)
    t_batched, brun = timed(lambda: lnn.gradient_descent(batch, task, lr=lr, steps=steps))
    W_check = plain_pytorch_loop([W[3] for W in batch], target, mask, lr, steps)
    agree_batch = float((brun.end_to_end[3] - W_check).abs().max() / W_check.abs().max())

    flops_per_step = 3 * (N - 1) * 2 * n**3  # N-1 products forward, 2(N-1) backward
    achieved = flops_per_step * R * steps / t_batched
    machine = matmul_rate(R, n, dtype, args.device)
    figures = {
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "dtype": args.dtype,
        "setting": f"completion n={n}, rank 5, {observed} observed, depth {N}, width {n}, {steps} steps",
        "plain_one_run_s": t_plain,
        "lnn_one_run_s": t_lnn,
        "speedup_one_run": t_plain / t_lnn,
        "plain_sequential_runs_s": t_seq,
        "lnn_batched_runs_s": t_batched,
        "speedup_batched": t_seq / t_batched,
        "runs": R,
        "lnn_batched_gflops": achieved / 1e9,
        "machine_bmm_gflops": machine / 1e9,
        "fraction_of_bmm_rate": achieved / machine,
        "max_rel_difference_one_run": agree,
        "max_rel_difference_batched": agree_batch,
    }
    print(f"deep matrix completion ({figures['setting']}), {args.dtype}, on {figures['device']}, "
          f"{figures['threads']} CPU threads, torch {torch.__version__}")
    print(f"  one run      plain PyTorch {t_plain:7.3f} s   lnn {t_lnn:7.3f} s   speed-up {t_plain / t_lnn:5.2f}x  (goal >= 2x)")
    print(f"  {R} runs      sequential    {t_seq:7.3f} s   lnn batched {t_batched:7.3f} s   speed-up {t_seq / t_batched:5.2f}x  (goal >= 8x)")
    print(f"  batched rate {achieved / 1e9:6.2f} GFLOP/s = {achieved / machine:5.1%} of this machine's bmm rate "
          f"({machine / 1e9:.2f} GFLOP/s)  (goal >= 50%)")
    print(f"  progress     loss {float(run.losses[0]):.3f} -> {float(run.final_loss):.3f} over {steps} steps (real work, not a plateau)")
    print(f"  agreement    max |W_lnn - W_plain| / max |W_plain| = {agree:.1e} (one run), {agree_batch:.1e} (batched)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)
    return figures


if __name__ == "__main__":
    main()
