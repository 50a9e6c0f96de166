"""Block-tridiagonal solvers: odd-even cyclic reduction against the sequential reference.

    python benchmarks/bench_solvers.py [--T 50] [--D 21 36 55 78 105]

Prints ms (best of 10) for the solve alone and with covariances, B = 1, random SPD blocks whose
couplings are -I (the default fit's J_{t+1,t} = -Q^{-1} F with F = I and a scalar Q): given as
full blocks, and as diagonals (``diagonal_lower=True``, what the joint E-step passes for them).
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
    print(
        "| D | parallel solve / with cov (ms) | sequential solve / with cov (ms) "
        "| diagonal couplings: parallel | diagonal couplings: sequential |"
    )
    print("|---|---|---|---|---|")
    for D in a.D:
        d, lo, r = _problem(a.T, D)
        k = torch.diagonal(lo, dim1=-2, dim2=-1)
        row = []
        for solver, low, kw in (
            (solve_tridiagonal, lo, {}),
            (solve_tridiagonal_sequential, lo, {}),
            (solve_tridiagonal, k, {"diagonal_lower": True}),
            (solve_tridiagonal_sequential, k, {"diagonal_lower": True}),
        ):
            ms = [
                _best_ms(lambda c=c, f=solver, lw=low, kw=kw, d=d, r=r: f(d, lw, r, want_cov=c, **kw))
                for c in (False, True)
            ]
            row.append(f"{ms[0]:.2f} / {ms[1]:.2f}")
        print(f"| {D} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
