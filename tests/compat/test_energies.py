"""torch_ising.compat.energies against the published library's energies (tests/data/parity) and brute force."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from tests.common import PARITY_DIR, bf_features, brute_force
from torch_ising.compat import energies

CASES = sorted(p for p in PARITY_DIR.glob("*.npz") if "default__energies_S1" in np.load(p).files)


def _container(d, prefix: str) -> SimpleNamespace:
    st = json.loads(str(d["settings"]))
    N, O = st["N"], st["O"]
    x = d["spikes"]
    T, R, _ = x.shape
    y = bf_features(x.reshape(-1, N), N, O).reshape(T, R, -1).mean(1)
    return SimpleNamespace(theta_s=d[f"{prefix}theta_s"], y=y, R=R, N=N, order=O)


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_matches_published_energies(path):
    """From the published default fit's theta_s, reproduce the energies it attached (1e-8 relative)."""
    d = np.load(path)
    emd = _container(d, "default__")
    energies.get_energies(emd)
    for name in energies.ENERGY_NAMES:
        value = getattr(emd, name)
        assert isinstance(value, np.ndarray) and value.shape == (emd.theta_s.shape[0],), name
        np.testing.assert_allclose(value, d[f"default__energies_{name}"], rtol=1e-8, atol=1e-12, err_msg=name)


def test_parity_cases_with_energies_exist():
    assert len(CASES) >= 1


def test_brute_force_definitions():
    """S2 = entropy of p, dkl = KL(p || independent product), llk = R (y . theta - psi), for N = 3."""
    rng = np.random.default_rng(0)
    N, O, T, R = 3, 2, 4, 25
    theta = rng.normal(-0.7, 0.8, size=(T, 6))
    y = rng.uniform(0.05, 0.4, size=(T, 6))
    emd = SimpleNamespace(theta_s=theta, y=y, R=R, N=N, order=O)
    energies.get_energies(emd)
    for t in range(T):
        bf = brute_force(theta[t], N, O)
        p, eta = bf["probs"], bf["eta"]
        pats = bf["patterns"]
        q = np.prod(np.where(pats == 1, eta[:N], 1 - eta[:N]), axis=1)  # the rate-matched independent model
        assert emd.S2[t] == pytest.approx(-(p * np.log(p)).sum(), rel=1e-12)
        assert emd.S1[t] == pytest.approx(-(q * np.log(q)).sum(), rel=1e-12)
        assert emd.dkl[t] == pytest.approx((p * np.log(p / q)).sum(), rel=1e-9, abs=1e-14)
        assert emd.psi[t] == pytest.approx(bf["psi"], rel=1e-13)
        assert emd.U2[t] == pytest.approx(-theta[t] @ eta, rel=1e-12)
        assert emd.llk2[t] == pytest.approx(R * (y[t] @ theta[t] - bf["psi"]), rel=1e-12)
        theta1 = np.log(eta[:N] / (1 - eta[:N]))
        assert emd.llk1[t] == pytest.approx(R * (y[t, :N] @ theta1 + np.log(1 - eta[:N]).sum()), rel=1e-12)
        np.testing.assert_allclose(emd.eta[t], eta, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(emd.S_ratio, (emd.S1 - emd.S2) / emd.S1, rtol=1e-14)


def test_independent_model_has_zero_ratio_and_divergence():
    emd = SimpleNamespace(theta_s=np.array([[-1.0, -2.0, 0.5]]), y=np.array([[0.2, 0.1, 0.6]]), R=10, N=3, order=1)
    energies.get_energies(emd)
    assert emd.S_ratio[0] == 0.0 and emd.dkl[0] == 0.0
    np.testing.assert_allclose(emd.llk1, emd.llk2, rtol=0, atol=0)


def test_missing_attributes_raise_value_error():
    with pytest.raises(ValueError, match="theta_s"):
        energies.get_energies(SimpleNamespace(theta_s=np.zeros((1, 3)), N=3, order=1))
