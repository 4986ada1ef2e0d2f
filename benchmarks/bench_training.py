"""Benchmark: many small networks at once with lnn.training.train_ensemble (one vmapped loop) against sequential runs.

Run with ``make bench`` (or ``python benchmarks/bench_training.py``). Prints, for ``R`` runs (default 16: seeds and
step sizes) of the chapter-sized MLP 64-100-100-1 and of the LeNet-like CNN (:func:`lnn.ntk.lenet`), trained with
chapter 5's protocol (binary cross-entropy, minibatches of 128 from one sampler, momentum 0.9, linear decay):

* one batched call against ``R`` sequential runs of the plain PyTorch loop a reader would write (``torch.optim.SGD``,
  autograd), median and spread (min-max) over ``--repeats`` repetitions, on the thread count chosen by
  ``--threads``;
* the largest relative difference between the batched and the sequential final parameters (same results to
  rounding);
* the batched run's arithmetic rate (forward + backward, counted as 3x the forward multiply-adds) as a share of this
  machine's ``torch.bmm`` rate on products of the same sizes;
* the same rate for the sequential runs, and the ceiling it implies: no batched engine can beat ``R`` sequential
  runs by more than (machine rate) / (sequential rate), since both do the same arithmetic.

This is a measurement, not a test: it prints figures and never fails on time (see the Timings page).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from lnn.ntk import lenet, mlp
from lnn.training import minibatches, train_ensemble


def bce(f, X, y):
    return F.binary_cross_entropy_with_logits(f(X).reshape(-1), y)


def plain_loop(net, X, y, *, lr, steps, batch_size, seed):
    """What a reader would write: autograd and torch.optim.SGD with momentum and the linear decay."""
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    for s, idx in enumerate(minibatches(X.shape[0], batch_size, steps, seed)):
        for group in opt.param_groups:
            group["lr"] = lr * (1 - s / steps)
        loss = bce(net, X[idx], y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net


def forward_flops(kind: str) -> int:
    """Multiply-adds x 2 of one example's forward pass."""
    if kind == "mlp":
        return 2 * (64 * 100 + 100 * 100 + 100 * 1)
    # conv 1->6 at 64 positions, conv 6->16 at 16 positions, dense 64-120-84-1
    return 2 * (64 * 6 * 9 + 16 * 16 * 54 + 64 * 120 + 120 * 84 + 84)


def bmm_rate(R: int, m: int, k: int, n: int, dtype, reps: int = 50) -> float:
    a = torch.randn(R, m, k, dtype=dtype)
    b = torch.randn(R, k, n, dtype=dtype)
    torch.bmm(a, b)
    t0 = time.perf_counter()
    for _ in range(reps):
        torch.bmm(a, b)
    return 2 * R * m * k * n * reps / (time.perf_counter() - t0)


def stats(times: list[float]) -> dict:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "times_s": times}


def bench(kind: str, args, dtype) -> dict:
    g = torch.Generator().manual_seed(0)
    X = torch.rand(args.n, 64, dtype=dtype, generator=g)
    y = (X[:, :32].sum(1) > X[:, 32:].sum(1)).to(dtype)
    R = args.runs
    make = (lambda r: mlp([64, 100, 100, 1], generator=torch.Generator().manual_seed(r), dtype=dtype)) if kind == "mlp" \
        else (lambda r: lenet(generator=torch.Generator().manual_seed(r), dtype=dtype))
    lrs = [0.02 * 1.25 ** (r % 8) for r in range(R)]  # 8 step sizes x 2 seeds
    models = [make(r // 8) for r in range(R)]
    kw = dict(steps=args.steps, batch_size=args.batch_size, seed=1)

    def batched():
        return train_ensemble(models, bce, [X, y], lr=torch.tensor(lrs, dtype=dtype), momentum=0.9,
                              schedule="linear", **kw)

    def sequential():
        return [plain_loop(make(r // 8), X, y, lr=lrs[r], **kw) for r in range(R)]

    batched(), plain_loop(make(0), X, y, lr=lrs[0], steps=3, batch_size=args.batch_size, seed=1)  # warm up both routes
    t_b, t_s = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        res = batched()
        t_b.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        seq = sequential()
        t_s.append(time.perf_counter() - t0)
    diff = max(
        float((p.detach() - q.detach()).abs().max() / q.detach().abs().max())
        for r in range(R)
        for p, q in zip(res.models[r].parameters(), seq[r].parameters())
    )
    flops = 3 * forward_flops(kind) * args.batch_size * R * args.steps
    rate = flops / statistics.median(t_b)
    rate_seq = flops / statistics.median(t_s)
    machine = bmm_rate(R, args.batch_size, 100, 100, dtype) if kind == "mlp" else bmm_rate(R, args.batch_size, 120, 84, dtype)
    return {"model": kind, "runs": R, "steps": args.steps, "batched": stats(t_b), "sequential": stats(t_s),
            "speedup_median": statistics.median(t_s) / statistics.median(t_b),
            "max_rel_param_difference": diff, "diverged": int(res.diverged.sum()),
            "batched_gflops": rate / 1e9, "machine_bmm_gflops": machine / 1e9, "share_of_bmm_rate": rate / machine,
            "sequential_gflops": rate_seq / 1e9, "speedup_ceiling": machine / rate_seq}


def main() -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (lnn's default for the book: 1)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--models", default="mlp,lenet")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    print(f"{args.runs} runs x {args.steps} steps (batch {args.batch_size}, momentum 0.9, linear decay), {args.dtype}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, {platform.machine()}; "
          f"median [min - max] over {args.repeats} repetitions")
    out = []
    for kind in args.models.split(","):
        f = bench(kind, args, dtype)
        out.append(f)
        b, s = f["batched"], f["sequential"]
        print(f"  {kind:6s} sequential {s['median_s']:7.3f} s [{s['min_s']:.3f} - {s['max_s']:.3f}]   "
              f"batched {b['median_s']:7.3f} s [{b['min_s']:.3f} - {b['max_s']:.3f}]   "
              f"speed-up {f['speedup_median']:5.2f}x (goal >= 5x)")
        print(f"         same results: max relative parameter difference {f['max_rel_param_difference']:.1e}; "
              f"rate {f['batched_gflops']:.2f} GFLOP/s = {f['share_of_bmm_rate']:.0%} of this machine's bmm rate "
              f"({f['machine_bmm_gflops']:.1f} GFLOP/s)")
        print(f"         the sequential runs already reach {f['sequential_gflops']:.2f} GFLOP/s: no batching can beat "
              f"them by more than {f['speedup_ceiling']:.1f}x on this machine")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return out


if __name__ == "__main__":
    main()
