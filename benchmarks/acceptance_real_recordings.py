"""Acceptance figures of issue 16 (items 2-5): surrogates, cross-validation, condition distances.

Usage (from the repository root)::

    python benchmarks/acceptance_real_recordings.py surrogates-null      # KS of S_ratio p-values, 10 seeds
    python benchmarks/acceptance_real_recordings.py surrogates-coupling  # coupling +1.5: bins with p < 0.01
    python benchmarks/acceptance_real_recordings.py surrogates-time      # n = 100 surrogates, one batched fit
    python benchmarks/acceptance_real_recordings.py cv                   # CV against AIC, 20 seeds of order-2 data
    python benchmarks/acceptance_real_recordings.py distance             # brute force and the band
    python benchmarks/acceptance_real_recordings.py all

Options: ``--device cuda`` runs the fits on a GPU; ``--seeds K`` changes the number of seeds.
Every figure is computed against an independent reference: the generating theta, a dense
brute force over patterns, or the uniform distribution of valid p-values.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

import numpy as np
import torch
from scipy import stats

import torch_ising as ti


def _null_data(seed: int, N: int = 5, T: int = 100, R: int = 100, coupling: float = 0.0) -> torch.Tensor:
    """Time-varying rates (generate_thetas), all couplings 0 except theta_01 = ``coupling``."""
    theta = ti.generate_thetas(N, 2, T, seed=seed)
    theta[:, N:] = 0.0
    theta[:, N] = coupling
    return ti.generate_spikes(theta, R, seed=10_000 + seed)


def surrogates_null(seeds: int, n: int, device: str) -> None:
    print(f"S_ratio surrogate p-values on zero-coupling data (N=5, T=100, R=100, n={n} surrogates, {seeds} seeds)")
    ps, mids = [], []
    for s in range(seeds):
        t0 = time.perf_counter()
        st = ti.surrogate_test(_null_data(s), 2, n=n, seed=s, device=device)
        p = st.p_value.cpu().numpy()
        ps.append(p)
        mids.append(p[len(p) // 2])
        print(
            f"  seed {s}: mean p {p.mean():.3f}, fraction p < 0.05: {(p < 0.05).mean():.3f} "
            f"({time.perf_counter() - t0:.1f} s)"
        )
    allp = np.concatenate(ps)
    ks = stats.kstest(allp, "uniform")
    print(f"  KS over all bins and seeds ({allp.size} p-values): D = {ks.statistic:.4f}, p = {ks.pvalue:.4f} "
          f"-> {'not rejected' if ks.pvalue >= 0.01 else 'REJECTED'} at 1%")  # fmt: skip
    ks1 = stats.kstest(np.array(mids), "uniform")
    print(f"  KS over the middle bin of each seed ({len(mids)} independent p-values): D = {ks1.statistic:.4f}, "
          f"p = {ks1.pvalue:.4f}")  # fmt: skip
    print(f"  fraction of p < 0.05 over all: {(allp < 0.05).mean():.4f}, p < 0.01: {(allp < 0.01).mean():.4f}")


def surrogates_coupling(seeds: int, n: int, device: str) -> None:
    print(f"S_ratio surrogate p-values with theta_01 = +1.5 (N=5, T=100, R=100, n={n}, {seeds} seeds)")
    for s in range(seeds):
        st = ti.surrogate_test(_null_data(s, coupling=1.5), 2, n=n, seed=s, device=device)
        p = st.p_value.cpu().numpy()
        print(f"  seed {s}: fraction of bins with p < 0.01: {(p < 0.01).mean():.3f} (max p {p.max():.4f})")


def surrogates_time(device: str) -> None:
    x = _null_data(0)
    st = ti.surrogate_test(x, 2, n=2, seed=0, device=device)  # warm-up
    t0 = time.perf_counter()
    st = ti.surrogate_test(x, 2, n=100, seed=0, device=device)
    wall = time.perf_counter() - t0
    print(
        f"n = 100 surrogates + the data (one batched fit of B = 101), N=5, T=100, R=100 on {device}: "
        f"{wall:.1f} s (fit {st.batch.wall_time:.1f} s, {st.batch.iterations} EM iterations), "
        f"torch threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}"
    )


def cv_vs_aic(seeds: int, device: str) -> None:
    N, T, R = 5, 100, 200
    print(f"Order selection on order-2 data (N={N}, T={T}, R={R}, {seeds} seeds): 5-fold CV against AIC")
    xs = torch.stack([ti.generate_spikes(ti.generate_thetas(N, 2, T, seed=s), R, seed=500 + s) for s in range(seeds)])
    t0 = time.perf_counter()
    cmp = ti.compare_orders(xs, orders=(1, 2, 3), device=device)
    t_aic = time.perf_counter() - t0
    t0 = time.perf_counter()
    cv = ti.cross_validate(xs, orders=(1, 2, 3), folds=5, seed=0, device=device)
    t_cv = time.perf_counter() - t0
    aic_best = torch.as_tensor(cmp.best_aic).cpu()
    cv_best = torch.as_tensor(cv.best).cpu()
    print(f"  AIC picks: {aic_best.tolist()}")
    print(f"  CV  picks: {cv_best.tolist()}")
    cv_1se = torch.as_tensor(cv.best_1se).cpu()
    print(f"  CV one-SE rule picks: {cv_1se.tolist()}")
    print(
        f"  order 2 chosen: AIC {int((aic_best == 2).sum())}/{seeds}, CV (highest mean) {int((cv_best == 2).sum())}/"
        f"{seeds}, CV (one-SE rule) {int((cv_1se == 2).sum())}/{seeds}"
    )
    d23 = (cv.score[2] - cv.score[1]).mean(0)
    print(f"  mean held-out gain of order 3 over order 2 per seed (nats): {[round(float(v), 2) for v in d23]}")
    np.savez("/tmp/cv_scores.npz", score=cv.score.numpy(), aic=cmp.aic.numpy())
    print(f"  time: AIC fits {t_aic:.1f} s, CV {t_cv:.1f} s (3 orders x 5 folds x {seeds} data sets, 3 batched fits)")


def _dense_distances(ta: np.ndarray, tb: np.ndarray, N: int, order: int) -> tuple[float, float, float]:
    """KL, JS, Bhattacharyya from the dense 2^N x D feature matrix (numpy), an independent reference."""
    subs = [s for k in range(1, order + 1) for s in itertools.combinations(range(N), k)]
    X = np.array(list(itertools.product([0, 1], repeat=N)))
    F = np.stack([X[:, list(s)].prod(1) for s in subs], 1).astype(float)

    def logp(t):
        E = F @ t
        m = E.max()
        return E - (m + np.log(np.exp(E - m).sum()))

    la, lb = logp(ta), logp(tb)
    pa, pb = np.exp(la), np.exp(lb)
    kl = float((pa * (la - lb)).sum())
    lm = np.logaddexp(la, lb) - np.log(2)
    js = float(0.5 * (pa * (la - lm)).sum() + 0.5 * (pb * (lb - lm)).sum())
    bh = float(-np.log(np.sqrt(pa * pb).sum()))
    return kl, js, bh


def distances(seeds: int, device: str, R_a: int = 200, R_b: int = 120) -> None:
    print("Distances against a dense brute force over patterns (random theta, order 2 and N), max |error|:")
    rng = np.random.default_rng(0)
    for N in range(2, 11):
        for order in sorted({2 if N >= 2 else 1, min(3, N)}):
            D = sum(len(list(itertools.combinations(range(N), k))) for k in range(1, order + 1))
            ta, tb = rng.normal(0, 0.7, D), rng.normal(0, 0.7, D)
            ref = _dense_distances(ta, tb, N, order)
            got = [
                float(ti.distance.distance(torch.tensor(ta), torch.tensor(tb), N, order, k)) for k in ti.distance.KINDS
            ]
            err = max(abs(a - b) for a, b in zip(got, ref, strict=True))
            print(f"  N={N:2d} order={order}: KL {got[0]:.6f}, JS {got[1]:.6f}, B {got[2]:.6f}; max |error| {err:.1e}")
    N, T = 5, 100
    print(f"Condition distance band: theta_b = theta_a + a bump of height 1.0 on theta_01 (N={N}, T={T}); "
          f"condition A R={R_a} trials, B R={R_b} (unequal counts, fitted separately)")  # fmt: skip
    for s in range(seeds):
        theta_a = ti.generate_thetas(N, 2, T, seed=s)
        theta_b = theta_a.clone()
        t = torch.arange(T, dtype=torch.float64)
        theta_b[:, N] += 1.0 * torch.exp(-((t - 50) ** 2) / (2 * 12.0**2))
        ra = ti.fit(ti.generate_spikes(theta_a, R_a, seed=100 + s), 2, progress=False, device=device)
        rb = ti.fit(ti.generate_spikes(theta_b, R_b, seed=200 + s), 2, progress=False, device=device)
        sd = (ra.sigma_s[:, N, N] + rb.sigma_s[:, N, N]).sqrt().cpu()
        print(f"  seed {s}: posterior sd of theta_01(A) - theta_01(B): {float(sd.min()):.3f}-{float(sd.max()):.3f}")
        big = (theta_a - theta_b).abs().amax(-1) > 0.5
        small = (theta_a - theta_b).abs().amax(-1) < 0.1
        for kind in ti.distance.KINDS:
            d = ti.pattern_distance(ra, rb, kind, n_samples=500, seed=s)
            lower, differs = d.lower.cpu(), d.differs.cpu()
            print(
                f"  seed {s} {kind:13s}: bins with |d theta| > 0.5: {int(big.sum())}; band excludes 0 in "
                f"{int((lower[big] > 0).sum())}/{int(big.sum())} of them (all bins: {int((lower > 0).sum())}/{T}); "
                f"distance above the null band in {int(differs[big].sum())}/{int(big.sum())}; "
                f"where |d theta| < 0.1: {int(differs[small].sum())}/{int(small.sum())}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "what", choices=["surrogates-null", "surrogates-coupling", "surrogates-time", "cv", "distance", "all"]
    )
    ap.add_argument("--seeds", type=int, default=None)
    ap.add_argument("--n", type=int, default=100, help="surrogates per test")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--ra", type=int, default=200, help="trials of condition A (distance)")
    ap.add_argument("--rb", type=int, default=120, help="trials of condition B (distance)")
    a = ap.parse_args()
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.2f}, {time.ctime()}"
    )
    if a.what in ("surrogates-null", "all"):
        surrogates_null(a.seeds or 10, a.n, a.device)
    if a.what in ("surrogates-coupling", "all"):
        surrogates_coupling(a.seeds or 3, a.n, a.device)
    if a.what in ("surrogates-time", "all"):
        surrogates_time(a.device)
    if a.what in ("cv", "all"):
        cv_vs_aic(a.seeds or 20, a.device)
    if a.what in ("distance", "all"):
        distances(a.seeds or 3, a.device, a.ra, a.rb)


if __name__ == "__main__":
    main()
