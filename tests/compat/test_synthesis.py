"""torch_ising.compat.synthesis: shapes, reproducibility, and spikes drawn from the given p."""

from __future__ import annotations

import numpy as np
import pytest

from tests.common import bf_patterns, brute_force
from torch_ising.compat import synthesis, transforms


def test_generate_thetas_shapes_and_numpy_seeding():
    np.random.seed(3)
    a = synthesis.generate_thetas(3, 2, 5)
    np.random.seed(3)
    b = synthesis.generate_thetas(3, 2, 5)
    assert isinstance(a, np.ndarray) and a.shape == (5, 6) and a.dtype == np.float64
    np.testing.assert_array_equal(a, b)
    c, e = synthesis.generate_thetas(3, 2, 5, seed=7), synthesis.generate_thetas(3, 2, 5, seed=7)
    np.testing.assert_array_equal(c, e)


def test_generate_thetas_moments():
    """T = 1: theta ~ Normal((mu1, .., mu2, ..), I / alpha) with the seed's defaults mu1 = -2, mu2 = 0, alpha = 12."""
    th = np.concatenate([synthesis.generate_thetas(4, 2, 1, seed=s) for s in range(400)])
    n = th.shape[0]
    se_mean = np.sqrt(1 / 12 / n)
    assert np.all(np.abs(th[:, :4].mean(0) + 2.0) < 5 * se_mean)
    assert np.all(np.abs(th[:, 4:].mean(0)) < 5 * se_mean)
    assert abs(th.var(axis=0).mean() - 1 / 12) < 5 * (1 / 12) * np.sqrt(2 / th.size)
    low = np.concatenate([synthesis.generate_thetas(4, 2, 1, mu1=-4.0, seed=s) for s in range(100)])
    assert abs(low[:, :4].mean() + 4.0) < 5 * np.sqrt(1 / 12 / low[:, :4].size)


def test_generate_spikes_follows_p():
    """Empirical pattern frequencies match p within 5 binomial standard errors."""
    N, O, R = 3, 2, 20000
    transforms.initialise(N, O)
    theta = np.array([[-1.0, -0.5, 0.3, 1.0, -1.0, 0.5], [0.2, -2.0, -1.0, 0.0, 0.7, -0.3]])
    p = transforms.compute_p(theta)
    spikes = synthesis.generate_spikes(p, R, seed=0)
    assert isinstance(spikes, np.ndarray) and spikes.shape == (2, R, N)
    assert set(np.unique(spikes)) <= {0.0, 1.0}
    pats = bf_patterns(N)
    for t in range(2):
        counts = np.array([(spikes[t] == pat).all(1).sum() for pat in pats]) / R
        expected = brute_force(theta[t], N, O)["probs"]
        se = np.sqrt(expected * (1 - expected) / R)
        assert np.all(np.abs(counts - expected) < 5 * se + 1e-12)


def test_generate_spikes_seeding():
    p = np.full((1, 8), 1 / 8)
    np.testing.assert_array_equal(synthesis.generate_spikes(p, 50, seed=4), synthesis.generate_spikes(p, 50, seed=4))
    np.random.seed(5)
    a = synthesis.generate_spikes(p, 50)
    np.random.seed(5)
    np.testing.assert_array_equal(a, synthesis.generate_spikes(p, 50))
    assert synthesis.generate_spikes(p[0], 3).shape == (1, 3, 3)


@pytest.mark.parametrize(
    ("p", "R", "match"),
    [
        (np.full((1, 6), 1 / 6), 5, "2\\^N columns"),
        (np.full((1, 4), 0.5), 5, "sum to 1"),
        (np.array([[1.5, -0.5, 0.0, 0.0]]), 5, "non-negative"),
        (np.full((1, 4), 0.25), 0, "R must be"),
        (np.full((1, 1, 4), 0.25), 5, "shape \\(T, 2\\^N\\)"),
    ],
)
def test_generate_spikes_bad_input(p, R, match):
    with pytest.raises(ValueError, match=match):
        synthesis.generate_spikes(p, R)


def test_bad_seed():
    with pytest.raises(ValueError, match="seed"):
        synthesis.generate_thetas(3, 2, 1, seed=1.5)
