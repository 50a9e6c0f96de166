"""Large-N approximations (issue 5): accuracy against exact results, breakdown, scale and memory.

Parts (``--part``, several allowed):

* ``accuracy``: N = 12 pairwise, T = 50, R = 200, fixed seeds. The mean
  integrated squared error, MISE = mean_{t, d} (theta_s[t, d] - theta[t, d])^2,
  of the exact fit and of the pseudo-likelihood fits with eta_method "tap" and
  "bethe_hybrid"; and, at weak coupling (|theta_ij| <= 0.3), the largest error
  of every eta method's eta and its relative psi error against exact enumeration.
* ``breakdown``: error against coupling strength c (couplings uniform in
  [-c, c], N = 12, biases -2 +- 0.5): max |eta - eta_exact|, max relative psi
  error and the converged fraction for every eta method.
* ``scale``: wall time and peak memory of ``fit(method="pseudo", eta_method="tap")``
  at the sizes given by ``--sizes`` (default N = 60 and 120, T = 100, R = 200).
  Each size runs in a fresh subprocess; CPU peak memory is the growth of the
  peak resident set size (ru_maxrss) over the process's baseline after the
  data are made; on CUDA it is torch.cuda.max_memory_allocated.

Every part prints Markdown table rows ready for ``benchmarks/RESULTS.md``.

Example:
    python benchmarks/bench_large_n.py --part accuracy breakdown
    python benchmarks/bench_large_n.py --part scale --sizes 60 120 --threads 2
    python benchmarks/bench_large_n.py --part scale --sizes 200 --device cuda
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings

import torch

import torch_ising as ti
from torch_ising import moments
from torch_ising.approx import ETA_METHODS, ApproximationWarning, approx_moments
from torch_ising.statespace import model as _model

torch.set_default_dtype(torch.float64)

METHODS = ("tap", "bethe_bp", "bethe_cccp", "bethe_hybrid", "mc")


MC_OPTS = {"n_chains": 512, "n_sweeps": 200, "burn_in": 100, "n_beta": 12, "ti_chains": 512}
MC_OPTS_BREAKDOWN = {"n_chains": 256, "n_sweeps": 150, "burn_in": 50, "n_beta": 8, "ti_chains": 256}


def _coupled_thetas(N: int, n: int, c: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    D = ti.basis.compute_D(N, 2)
    th = torch.empty(n, D)
    th[:, :N] = -2.0 + 0.5 * torch.randn(n, N, generator=g)
    th[:, N:] = c * (2 * torch.rand(n, D - N, generator=g) - 1)
    return th


def accuracy(max_iter: int) -> None:
    N, T, R = 12, 50, 200
    theta = ti.generate_thetas(N, 2, T, seed=12)
    spikes = ti.generate_spikes(theta, R, seed=13)
    print(f"\n### Fit accuracy, N={N}, T={T}, R={R} (generate_thetas seed 12, spikes seed 13)\n")
    print("| fit | MISE of theta_s | ratio to exact | EM iterations | wall time (s) |")
    print("|---|---|---|---|---|")
    t0 = time.perf_counter()
    ex = ti.fit(spikes, 2, progress=False, max_iter=max_iter) if hasattr(ti, "fit") else _model.fit(spikes, 2)
    t_ex = time.perf_counter() - t0
    mise_ex = float(((ex.theta_s - theta) ** 2).mean())
    print(f"| exact | {mise_ex:.5f} | 1.00 | {ex.iterations} | {t_ex:.1f} |")
    for em in ("tap", "bethe_hybrid"):
        t0 = time.perf_counter()
        res = _model.fit(spikes, 2, method="pseudo", eta_method=em, progress=False, max_iter=max_iter)
        dt = time.perf_counter() - t0
        mise = float(((res.theta_s - theta) ** 2).mean())
        print(f"| pseudo + {em} | {mise:.5f} | {mise / mise_ex:.2f} | {res.iterations} | {dt:.1f} |")

    th = _coupled_thetas(N, 50, 0.3, 21)
    exm = moments.moments(th, N, 2, with_fisher=False)
    print(f"\n### Approximate eta and psi at weak coupling (N={N}, 50 vectors, |theta_ij| <= 0.3)\n")
    print("| eta method | max abs eta error | max rel psi error | converged |")
    print("|---|---|---|---|")
    for name in METHODS:
        opts = MC_OPTS if name == "mc" else {}
        a = approx_moments(th, N, 2, name, **opts)
        e = float((a.eta - exm.eta).abs().max())
        p = float(((a.psi - exm.psi) / exm.psi).abs().max())
        print(f"| {name} | {e:.2e} | {p:.2e} | {float(a.converged.double().mean()):.2f} |")


def breakdown() -> None:
    N = 12
    print(f"\n### Breakdown at strong coupling (N={N}, 20 vectors per row, couplings uniform in [-c, c])\n")
    print("| c | " + " | ".join(f"{m} eta err / psi rel err / conv" for m in METHODS) + " |")
    print("|---|" + "---|" * len(METHODS))
    for c in (0.1, 0.3, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0):
        th = _coupled_thetas(N, 20, c, 31)
        exm = moments.moments(th, N, 2, with_fisher=False)
        cells = []
        for name in METHODS:
            opts = dict(MC_OPTS_BREAKDOWN) if name == "mc" else {}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ApproximationWarning)
                a = ETA_METHODS[name](th, N, 2, on_fail="ignore", **opts)
            e = float((a.eta - exm.eta).abs().max())
            p = float(((a.psi - exm.psi) / exm.psi).abs().max())
            cells.append(f"{e:.1e} / {p:.1e} / {float(a.converged.double().mean()):.2f}")
        print(f"| {c} | " + " | ".join(cells) + " |")


def _one_size(N: int, T: int, R: int, device: str, eta_method: str, max_iter: int, stop: str, hook: bool) -> dict:
    """Run in a subprocess: make data, then time one fit and measure its peak memory."""
    del hook  # the filter uses PseudoLikelihood.mode (Newton-CG) itself
    dev = torch.device(device)
    theta = ti.generate_thetas(N, 2, T, seed=N)
    spikes = ti.generate_spikes(theta.to(dev), R, seed=N + 1)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    res = _model.fit(
        spikes, 2, method="pseudo", eta_method=eta_method, progress=False, max_iter=max_iter, stop=stop, device=dev
    )
    if dev.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base_rss
    th_s = res.theta_s.to(theta)
    mise = float(((th_s - theta) ** 2).mean())
    return {
        "N": N,
        "D": ti.basis.compute_D(N, 2),
        "T": T,
        "R": R,
        "device": str(dev),
        "eta_method": eta_method,
        "wall_s": wall,
        "peak_bytes": int(peak),
        "iterations": res.iterations,
        "converged": bool(res.converged),
        "mise": mise,
        "threads": torch.get_num_threads(),
        "mode_search": "Newton-CG (obs.mode)",
    }


def scale(
    sizes: list[int], T: int, R: int, device: str, eta_method: str, max_iter: int, stop: str, threads: int, hook: bool
):
    print(f"\n### Scale: fit(method='pseudo', eta_method='{eta_method}'), T={T}, R={R}, stop='{stop}'\n")
    print(
        "| N | D | device | threads | mode search | wall time (s) | EM iterations | converged "
        "| peak memory (MiB) | MISE |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for N in sizes:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            json.dumps([N, T, R, device, eta_method, max_iter, stop, hook]),
            "--threads",
            str(threads),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
        if out.returncode != 0:
            print(f"| {N} | failed: {out.stderr.strip().splitlines()[-1] if out.stderr else out.returncode} |")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"| {r['N']} | {r['D']} | {r['device']} | {r['threads']} | {r['mode_search']} | {r['wall_s']:.1f} | "
            f"{r['iterations']} | "
            f"{r['converged']} | {r['peak_bytes'] / 2**20:.0f} | {r['mise']:.4f} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", nargs="+", default=["accuracy", "breakdown"], choices=["accuracy", "breakdown", "scale"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[60, 120])
    ap.add_argument("--T", type=int, default=100)
    ap.add_argument("--R", type=int, default=200)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--eta-method", default="tap")
    ap.add_argument("--max-iter", type=int, default=1000)
    ap.add_argument("--stop", default="converged", choices=["converged", "ssll"])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--mode-hook", action="store_true", help=argparse.SUPPRESS)  # kept for old command lines
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        N, T, R, device, em, max_iter, stop, hook = json.loads(args.one)
        print(json.dumps(_one_size(N, T, R, device, em, max_iter, stop, hook)))
        return
    if "accuracy" in args.part:
        accuracy(args.max_iter)
    if "breakdown" in args.part:
        breakdown()
    if "scale" in args.part:
        scale(
            args.sizes,
            args.T,
            args.R,
            args.device,
            args.eta_method,
            args.max_iter,
            args.stop,
            args.threads,
            args.mode_hook,
        )


if __name__ == "__main__":
    main()
