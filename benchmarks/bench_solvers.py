"""Block-tridiagonal solvers: odd-even cyclic reduction against the sequential reference.

    python benchmarks/bench_solvers.py [--T 50] [--D 21 36 55 78 105]

Prints ms (best of 10) for the solve alone and with covariances, B = 1, random SPD blocks.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from torch_ising.statespace.joint import solve_tridiagonal, solve_tridiagonal_sequential


def _problem(T: int, D: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    A = 0.3 * torch.randn(1, T, D, D, dtype=torch.float64, generator=g)
    diag = A @ A.transpose(-1, -2) + 3 * torch.eye(D, dtype=torch.float64)
    lower = -torch.eye(D, dtype=torch.float64).expand(1, T - 1, D, D).clone()
    return diag, lower, torch.randn(1, T, D, dtype=torch.float64, generator=g)


def _best_ms(f, n: int = 10) -> float:
    f()
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return 1e3 * best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", type=int, default=50)
    ap.add_argument("--D", type=int, nargs="+", default=[21, 36, 55, 78, 105])
    a = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, T={a.T}, load {os.getloadavg()[0]:.2f}")
    print("| D | parallel solve / with cov (ms) | sequential solve / with cov (ms) |")
    print("|---|---|---|")
    for D in a.D:
        d, lo, r = _problem(a.T, D)
        par = [_best_ms(lambda c=c, p=(d, lo, r): solve_tridiagonal(*p, want_cov=c)) for c in (False, True)]
        seq = [_best_ms(lambda c=c, p=(d, lo, r): solve_tridiagonal_sequential(*p, want_cov=c)) for c in (False, True)]
        print(f"| {D} | {par[0]:.2f} / {par[1]:.2f} | {seq[0]:.2f} / {seq[1]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
