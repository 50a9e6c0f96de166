"""Benchmark: derived quantities for T = 500 bins at N = 12 in one batched call.

    python benchmarks/bench_thermodynamics.py [--T 500] [--N 12] [--order 2] [--device cpu|cuda] [--repeat 5]

Prints the median wall time of one call of ``thermodynamics(theta, N, order, y, R)``
over all bins, the time of the same work as a Python loop over bins (what the
batched call replaces), the time of the heat capacity over a 51-point beta grid,
and of 90% credible intervals from --samples posterior samples per bin.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from torch_ising.basis import compute_D
from torch_ising.intervals import credible_intervals
from torch_ising.thermodynamics import heat_capacity_curve, thermodynamics


def _timeit(fn, repeat: int, device: torch.device) -> float:
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--T", type=int, default=500)
    ap.add_argument("--N", type=int, default=12)
    ap.add_argument("--order", type=int, default=2)
    ap.add_argument("--R", type=int, default=200)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--loop-bins", type=int, default=50, help="bins timed in the Python-loop comparison")
    ap.add_argument("--samples", type=int, default=200, help="posterior samples per bin for credible intervals")
    args = ap.parse_args()

    device = torch.device(args.device)
    torch.set_default_dtype(torch.float64)
    g = torch.Generator().manual_seed(0)
    D = compute_D(args.N, args.order)
    theta = (0.3 * torch.randn(args.T, D, generator=g)).to(device)
    theta[:, : args.N] -= 2.0
    y = torch.rand(args.T, D, generator=g).to(device) * 0.1
    sigma_s = (0.01 * torch.eye(D)).expand(args.T, D, D).contiguous().to(device)

    thermodynamics(theta[:2], args.N, args.order, y=y[:2], R=args.R)  # warm-up
    batched = _timeit(lambda: thermodynamics(theta, args.N, args.order, y=y, R=args.R), args.repeat, device)
    n_loop = min(args.loop_bins, args.T)

    def loop() -> None:
        for t in range(n_loop):
            thermodynamics(theta[t], args.N, args.order, y=y[t], R=args.R)

    looped = _timeit(loop, max(1, args.repeat // 2), device) * args.T / n_loop
    betas = torch.linspace(0.0, 2.0, 51, device=device)
    curve = _timeit(lambda: heat_capacity_curve(theta, args.N, args.order, betas), max(1, args.repeat // 2), device)
    ci = _timeit(
        lambda: credible_intervals(
            theta, sigma_s, args.N, args.order, n_samples=args.samples, seed=0, y=y, R=args.R, quantities="all"
        ),
        1,
        device,
    )
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {name}; N={args.N}, order={args.order}, D={D}, T={args.T}, float64")
    print(f"thermodynamics, one batched call over {args.T} bins: {batched * 1e3:.2f} ms")
    print(f"  same work as a Python loop over bins (extrapolated from {n_loop} bins): {looped * 1e3:.1f} ms")
    print(f"heat capacity over a 51-point beta grid, all bins: {curve * 1e3:.1f} ms")
    print(f"credible intervals ({args.samples} samples/bin, all quantities), all bins: {ci:.2f} s")


if __name__ == "__main__":
    main()
