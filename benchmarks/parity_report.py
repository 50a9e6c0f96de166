"""Print the parity figures against the published library's runs (tests/data/parity).

Usage:
    python benchmarks/parity_report.py            # stop="ssll" vs default__, and the default fit vs tight__
    python benchmarks/parity_report.py --long v5_fullQ_N4 --iters 60000
                                                  # plain EM far past the published 3000 iterations
    python benchmarks/parity_report.py --compat    # compat.ssll.run against default__ (issue 7)

Run from the repository root (it reads tests/data/parity).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import torch_ising as ti

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test helpers hold the parity cases' settings

from tests.common import PARITY_DIR, parity_fit_kwargs  # noqa: E402
from tests.statespace.test_parity import CASES  # noqa: E402


def load(case: str) -> tuple[dict, dict, dict]:
    d = dict(np.load(PARITY_DIR / f"{case}.npz"))
    st = json.loads(str(d["settings"]))
    return d, st, parity_fit_kwargs(st, d["theta_true"].shape[1])


def report() -> None:
    print(
        "| case | ssll iterations (published) | ssll |d mll| | ssll max |d theta_s| | fit mll - tight | "
        "fit max |theta_s - tight| |"
    )
    print("|---|---|---|---|---|---|")
    for case in CASES:
        d, st, kw = load(case)
        s = ti.fit(d["spikes"], st["O"], progress=False, stop="ssll", **kw)
        r = ti.fit(d["spikes"], st["O"], progress=False, **kw)
        dm = abs(s.mll - float(d["default__mll"]))
        dth = np.abs(s.theta_s.numpy() - d["default__theta_s"]).max()
        tm = r.mll - float(d["tight__mll"])
        tth = np.abs(r.theta_s.numpy() - d["tight__theta_s"]).max()
        n_pub = int(d["default__iterations"])
        print(f"| {case} | {s.iterations} ({n_pub}) | {dm:.1e} | {dth:.1e} | {tm:+.4f} | {tth:.4f} |")


def compat_report() -> None:
    from tests.compat.test_ssll import _settings
    from torch_ising.compat import ssll

    print("| case | iterations (published) | \\|d mll\\| | max \\|d theta_s\\| |")
    print("|---|---|---|---|")
    for case in CASES:
        d, kw = _settings(case)
        emd = ssll.run(d["spikes"], EM_Info=False, **kw)
        dm = abs(emd.mll - float(d["default__mll"]))
        dth = np.abs(emd.theta_s - d["default__theta_s"]).max()
        print(f"| {case} | {emd.iterations} ({int(d['default__iterations'])}) | {dm:.1e} | {dth:.1e} |")


def long_em(case: str, iters: int) -> None:
    d, st, kw = load(case)
    conv = ti.fit(d["spikes"], st["O"], progress=False, **kw)
    tight = d["tight__theta_s"]
    print(f"{case}: default fit {conv.iterations} iterations, mll - tight {conv.mll - float(d['tight__mll']):+.5f}")
    marks = {m for m in (1000, 3000, 6000, 10000, 30000, 60000, iters) if m <= iters}

    def on_state(s: ti.statespace.EMState) -> None:
        if s.iteration in marks:
            th = s.theta_s[0].numpy()
            dm = float(s.mll[0]) - float(d["tight__mll"])
            d_tight = np.abs(th - tight).max()
            d_fit = np.abs(th - conv.theta_s.numpy()).max()
            print(
                f"  plain EM {s.iteration}: mll - tight {dm:+.5f}, |th - tight| {d_tight:.4f}, |th - fit| {d_fit:.4f}"
            )

    ti.fit(d["spikes"], st["O"], progress=False, stop="em", tol=0.0, max_iter=iters, on_state=on_state, **kw)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--long", default=None, help="a case for the long plain-EM run")
    ap.add_argument("--iters", type=int, default=10000)
    ap.add_argument("--compat", action="store_true", help="compat.ssll.run against default__")
    a = ap.parse_args()
    if a.compat:
        compat_report()
    elif a.long:
        long_em(a.long, a.iters)
    else:
        report()


if __name__ == "__main__":
    main()
