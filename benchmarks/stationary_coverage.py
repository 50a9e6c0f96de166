"""Coverage of a stationary fit's credible intervals with the default settings (issue 12).

Usage (from the repository root): ``python benchmarks/stationary_coverage.py [--sets 200] [--compare]``

For each cell (N, R) it draws ``--sets`` true parameter vectors
``theta = generate_thetas(N, 2, T=1, seed=s)`` (s = 0, 1, ...), R patterns from
each, and fits all of them in ONE batched call ``ti.fit(spikes, 2, stationary=True)``
with the defaults (a fixed prior N(0, 1 I): mu not learned). The interval is the
closed-form Gaussian one, ``result.theta_intervals(level)``:
theta_s -/+ Phi^{-1}((1 + level) / 2) sqrt(diag sigma_s), with sigma_s the
Laplace posterior covariance (R G(theta_s) + Sigma^{-1})^{-1}. Coverage is the
fraction of all D x sets true entries inside their interval (closed ends).

Columns: coverage at 0.9 and 0.95, mean |theta_s - theta|, the number of
couplings whose neurons never fired together (y_S = 0), and the median and
most negative estimate of those. ``--compare`` adds the published library's
stationary settings (``mstep=True, sigma_o=0.1``: mu learned) for reference.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's torch_ising

import torch_ising as ti  # noqa: E402


def cell(N: int, R: int, sets: int, **fit_kw) -> dict[str, float]:
    """Coverage and errors of one grid cell, fitted as one batch."""
    theta = torch.cat([ti.generate_thetas(N, 2, T=1, seed=s) for s in range(sets)])  # (sets, D)
    spikes = torch.stack([ti.generate_spikes(theta[s : s + 1], R, seed=10_000 + s) for s in range(sets)])
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ti.FitWarning)  # the never-co-firing pairs are expected here
        r = ti.fit(spikes, 2, stationary=True, progress=False, **fit_kw)
    wall = time.perf_counter() - t0
    est = r.theta_s[:, 0]
    out = {"wall": wall, "err": float((est - theta).abs().mean())}
    for level in (0.9, 0.95):
        ci = r.theta_intervals(level)
        inside = (ci.lower[:, 0] <= theta) & (theta <= ci.upper[:, 0])
        out[f"cov{level}"] = float(inside.double().mean())
    never = r.y[:, 0, N:] == 0  # couplings whose neurons never fire together
    vals = est[:, N:][never]
    out["n_never"] = int(never.sum())
    out["never_median"] = float(vals.median()) if vals.numel() else float("nan")
    out["never_min"] = float(vals.min()) if vals.numel() else float("nan")
    return out


def table(title: str, sets: int, **fit_kw) -> None:
    print(title)
    head = f"{'N':>2} {'R':>4}  {'cov@0.90':>8} {'cov@0.95':>8}  {'mean|err|':>9}"
    print(f"{head}  {'#y_S=0':>6} {'median':>7} {'min':>7}  {'fit s':>6}")
    for N in (3, 5):
        for R in (30, 300):
            c = cell(N, R, sets, **fit_kw)
            print(
                f"{N:>2} {R:>4}  {c['cov0.9']:8.3f} {c['cov0.95']:8.3f}  {c['err']:9.3f}  {c['n_never']:6d} "
                f"{c['never_median']:7.2f} {c['never_min']:7.2f}  {c['wall']:6.2f}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=200, help="generated data sets per cell")
    parser.add_argument("--compare", action="store_true", help="also the published settings (mu learned, 0.1)")
    args = parser.parse_args()
    torch.set_default_dtype(torch.float64)
    table(f"defaults: ti.fit(spikes, 2, stationary=True), {args.sets} data sets per cell", args.sets)
    if args.compare:
        table("published settings: mstep=True, sigma_o=0.1 (mu learned)", args.sets, mstep=True, sigma_o=0.1)


if __name__ == "__main__":
    main()
