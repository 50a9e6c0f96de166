import numpy as np
import pytest
import torch

from tests.common import to_np
from torch_ising import basis, moments, synthesis


def test_generate_thetas_shapes_and_stats():
    th = synthesis.generate_thetas(3, 2, 5, seed=0)
    assert th.shape == (5, 6) and th.dtype == torch.float64
    many = synthesis.generate_thetas(4, 2, 1, seed=1, alpha=4.0)
    assert many.shape == (1, 10)
    draws = torch.stack([synthesis.generate_thetas(2, 1, 1, seed=s)[0] for s in range(2000)])
    # T = 1: one Gaussian draw with mean mu1 = -2 and variance 1/alpha = 1/12
    assert abs(float(draws.mean()) + 2.0) < 0.02
    assert abs(float(draws.var()) - 1 / 12) < 0.01


def test_generate_thetas_smooth_and_ratio():
    th = synthesis.generate_thetas(4, 2, 200, sigma1=30, sigma2=30, ratio_modulated=0.5, seed=2)
    assert (th[:, 4:].abs().sum(0) == 0).sum() == 3
    assert float(th[1:, :4].sub(th[:-1, :4]).abs().max()) < 0.05


def test_generate_spikes_exact_moments():
    theta = synthesis.generate_thetas(3, 2, 4, seed=3)
    spikes = synthesis.generate_spikes(theta, 20000, seed=4)
    assert spikes.shape == (4, 20000, 3) and spikes.dtype == torch.uint8
    y = basis.sufficient_stats(spikes, 2)
    eta = moments.expectation(theta, 3, 2)
    se = torch.sqrt(eta * (1 - eta) / 20000)
    assert bool(((y - eta).abs() < 4 * se + 1e-12).all())


def test_generate_spikes_seeded():
    theta = synthesis.generate_thetas(3, 2, 2, seed=0)
    a = synthesis.generate_spikes(theta, 50, seed=9)
    b = synthesis.generate_spikes(theta, 50, seed=9)
    assert torch.equal(a, b)


def test_gibbs_moments_within_three_se():
    N, O = 10, 2
    rng = np.random.default_rng(5)
    D = basis.compute_D(N, O)
    theta = torch.as_tensor(np.concatenate([rng.uniform(-1.5, -0.5, N), rng.uniform(-0.5, 0.5, D - N)]))
    n = 4000
    x = synthesis.gibbs_sample(theta, n, N, O, burn_in=60, generator=torch.Generator().manual_seed(0))
    y = basis.features(x, N, O).mean(0)
    eta = moments.expectation(theta, N, O)
    se = torch.sqrt(eta * (1 - eta) / n)
    assert bool(((y - eta).abs() < 3 * se).all()), to_np((y - eta).abs() / se).max()


def test_gibbs_third_order():
    N, O = 5, 3
    theta = torch.as_tensor(np.random.default_rng(6).uniform(-1, 0.5, basis.compute_D(N, O)))
    x = synthesis.generate_spikes(theta[None], 6000, seed=1, N=N, order=O, method="gibbs", burn_in=40)
    y = basis.sufficient_stats(x, O)[0]
    eta = moments.expectation(theta, N, O)
    se = torch.sqrt(eta * (1 - eta) / 6000)
    assert bool(((y - eta).abs() < 4 * se).all())


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: synthesis.generate_thetas(0, 1, 3), "N"),
        (lambda: synthesis.generate_thetas(3, 4, 3), "order"),
        (lambda: synthesis.generate_spikes(torch.zeros(1, 6), 0), "R"),
        (lambda: synthesis.generate_spikes(torch.zeros(1, 5), 3, N=3), "theta"),
    ],
)
def test_validation(call, match):
    with pytest.raises(ValueError, match=match):
        call()
