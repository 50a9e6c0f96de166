"""Derived quantities (MODEL.md section 4) vs brute-force enumeration, finite differences and the published library."""

from __future__ import annotations

import importlib
import json
import math

import numpy as np
import pytest
import torch

from tests.common import PARITY_DIR, bf_patterns, brute_force, to_np
from torch_ising import basis
from torch_ising.thermodynamics import (
    QUANTITIES,
    QuantityError,
    Thermodynamics,
    heat_capacity_curve,
    thermodynamics,
)


def _bf_quantities(theta: np.ndarray, N: int, O: int, spikes: np.ndarray | None = None) -> dict[str, float]:
    """Every quantity from the dense pattern distribution, straight from the definitions."""
    bf = brute_force(theta, N, O)
    p, X = bf["probs"], bf["patterns"]
    E = bf["F"] @ theta
    rates = X.T @ p  # firing probabilities
    # Independent model: product of Bernoulli(rates)
    p1 = np.prod(np.where(X == 1, rates, 1 - rates), axis=1)
    out = {
        "S1": -np.sum(p1 * np.log(p1)),
        "S2": -np.sum(p * np.log(p)),
        "U2": -np.sum(p * E),
        "U1": -np.sum(p1 * (X @ np.log(rates / (1 - rates)))),
        "dkl": np.sum(p * np.log(p / p1)),
        "psi": bf["psi"],
        "heat_capacity": np.sum(p * E**2) - np.sum(p * E) ** 2,
        "p_silence": p[0],
    }
    out["S_ratio"] = (out["S1"] - out["S2"]) / out["S1"]
    out["multi_information"] = 100 * (out["S1"] - out["S2"]) / (N * math.log(2) - out["S2"])
    if spikes is not None:
        # log-likelihood of the observed patterns, summed over trials
        idx = [int(np.flatnonzero((X == x).all(axis=1))[0]) for x in spikes]
        out["llk2"] = float(np.sum(np.log(p[idx])))
        out["llk1"] = float(np.sum(np.log(p1[idx])))
    return out


@pytest.mark.parametrize("N,O", [(3, 2), (4, 2), (3, 3), (4, 3), (3, 1)])
def test_matches_brute_force(N, O, device):
    g = torch.Generator().manual_seed(10 * N + O)
    T, R = 4, 25
    D = basis.compute_D(N, O)
    theta = torch.randn(T, D, generator=g) * 0.8
    theta[:, :N] -= 1.0
    spikes = torch.randint(0, 2, (T, R, N), generator=g).to(torch.uint8)
    y = basis.sufficient_stats(spikes, O)
    th = thermodynamics(theta.to(device), N, O, y=y.to(device), R=R)
    assert isinstance(th, Thermodynamics)
    for t in range(T):
        ref = _bf_quantities(theta[t].numpy(), N, O, spikes[t].numpy())
        for name, value in ref.items():
            got = float(getattr(th, name)[t])
            if O == 1 and name in ("S_ratio", "dkl"):
                assert got == 0.0
            else:
                assert got == pytest.approx(value, rel=1e-9, abs=1e-12), (name, t)
    assert th.S1.device.type == torch.device(device).type


@pytest.mark.parametrize("batch", [(), (5,), (2, 3)])
def test_batch_shapes(batch):
    N, O = 3, 2
    g = torch.Generator().manual_seed(1)
    theta = torch.randn(*batch, 6, generator=g)
    y = torch.rand(*batch, 6, generator=g)
    th = thermodynamics(theta, N, O, y=y, R=7)
    for q in QUANTITIES:
        assert th.get(q).shape == batch
    flat = thermodynamics(theta.reshape(-1, 6), N, O, y=y.reshape(-1, 6), R=7)
    for q in QUANTITIES:
        torch.testing.assert_close(th.get(q).reshape(-1), flat.get(q), rtol=0, atol=0)


def _parity_cases():
    cases = []
    for path in sorted(PARITY_DIR.glob("*.npz")):
        with np.load(path) as d:
            if "tight__energies_S1" in d.files:
                cases.append(path)
    return cases


@pytest.mark.parametrize("path", _parity_cases(), ids=lambda p: p.stem)
def test_parity_with_published_library(path):
    """From the published fit's own theta_s and the data, reproduce its energies, heat capacity and p_silence."""
    d = np.load(path)
    s = json.loads(str(d["settings"]))
    N, O = s["N"], s["O"]
    spikes = torch.as_tensor(d["spikes"])
    R = spikes.shape[1]
    y = basis.sufficient_stats(spikes, O)
    th = thermodynamics(torch.as_tensor(d["tight__theta_s"]), N, O, y=y, R=R)
    for name in ("S1", "S2", "S_ratio", "dkl", "llk1", "llk2", "psi", "U1", "U2"):
        np.testing.assert_allclose(to_np(getattr(th, name)), d[f"tight__energies_{name}"], rtol=1e-8, atol=0)
    # the published heat capacity is a finite difference: agreement to 1e-5 relative
    np.testing.assert_allclose(to_np(th.heat_capacity), d["tight__heat_capacity"], rtol=1e-5, atol=0)
    np.testing.assert_allclose(to_np(th.p_silence), d["tight__p_silence"], rtol=0, atol=1e-8)
    # and the exact value is d^2/dbeta^2 psi(beta theta) at beta = 1 (central difference, 1e-6 relative)
    from torch_ising.moments import log_partition

    theta, h = torch.as_tensor(d["tight__theta_s"]), 1e-3
    fd = log_partition((1 + h) * theta, N, O) - 2 * log_partition(theta, N, O) + log_partition((1 - h) * theta, N, O)
    torch.testing.assert_close(th.heat_capacity, fd / h**2, rtol=1e-6, atol=0)


def test_parity_cases_exist():
    assert len(_parity_cases()) >= 1


@pytest.mark.parametrize("O", [1, 2, 3])
def test_heat_capacity_equals_finite_difference(O):
    """C(beta) = beta^2 d^2/dbeta^2 psi(beta theta): exact value vs a central difference of psi, 1e-6 relative.

    At beta = 1 this is the acceptance check C = d^2/dbeta^2 psi(beta theta) of MODEL.md section 4.
    """
    N = 4
    g = torch.Generator().manual_seed(O)
    theta = torch.randn(6, basis.compute_D(N, O), generator=g)
    betas = torch.tensor([0.3, 1.0, 1.7])
    C = heat_capacity_curve(theta, N, O, betas)
    assert C.shape == (6, 3)
    from torch_ising.moments import log_partition

    h = 1e-3  # truncation error ~h^2/12 psi'''', rounding ~eps psi / h^2: both far below 1e-6
    for k, b in enumerate(betas.tolist()):
        fd = (
            log_partition((b + h) * theta, N, O)
            - 2 * log_partition(b * theta, N, O)
            + log_partition((b - h) * theta, N, O)
        ) / h**2
        torch.testing.assert_close(C[:, k], b**2 * fd, rtol=1e-6, atol=0)
        torch.testing.assert_close(thermodynamics(theta, N, O, beta=b).heat_capacity, C[:, k], rtol=1e-12, atol=0)


def test_heat_capacity_curve_default_grid_and_batch():
    theta = torch.randn(2, 3, 6, generator=torch.Generator().manual_seed(3))
    C = heat_capacity_curve(theta, 3, 2)
    assert C.shape == (2, 3, 101)
    assert torch.all(C[..., 0] == 0)  # beta = 0: C = 0
    assert torch.all(C >= 0)


def test_independent_model_s_ratio_is_zero():
    N = 3
    theta1 = torch.tensor([[-1.5, -0.5, 0.7], [-2.0, -1.0, -3.0]])
    th1 = thermodynamics(theta1, N, 1, y=torch.rand(2, 3), R=5)
    assert torch.all(th1.S_ratio == 0) and torch.all(th1.dkl == 0)
    torch.testing.assert_close(th1.gain, torch.zeros(2), rtol=0, atol=0)
    # the same model written as a pairwise model with zero couplings: the general formula gives 0
    theta2 = torch.cat([theta1, torch.zeros(2, 3)], dim=1)
    th2 = thermodynamics(theta2, N, 2)
    assert torch.all(th2.S_ratio.abs() < 1e-9)
    assert torch.all(th2.dkl.abs() < 1e-12)
    torch.testing.assert_close(th2.S1, th1.S1, rtol=1e-12, atol=0)


def test_coupling_raises_s_ratio_exact():
    """For exact models: S_ratio grows with the strength of a positive coupling."""
    base = torch.tensor([-1.5, -1.5, -1.5, 0.0, 0.0, 0.0])
    J = torch.tensor([0.0, 0.5, 1.0, 2.0])
    theta = base.repeat(4, 1)
    theta[:, 3] = J
    r = thermodynamics(theta, 3, 2).S_ratio
    assert torch.all(r[1:] > r[:-1])


def test_validation_errors():
    with pytest.raises(ValueError, match="theta must have shape"):
        thermodynamics(torch.zeros(5, 7), 3, 2)
    with pytest.raises(ValueError, match="theta must have shape"):
        heat_capacity_curve(torch.zeros(4), 3, 2)
    with pytest.raises(ValueError, match="R must be given"):
        thermodynamics(torch.zeros(6), 3, 2, y=torch.zeros(6))
    with pytest.raises(ValueError, match="y must have shape"):
        thermodynamics(torch.zeros(6), 3, 2, y=torch.zeros(3), R=4)
    with pytest.raises(ValueError, match="R must be a positive"):
        thermodynamics(torch.zeros(6), 3, 2, y=torch.zeros(6), R=0)
    with pytest.raises(ValueError, match="betas must be"):
        heat_capacity_curve(torch.zeros(6), 3, 2, torch.ones(2, 2))
    th = thermodynamics(torch.zeros(6), 3, 2)
    assert th.llk1 is None and "llk1" not in th.available
    with pytest.raises(ValueError, match="needs the data"):
        th.get("llk1")
    with pytest.raises(QuantityError, match="needs the data"):
        _ = th.gain
    with pytest.raises(KeyError, match="unknown quantity"):
        th.get("entropy_rate")


def test_to_dict_and_gain():
    theta = torch.tensor([-1.0, -1.2, 0.8])
    y = torch.tensor([0.3, 0.25, 0.1])
    th = thermodynamics(theta, 2, 2, y=y, R=40)
    d = th.to_dict()
    assert set(d) == set(QUANTITIES) | {"gain"}
    torch.testing.assert_close(d["gain"], th.llk2 - th.llk1)


def test_silent_pattern_probability_brute_force_order():
    """p_silence is the probability of the first (all-zero) pattern of the seed order."""
    assert bf_patterns(3)[0].sum() == 0
    theta = torch.tensor([-0.5, 0.2, 0.1, 1.0, -1.0, 0.3, 0.7])
    from torch_ising.moments import probs

    torch.testing.assert_close(thermodynamics(theta, 3, 3).p_silence, probs(theta, 3, 3)[0])


def _has_fit() -> bool:
    import torch_ising

    return hasattr(torch_ising, "fit")


@pytest.mark.skipif(not _has_fit(), reason="torch_ising.fit is not available")
def test_seed_section5_checks_on_fits():
    """The seed's Section 5 (N = 3, T = 1, R = 300), three data sets fitted in one batch:
    uncoupled data give S_ratio < 0.01; strong coupling gives a larger S_ratio than weak coupling;
    an order-1 fit has S_ratio = 0."""
    import torch_ising as ti

    thetas = torch.tensor(
        [
            [-1.5, -1.5, -1.5, 0.0, 0.0, 0.0],  # uncoupled (the seed's last exercise)
            [-1.5, -1.5, -1.5, 0.3, 0.0, 0.0],  # weakly coupled
            [-1.5, -1.5, -1.5, 2.0, 0.0, 0.0],  # strongly coupled (the seed's theta_strong_gt)
        ]
    )
    spikes = torch.stack([ti.generate_spikes(th[None], 300, seed=7 + i, N=3, order=2) for i, th in enumerate(thetas)])
    res = ti.fit(spikes, 2, progress=False)  # (B, T, R, N) = (3, 1, 300, 3)
    th = thermodynamics(res.theta_s, 3, 2, y=res.y, R=res.R)
    s_ratio = th.S_ratio[:, 0]
    assert s_ratio[0] < 0.01
    assert s_ratio[2] > s_ratio[1]
    assert th.gain[2, 0] > th.gain[0, 0]  # coupling is where the pairwise model gains likelihood
    # the result's method is the same computation
    torch.testing.assert_close(res.thermodynamics().S_ratio, th.S_ratio)
    res1 = ti.fit(spikes, 1, progress=False)
    assert torch.all(res1.thermodynamics().S_ratio.abs() < 1e-9)


def test_heat_capacity_curve_chunks_agree(monkeypatch):
    # the module itself (torch_ising.thermodynamics may also name the exported function)
    thermo = importlib.import_module("torch_ising.thermodynamics")

    theta = torch.randn(7, 10, generator=torch.Generator().manual_seed(5))
    betas = torch.linspace(0.1, 1.9, 9)
    whole = heat_capacity_curve(theta, 4, 2, betas)
    monkeypatch.setattr(thermo, "_CHUNK_BYTES", 1)  # one bin and one beta per chunk
    torch.testing.assert_close(heat_capacity_curve(theta, 4, 2, betas), whole, rtol=1e-13, atol=0)
    from torch_ising.moments import heat_capacity

    torch.testing.assert_close(whole, heat_capacity(theta, 4, 2, betas[:, None]).T, rtol=1e-10, atol=1e-12)


def test_one_batched_moments_call_for_all_bins(monkeypatch):
    """All bins go through exact moments in one call: no Python loop over bins."""
    moments_mod = importlib.import_module("torch_ising.moments")

    calls = []
    real = moments_mod.moments

    def spy(theta, *args, **kwargs):
        calls.append(tuple(theta.shape))
        return real(theta, *args, **kwargs)

    monkeypatch.setattr(moments_mod, "moments", spy)
    theta = torch.randn(500, 10, generator=torch.Generator().manual_seed(0))
    th = thermodynamics(theta, 4, 2, y=torch.rand(500, 10), R=20)
    assert calls == [(500, 10)]
    assert th.S_ratio.shape == (500,)
