"""Fit outputs across stopping rules, Q forms, methods and E-steps, saved to compare two versions of the code.

A refactor that must not change results (issue 15) saves a snapshot with the old code and one
with the new, then compares them (largest absolute difference per array; 0 means bit-identical):

    PYTHONPATH=/path/to/old python benchmarks/refactor_snapshot.py save old.npz
    PYTHONPATH=/path/to/new python benchmarks/refactor_snapshot.py save new.npz
    python benchmarks/refactor_snapshot.py compare old.npz new.npz
"""

import sys
import warnings

import numpy as np
import torch


def save(path: str) -> None:
    warnings.simplefilter("ignore")
    import torch_ising as ti

    out = {}
    th = ti.generate_thetas(4, 2, 40, seed=1)
    sp = ti.generate_spikes(th, 60, seed=2)
    th3 = ti.generate_thetas(3, 2, 30, seed=3)
    sp3 = ti.generate_spikes(th3, 40, seed=4)
    u = np.sin(np.arange(30) / 5.0)[:, None]
    cases = {
        "conv_scalar": dict(spikes=sp),
        "conv_diag": dict(spikes=sp, state_cov=np.full(10, 0.01)),
        "conv_full": dict(spikes=sp, state_cov=0.01 * np.eye(10), max_iter=60),
        "conv_two": dict(spikes=sp, state_cov=[0.01, 0.005]),
        "em_scalar": dict(spikes=sp3, stop="em", max_iter=80),
        "ssll": dict(spikes=sp),
        "ssll_two": dict(spikes=sp, stop="ssll", state_cov=[0.01, 0.005]),
        "mll": dict(spikes=sp3, stop="mll", max_iter=30),
        "learnF": dict(spikes=sp3, state_ar=1.0, max_iter=30),
        "learnU": dict(spikes=sp3, u=u, max_iter=30),
        "filter_conv": dict(spikes=sp3, estep="filter"),
        "pseudo": dict(spikes=sp, method="pseudo", max_iter=40),
        "pseudo_two": dict(spikes=sp, method="pseudo", state_cov=[0.01, 0.005], max_iter=40),
        "pseudo_joint": dict(spikes=sp, method="pseudo", estep="joint", max_iter=20),
        "stationary": dict(spikes=sp, stationary=True),
        "batch": dict(spikes=torch.stack([torch.as_tensor(sp3), torch.as_tensor(sp3).flip(1)]), max_iter=50),
    }
    cases["ssll"]["stop"] = "ssll"
    for name, kw in cases.items():
        s = kw.pop("spikes")
        r = ti.fit(s, 2, progress=False, **kw)
        for f in ("theta_s", "sigma_s", "Q", "mu", "F"):
            v = getattr(r, f)
            if v is not None:
                out[f"{name}.{f}"] = np.asarray(torch.as_tensor(v).cpu())
        out[f"{name}.mll_list"] = np.asarray(r.mll_list, dtype=float)
        out[f"{name}.iterations"] = np.asarray(r.iterations)
        out[f"{name}.e_steps"] = np.asarray(r.e_steps)
        out[f"{name}.converged"] = np.asarray(torch.as_tensor(r.converged))
    np.savez(path, **out)
    print("saved", len(out))


def compare(a_path: str, b_path: str) -> None:
    a, b = np.load(a_path), np.load(b_path)
    worst = 0.0
    for k in a.files:
        if k not in b.files:
            print("MISSING", k)
            worst = np.inf
            continue
        x, y = a[k], b[k]
        if x.shape != y.shape:
            print("SHAPE", k, x.shape, y.shape)
            worst = np.inf
            continue
        d = float(np.abs(x.astype(float) - y.astype(float)).max()) if x.size else 0.0
        worst = max(worst, d)
        if d > 1e-12:
            print(f"DIFF {k}: {d:.3g}")
    print("max diff", worst, "over", len(a.files), "arrays")


if __name__ == "__main__":
    if sys.argv[1] == "save":
        save(sys.argv[2])
    else:
        compare(sys.argv[2], sys.argv[3])
