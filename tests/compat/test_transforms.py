"""torch_ising.compat.transforms against brute-force enumeration (tests/common.py)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tests.common import bf_features, bf_patterns, brute_force
from torch_ising.compat import transforms


@pytest.fixture(autouse=True)
def _restore_state():
    saved = dict(transforms._STATE)
    yield
    transforms._STATE.clear()
    transforms._STATE.update(saved)


@pytest.mark.parametrize(("N", "O"), [(1, 1), (2, 2), (3, 2), (3, 3), (4, 2), (5, 3)])
def test_compute_D(N, O):
    assert transforms.compute_D(N, O) == sum(len(list(itertools.combinations(range(N), k))) for k in range(1, O + 1))


@pytest.mark.parametrize("N", [1, 2, 3, 4])
def test_enumerate_patterns_seed_order(N):
    pats = transforms.enumerate_patterns(N)
    assert isinstance(pats, np.ndarray) and pats.shape == (2**N, N)
    np.testing.assert_array_equal(pats, bf_patterns(N))
    assert str(pats[0]) == "[" + " ".join(["0"] * N) + "]"  # the seed prints patterns like "[0 0]"


@pytest.mark.parametrize(("N", "O"), [(2, 2), (3, 2), (3, 3), (4, 2), (5, 3)])
def test_compute_p_psi_eta_match_brute_force(N, O):
    rng = np.random.default_rng(N * 10 + O)
    transforms.initialise(N, O)
    D = transforms.compute_D(N, O)
    theta = rng.normal(-0.5, 1.0, D)
    bf = brute_force(theta, N, O)
    p = transforms.compute_p(theta)
    assert isinstance(p, np.ndarray) and p.shape == (2**N,)
    np.testing.assert_allclose(p, bf["probs"], rtol=1e-12, atol=1e-15)
    assert transforms.compute_psi(theta) == pytest.approx(bf["psi"], rel=1e-13)
    eta = transforms.compute_eta(p)
    assert eta.shape == (D,)
    np.testing.assert_allclose(eta, bf["eta"], rtol=1e-12, atol=1e-15)


def test_compute_eta_of_an_arbitrary_distribution():
    """eta_S = sum_x p(x) F_S(x) for any p, not only for p of the model's own family."""
    N, O = 4, 3
    transforms.initialise(N, O)
    p = np.random.default_rng(0).dirichlet(np.ones(2**N))
    expected = bf_features(bf_patterns(N), N, O).T @ p
    np.testing.assert_allclose(transforms.compute_eta(p), expected, rtol=1e-12, atol=1e-15)


def test_batched_theta_and_p():
    N, O = 3, 2
    transforms.initialise(N, O)
    theta = np.random.default_rng(1).normal(size=(5, 6))
    P = transforms.compute_p(theta)
    assert P.shape == (5, 8)
    for t in range(5):
        np.testing.assert_allclose(P[t], brute_force(theta[t], N, O)["probs"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        transforms.compute_eta(P), np.stack([brute_force(th, N, O)["eta"] for th in theta]), rtol=1e-12, atol=1e-15
    )


def test_compute_y():
    x = np.random.default_rng(2).integers(0, 2, size=(6, 7, 3))
    y = transforms.compute_y(x, 2)
    np.testing.assert_allclose(y, bf_features(x.reshape(-1, 3), 3, 2).reshape(6, 7, 6).mean(1), rtol=0, atol=1e-15)


def test_enumerate_subsets():
    assert transforms.enumerate_subsets(3, 2) == [(0,), (1,), (2,), (0, 1), (0, 2), (1, 2)]


def test_state_and_errors():
    transforms._STATE.clear()
    with pytest.raises(ValueError, match="initialise"):
        transforms.compute_p(np.zeros(3))
    with pytest.raises(ValueError, match="order"):
        transforms.initialise(2, 3)
    transforms.initialise(2, 2)
    assert transforms.get_state() == (2, 2)
    with pytest.raises(ValueError, match="theta must have length D=3"):
        transforms.compute_p(np.zeros(6))
    with pytest.raises(ValueError, match="p must have 2\\^N = 4"):
        transforms.compute_eta(np.ones(8) / 8)
