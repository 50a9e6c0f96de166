"""Benchmark: one call computing psi + eta + Fisher (float64, pairwise).

Usage:
    python benchmarks/bench_moments.py                 # CPU, N = 12..24
    python benchmarks/bench_moments.py --device cuda --N 20 22 24 26 28 30
    python benchmarks/bench_moments.py --module --N 20 # the Ising module against the bare transform

Each N runs in a fresh subprocess so that its peak resident memory (CPU) or
peak allocated memory (CUDA) is its own.

With ``--module`` each row also times ``Ising.from_theta(theta, N, 2)`` followed by
``.psi()``, ``.expectation()`` and ``.fisher()`` (theta an ``nn.Parameter`` that requires
grad, autograd on), interleaved with the bare ``moments.moments(theta, N, 2)`` in the same
process, and prints the ratio of the best times (the goal: at most 2).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def run_one(N: int, device: str, repeats: int, module: bool = False) -> dict:
    import resource

    import torch

    import torch_ising as ti

    torch.manual_seed(0)
    D = ti.basis.compute_D(N, 2)
    theta = (0.5 * torch.randn(D, dtype=torch.float64)).to(device)
    theta[:N] -= 2.0

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    ti.moments.moments(theta, N, 2)  # warm-up
    sync()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ti.moments.moments(theta, N, 2)
        sync()
        times.append(time.perf_counter() - t0)
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {
        "N": N,
        "D": D,
        "device": device,
        "best_s": min(times),
        "median_s": sorted(times)[len(times) // 2],
        "peak_MiB": peak,
    }
    if module:
        bare, mod = [], []
        for _ in range(repeats):  # interleaved, so that both see the same machine load
            t0 = time.perf_counter()
            ti.moments.moments(theta, N, 2)
            sync()
            bare.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            m = ti.Ising.from_theta(theta, N, 2)
            m.psi(), m.expectation(), m.fisher()
            sync()
            mod.append(time.perf_counter() - t0)
        out.update(bare_s=min(bare), module_s=min(mod), ratio=min(mod) / min(bare))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--N", type=int, nargs="+", default=[12, 16, 20, 22, 24])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--module", action="store_true", help="also time the Ising module (psi, eta, Fisher)")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one is not None:
        print(json.dumps(run_one(a.one, a.device, a.repeats, a.module)))
        return
    print(f"load average {os.getloadavg()[0]:.2f}, torch threads {__import__('torch').get_num_threads()}")
    extra = "  bare (same run)  module  ratio" if a.module else ""
    print(f"{'N':>3} {'D':>5} {'best':>10} {'median':>10} {'peak MiB':>9}  device{extra}")
    for N in a.N:
        reps = a.repeats if N < 24 else max(3, a.repeats // 2)
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(N), "--device", a.device, "--repeats", str(reps)]
            + (["--module"] if a.module else []),
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        tail = f"  {r['bare_s'] * 1e3:>12.2f}ms {r['module_s'] * 1e3:>6.2f}ms {r['ratio']:>6.2f}" if a.module else ""
        print(
            f"{r['N']:>3} {r['D']:>5} {r['best_s'] * 1e3:>8.2f}ms {r['median_s'] * 1e3:>8.2f}ms "
            f"{r['peak_MiB']:>9.0f}  {r['device']}{tail}"
        )


if __name__ == "__main__":
    main()
