"""Credible intervals: sampling against the Gaussian it draws from, closed forms, monotone transforms, coverage."""

from __future__ import annotations

import importlib
import math
from statistics import NormalDist

import pytest
import torch

from torch_ising.intervals import (
    CredibleInterval,
    CredibleIntervals,
    check_level,
    credible_intervals,
    gaussian_intervals,
    sample_theta,
)
from torch_ising.thermodynamics import thermodynamics


def _posterior(T: int, D: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    theta_s = torch.randn(T, D, generator=g) * 0.5
    theta_s[:, :3] -= 1.0
    A = torch.randn(T, D, D, generator=g) * 0.1
    sigma_s = A @ A.mT + 0.01 * torch.eye(D)
    return theta_s, sigma_s


def test_samples_have_the_posterior_mean_and_covariance(device):
    theta_s, sigma_s = _posterior(3, 6)
    theta_s, sigma_s = theta_s.to(device), sigma_s.to(device)
    n = 40000
    x = sample_theta(theta_s, sigma_s, n, seed=1)
    assert x.shape == (n, 3, 6) and x.device.type == torch.device(device).type
    mean = x.mean(0)
    dev = x - mean
    cov = torch.einsum("nti,ntj->tij", dev, dev) / (n - 1)
    se_mean = (sigma_s.diagonal(dim1=-2, dim2=-1) / n).sqrt()
    assert torch.all((mean - theta_s).abs() < 5 * se_mean)
    # standard error of a covariance entry: sqrt((S_ii S_jj + S_ij^2) / n)
    d = sigma_s.diagonal(dim1=-2, dim2=-1)
    se_cov = ((d[..., :, None] * d[..., None, :] + sigma_s**2) / n).sqrt()
    assert torch.all((cov - sigma_s).abs() < 5 * se_cov)


def test_sampling_is_seeded_and_batched():
    theta_s, sigma_s = _posterior(4, 6)
    a = sample_theta(theta_s, sigma_s, 50, seed=3)
    b = sample_theta(theta_s, sigma_s, 50, seed=3)
    c = sample_theta(theta_s, sigma_s, 50, seed=4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    g = torch.Generator().manual_seed(3)
    assert torch.equal(sample_theta(theta_s, sigma_s, 50, generator=g), a)
    ci1 = credible_intervals(theta_s, sigma_s, 3, 2, n_samples=200, seed=5, quantities="S_ratio")
    ci2 = credible_intervals(theta_s, sigma_s, 3, 2, n_samples=200, seed=5, quantities="S_ratio")
    assert torch.equal(ci1["S_ratio"].lower, ci2["S_ratio"].lower)


def test_diagonal_and_singular_covariances():
    theta_s = torch.zeros(2, 3)
    var = torch.tensor([[0.04, 0.01, 0.09], [1.0, 0.25, 0.0]])
    x = sample_theta(theta_s, var, 40000, seed=0)
    torch.testing.assert_close(x.var(0), var, rtol=0.05, atol=1e-3)
    # a rank-one covariance (not positive definite): falls back to an eigen-decomposition
    v = torch.tensor([1.0, 2.0, -1.0])
    S = (0.1 * torch.outer(v, v)).expand(2, 3, 3)
    x = sample_theta(theta_s, S, 40000, seed=0)
    cov = torch.einsum("nti,ntj->tij", x, x) / x.shape[0]
    torch.testing.assert_close(cov, S, rtol=0, atol=0.02)


def test_gaussian_intervals_closed_form():
    theta_s, sigma_s = _posterior(5, 6)
    ci = gaussian_intervals(theta_s, sigma_s, level=0.9)
    z = NormalDist().inv_cdf(0.95)
    sd = sigma_s.diagonal(dim1=-2, dim2=-1).sqrt()
    torch.testing.assert_close(ci.lower, theta_s - z * sd, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(ci.upper, theta_s + z * sd, rtol=1e-14, atol=1e-14)
    assert torch.equal(ci.map, theta_s) and ci.level == 0.9
    # from variances only
    ci_d = gaussian_intervals(theta_s, sigma_s.diagonal(dim1=-2, dim2=-1), level=0.9)
    torch.testing.assert_close(ci_d.lower, ci.lower)


def test_sampled_theta_intervals_match_closed_form():
    theta_s, sigma_s = _posterior(3, 6)
    ci = credible_intervals(theta_s, sigma_s, 3, 2, n_samples=20000, seed=0, quantities=[])
    g = gaussian_intervals(theta_s, sigma_s, 0.9)
    sd = sigma_s.diagonal(dim1=-2, dim2=-1).sqrt()
    # quantile standard error at p = 0.05: sqrt(p(1-p)/n)/phi(z) * sd ~ 0.015 sd
    assert torch.all((ci["theta"].lower - g.lower).abs() < 0.08 * sd)
    assert torch.all((ci["theta"].upper - g.upper).abs() < 0.08 * sd)
    assert set(ci) == {"theta", "eta"}


def test_monotone_quantity_interval_is_the_transformed_theta_interval():
    """N = 1: p_silence = 1 - sigmoid(theta) and eta = sigmoid(theta) are monotone in theta,
    so their credible bounds are the transformed Gaussian bounds."""
    theta_s = torch.tensor([[-1.0], [0.5], [2.0]])
    var = torch.tensor([[0.09], [0.25], [0.04]])
    ci = credible_intervals(theta_s, var, 1, 1, level=0.8, n_samples=40000, seed=2, quantities=["p_silence", "psi"])
    z = NormalDist().inv_cdf(0.9)
    lo, hi = theta_s - z * var.sqrt(), theta_s + z * var.sqrt()
    torch.testing.assert_close(ci["eta"].lower, torch.sigmoid(lo), rtol=0, atol=5e-3)
    torch.testing.assert_close(ci["eta"].upper, torch.sigmoid(hi), rtol=0, atol=5e-3)
    torch.testing.assert_close(ci["p_silence"].lower[:, None], 1 - torch.sigmoid(hi), rtol=0, atol=5e-3)
    torch.testing.assert_close(ci["p_silence"].upper[:, None], 1 - torch.sigmoid(lo), rtol=0, atol=5e-3)
    # psi = log(1 + e^theta)
    torch.testing.assert_close(ci["psi"].lower[:, None], torch.nn.functional.softplus(lo), rtol=0, atol=1e-2)
    torch.testing.assert_close(ci["psi"].map[:, None], torch.nn.functional.softplus(theta_s), rtol=1e-14, atol=0)


def test_map_values_and_bounds_of_derived_quantities(device):
    theta_s, sigma_s = _posterior(4, 6)
    y = torch.rand(4, 6, generator=torch.Generator().manual_seed(0))
    ci = credible_intervals(theta_s.to(device), sigma_s.to(device), 3, 2, n_samples=500, seed=0, y=y.to(device), R=30)
    assert isinstance(ci, CredibleIntervals) and ci.level == 0.9 and ci.n_samples == 500
    th = thermodynamics(theta_s, 3, 2, y=y, R=30)
    for q, ref in th.to_dict().items():
        iv = ci[q]
        assert isinstance(iv, CredibleInterval)
        torch.testing.assert_close(iv.map.cpu(), ref, rtol=1e-12, atol=1e-12)
        assert iv.lower.shape == (4,) and torch.all(iv.lower <= iv.upper)
    # the interval of eta brackets eta at the mode for this nearly symmetric posterior
    assert torch.all(ci["eta"].contains(ci["eta"].map))


def test_memory_chunks_give_the_same_intervals(monkeypatch):
    """Chunking the evaluation over samples changes nothing; the bounds are quantiles of the sampled values."""
    iv = importlib.import_module("torch_ising.intervals")

    theta_s, sigma_s = _posterior(3, 6)
    a = iv.credible_intervals(theta_s, sigma_s, 3, 2, n_samples=64, seed=1, quantities="heat_capacity")
    monkeypatch.setattr(iv, "_CHUNK_BYTES", 1)  # one sample per chunk
    b = iv.credible_intervals(theta_s, sigma_s, 3, 2, n_samples=64, seed=1, quantities="heat_capacity")
    for q in ("theta", "eta", "heat_capacity"):
        torch.testing.assert_close(a[q].lower, b[q].lower, rtol=1e-13, atol=0)
        torch.testing.assert_close(a[q].upper, b[q].upper, rtol=1e-13, atol=0)
    draws = sample_theta(theta_s, sigma_s, 64, seed=1)
    C = thermodynamics(draws, 3, 2).heat_capacity
    ref = torch.quantile(C, torch.tensor([0.05, 0.95]), dim=0)  # numpy-style linear interpolation
    torch.testing.assert_close(a["heat_capacity"].lower, ref[0], rtol=1e-12, atol=0)
    torch.testing.assert_close(a["heat_capacity"].upper, ref[1], rtol=1e-12, atol=0)


@pytest.mark.parametrize("level", [0.0, 1.0, 1.5, -0.1, math.nan, "high"])
def test_level_outside_unit_interval_raises(level):
    theta_s, sigma_s = _posterior(2, 6)
    with pytest.raises(ValueError, match="level"):
        credible_intervals(theta_s, sigma_s, 3, 2, level=level, n_samples=10)
    with pytest.raises(ValueError, match="level"):
        gaussian_intervals(theta_s, sigma_s, level=level)
    with pytest.raises(ValueError, match="level"):
        check_level(level)


def test_validation_errors():
    theta_s, sigma_s = _posterior(2, 6)
    with pytest.raises(ValueError, match="theta_s must have shape"):
        credible_intervals(theta_s[:, :5], sigma_s[:, :5, :5], 3, 2, n_samples=10)
    with pytest.raises(ValueError, match="sigma_s must have shape"):
        credible_intervals(theta_s, sigma_s[:, :5, :5], 3, 2, n_samples=10)
    with pytest.raises(ValueError, match="n_samples"):
        sample_theta(theta_s, sigma_s, 0)
    with pytest.raises(ValueError, match="needs the data"):
        credible_intervals(theta_s, sigma_s, 3, 2, n_samples=10, quantities=["llk1"])
    with pytest.raises(ValueError, match="unknown quantity"):
        credible_intervals(theta_s, sigma_s, 3, 2, n_samples=10, quantities=["free_energy"])
    ci = credible_intervals(theta_s, sigma_s, 3, 2, n_samples=10, quantities=["S_ratio"])
    with pytest.raises(ValueError, match="no credible interval for 'dkl'"):
        ci["dkl"]
    with pytest.raises(KeyError):
        ci["llk2"]


def _has_fit() -> bool:
    import torch_ising

    return hasattr(torch_ising, "fit")


@pytest.mark.skipif(not _has_fit(), reason="torch_ising.fit is not available")
def test_coverage_of_theta_intervals_on_simulated_data():
    """200 data sets drawn from a known state-space model (MODEL.md 3): theta_1 ~ N(mu, 0.1 I),
    theta_t = theta_{t-1} + N(0, 0.01 I), R = 50 trials per bin. The 90% intervals of the Laplace
    smoother with the true hyperparameters cover 85-95% of the true theta (closed form and sampled)."""
    import torch_ising as ti

    B, T, R, N, O = 200, 30, 50, 3, 2
    D = ti.basis.compute_D(N, O)
    g = torch.Generator().manual_seed(0)
    mu = torch.tensor([-1.5, -1.5, -1.5, 0.0, 0.0, 0.0])
    sigma_o, q = 0.1, 0.01
    steps = torch.randn(B, T, D, generator=g)
    steps[:, 0] *= math.sqrt(sigma_o)
    steps[:, 1:] *= math.sqrt(q)
    theta = mu + steps.cumsum(dim=1)
    spikes = ti.generate_spikes(theta.reshape(B * T, D), R, seed=1, N=N, order=O).reshape(B, T, R, N)
    fit = ti.fit(spikes, O, theta_o=mu, sigma_o=sigma_o, state_cov=q, mstep=False, progress=False)
    assert fit.theta_s.shape == (B, T, D)
    closed = gaussian_intervals(fit.theta_s, fit.sigma_s, level=0.9)
    cover_closed = closed.contains(theta).double().mean().item()
    sampled = credible_intervals(fit.theta_s, fit.sigma_s, N, O, level=0.9, n_samples=200, seed=0, quantities=[])
    cover_sampled = sampled["theta"].contains(theta).double().mean().item()
    cover_eta = sampled["eta"].contains(ti.moments.expectation(theta, N, O)).double().mean().item()
    assert 0.85 <= cover_closed <= 0.95, cover_closed
    assert 0.85 <= cover_sampled <= 0.95, cover_sampled
    assert 0.85 <= cover_eta <= 0.95, cover_eta
