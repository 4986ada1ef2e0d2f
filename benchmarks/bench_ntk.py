"""Benchmark of the empirical NTK Gram matrix (chapter *Linearized networks*). Prints figures; not a test.

Compares, on the chapter's MLP 64-100-100-1 (ReLU, P = 16,701) and on the LeNet-like CNN of :func:`lnn.ntk.lenet`
(P = 18,989; ``--model lenet``, by default on n = 1797 inputs, the size of the digits data) in float64:

* ``lnn.ntk.empirical_ntk`` (layer by layer, no Jacobian: Gram matrices of dense layers, per-example gradients of
  convolutions as sums over positions of outer products);
* Jacobian contraction (JC) as in the PyTorch NTK tutorial: per-example Jacobians with ``vmap(jacrev)``, then an
  ``einsum`` contraction, written here independently of lnn (the baseline);
* NTK-vector products as in the same tutorial (a VJP then a JVP, vectorized over the rows of the identity).

Usage: ``python benchmarks/bench_ntk.py [--model mlp|lenet] [--n 1000] [--repeats 5] [--skip-vp] [--threads T]``.
Reports the median and the range (min - max) of ``repeats`` wall-clock times, the first call's time (in a fresh
process, before any warm-up) and the relative errors ``max|K - K_JC| / max|K_JC|``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from lnn.ntk import empirical_ntk, lenet, mlp


def jc_baseline(net: torch.nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """Jacobian contraction, the PyTorch tutorial's way: J(x1) J(x2)^T from per-example Jacobians."""
    params = {k: v.detach() for k, v in net.named_parameters()}

    def f_single(p, x):
        return functional_call(net, p, (x.unsqueeze(0),)).squeeze(0)

    jac1 = vmap(jacrev(f_single), (None, 0))(params, x1)
    jac2 = vmap(jacrev(f_single), (None, 0))(params, x2)
    jac1 = [j.flatten(2) for j in jac1.values()]  # (n, O, P_layer)
    jac2 = [j.flatten(2) for j in jac2.values()]
    result = torch.stack([torch.einsum("Naf,Mbf->NMab", j1, j2) for j1, j2 in zip(jac1, jac2)]).sum(0)
    return result[:, :, 0, 0]


def ntk_vp_baseline(net: torch.nn.Module, x1: torch.Tensor, x2: torch.Tensor, chunk: int = 100) -> torch.Tensor:
    """NTK-vector products, the PyTorch tutorial's way (rows in chunks of ``chunk`` to bound memory)."""
    params = {k: v.detach() for k, v in net.named_parameters()}

    def f(p, x):
        return functional_call(net, p, (x,)).squeeze(-1)

    _, vjp_fn = vjp(lambda p: f(p, x1), params)

    def row(e):
        (tangent,) = vjp_fn(e)
        return jvp(lambda p: f(p, x2), (params,), (tangent,))[1]

    eye = torch.eye(x1.shape[0], dtype=x1.dtype)
    return torch.cat([vmap(row)(eye[s : s + chunk]) for s in range(0, x1.shape[0], chunk)])


def timings(fn, repeats: int) -> tuple[float, list[float], torch.Tensor]:
    """The first call's time, then ``repeats`` further times."""
    t0 = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return first, times, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["mlp", "lenet"], default="mlp")
    parser.add_argument("--n", type=int, default=None, help="number of inputs, K is n x n (mlp: 1000, lenet: 1797)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-vp", action="store_true", help="skip the (slow) NTK-vector-product method")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    g = torch.Generator().manual_seed(0)
    if args.model == "mlp":
        net, n, label = mlp([64, 100, 100, 1], "relu", generator=g), args.n or 1000, "MLP 64-100-100-1"
    else:
        net, n, label = lenet(generator=g), args.n or 1797, "LeNet-like CNN (conv 1-6, conv 6-16, dense 64-120-84-1)"
    x = torch.rand(n, 64, dtype=torch.float64, generator=g)
    print(f"{label}, P = {sum(p.numel() for p in net.parameters())}, n = {n}, float64, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; median [min - max] of {args.repeats}")

    first, t_lnn, K = timings(lambda: empirical_ntk(net, x), args.repeats)
    _, t_jc, K_jc = timings(lambda: jc_baseline(net, x, x), args.repeats)
    scale = K_jc.abs().max()
    rows = [("lnn.ntk.empirical_ntk (layer by layer)", t_lnn, (K - K_jc).abs().max() / scale),
            ("Jacobian contraction (tutorial)", t_jc, torch.tensor(0.0))]
    if not args.skip_vp:
        _, t_vp, K_vp = timings(lambda: ntk_vp_baseline(net, x, x), max(1, args.repeats // 2))
        rows.append(("NTK-vector products (tutorial)", t_vp, (K_vp - K_jc).abs().max() / scale))
    med_jc = statistics.median(t_jc)
    print(f"{'method':40s} {'median [s]':>10s} {'range [s]':>17s} {'speed-up vs JC':>15s} {'rel. error vs JC':>17s}")
    for name, t, err in rows:
        med = statistics.median(t)
        print(f"{name:40s} {med:10.4f} {min(t):8.4f}-{max(t):<8.4f} {med_jc / med:15.1f} {err.item():17.1e}")
    print(f"first call of lnn.ntk.empirical_ntk in this process: {first:.4f} s")


if __name__ == "__main__":
    main()
