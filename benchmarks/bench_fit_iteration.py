"""Seconds per EM iteration of the default fit and of stop="ssll", best of a few runs, on saved spike arrays.

For comparing two versions of the code on the same data (issue 15: "the benchmarks are not slower"); run it
with each version on PYTHONPATH, alternately, on the same arrays (e.g. the published library's synthetic data
saved as (T, R, N) .npy files):

    PYTHONPATH=/path/to/code python benchmarks/bench_fit_iteration.py data/N3.npy data/N5.npy --repeats 3
"""

import argparse
import time
import warnings

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("arrays", nargs="+", help="spike arrays (T, R, N) saved with numpy")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--stops", nargs="+", default=["converged", "ssll"])
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    import torch_ising as ti

    for path in args.arrays:
        spikes = np.load(path)
        for stop in args.stops:
            best, r = np.inf, None
            for _ in range(args.repeats):
                t = time.perf_counter()
                r = ti.fit(spikes, 2, stop=stop, progress=False)
                best = min(best, (time.perf_counter() - t) / max(r.iterations, 1))
            print(f"{path} stop={stop}: {best * 1e3:.2f} ms per iteration ({r.iterations} iterations)")


if __name__ == "__main__":
    main()
