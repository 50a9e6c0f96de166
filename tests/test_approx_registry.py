"""The eta-method registry: every method against exact enumeration, and the large-N validation."""

from __future__ import annotations

import pytest
import torch

from torch_ising import ExactMemoryError, basis, moments
from torch_ising.approx import ETA_METHODS, ApproxMoments, approx_moments, get_eta_method

FAST = {"mc": {"n_chains": 256, "n_sweeps": 100, "burn_in": 20, "n_beta": 6, "ti_chains": 512}}


def test_registry_names():
    assert {"tap", "bethe_bp", "bethe_cccp", "bethe_hybrid", "mc"} <= set(ETA_METHODS)
    with pytest.raises(ValueError, match="eta_method must be one of"):
        get_eta_method("belief")
    with pytest.raises(ValueError, match="eta_method must be one of"):
        approx_moments(torch.zeros(10), 4, 2, "nope")


@pytest.mark.parametrize("name", sorted(ETA_METHODS))
def test_every_method_against_exact(name, device):
    """One signature; eta within 0.01 and psi within 1e-2 relative at weak coupling (N = 7)."""
    N = 7
    g = torch.Generator().manual_seed(1)
    D = basis.compute_D(N, 2)
    th = torch.empty(2, D)
    th[:, :N] = -1.5 + 0.5 * torch.randn(2, N, generator=g)
    th[:, N:] = 0.3 * (2 * torch.rand(2, D - N, generator=g) - 1)
    th = th.to(device)
    out = approx_moments(th, N, 2, name, **FAST.get(name, {}))
    assert isinstance(out, ApproxMoments)
    ex = moments.moments(th, N, 2, with_fisher=False)
    assert out.eta.shape == (2, D) and out.psi.shape == (2,) and out.converged.shape == (2,)
    assert bool(out.converged.all())
    assert float((out.eta - ex.eta).abs().max()) < 0.01
    assert float(((out.psi - ex.psi) / ex.psi).abs().max()) < 1e-2
    assert out.eta.device == th.device


def test_exact_fit_refuses_too_many_neurons():
    """Exact inference at an N too large for memory: a clear error with the estimate and the way out."""
    from torch_ising.statespace.model import fit

    spikes = torch.zeros(2, 3, 48, dtype=torch.uint8)
    with pytest.raises(ExactMemoryError, match=r"GiB.*method='pseudo'"):
        fit(spikes, 1, progress=False)
    with pytest.raises(ExactMemoryError, match="GiB"):
        approx_moments(torch.zeros(48), 48, 1, "exact")


def test_thermodynamics_of_approximate_fits(device):
    """approx_thermodynamics with exact moments reproduces thermodynamics(); TAP is close at weak coupling."""
    from torch_ising.approx import approx_thermodynamics
    from torch_ising.thermodynamics import thermodynamics

    N = 6
    g = torch.Generator().manual_seed(3)
    D = basis.compute_D(N, 2)
    th = torch.empty(4, D)
    th[:, :N] = -1.5 + 0.5 * torch.randn(4, N, generator=g)
    th[:, N:] = 0.3 * (2 * torch.rand(4, D - N, generator=g) - 1)
    th = th.to(device)
    y = moments.expectation(th, N, 2)
    ref = thermodynamics(th, N, 2, y=y, R=50)
    ex = approx_thermodynamics(th, N, 2, "exact", y=y, R=50)
    for name in ("S1", "S2", "S_ratio", "U1", "U2", "dkl", "psi", "llk1", "llk2", "p_silence", "multi_information"):
        torch.testing.assert_close(getattr(ex, name), getattr(ref, name), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ex.heat_capacity, ref.heat_capacity, rtol=1e-4, atol=1e-6)
    ap = approx_thermodynamics(th, N, 2, "tap", y=y, R=50)
    torch.testing.assert_close(ap.S2, ref.S2, rtol=1e-2, atol=1e-3)
    torch.testing.assert_close(ap.heat_capacity, ref.heat_capacity, rtol=5e-2, atol=1e-3)
    with pytest.raises(ValueError, match="beta_step"):
        approx_thermodynamics(th, N, 2, "tap", beta_step=0.0)
