"""Held-out likelihood: the posterior expectation against quadrature and brute force, the folds, the table."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import torch_ising as ti
from tests.common import bf_features, bf_patterns
from torch_ising.crossval import fold_assignment, heldout_loglik


def _quadrature(m: float, s: float, y: float, R: float) -> float:
    """log int exp(R [y theta - log(1 + e^theta)]) Normal(theta; m, s) dtheta on a dense grid (N = 1)."""
    th = np.linspace(m - 12 * np.sqrt(s), m + 12 * np.sqrt(s), 200_001)
    logf = R * (y * th - np.logaddexp(0.0, th)) - 0.5 * (th - m) ** 2 / s - 0.5 * np.log(2 * np.pi * s)
    c = logf.max()
    return float(c + np.log(np.trapezoid(np.exp(logf - c), th)))


@pytest.mark.parametrize("m,s,y,R", [(-1.0, 0.05, 0.3, 20), (0.5, 0.2, 0.6, 8), (-2.0, 0.01, 0.1, 60)])
def test_one_neuron_against_quadrature(m, s, y, R, device):
    ref = _quadrature(m, s, y, R)
    args = tuple(torch.tensor(v, device=device) for v in ([[m]], [[[s]]], [[y]]))
    lap = float(heldout_loglik(*args, R, 1, 1, method="laplace"))
    mc = float(heldout_loglik(*args, R, 1, 1, method="sample", n_samples=200_000, seed=0))
    assert abs(lap - ref) < 2e-3 * max(1.0, abs(ref)) * (1 + 10 * s)  # Laplace: an O(s^2 R) error
    assert abs(mc - ref) < 5e-3


def test_laplace_and_sampling_agree_for_several_neurons():
    N, O = 3, 2
    rng = np.random.default_rng(1)
    m = torch.tensor(rng.normal(-1, 0.3, (4, 6)))
    A = torch.tensor(rng.normal(0, 0.15, (4, 6, 6)))
    S = A @ A.mT + 0.01 * torch.eye(6)
    y = ti.moments.expectation(m + 0.2, N, O)
    lap = heldout_loglik(m, S, y, 30, N, O)
    mc = heldout_loglik(m, S, y, 30, N, O, method="sample", n_samples=100_000, seed=1)
    np.testing.assert_allclose(lap.numpy(), mc.numpy(), atol=0.02)


def test_without_posterior_uncertainty_the_score_is_the_plug_in_likelihood():
    # sigma_s -> 0: the held-out trials' log-likelihood under theta_s, summed over trials by brute force
    N, O, R = 3, 2, 7
    rng = np.random.default_rng(2)
    theta = rng.normal(-0.8, 0.5, (2, 6))
    x = ti.generate_spikes(torch.tensor(theta), R, seed=0, N=N)
    y = ti.basis.sufficient_stats(x, O)
    F = bf_features(bf_patterns(N), N, O)
    ref = []
    for t in range(2):
        E = F @ theta[t]
        psi = E.max() + np.log(np.exp(E - E.max()).sum())
        feats = bf_features(x[t].numpy(), N, O)
        ref.append(float((feats @ theta[t] - psi).sum()))
    got = heldout_loglik(torch.tensor(theta), 1e-12 * torch.eye(6).expand(2, 6, 6), y, R, N, O)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-6)


def test_folds_partition_the_trials():
    f = fold_assignment(23, 5, seed=0)
    counts = torch.bincount(f, minlength=5)
    assert counts.sum() == 23 and int(counts.max() - counts.min()) <= 1
    assert torch.equal(fold_assignment(23, 5, seed=0), f)


def test_cross_validate_matches_separate_fits():
    th = ti.generate_thetas(3, 2, 5, mu1=-0.7, seed=3)
    x = ti.generate_spikes(th, 21, seed=4)
    cv = ti.cross_validate(x, orders=(1, 2), folds=3, seed=7, max_iter=200)
    assert cv.score.shape == (2, 3) and cv.mean.shape == (2,)
    for i, o in enumerate((1, 2)):
        for k in range(3):
            train, test = x[:, cv.fold != k], x[:, cv.fold == k]
            r = ti.fit(train, o, progress=False, max_iter=200)
            ref = heldout_loglik(r.theta_s, r.sigma_s, ti.basis.sufficient_stats(test, o), test.shape[1], 3, o).sum()
            assert float(cv.score[i, k]) == pytest.approx(float(ref), abs=1e-5)
        assert float(cv.mean[i]) == pytest.approx(float(cv.score[i].mean()))
        assert float(cv.se[i]) == pytest.approx(float(cv.score[i].std()) / np.sqrt(3))
    assert cv.best == (1, 2)[int(cv.mean.argmax())]
    assert "heldout_ll" in cv.table()
    batch = ti.cross_validate(torch.stack([x, x]), orders=(1, 2), folds=3, seed=7, max_iter=200)
    np.testing.assert_allclose(batch.score[..., 1].numpy(), cv.score.numpy(), atol=1e-8)


def test_bad_inputs_name_the_argument():
    x = ti.generate_spikes(ti.generate_thetas(2, 2, 3, seed=0), 4, seed=0)
    for kwargs, name in [
        (dict(folds=5), "folds=5 is larger than the number of trials R=4"),
        (dict(folds=1), "folds must be an integer >= 2"),
        (dict(orders=(1, 3)), r"orders must lie in 1..N = 1..2; got \[3\]"),
        (dict(orders=()), "orders must hold"),
        (dict(score_method="plugin"), "score_method must be one of"),
    ]:
        with pytest.raises(ValueError, match=name) as e:
            ti.cross_validate(x, **{"orders": (1, 2), "folds": 2, **kwargs})
        assert "\n" not in str(e.value)


def test_plot_cv():
    import matplotlib.pyplot as plt

    cv = ti.crossval.CrossValidation(
        (1, 2, 3), torch.zeros(3, 4), torch.tensor([-10.0, -8.0, -9.0]), torch.ones(3), 4, torch.zeros(8), "laplace"
    )
    fig, ax = ti.plotting.plot_cv(cv)
    assert "best order 2" in ax.get_title()
    plt.close(fig)


def test_one_standard_error_rule_by_hand():
    # order 3 is best by its mean, but its paired gain over order 2 (0.1, -0.1, 0.1) is within one paired se
    score = torch.tensor([[-10.0, -11.0, -12.0], [-8.0, -9.0, -10.0], [-7.9, -9.1, -9.9]])
    cv = ti.crossval.CrossValidation(
        (1, 2, 3), score, score.mean(1), score.std(1) / 3**0.5, 3, torch.zeros(3), "laplace"
    )
    assert cv.best == 3
    gain = (score[1] - score[2]).numpy()  # order 2 against the best, fold by fold
    assert gain.mean() >= -gain.std(ddof=1) / np.sqrt(3)  # so the rule picks order 2
    assert cv.best_1se == 2
    gain1 = (score[0] - score[2]).numpy()
    assert gain1.mean() < -gain1.std(ddof=1) / np.sqrt(3)  # order 1 is clearly worse
