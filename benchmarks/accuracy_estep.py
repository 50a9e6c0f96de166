"""Accuracy of the two E-steps against the generating theta, and their l on the parity cases.

Usage (from the repository root):

    python benchmarks/accuracy_estep.py                 # N = 5, O = 2, T = 100, R = 200 and R = 20, 20 seeds
    python benchmarks/accuracy_estep.py --parity        # also l of both at their fixed points, seven parity cases
    python benchmarks/accuracy_estep.py --parity-only   # only that table

For each R, the 20 data sets are fitted as one batch with each E-step (default fit, stop="converged").
Reported per E-step: the MISE of theta_s (mean over seeds, bins and parameters of (theta_s - theta)^2),
the mean KL(p_true || p_fit) per bin (nats, exact over the 2^N patterns), and the coverage of the
95% intervals theta_s +- 1.96 sqrt(diag sigma_s).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

import torch_ising as ti

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def kl_per_bin(theta_true: torch.Tensor, theta_fit: torch.Tensor, N: int) -> torch.Tensor:
    lp = ti.moments.log_probs(theta_true, N, 2)
    lq = ti.moments.log_probs(theta_fit, N, 2)
    return (lp.exp() * (lp - lq)).sum(-1)


def study(N: int, T: int, R: int, seeds: int) -> None:
    thetas = torch.stack([ti.generate_thetas(N, 2, T, seed=100 + s) for s in range(seeds)])
    spikes = torch.stack([ti.generate_spikes(thetas[s], R, seed=200 + s) for s in range(seeds)])
    rows = []
    for estep in ("filter", "joint"):
        t0 = time.perf_counter()
        r = ti.fit(spikes, 2, progress=False, estep=estep)
        dt = time.perf_counter() - t0
        err = r.theta_s - thetas
        sd = torch.diagonal(r.sigma_s, dim1=-2, dim2=-1).sqrt()
        cover = ((err.abs() <= 1.96 * sd).double().mean()).item()
        mise = (err**2).mean().item()
        kl = kl_per_bin(thetas, r.theta_s, N).mean().item()
        rows.append((estep, mise, kl, cover, dt, int(r.converged.sum())))
    print(f"N={N} T={T} R={R}, {seeds} seeds (one batched fit per E-step)")
    print("| E-step | MISE theta_s | mean KL per bin | 95% coverage | fit time (s) | converged |")
    print("|---|---|---|---|---|---|")
    for e, mise, kl, cov, dt, nc in rows:
        print(f"| {e} | {mise:.5f} | {kl:.6f} | {cov:.4f} | {dt:.1f} | {nc}/{seeds} |")
    f, j = rows
    print(
        f"joint vs filter: MISE {100 * (j[1] / f[1] - 1):+.1f}%, KL {100 * (j[2] / f[2] - 1):+.1f}%, "
        f"coverage {100 * (j[3] / f[3] - 1):+.1f}%"
    )


def parity() -> None:
    from tests.statespace.test_parity import CASES
    from tests.statespace.test_parity import load as load_case

    print("l at the fixed point of the default fit, both E-steps (each is its own Laplace approximation)")
    print("| case | published tight__mll | filter | joint | joint - filter |")
    print("|---|---|---|---|---|")
    for case in CASES:
        d, st, kw = load_case(case)
        out = []
        for estep in ("filter", "joint"):
            if estep == "joint" and "state_ar" in kw:
                out.append(float("nan"))
                continue
            r = ti.fit(d["spikes"], st["O"], progress=False, estep=estep, **kw)
            out.append(r.mll)
        print(f"| {case} | {float(d['tight__mll']):.4f} | {out[0]:.4f} | {out[1]:.4f} | {out[1] - out[0]:+.4f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--N", type=int, default=5)
    ap.add_argument("--T", type=int, default=100)
    ap.add_argument("--R", type=int, nargs="+", default=[200, 20])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--parity", action="store_true")
    ap.add_argument("--parity-only", action="store_true", help="only the parity table")
    a = ap.parse_args()
    for R in [] if a.parity_only else a.R:
        study(a.N, a.T, R, a.seeds)
    if a.parity or a.parity_only:
        parity()


if __name__ == "__main__":
    main()
