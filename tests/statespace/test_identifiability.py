"""Statistics with no finite estimate (issue 12): detected before the fit, warned about, held by the prior."""

import re

import numpy as np
import pytest
import torch

from tests.common import brute_force, to_np
from torch_ising import FitWarning, fit, generate_spikes, generate_thetas
from torch_ising.basis import sufficient_stats

PAIR_01 = 3  # theta_01 in the N = 3 pairwise vector (theta_0, theta_1, theta_2, theta_01, theta_02, theta_12)


def _never_cofiring(T: int, R: int, seed: int) -> np.ndarray:
    """N = 3 spikes in which neurons 0 and 1 never fire together (every other pair and neuron does)."""
    theta = generate_thetas(3, 2, T, seed=seed)
    theta[:, :3] = 0.5
    theta[:, PAIR_01] = -30.0
    x = generate_spikes(theta, R, seed=seed + 1).numpy()
    y = sufficient_stats(x.reshape(1, T * R, 3), 2).squeeze(0)
    assert y[PAIR_01] == 0 and bool((y[[0, 1, 2, 4, 5]] > 0).all())
    return x


def _fits(x: np.ndarray, device: torch.device, **kw) -> dict[str, torch.Tensor]:
    out = {}
    for name, extra in {"tol5": {"tol": 1e-5}, "tol7": {"tol": 1e-7}, "it200": {"max_iter": 200}}.items():
        with pytest.warns(FitWarning, match=r"theta\(0,1\): neurons 0 and 1 never fire together in any bin"):
            r = fit(x, 2, progress=False, device=device, **kw, **extra)
        assert r.converged
        out[name] = r
    with pytest.warns(FitWarning, match=r"theta\(0,1\)") as record:
        out["it2000"] = fit(x, 2, progress=False, max_iter=2000, device=device, **kw)
    assert len([w for w in record if "theta(0,1)" in str(w.message)]) == 1  # one warning, not one per iteration
    return out


def test_never_cofiring_pair_in_a_one_trial_fit_has_a_tolerance_free_estimate(device):
    x = _never_cofiring(T=10, R=1, seed=11)
    fits = _fits(x, device)
    ref = fits["tol7"].theta_s
    assert torch.isfinite(ref).all()
    for name, r in fits.items():
        assert (r.theta_s - ref).abs().max() < 1e-3, name
        # the rule: mu of theta_01 stays at theta_o = 0; the others follow the smoother's first bin
        assert r.mu[PAIR_01] == 0.0
    y = fits["tol7"].y
    for d in torch.nonzero((y == 0).all(0) | (y == 1).all(0)).flatten().tolist():
        assert fits["tol7"].mu[d] == 0.0


def test_never_cofiring_pair_in_a_stationary_fit_with_mu_learned(device):
    """With mu learned, the fixed point is the MAP whose theta_01 entry the prior N(0, sigma_o) bounds.

    At that point y_S = eta_S(theta) for every learned entry (the prior's pull vanishes there, mu = theta),
    and R (0 - eta_01) - theta_01 / sigma_o = 0 for the held one; eta from the brute-force 2^N sum.
    """
    x = _never_cofiring(T=20, R=30, seed=3)
    fits = _fits(x, device, stationary=True, mstep=True, sigma_o=0.1)
    ref = fits["tol7"]
    for name, r in fits.items():
        assert (r.theta_s - ref.theta_s).abs().max() < 1e-3, name
    theta = to_np(ref.theta_s[0])
    eta = brute_force(theta, 3, 2)["eta"]
    y = to_np(ref.y[0])
    learned = [0, 1, 2, 4, 5]
    assert np.abs(y[learned] - eta[learned]).max() < 1e-5
    assert abs(ref.R * (0.0 - eta[PAIR_01]) - theta[PAIR_01] / 0.1) / ref.R < 1e-6
    assert -10.0 < theta[PAIR_01] < 0.0


def test_always_and_never_firing_neurons_are_named(device):
    rng = np.random.default_rng(0)
    spikes = (rng.random((6, 20, 3)) < 0.3).astype(np.uint8)
    spikes[..., 0] = 0
    spikes[..., 1] = 1
    with pytest.warns(FitWarning) as record:
        r = fit(spikes, 2, progress=False, max_iter=300, device=device)
    text = " ".join(str(w.message) for w in record)
    assert "theta(0): neuron 0 never fires in any bin" in text
    assert "theta(1): neuron 1 fires in every trial of every bin" in text
    assert "theta(0,1): neurons 0 and 1 never fire together in any bin" in text
    # y_12 = y_2 in every bin since neuron 1 always fires: the data fix theta_12 + theta_2 but not the split,
    # and l keeps rising along it (theta_1 -> +inf lets theta_12 -> -inf, theta_2 -> +inf), so theta_12 has
    # no finite estimate either (issue 13; it is not 0 or 1 everywhere, which is why it was once missed)
    assert "theta(1,2): neuron 1 fires in every trial of every bin, so y(1,2) = y(2)" in text
    assert r.converged and torch.isfinite(r.theta_s).all()
    assert r.mu[0] == 0.0 and r.mu[1] == 0.0 and r.mu[3] == 0.0 and r.mu[4] == 0.0 and r.mu[5] == 0.0
    assert r.mu[2] != 0.0


# N = 3, order 3: the statistics that contain neuron 1, by hand (MODEL.md order 0, 1, 2, 01, 02, 12, 012)
CONTAINS_1 = [1, 3, 5, 6]


def _always_firing_1(T: int, R: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.random((T, R, 3)) < 0.4).astype(np.uint8)
    x[..., 1] = 1
    return x


@pytest.mark.parametrize("masked", [False, True])
def test_always_firing_neuron_flags_every_statistic_that_contains_it(device, masked):
    """Neuron 1 fires in every (observed) trial: y_S = y_{S minus 1} for every S containing 1, so all of them
    (and only them) are held at theta_o, and theta_s no longer depends on tol (before: it ran off with tol)."""
    x = _always_firing_1(T=8, R=20, seed=4)
    kw = {"progress": False, "device": device, "theta_o": -0.5}
    if masked:  # neuron 1 is silent in trials that the mask removes: only the observed trials count
        x[2, :5, 1] = 0
        x[5, 3, 1] = 0
        kw["mask"] = torch.from_numpy(x[..., 1] == 1)
    observed = x[x[..., 1] == 1]  # (trials, 3): every trial when not masked
    y = sufficient_stats(observed[None], 3).squeeze(0)  # pooled over the observed trials of every bin
    assert bool((y[1] == 1) & ((y > 0) & (y < 1))[[0, 2, 3, 4, 5, 6]].all())  # no other reason to flag them
    fits = {}
    for tol in (1e-5, 1e-7):
        with pytest.warns(FitWarning) as record:
            fits[tol] = fit(x, 3, tol=tol, **kw)
        text = " ".join(str(w.message) for w in record)
        assert "theta(1): neuron 1 fires in every trial of every bin" in text
        for S, rest in (("0,1", "0"), ("1,2", "2"), ("0,1,2", "0,2")):
            assert f"theta({S}): neuron 1 fires in every trial of every bin, so y({S}) = y({rest})" in text
        named = set(re.findall(r"(?:^|; )theta\(([\d,]+)\):", text.split(". Their")[0]))
        assert named == {"1", "0,1", "1,2", "0,1,2"}
        r = fits[tol]
        assert r.converged and torch.isfinite(r.theta_s).all()
        held = torch.zeros(7, dtype=torch.bool)
        held[CONTAINS_1] = True
        assert bool((r.mu[held] == -0.5).all()) and bool((r.mu[~held] != -0.5).all())
    assert (fits[1e-5].theta_s - fits[1e-7].theta_s).abs().max() < 1e-3


def test_batch_names_the_data_sets_and_leaves_the_observed_ones_alone(device):
    flagged = _never_cofiring(T=8, R=10, seed=21)
    theta = generate_thetas(3, 2, 8, seed=22)
    theta[:, :3] = 0.5
    clean = generate_spikes(theta, 10, seed=23).numpy()
    assert not bool((sufficient_stats(clean, 2) == 0).all(0).any())
    with pytest.warns(FitWarning, match=r"theta\(0,1\): neurons 0 and 1 never fire together in any bin \(data set 0\)"):
        rb = fit(np.stack([flagged, clean]), 2, progress=False, device=device)
    with pytest.warns(FitWarning, match=r"theta\(0,1\)"):
        r0 = fit(flagged, 2, progress=False, device=device)
    r1 = fit(clean, 2, progress=False, device=device)
    assert (rb.theta_s[0] - r0.theta_s).abs().max() < 1e-12
    assert (rb.theta_s[1] - r1.theta_s).abs().max() < 1e-12
    assert (rb.mu[1] - r1.mu).abs().max() < 1e-12


def test_pseudo_likelihood_fit_holds_the_pair_too(device):
    """The approximate (diagonal-covariance) path applies the same rule in a stationary fit with mu learned."""
    x = _never_cofiring(T=20, R=30, seed=3)
    kw = {"stationary": True, "mstep": True, "sigma_o": 0.1, "method": "pseudo"}
    fits = {}
    for tol in (1e-5, 1e-7):
        with pytest.warns(FitWarning, match=r"theta\(0,1\)"):
            fits[tol] = fit(x, 2, progress=False, tol=tol, device=device, **kw)
    assert fits[1e-7].mu[PAIR_01] == 0.0 and torch.isfinite(fits[1e-7].theta_s).all()
    assert (fits[1e-5].theta_s - fits[1e-7].theta_s).abs().max() < 1e-3
