"""Measured peak memory of exact enumeration against :func:`torch_ising.moments.memory_estimate` (issue 13).

Each case runs in a fresh process (so the cached seed pattern order is built, as on a first call) and
reads the kernel's resident-set high-water mark (VmHWM) after resetting it just before the call.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_memory_estimate.py            # N = 20, 22, 24
    OMP_NUM_THREADS=1 python benchmarks/bench_memory_estimate.py 20 22
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_PROBE = """
import sys, torch
import torch_ising as ti
N, seed_order = int(sys.argv[1]), sys.argv[2] == "1"
ti.moments.probs(torch.zeros(ti.basis.compute_D(4, 2), dtype=torch.float64), 4, 2)  # torch's own first-call allocations
theta = torch.zeros(ti.basis.compute_D(N, 2), dtype=torch.float64)
def hwm():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # reset the high-water mark to the current resident set
base = hwm()
ti.moments.probs(theta, N, 2, seed_order=seed_order)
print(hwm() - base, ti.moments.memory_estimate(N, seed_order=seed_order))
"""


def measure(N: int, seed_order: bool = True) -> tuple[int, int]:
    """(measured peak bytes above the baseline, estimated bytes) of ``probs`` at N neurons, order 2."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(N), "1" if seed_order else "0"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout.split()
    return int(out[0]), int(out[1])


def main(argv: list[str]) -> None:
    Ns = [int(a) for a in argv] or [20, 22, 24]
    print(f"{'N':>3} {'order':>10} {'measured MiB':>13} {'estimate MiB':>13} {'ratio':>6}")
    for N in Ns:
        for seed_order in (True, False):
            peak, est = measure(N, seed_order)
            name = "seed" if seed_order else "mask"
            print(f"{N:>3} {name:>10} {peak / 2**20:13.1f} {est / 2**20:13.1f} {peak / est:6.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
