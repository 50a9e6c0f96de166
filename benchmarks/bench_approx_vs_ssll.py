"""Approximate (pseudo-likelihood) fits side by side with the published SSLL library, in one run.

The published library is GPL-3 and is never imported by the package or the tests; fetch it into a
folder outside this repository and point this script at it:

    SSLL_PATH=/path/to/ssll python benchmarks/bench_approx_vs_ssll.py --N 30 60

For each N the data are drawn with the published library's own ``synthesis.generate_thetas`` and
``generate_spikes_gibbs`` (pairwise, T = 100, R = 200 by default; cached in ``--cache`` because the
Gibbs sampler takes minutes at N = 60). Then, on that data:

* SSLL ``run(spikes, 2, param_est="pseudo", param_est_eta="mf")`` (its pseudo-likelihood +
  mean-field fit, conjugate-gradient MAP, its own stopping rule);
* torch_ising ``fit(spikes, 2, method="pseudo", eta_method="tap")`` with ``--estep`` (default: the
  default E-step of that method).

Each row gives wall time, EM iterations, seconds per iteration, the ratios SSLL / ours and the
MISE = mean_{t,d} (theta_s - theta)^2 of both against the generating theta. The 1-minute load
average is printed with each row: SSLL's numpy is multi-threaded, so quote an idle machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time

import numpy as np
import torch

import torch_ising as ti

sys.path.insert(0, os.path.dirname(__file__))
from bench_vs_ssll import load_ssll  # noqa: E402


def data(synthesis, N: int, T: int, R: int, seed: int, cache: str) -> tuple[np.ndarray, np.ndarray]:
    path = os.path.join(cache, f"gibbs_N{N}_T{T}_R{R}_s{seed}.npz")
    if os.path.exists(path):
        z = np.load(path)
        return z["spikes"], z["theta"]
    theta = synthesis.generate_thetas(N, 2, T, seed=seed)
    with contextlib.redirect_stdout(io.StringIO()):
        spikes = synthesis.generate_spikes_gibbs(theta, N, 2, R, pre_n=100, sample_steps=1, seed=seed)
    os.makedirs(cache, exist_ok=True)
    np.savez(path, spikes=spikes, theta=theta)
    return spikes, theta


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--N", type=int, nargs="+", default=[30, 60])
    ap.add_argument("--T", type=int, default=100)
    ap.add_argument("--R", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--estep", default=None, help="torch_ising E-step (None: the method's default)")
    ap.add_argument("--eta-method", default="tap")
    ap.add_argument("--no-ssll", action="store_true", help="time torch_ising only")
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/torch_ising_bench"))
    a = ap.parse_args()
    ssll, synthesis, _ = load_ssll()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, T={a.T}, R={a.R}, eta={a.eta_method}")
    print(
        "| N | load | SSLL s (iters) | SSLL s/iter | SSLL MISE | ours s (iters) | ours s/iter | ours MISE "
        "| x per iter | x whole fit |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for N in a.N:
        spikes, theta = data(synthesis, N, a.T, a.R, a.seed, a.cache)
        load0 = os.getloadavg()[0]
        if a.no_ssll:
            t_s, n_s, mise_s = float("nan"), 1, float("nan")
        else:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                t0 = time.perf_counter()
                emd = ssll.run(spikes, 2, map_function="cg", param_est="pseudo", param_est_eta="mf", EM_Info=False)
                t_s = time.perf_counter() - t0
            n_s = int(emd.iterations)
            mise_s = float(np.mean((emd.theta_s - theta) ** 2))
        kw = {} if a.estep is None else {"estep": a.estep}
        t0 = time.perf_counter()
        r = ti.fit(spikes, 2, method="pseudo", eta_method=a.eta_method, progress=False, **kw)
        t_o = time.perf_counter() - t0
        n_o = int(r.iterations)
        mise_o = float(np.mean((r.theta_s.detach().cpu().numpy() - theta) ** 2))
        load = max(load0, os.getloadavg()[0])
        print(
            f"| {N} | {load:.2f} | {t_s:.1f} ({n_s}) | {t_s / n_s:.3f} | {mise_s:.4f} | {t_o:.1f} ({n_o}) | "
            f"{t_o / n_o:.3f} | {mise_o:.4f} | {(t_s / n_s) / (t_o / n_o):.1f} | {t_s / t_o:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
