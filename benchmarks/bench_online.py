"""Benchmark: time per ``OnlineFilter.step`` (one new bin, hyperparameters fixed).

Usage:
    python benchmarks/bench_online.py --N 10 --R 50 --steps 200

Prints the median and the 90th percentile of the wall time per step over ``--steps`` bins
of generated data (pairwise model, F = I, Q = 0.01 I).
"""

from __future__ import annotations

import argparse
import os
import time

import torch

import torch_ising as ti
from torch_ising.statespace import OnlineFilter, StateSpaceParams


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--N", type=int, nargs="+", default=[10])
    ap.add_argument("--R", type=int, default=50)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    for N in a.N:
        D = ti.basis.compute_D(N, 2)
        theta = ti.generate_thetas(N, 2, a.steps, seed=1)
        spikes = ti.generate_spikes(theta, a.R, seed=2).to(a.device)
        eye = torch.eye(D, dtype=torch.float64, device=a.device)
        params = StateSpaceParams(
            torch.full((D,), -1.0, dtype=torch.float64, device=a.device), 0.1 * eye, 0.01 * eye, eye
        )
        f = OnlineFilter(params, N, 2)
        times = []
        for t in range(a.steps):
            t0 = time.perf_counter()
            f.step(spikes[t])
            if a.device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        times.sort()
        med, p90 = times[len(times) // 2], times[int(0.9 * len(times))]
        print(
            f"N={N} D={D} R={a.R} {a.device}: OnlineFilter.step median {med * 1e3:.2f} ms, "
            f"90th percentile {p90 * 1e3:.2f} ms (load {os.getloadavg()[0]:.2f})"
        )


if __name__ == "__main__":
    main()
