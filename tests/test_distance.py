"""Pattern distances against a dense brute force over patterns (tests/common.py), and their bands."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import torch_ising as ti
from tests.common import bf_features, bf_patterns


def _probs(F: np.ndarray, theta: np.ndarray) -> np.ndarray:
    E = F @ theta
    p = np.exp(E - E.max())
    return p / p.sum()


def _dense(ta: np.ndarray, tb: np.ndarray, N: int, O: int, F: np.ndarray | None = None) -> dict[str, float]:
    """KL, JS and Bhattacharyya from the dense 2^N x D feature matrix F of the patterns."""
    F = bf_features(bf_patterns(N), N, O) if F is None else F
    pa, pb = _probs(F, ta), _probs(F, tb)
    m = 0.5 * (pa + pb)
    return {
        "kl": float((pa * np.log(pa / pb)).sum()),
        "js": float(0.5 * (pa * np.log(pa / m)).sum() + 0.5 * (pb * np.log(pb / m)).sum()),
        "bhattacharyya": float(-np.log(np.sqrt(pa * pb).sum())),
    }


@pytest.mark.parametrize("N,O", [(1, 1), (2, 2), (3, 3), (5, 2), (7, 3), (10, 2)])
def test_distances_match_dense_brute_force(N, O, device):
    rng = np.random.default_rng(N * 10 + O)
    D = ti.basis.compute_D(N, O)
    ta, tb = rng.normal(-0.5, 0.8, (3, D)), rng.normal(-0.5, 0.8, (3, D))  # three bins, batched
    F = bf_features(bf_patterns(N), N, O)
    for kind in ti.distance.KINDS:
        got = ti.distance.distance(torch.tensor(ta, device=device), torch.tensor(tb, device=device), N, O, kind)
        ref = [_dense(ta[t], tb[t], N, O, F)[kind] for t in range(3)]
        np.testing.assert_allclose(got.cpu().numpy(), ref, atol=1e-10, rtol=0)


def _fake(theta_s, sigma_s, N, O):
    return SimpleNamespace(theta_s=theta_s, sigma_s=sigma_s, N=N, order=O)


def test_orders_are_padded_and_bands_collapse_without_uncertainty(device):
    N, T = 4, 5
    rng = np.random.default_rng(0)
    ta = torch.tensor(rng.normal(-1, 0.5, (T, ti.basis.compute_D(N, 2))), device=device)
    tb = torch.tensor(rng.normal(-1, 0.5, (T, N)), device=device)  # an order-1 fit
    tiny = 1e-14
    a = _fake(ta, tiny * torch.eye(ta.shape[-1], device=device).expand(T, -1, -1), N, 2)
    b = _fake(tb, tiny * torch.ones(T, N, device=device), N, 1)  # diagonal posterior
    for kind in ti.distance.KINDS:
        d = ti.pattern_distance(a, b, kind, n_samples=20)
        tb_full = np.concatenate([tb.cpu().numpy(), np.zeros((T, ti.basis.compute_D(N, 2) - N))], 1)
        ref = [_dense(ta[t].cpu().numpy(), tb_full[t], N, 2)[kind] for t in range(T)]
        np.testing.assert_allclose(d.value.cpu().numpy(), ref, atol=1e-10)
        np.testing.assert_allclose(d.lower.cpu().numpy(), ref, atol=1e-6)
        np.testing.assert_allclose(d.upper.cpu().numpy(), ref, atol=1e-6)
        assert float(d.null_upper.abs().max()) < 1e-9  # equal thetas: no distance
        assert float(d.p_null.max()) == pytest.approx(1 / 21)
        assert bool(d.differs.all())


def test_band_covers_sampled_distances_and_null_for_equal_conditions():
    N, T, D = 3, 4, 6
    th = torch.full((T, D), -0.5)
    S = 0.05 * torch.eye(D).expand(T, D, D)
    d = ti.pattern_distance(_fake(th, S, N, 2), _fake(th.clone(), S, N, 2), "kl", n_samples=400, seed=1)
    assert float(d.value.abs().max()) < 1e-12  # the same means
    assert not bool(d.differs.any())  # equal means: the distance 0 lies below every null distance
    assert float(d.p_null.min()) == 1.0
    assert bool((d.lower >= 0).all()) and bool((d.upper > d.lower).all())


def test_beyond_exact_limit_uses_an_approximation():
    N = 4
    rng = np.random.default_rng(3)
    ta = torch.tensor(rng.normal(-1.5, 0.2, (2, ti.basis.compute_D(N, 2))))
    tb = torch.tensor(rng.normal(-1.5, 0.2, (2, ti.basis.compute_D(N, 2))))
    S = 1e-12 * torch.eye(ta.shape[-1]).expand(2, -1, -1)
    a, b = _fake(ta, S, N, 2), _fake(tb, S, N, 2)
    exact = ti.pattern_distance(a, b, "kl", n_samples=5)
    approx = ti.pattern_distance(a, b, "kl", n_samples=5, exact_max_n=3)
    assert exact.exact and not approx.exact
    np.testing.assert_allclose(approx.value.numpy(), exact.value.numpy(), rtol=0.1, atol=2e-3)
    with pytest.raises(ValueError, match="kind='js' needs exact"):
        ti.pattern_distance(a, b, "js", exact_max_n=3)


def test_bad_inputs_name_the_argument():
    th = torch.zeros(3, 3)
    a = _fake(th, 0.1 * torch.eye(3).expand(3, 3, 3), 2, 2)
    with pytest.raises(ValueError, match="^kind must be one of") as e:
        ti.pattern_distance(a, a, "hellinger")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="result_b has N=3"):
        ti.pattern_distance(a, _fake(torch.zeros(3, 6), 0.1 * torch.eye(6).expand(3, 6, 6), 3, 2))
    with pytest.raises(ValueError, match="result_b has bins"):
        ti.pattern_distance(a, _fake(torch.zeros(4, 3), 0.1 * torch.eye(3).expand(4, 3, 3), 2, 2))
    with pytest.raises(ValueError, match="n_samples"):
        ti.pattern_distance(a, a, n_samples=0)
    with pytest.raises(ValueError, match="result_a must be a fit result"):
        ti.pattern_distance(object(), a)


def test_plot_distance():
    import matplotlib.pyplot as plt

    th = torch.zeros(6, 3)
    th[3:, 2] = 2.0
    S = 1e-4 * torch.eye(3).expand(6, 3, 3)
    d = ti.pattern_distance(_fake(torch.zeros(6, 3), S, 2, 2), _fake(th, S, 2, 2), "js", n_samples=50)
    fig, ax = ti.plotting.plot_distance(d, truth=torch.zeros(6))
    assert "3/6 bins" in ax.get_title()
    plt.close(fig)
