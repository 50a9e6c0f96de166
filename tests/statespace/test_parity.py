"""Parity with the published SSLL library's outputs (tests/data/parity, README there).

The published l, theta_s and sigma_s are those of the Laplace filter and smoother, so the fits
compared with them run ``estep="filter"`` (the default fit's joint E-step has its own l).
"""

import json

import numpy as np
import pytest

from tests.common import EXPLOSIVE_F, MAX_ITER, PARITY_DIR, fit_warns, parity_fit_kwargs
from torch_ising import fit

CASES = [
    "v1_stationary_N3",
    "v2_pairwise_N4",
    "v3_triplet_N3",
    "v4_diagQ_N4",
    "v5_fullQ_N4",
    "v6_autoregF_N4",
    "v7_firstorder_N3",
]


def _np(x):
    return x.cpu().numpy()


def load(case):
    d = np.load(PARITY_DIR / f"{case}.npz")
    st = json.loads(str(d["settings"]))
    D = d["theta_true"].shape[1]
    kw = parity_fit_kwargs(st, D)
    return d, st, kw


@pytest.mark.parametrize("case", CASES)
def test_estep_parity(case, device):
    d, st, kw = load(case)
    r = fit(d["spikes"], st["O"], mstep=False, progress=False, device=device, estep="filter", **kw)
    assert abs(r.mll - float(d["estep__mll"])) <= 1e-4
    assert np.abs(_np(r.theta_s) - d["estep__theta_s"]).max() <= 1e-5
    assert np.abs(_np(r.theta_f) - d["estep__theta_f"]).max() <= 1e-5
    assert np.abs(_np(r.sigma_s) - d["estep__sigma_s"]).max() <= 1e-6


COMPARABLE = ["v1_stationary_N3", "v2_pairwise_N4", "v3_triplet_N3", "v4_diagQ_N4", "v7_firstorder_N3"]


@pytest.mark.parametrize("case", COMPARABLE)
def test_tight_parity_mll(case, device):
    d, st, kw = load(case)
    r = fit(d["spikes"], st["O"], progress=False, device=device, estep="filter", **kw)
    assert r.converged
    assert r.mll >= float(d["tight__mll"]) - 0.01


@pytest.mark.parametrize(
    "case",
    [
        c
        if c != "v7_firstorder_N3"
        else pytest.param(
            c,
            marks=pytest.mark.xfail(
                strict=True,
                reason="v7's EM fixed point is the boundary Q = 0; there theta_s is 0.0206 from the published "
                "value, which is plain EM stopped at 3000 iterations with Q = 5.5e-4 still falling "
                "(l is 0.008 higher at ours; plain EM at 10000 iterations is 0.011 from the published value)",
            ),
        )
        for c in COMPARABLE
    ],
)
def test_tight_parity_theta_s(case, device):
    d, st, kw = load(case)
    r = fit(d["spikes"], st["O"], progress=False, device=device, estep="filter", **kw)
    assert np.abs(_np(r.theta_s) - d["tight__theta_s"]).max() <= 0.02


def test_default_fit_reaches_fixed_point_fast_on_v2(device):
    d, st, kw = load("v2_pairwise_N4")
    target = float(d["tight__mll"]) - 0.01
    first = []

    def cb(k, params, mll):
        if float(mll[0]) >= target and not first:
            first.append(k)

    r = fit(d["spikes"], 2, progress=False, callback=cb, device=device, estep="filter")
    assert r.e_steps <= 150 and r.mll >= target
    assert first and first[0] <= 150


def test_full_Q_v5_reaches_published_mll(device):
    d, st, kw = load("v5_fullQ_N4")
    r = fit(d["spikes"], 2, progress=False, device=device, estep="filter", **kw)
    assert r.converged
    assert r.mll >= float(d["tight__mll"]) - 0.01


@pytest.mark.xfail(
    strict=True,
    reason="v5's published 'tight' fit is plain EM stopped at 3000 iterations, still gaining 7.9e-6 per "
    "iteration (our plain EM reproduces it after the same 3000 iterations and is 0.19 from it after 60000); "
    "the accelerated fit (470 E-steps) raises l by 0.007 and moves theta_s by up to 0.20",
)
def test_full_Q_v5_theta_s_near_published(device):
    d, st, kw = load("v5_fullQ_N4")
    r = fit(d["spikes"], 2, progress=False, device=device, estep="filter", **kw)
    assert np.abs(_np(r.theta_s) - d["tight__theta_s"]).max() <= 0.02


def test_learned_F_v6_mll_at_least_published(device):
    # the published F update uses the transpose of Cov(theta_t, theta_{t-1}), so only l is comparable
    d, st, kw = load("v6_autoregF_N4")
    with fit_warns(MAX_ITER, EXPLOSIVE_F):  # a free F: l still grows after 300 iterations, rho(F) > 1
        r = fit(d["spikes"], 2, progress=False, max_iter=300, device=device, state_ar_prior=None, **kw)
    assert r.mll >= float(d["tight__mll"])


@pytest.mark.parametrize("case", [c for c in CASES if c != "v6_autoregF_N4"])
def test_ssll_stopping_rule_matches_default(case, device):
    # stop="ssll" runs the published loop with the published conjugate-gradient MAP (its default)
    d, st, kw = load(case)
    r = fit(d["spikes"], st["O"], progress=False, stop="ssll", device=device, **kw)
    assert r.iterations == int(d["default__iterations"]) and len(r.mll_list) == r.iterations + 1
    assert abs(r.mll - float(d["default__mll"])) <= 1e-3
    assert np.abs(_np(r.theta_s) - d["default__theta_s"]).max() <= 1e-3


@pytest.mark.parametrize("case", ["v2_pairwise_N4", "v5_fullQ_N4"])
def test_ssll_rule_with_exact_modes_stays_near_default(case, device):
    # with exact (Newton) modes the published loop lands within the published CG's own error
    d, st, kw = load(case)
    r = fit(d["spikes"], st["O"], progress=False, stop="ssll", map_method="newton", device=device, **kw)
    assert r.iterations == int(d["default__iterations"]) and len(r.mll_list) == r.iterations + 1
    assert abs(r.mll - float(d["default__mll"])) <= 5e-3
