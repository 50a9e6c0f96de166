"""Print the state-space acceptance figures (issue 3) that are not timings.

Usage (from the repository root): ``python benchmarks/acceptance_statespace.py``

Each figure is computed against an independent reference: the published library's
parity files, the generating theta, the autograd derivatives, or separate fits.
The tests assert the same bars; this script prints the measured values.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

import torch_ising as ti

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.statespace.test_core import _v2_obs  # noqa: E402
from tests.statespace.test_parity import CASES  # noqa: E402
from tests.statespace.test_parity import load as load_case  # noqa: E402
from torch_ising.statespace import StateSpaceParams, laplace_filter  # noqa: E402


def estep_parity() -> None:
    print("E-step parity (M-step off): |d mll|, max |d theta_s|, max |d theta_f|, max |d sigma_s|")
    for case in CASES:
        d, st, kw = load_case(case)
        r = ti.fit(d["spikes"], st["O"], mstep=False, progress=False, **kw)
        print(
            f"  {case:18s} {abs(r.mll - float(d['estep__mll'])):.1e} "
            f"{np.abs(r.theta_s.numpy() - d['estep__theta_s']).max():.1e} "
            f"{np.abs(r.theta_f.numpy() - d['estep__theta_f']).max():.1e} "
            f"{np.abs(r.sigma_s.numpy() - d['estep__sigma_s']).max():.1e}"
        )


def speed_to_fixed_point() -> None:
    d, st, kw = load_case("v2_pairwise_N4")
    r = ti.fit(d["spikes"], st["O"], progress=False, **kw)
    print(
        f"v2 default fit: {r.e_steps} E-steps, {r.iterations} iterations, converged {r.converged}, "
        f"mll - tight {r.mll - float(d['tight__mll']):+.4f} (bar: >= -0.01 within 150 E-steps)"
    )


def autograd_vs_closed_form() -> None:
    obs_c, _ = _v2_obs(False)
    obs_a, _ = _v2_obs(True)
    eye = torch.eye(obs_c.D)[None]
    params = StateSpaceParams(torch.zeros(1, obs_c.D), 0.1 * eye, 0.01 * eye, eye.clone(), None)
    fc = laplace_filter(obs_c, params, tol=1e-11)
    fa = laplace_filter(obs_a, params, tol=1e-11)
    print(f"v2 filtered means, autograd vs closed form: max diff {float((fc.theta_f - fa.theta_f).abs().max()):.1e}")


def recovery() -> None:
    N, O, T, R = 5, 2, 100, 200
    theta = ti.generate_thetas(N, O, T, seed=11)
    spikes = ti.generate_spikes(theta, R, seed=12)
    r = ti.fit(spikes, O, progress=False)
    lp_true, lp_fit = ti.moments.log_probs(theta, N, O), ti.moments.log_probs(r.theta_s, N, O)
    kl = (lp_true.exp() * (lp_true - lp_fit)).sum(-1)
    sd = torch.diagonal(r.sigma_s, dim1=-2, dim2=-1).sqrt()
    inside = ((theta - r.theta_s).abs() <= 1.959964 * sd).double().mean()
    print(
        f"recovery N=5 T=100 R=200: mean KL {float(kl.mean()):.4f} nats/bin (bar < 0.01), "
        f"95% coverage {float(inside):.3f} (bar >= 0.90)"
    )


def robustness() -> None:
    rng = np.random.default_rng(3)
    spikes = (rng.random((20, 30, 4)) < 0.2).astype(np.uint8)
    spikes[..., 0] = 0  # silent
    spikes[..., 1] = 1  # always firing
    r = ti.fit(spikes, 2, progress=False)
    finite = bool(torch.isfinite(r.theta_s).all() and torch.isfinite(r.sigma_s).all()) and np.isfinite(r.mll)
    print(f"silent + always-firing neuron: finite {finite}, converged {r.converged}, mll {r.mll:.3f}")
    try:
        ti.fit(spikes, 2, dtype=torch.float32, progress=False)
    except ValueError as err:
        print(f"float32: refused: {str(err)[:90]}...")


def batch() -> None:
    sets = [ti.generate_spikes(ti.generate_thetas(3, 2, 10, seed=s), 40, seed=100 + s) for s in range(16)]
    rb = ti.fit(torch.stack(sets), 2, progress=False)
    diff = max(
        float((rb.theta_s[b] - ti.fit(sets[b], 2, progress=False).theta_s).abs().max()) for b in range(len(sets))
    )
    print(f"batch of 16 vs 16 separate fits: max |d theta_s| {diff:.1e} (bar 1e-8)")


if __name__ == "__main__":
    torch.set_default_dtype(torch.float64)
    estep_parity()
    speed_to_fixed_point()
    autograd_vs_closed_form()
    recovery()
    robustness()
    batch()
