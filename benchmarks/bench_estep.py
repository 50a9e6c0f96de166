"""Benchmark: time per E-step and a whole default fit (exact, pairwise).

Usage:
    python benchmarks/bench_estep.py                          # CPU: N = 12, 16, 20 (T = 50, R = 200)
    python benchmarks/bench_estep.py --fit 20                 # also a whole default fit at N = 20
    python benchmarks/bench_estep.py --device cuda --N 20 26 --T 100 50
    python benchmarks/bench_estep.py --device cuda --batch 64 --N 10
    python benchmarks/bench_estep.py --N 5 --T 10000 --R 50 --estep joint   # a long recording

The E-step is timed twice: cold (mode searches start at the prediction, as in
the first EM iteration) and warm (started at the previous smoothed means, as
in every later EM iteration).
"""

from __future__ import annotations

import argparse
import functools
import time

import torch

import torch_ising as ti
from torch_ising.basis import sufficient_stats
from torch_ising.statespace import ExactIsing, StateSpaceParams, e_step


@functools.lru_cache(maxsize=8)
def thetas(N: int, T: int) -> torch.Tensor:
    """generate_thetas once per (N, T); beyond T = 2000 a 500-bin path interpolated linearly to T bins.

    generate_thetas draws Gaussian-process paths with a T x T covariance: O(T^3), many minutes at
    T = 10^4.
    """
    if T <= 2000:
        return ti.generate_thetas(N, 2, T, seed=1)
    coarse = ti.generate_thetas(N, 2, 500, seed=1)
    pos = torch.linspace(0, 499, T, dtype=coarse.dtype)
    lo = pos.floor().long().clamp(max=498)
    w = (pos - lo)[:, None]
    return (1 - w) * coarse[lo] + w * coarse[lo + 1]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench(N: int, T: int, R: int, B: int, device: str, estep: str = "joint") -> None:
    D = ti.basis.compute_D(N, 2)
    theta = thetas(N, T)
    spikes = torch.stack([ti.generate_spikes(theta, R, seed=10 + b, device=device) for b in range(B)])
    y = sufficient_stats(spikes.reshape(B * T, R, N), 2).reshape(B, T, D).to(device)
    obs = ExactIsing(y, R, N, 2)
    eye = torch.eye(D, dtype=torch.float64, device=device).expand(B, D, D)
    params = StateSpaceParams(
        torch.zeros(B, D, dtype=torch.float64, device=device), 0.1 * eye, 0.01 * eye, eye.clone(), None
    )
    from torch_ising._threads import threads_for

    with threads_for(B * 2**N, D, device):
        sync(device)
        t0 = time.perf_counter()
        es = e_step(obs, params, estep=estep)
        sync(device)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        e_step(obs, params, theta_init=es.smooth.theta_s, estep=estep)
        sync(device)
        warm = time.perf_counter() - t0
    print(
        f"N={N:>2} D={D:>4} T={T:>3} R={R} B={B:>3} {device} {estep:>6}: E-step cold {cold:7.3f}s  warm {warm:7.3f}s"
        f"  (Newton iterations {es.filt.newton_iterations})"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--N", type=int, nargs="+", default=[12, 16, 20])
    ap.add_argument("--T", type=int, nargs="+", default=[50])
    ap.add_argument("--R", type=int, default=200)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--fit", type=int, default=None, help="also time a whole default fit at this N")
    ap.add_argument("--estep", nargs="+", default=["joint", "filter"], help="E-steps to time")
    a = ap.parse_args()
    Ts = a.T if len(a.T) == len(a.N) else a.T * len(a.N)
    for N, T in zip(a.N, Ts, strict=True):
        for estep in a.estep:
            bench(N, T, a.R, a.batch, a.device, estep)
    if a.fit:
        N, T = a.fit, Ts[0]
        spikes = ti.generate_spikes(thetas(N, T), a.R, seed=2, device=a.device)
        t0 = time.perf_counter()
        r = ti.fit(spikes, 2, progress=False, device=a.device)
        sync(a.device)
        print(
            f"whole default fit N={N} T={T} R={a.R} {a.device}: {time.perf_counter() - t0:.1f}s, "
            f"{r.iterations} iterations, {r.e_steps} E-steps, converged={r.converged}, mll={r.mll:.3f}"
        )


if __name__ == "__main__":
    main()
