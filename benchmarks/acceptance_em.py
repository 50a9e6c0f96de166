"""Print the EM convergence acceptance figures of issue 12 (learned U, diagonal and full Q).

Usage (from the repository root)::

    python benchmarks/acceptance_em.py u [--seeds 0 1 2 3 4] [--ref-seeds 0 1 2]
    python benchmarks/acceptance_em.py diagq [--N 6 8]
    python benchmarks/acceptance_em.py fullq

Each default fit is compared with plain EM (``stop="em", max_iter=3000``) on the same data,
made as MODEL.md 3 describes (``tests/statespace/generated.py``). Plain EM for 3000 iterations
is slow (2-10 min per data set on a loaded 2-core machine); ``--ref-seeds`` picks the seeds that
get one. The output starts with the date, machine and load average.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch_ising as ti  # noqa: E402
from tests.statespace.generated import diag_q_data, input_data  # noqa: E402
from tests.statespace.test_parity import load as load_case  # noqa: E402


def _timed(spikes, **kw):
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ti.FitWarning)
        r = ti.fit(spikes, 2, progress=False, **kw)
    return r, time.perf_counter() - t0


def _line(tag: str, r, dt: float, ref=None) -> str:
    drop = float(np.diff(r.mll_list).min()) if len(r.mll_list) > 1 else 0.0
    s = f"  {tag:28s} l {r.mll:.4f}  E-steps {r.e_steps:4d}  {dt:6.1f} s  converged {r.converged}"
    s += f"  largest drop {-drop:.1e}"
    if ref is not None:
        d_theta = np.abs(np.asarray(r.theta_s) - np.asarray(ref.theta_s)).max()
        s += f"  l - ref {r.mll - ref.mll:+.4f}  max|d theta_s| {d_theta:.4f}"
    return s


def learned_u(seeds: list[int], ref_seeds: list[int]) -> None:
    print("learned U: N=3, O=2, T=50, R=50, u = two smooth channels; default fit vs plain EM 3000")
    for seed in seeds:
        spikes, u, _ = input_data(seed)
        r, dt = _timed(spikes, u=u)
        ref = None
        if seed in ref_seeds:
            ref, dt_ref = _timed(spikes, u=u, stop="em", max_iter=3000)
            print(_line(f"seed {seed} plain EM 3000", ref, dt_ref))
        print(_line(f"seed {seed} default", r, dt, ref))


def diagonal_q(Ns: list[int], seed: int, with_ref: bool) -> None:
    for N in Ns:
        D = N * (N + 1) // 2
        print(f"diagonal Q: N={N}, O=2 (D={D}), T=30, R=100, state_cov=0.01*ones(D), seed {seed}")
        spikes, _ = diag_q_data(seed, N=N)
        kw = dict(state_cov=0.01 * np.ones(D))
        ref = None
        if with_ref:
            ref, dt_ref = _timed(spikes, stop="em", max_iter=3000, **kw)
            print(_line("plain EM 3000", ref, dt_ref))
        r, dt = _timed(spikes, **kw)
        print(_line("default", r, dt, ref))
        r, dt = _timed(spikes, stop="mll", **kw)
        print(_line('stop="mll"', r, dt, ref))


def full_q() -> None:
    d, st, kw = load_case("v5_fullQ_N4")
    r, dt = _timed(d["spikes"], **kw)
    print(
        f"full Q, parity v5: l - published tight {r.mll - float(d['tight__mll']):+.4f}, "
        f"E-steps {r.e_steps}, {dt:.1f} s, converged {r.converged}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["u", "diagq", "fullq"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--ref-seeds", type=int, nargs="*", default=[0, 1, 2, 3, 4])
    ap.add_argument("--N", type=int, nargs="+", default=[6, 8])
    ap.add_argument("--no-ref", action="store_true", help="skip the plain-EM references")
    a = ap.parse_args()
    load = os.getloadavg()
    print(
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"{platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}, torch_ising {ti.__file__}"
    )
    if a.what == "u":
        learned_u(a.seeds, [] if a.no_ref else a.ref_seeds)
    elif a.what == "diagq":
        diagonal_q(a.N, 0, not a.no_ref)
    else:
        full_q()


if __name__ == "__main__":
    main()
