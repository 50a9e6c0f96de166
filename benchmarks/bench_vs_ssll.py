"""Side by side with the published SSLL library: seconds per EM iteration, on the same data, in one run.

The published library is GPL-3 and is never imported by the package or the tests. Fetch it into a
folder outside this repository and point this script at it:

    SSLL_PATH=/path/to/ssll python benchmarks/bench_vs_ssll.py --N 3 5 8 12 14
    SSLL_PATH=/path/to/ssll python benchmarks/bench_vs_ssll.py --N 5 --T 2000 --R 50

(SSLL needs numpy, scipy and tqdm.) The data are drawn with the published library's own
``synthesis.generate_thetas`` / ``generate_spikes``. Each row times, on that data:

* SSLL's ``run`` (its default: conjugate gradient, its stopping rule) for at most ``--ssll-iters``
  iterations: seconds / iterations;
* torch_ising's default fit ``ti.fit(spikes, 2)``: wall time / EM iterations;
* torch_ising's ``stop="ssll"`` (what the compat facade runs): wall time / iterations;

and prints SSLL's time divided by ours ("x"). The machine's 1-minute load average is printed with
every row: SSLL's numpy is multi-threaded and slows by up to 10x on a loaded machine, so quote
ratios from an idle one.
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


def load_ssll():
    path = os.environ.get("SSLL_PATH")
    if not path:
        sys.exit("set SSLL_PATH to a checkout of the published SSLL library (outside this repository)")
    path = os.path.abspath(path)
    sys.path.insert(0, path)
    import importlib.util

    spec = importlib.util.spec_from_file_location("ssll_published", os.path.join(path, "__init__.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    import synthesis
    import transforms

    return mod, synthesis, transforms


def ssll_data(synthesis, transforms, N: int, T: int, R: int, seed: int) -> np.ndarray:
    transforms.initialise(N, 2)
    theta = synthesis.generate_thetas(N, 2, T, seed=seed)
    p = np.array([transforms.compute_p(theta[t]) for t in range(T)])
    return synthesis.generate_spikes(p, R, seed=seed)


def time_ssll(ssll, spikes: np.ndarray, iters: int) -> tuple[float, int]:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        t0 = time.perf_counter()
        emd = ssll.run(spikes, order=2, max_iter=iters, EM_Info=False)
        dt = time.perf_counter() - t0
    return dt, int(emd.iterations)


def time_ours(spikes: np.ndarray, **kw) -> tuple[float, int, object]:
    t0 = time.perf_counter()
    r = ti.fit(spikes, 2, progress=False, **kw)
    return time.perf_counter() - t0, int(r.iterations), r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--N", type=int, nargs="+", default=[3, 5, 8, 12, 14])
    ap.add_argument("--T", type=int, default=50)
    ap.add_argument("--R", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ssll-iters", type=int, default=10, help="most SSLL iterations per row (3 at N >= 14)")
    ap.add_argument("--estep", default=None, help="torch_ising E-step for the default fit (None: the default)")
    ap.add_argument("--no-facade", action="store_true", help="skip the stop='ssll' row")
    ap.add_argument("--repeats", type=int, default=2, help="best of this many runs of each library")
    a = ap.parse_args()
    ssll, synthesis, transforms = load_ssll()
    # warm both libraries up once (imports, caches, first-call costs), so no row pays for them
    warm = ssll_data(synthesis, transforms, 3, 10, 20, a.seed)
    time_ssll(ssll, warm, 2)
    time_ours(warm, max_iter=2)
    time_ours(warm, stop="ssll", max_iter=2)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, T={a.T}, R={a.R}")
    print("| N | load | SSLL s/iter | ours default s/iter (iters) | x | ours stop=ssll s/iter | x |")
    print("|---|---|---|---|---|---|---|")
    for N in a.N:
        spikes = ssll_data(synthesis, transforms, N, a.T, a.R, a.seed)
        load0 = os.getloadavg()[0]
        it_ssll = a.ssll_iters if N < 14 else min(a.ssll_iters, 3)
        # best of --repeats runs of each (the machine is shared; numpy's worker threads may still spin
        # for a while after SSLL's last call)
        runs = [time_ssll(ssll, spikes, it_ssll) for _ in range(a.repeats)]
        per_s = min(t / max(n, 1) for t, n in runs)
        n_s = runs[0][1]
        runs = [time_ours(spikes, estep=a.estep) for _ in range(a.repeats)]
        per_d = min(t / max(n, 1) for t, n, _ in runs)
        n_d, r = runs[0][1], runs[0][2]
        fac = ""
        if not a.no_facade:
            runs = [time_ours(spikes, stop="ssll") for _ in range(a.repeats)]
            per_f = min(t / max(n, 1) for t, n, _ in runs)
            n_f = runs[0][1]
            fac = f"{per_f:.4f} ({n_f}) | {per_s / per_f:.1f}"
        load = max(load0, os.getloadavg()[0])
        print(
            f"| {N} | {load:.2f} | {per_s:.4f} ({n_s}) | {per_d:.4f} ({n_d}, conv={r.converged}) | "
            f"{per_s / per_d:.1f} | {fac} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
