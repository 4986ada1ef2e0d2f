"""Benchmark of the empirical NTK Gram matrix (chapter *Linearized networks*). Prints figures; not a test.

Compares, on the chapter's MLP 64-100-100-1 (ReLU, P = 16,701) with n inputs in float64:

* ``lnn.ntk.empirical_ntk`` (layer-wise Gram matrices for dense networks, no Jacobian);
* Jacobian contraction (JC) as in the PyTorch NTK tutorial: per-example Jacobians with ``vmap(jacrev)``, then an
  ``einsum`` contraction, written here independently of lnn (the baseline);
* NTK-vector products as in the same tutorial (a VJP then a JVP, vectorized over the rows of the identity).

Usage: ``python benchmarks/bench_ntk.py [--n 1000] [--repeats 5] [--skip-vp] [--threads T]``. Reports the best of ``repeats``
wall-clock times (after one warm-up call) and the relative errors ``max|K - K_JC| / max|K_JC|``.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from lnn.ntk import empirical_ntk, mlp


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


def best_time(fn, repeats: int) -> tuple[float, torch.Tensor]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="number of inputs (K is n x n)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-vp", action="store_true", help="skip the (slow) NTK-vector-product method")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    g = torch.Generator().manual_seed(0)
    net = mlp([64, 100, 100, 1], "relu", generator=g)
    x = torch.randn(args.n, 64, dtype=torch.float64, generator=g)
    print(f"MLP 64-100-100-1, P = {sum(p.numel() for p in net.parameters())}, n = {args.n}, float64, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    t_lnn, K = best_time(lambda: empirical_ntk(net, x), args.repeats)
    t_jc, K_jc = best_time(lambda: jc_baseline(net, x, x), args.repeats)
    scale = K_jc.abs().max()
    rows = [("lnn.ntk.empirical_ntk (layer-wise)", t_lnn, (K - K_jc).abs().max() / scale),
            ("Jacobian contraction (tutorial)", t_jc, torch.tensor(0.0))]
    if not args.skip_vp:
        t_vp, K_vp = best_time(lambda: ntk_vp_baseline(net, x, x), max(1, args.repeats // 2))
        rows.append(("NTK-vector products (tutorial)", t_vp, (K_vp - K_jc).abs().max() / scale))
    print(f"{'method':38s} {'best time [s]':>14s} {'speed-up vs JC':>15s} {'rel. error vs JC':>17s}")
    for name, t, err in rows:
        print(f"{name:38s} {t:14.4f} {t_jc / t:15.1f} {err.item():17.1e}")


if __name__ == "__main__":
    main()
