"""Model comparison: hyperparameter counts, AIC/BIC, the likelihood gain and order selection (Shimazaki et al. 2012)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import torch_ising as ti
from tests.common import bf_patterns, brute_force
from torch_ising.comparison import (
    OrderComparison,
    aic,
    bic,
    compare_orders,
    likelihood_gain,
    n_hyperparameters,
)
from torch_ising.statespace.criteria import _count_for


def _has_fit() -> bool:
    return hasattr(ti, "fit")


needs_fit = pytest.mark.skipif(not _has_fit(), reason="torch_ising.fit is not available")


@pytest.mark.parametrize(
    "q_form,expected",
    [("scalar", 10 + 1), ("diag", 10 + 10), ("full", 10 + 55), ("two", 10 + 2), ("none", 10)],
)
def test_hyperparameter_counts(q_form, expected):
    D = 10
    assert n_hyperparameters(D, q_form) == expected
    assert n_hyperparameters(D, q_form, learn_F=True) == expected + D * D
    assert n_hyperparameters(D, q_form, n_u=2) == expected + 2 * D
    assert n_hyperparameters(D, q_form, learn_mu=False, learn_Q=False) == 0


def test_count_from_result_settings():
    eye = torch.eye(6)
    base = dict(D=6, T=20, F=eye, U=None)
    assert _count_for(SimpleNamespace(**base, q_form="scalar")) == 7
    assert _count_for(SimpleNamespace(**base, q_form="full")) == 6 + 21
    assert _count_for(SimpleNamespace(**{**base, "U": torch.zeros(6, 3)}, q_form="diag")) == 12 + 18
    assert _count_for(SimpleNamespace(**{**base, "F": 0.9 * eye}, q_form="scalar")) == 7 + 36
    # an explicit record of what was learned wins over inference from the values
    assert _count_for(SimpleNamespace(**base, q_form="scalar", learn_F=True)) == 7 + 36
    # a single bin has no state noise: only mu
    assert _count_for(SimpleNamespace(**{**base, "T": 1}, q_form="scalar")) == 6


def test_aic_bic_formulas():
    mll = torch.tensor([-100.0, -95.5])
    torch.testing.assert_close(aic(mll, 7), torch.tensor([214.0, 205.0]))
    torch.testing.assert_close(bic(mll, 7, 400), 2 * 100.0 * torch.tensor([1.0, 0.955]) + 7 * math.log(400))
    assert float(aic(-10.0, 0)) == 20.0


def test_likelihood_gain_brute_force():
    N, O = 3, 2
    g = torch.Generator().manual_seed(0)
    theta = torch.tensor([[-1.0, -1.5, -0.5, 1.2, -0.4, 0.3], [-2.0, -1.0, -1.0, 0.0, 0.8, -0.6]])
    spikes = torch.randint(0, 2, (2, 30, N), generator=g).to(torch.uint8)
    y = ti.basis.sufficient_stats(spikes, O)
    gain = likelihood_gain(theta, N, O, y, 30)
    X = bf_patterns(N)
    for t in range(2):
        bf = brute_force(theta[t].numpy(), N, O)
        rates = X.T @ bf["probs"]
        p1 = np.prod(np.where(X == 1, rates, 1 - rates), axis=1)
        idx = [int(np.flatnonzero((X == x).all(axis=1))[0]) for x in spikes[t].numpy()]
        ref = np.sum(np.log(bf["probs"][idx])) - np.sum(np.log(p1[idx]))
        assert float(gain[t]) == pytest.approx(ref, rel=1e-10)
    with pytest.raises(ValueError, match="needs the data"):
        likelihood_gain(theta, N, O, None, None)


def test_compare_orders_validation():
    spikes = torch.zeros(5, 4, 3, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"^orders must lie in 1..N = 1..3; got \[4\]"):
        compare_orders(spikes, orders=(1, 4))
    with pytest.raises(ValueError, match=r"^orders must lie in 1..N = 1..3; got \[0\]"):
        compare_orders(spikes, orders=(0, 1))
    with pytest.raises(ValueError, match="must not repeat"):
        compare_orders(spikes, orders=(2, 2))
    with pytest.raises(ValueError, match="at least one"):
        compare_orders(spikes, orders=())
    with pytest.raises(ValueError, match="spikes must have shape"):
        compare_orders(torch.zeros(5, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="q_form"):
        n_hyperparameters(6, "banded")
    with pytest.raises(ValueError, match="k"):
        aic(-1.0, -2)


@needs_fit
def test_order_selection_triplet_truth():
    """Triplet truth (N = 3, O = 3, T = 100, R = 200): AIC selects O = 3 (the 2012 paper's comparison).

    The fits use the published stopping rule (stop="ssll"), as the 2012 paper did, to keep the test short;
    the converged fits select the same order (RESULTS.md).
    """
    theta = ti.generate_thetas(3, 3, 100, seed=0)
    theta[:, 6] += 1.0  # a clear positive triplet interaction
    spikes = ti.generate_spikes(theta, 200, seed=100, N=3, order=3)
    cmp = compare_orders(spikes, (1, 2, 3), stop="ssll")
    assert isinstance(cmp, OrderComparison)
    assert cmp.k == (4, 7, 8)
    assert cmp.n_obs == 100 * 200
    torch.testing.assert_close(cmp.aic, -2 * cmp.mll + 2 * torch.tensor([4.0, 7.0, 8.0]))
    torch.testing.assert_close(cmp.mll, torch.tensor([r.mll for r in cmp.results]))
    assert cmp.best_aic == 3
    assert "AIC" in cmp.table() and len(cmp.table().splitlines()) == 4


@needs_fit
def test_order_selection_few_trials_prefers_lower_order():
    """Pairwise truth with only R = 5 trials: AIC selects O <= 2 (the few-trials effect of the 2012 paper)."""
    theta = ti.generate_thetas(3, 2, 100, seed=0)
    spikes = ti.generate_spikes(theta, 5, seed=201, N=3, order=2)
    cmp = compare_orders(spikes, (1, 2, 3), stop="ssll")
    assert cmp.best_aic <= 2
    assert cmp.best_bic <= 2
