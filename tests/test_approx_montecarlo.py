"""Monte Carlo eta (parallel Gibbs chains) and psi (thermodynamic integration) against exact enumeration."""

from __future__ import annotations

import math

import pytest
import torch

from torch_ising import basis, moments
from torch_ising.approx import gibbs_moments, monte_carlo, thermodynamic_integration


def _theta(N, O, n, scale, seed, device):
    g = torch.Generator().manual_seed(seed)
    D = basis.compute_D(N, O)
    th = torch.empty(n, D)
    th[:, :N] = -1.0 + 0.5 * torch.randn(n, N, generator=g)
    th[:, N:] = scale * (2 * torch.rand(n, D - N, generator=g) - 1)
    return th.to(device)


def test_gibbs_eta_pairwise(device):
    N = 6
    th = _theta(N, 2, 2, 0.8, 0, device)
    ex = moments.moments(th, N, 2, with_fisher=False)
    mc = gibbs_moments(th, N, 2, n_chains=512, n_sweeps=100, burn_in=30, seed=1)
    err = (mc.eta - ex.eta).abs()
    assert float(err.max()) < 0.01
    # errors are consistent with the reported standard errors (6 sigma, plus round-off slack)
    assert bool((err <= 6 * mc.eta_stderr + 1e-4).all())
    energy = (th * ex.eta).sum(-1)
    assert bool(((mc.energy - energy).abs() <= 6 * mc.energy_stderr + 1e-4).all())
    assert bool((mc.rhat < 1.05).all())


def test_gibbs_eta_third_order(device):
    N = 4
    th = _theta(N, 3, 1, 0.8, 2, device)
    ex = moments.moments(th, N, 3, with_fisher=False)
    mc = gibbs_moments(th, N, 3, n_chains=512, n_sweeps=100, burn_in=30, seed=3)
    assert float((mc.eta - ex.eta).abs().max()) < 0.015


def test_thermodynamic_integration(device):
    """psi = N log 2 + int_0^1 E_beta[theta . F] dbeta is within 1e-2 relative of the exact psi."""
    N = 6
    th = _theta(N, 2, 2, 0.8, 4, device)
    exact = moments.log_partition(th, N, 2)
    errors = {}
    for path in ("independent", "uniform"):
        psi, se, rhat = thermodynamic_integration(
            th, N, 2, path=path, n_beta=8, n_chains=256, n_sweeps=80, burn_in=20, seed=5
        )
        assert float(((psi - exact) / exact).abs().max()) < 1e-2
        assert bool(((psi - exact).abs() <= 6 * se + 2e-3).all())
        errors[path] = float(se.max())
    # integrating only the interaction energy from the independent model is the more precise path
    assert errors["independent"] < errors["uniform"]
    with pytest.raises(ValueError, match="path"):
        thermodynamic_integration(th, N, 2, path="straight")
    # theta = 0: psi(0) = N log 2 exactly on both paths (the integrand is the mean energy, 0)
    for path in ("independent", "uniform"):
        psi0, _, _ = thermodynamic_integration(
            torch.zeros_like(th[0]), N, 2, path=path, n_beta=2, n_chains=8, n_sweeps=4, seed=0
        )
        assert abs(float(psi0) - N * math.log(2)) < 1e-12
    # no interactions: the independent path is exact
    t1 = th.clone()
    t1[:, N:] = 0.0
    psi1, se1, _ = thermodynamic_integration(t1, N, 2, n_beta=2, n_chains=8, n_sweeps=4, seed=0)
    torch.testing.assert_close(psi1, moments.log_partition(t1, N, 2), rtol=0, atol=1e-12)


def test_monte_carlo_registry_entry(device):
    N = 5
    th = _theta(N, 2, 1, 0.5, 6, device)[0]
    a = monte_carlo(th, N, 2, n_chains=256, n_sweeps=100, burn_in=20, n_beta=6, ti_chains=512, seed=7)
    ex = moments.moments(th, N, 2, with_fisher=False)
    assert a.psi.shape == () and a.eta.shape == (15,) and bool(a.converged)
    assert float((a.eta - ex.eta).abs().max()) < 0.01
    assert abs(float((a.psi - ex.psi) / ex.psi)) < 1e-2
    torch.testing.assert_close(a.fisher_diag, a.eta * (1 - a.eta))
    b = monte_carlo(th, N, 2, n_chains=256, n_sweeps=100, burn_in=20, with_psi=False, seed=7)
    assert b.psi is None
    torch.testing.assert_close(b.eta, a.eta)  # same seed, same chains


def test_seeded_runs_repeat(device):
    th = _theta(4, 2, 1, 0.5, 8, device)
    a = gibbs_moments(th, 4, 2, n_chains=16, n_sweeps=5, burn_in=2, n_groups=2, seed=11)
    b = gibbs_moments(th, 4, 2, n_chains=16, n_sweeps=5, burn_in=2, n_groups=2, seed=11)
    torch.testing.assert_close(a.eta, b.eta, rtol=0, atol=0)


def test_bad_input():
    th = torch.zeros(10)
    with pytest.raises(ValueError, match="n_chains"):
        gibbs_moments(th, 4, 2, n_chains=10, n_groups=4)
    with pytest.raises(ValueError, match="burn_in"):
        gibbs_moments(th, 4, 2, burn_in=-1)
    with pytest.raises(ValueError, match="n_beta"):
        thermodynamic_integration(th, 4, 2, n_beta=0)
    with pytest.raises(ValueError, match="rhat_max"):
        monte_carlo(th, 4, 2, rhat_max=1.0)
    with pytest.raises(ValueError, match="theta must have shape"):
        gibbs_moments(torch.zeros(9), 4, 2)


def test_stuck_chains_are_flagged():
    """A bimodal ferromagnet (all silent / all firing) traps chains in both modes: R-hat flags it."""
    from torch_ising.approx import ApproximationWarning, ConvergenceError

    N = 8
    th = torch.zeros(basis.compute_D(N, 2))
    th[:N] = -3.5 * (N - 1) / 2
    th[N:] = 3.5
    with pytest.warns(ApproximationWarning, match="Monte Carlo"):
        a = monte_carlo(th, N, 2, n_chains=64, n_sweeps=40, burn_in=0, with_psi=False, seed=0)
    assert not bool(a.converged) and bool(torch.isfinite(a.eta).all())
    with pytest.raises(ConvergenceError):
        monte_carlo(th, N, 2, n_chains=64, n_sweeps=40, burn_in=0, with_psi=False, seed=0, on_fail="raise")
