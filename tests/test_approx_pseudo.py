"""Pseudo-likelihood: against brute-force conditionals, autograd, and inside the filter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.common import MAX_ITER, fit_warns, to_np
from torch_ising import basis, moments
from torch_ising.approx import pseudo
from torch_ising.approx.pseudo import (
    PseudoLikelihood,
    pseudo_log_likelihood,
    pseudo_value_grad_hess,
)


def _random(N, O, R, seed, device, batch=()):
    g = torch.Generator().manual_seed(seed)
    D = basis.compute_D(N, O)
    theta = (torch.randn(*batch, D, generator=g) * 0.8).to(device)
    x = (torch.rand(*batch, R, N, generator=g) < 0.4).to(torch.uint8).to(device)
    return theta, x


def _bf_pseudo(theta, x, N, O):
    """sum_r sum_i log p(x_ri | x_r,-i) from exact log p of x and of x with bit i flipped."""
    lp = moments.log_prob(theta, x, N, O)  # (R,)
    total = torch.zeros((), dtype=theta.dtype, device=theta.device)
    for i in range(N):
        xf = x.clone()
        xf[..., i] = 1 - xf[..., i]
        lpf = moments.log_prob(theta, xf, N, O)
        total = total + (lp - torch.logaddexp(lp, lpf)).sum()
    return total


@pytest.mark.parametrize("N,O", [(1, 1), (4, 1), (4, 2), (5, 3), (4, 4)])
def test_against_brute_force_conditionals(N, O, device):
    theta, x = _random(N, O, 30, N * 10 + O, device)
    pl = pseudo_log_likelihood(theta, x, N, O)
    bf = _bf_pseudo(theta, x, N, O)
    np.testing.assert_allclose(to_np(pl), to_np(bf), rtol=1e-12, atol=1e-10)


def test_order_one_equals_exact_likelihood(device):
    N = 5
    theta, x = _random(N, 1, 40, 3, device)
    exact = moments.log_prob(theta, x, N, 1).sum()
    torch.testing.assert_close(pseudo_log_likelihood(theta, x, N, 1), exact, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("N,O", [(4, 1), (5, 2), (5, 3)])
@pytest.mark.parametrize("diagonal", [True, False])
def test_closed_forms_match_autograd(N, O, diagonal, device):
    theta, x = _random(N, O, 25, 7 + N + O, device, batch=(3,))
    v, g, H = pseudo_value_grad_hess(theta, x, N, O, diagonal=diagonal)
    for b in range(3):

        def f(t, b=b):
            return pseudo_log_likelihood(t, x[b], N, O)

        ga = torch.func.grad(f)(theta[b])
        Ha = torch.func.hessian(f)(theta[b])
        torch.testing.assert_close(v[b], f(theta[b]), rtol=1e-12, atol=1e-10)
        torch.testing.assert_close(g[b], ga, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(H[b], torch.diagonal(Ha) if diagonal else Ha, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("batch", [(), (4,), (2, 3)])
def test_batch_shapes(batch, device):
    N, O = 4, 2
    theta, x = _random(N, O, 10, 1, device, batch=batch)
    assert pseudo_log_likelihood(theta, x, N, O).shape == batch
    v, g, H = pseudo_value_grad_hess(theta, x, N, O)
    assert v.shape == batch and g.shape == (*batch, 10) and H.shape == (*batch, 10)
    # theta broadcasts over bins of spikes: one theta for (T, R, N)
    xs = x.reshape(-1, 10, N)
    out = pseudo_log_likelihood(theta.reshape(-1, 10)[0], xs, N, O)
    assert out.shape == (xs.shape[0],)


def test_bad_input():
    theta = torch.zeros(10)
    x = torch.zeros(5, 4)
    with pytest.raises(ValueError, match="theta must have shape"):
        pseudo_log_likelihood(torch.zeros(9), x, 4, 2)
    with pytest.raises(ValueError, match="spikes must have shape"):
        pseudo_log_likelihood(theta, torch.zeros(5, 3), 4, 2)
    with pytest.raises(ValueError, match="eta_method"):
        PseudoLikelihood(torch.zeros(2, 5, 4), 2, eta_method="nope")
    with pytest.raises(ValueError, match="covariance"):
        PseudoLikelihood(torch.zeros(2, 5, 4), 2, covariance="nope")
    with pytest.raises(ValueError, match="full Fisher"):
        PseudoLikelihood(torch.zeros(2, 5, 4), 2, diagonal=False)
    with pytest.raises(ValueError, match="order"):
        PseudoLikelihood(torch.zeros(2, 5, 4), 3, eta_method="tap")


def test_observation_model_interface(device):
    N, O, T, R, B = 5, 2, 4, 30, 2
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(B, T, R, N, generator=g) < 0.3).to(device)
    obs = PseudoLikelihood(x, O, eta_method="exact")
    assert (obs.B, obs.T, obs.D, obs.R, obs.N) == (B, T, 15, R, N) and obs.diagonal and obs.separate_precision
    theta = 0.3 * torch.randn(B, 15, generator=g).to(device)
    t = 2
    torch.testing.assert_close(obs.log_lik(theta, t), pseudo_log_likelihood(theta, x[:, t].double(), N, O))
    v, gr, H = obs.value_grad_hess(theta, t)
    assert H.shape == (B, 15)
    eta = moments.expectation(theta, N, O)
    torch.testing.assert_close(obs.precision(theta, t), R * eta * (1 - eta))
    torch.testing.assert_close(obs.expectation(theta), eta)
    thetas = 0.3 * torch.randn(B, T, 15, generator=g).to(device)
    y = torch.stack([basis.sufficient_stats(x[b], O) for b in range(B)])
    want = R * ((y * thetas).sum(-1) - moments.log_partition(thetas, N, O))
    torch.testing.assert_close(obs.marginal_log_lik(thetas), want)
    # covariance="pseudo": the precision is minus the pseudo-likelihood Hessian
    obs_p = PseudoLikelihood(x, O, eta_method="tap", covariance="pseudo", diagonal=False)
    _, _, Hf = obs_p.value_grad_hess(theta, t)
    torch.testing.assert_close(obs_p.precision(theta, t), -Hf)
    assert not obs_p.separate_precision


def test_moments_of_the_same_theta_are_computed_once(device, monkeypatch):
    """The filter asks for the moments at theta_{t|t} and again at theta_{t+1|t} = theta_{t|t} (F = I)."""
    from torch_ising.approx import registry, tap

    N, O = 5, 2
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(1, 3, 20, N, generator=g) < 0.3).to(device)
    calls = []
    monkeypatch.setattr(pseudo, "approx_moments", lambda *a, **k: calls.append(1) or registry.approx_moments(*a, **k))
    theta = 0.3 * torch.randn(2, 15, generator=g).to(device)
    obs = PseudoLikelihood(x, O, eta_method="tap")
    calls.clear()  # the constructor's probe
    first = obs.moments(theta.clone())
    again = obs.moments(theta.clone())  # equal values, another tensor
    assert len(calls) == 1 and again is first
    torch.testing.assert_close(first.eta, tap(theta, N, O).eta, rtol=0, atol=0)
    other = theta + 1e-3
    torch.testing.assert_close(obs.moments(other).eta, tap(other, N, O).eta, rtol=0, atol=0)
    assert len(calls) == 2


@pytest.fixture
def pseudo_registered():
    """:func:`torch_ising.fit`, whose method="pseudo" is a built-in observation model."""
    from torch_ising.statespace import OBSERVATION_MODELS, fit

    assert "pseudo" in OBSERVATION_MODELS
    return fit


def test_fit_pseudo_tracks_exact_fit(pseudo_registered):
    """The pseudo fit (diagonal covariances) recovers theta about as well as the exact fit."""
    import torch_ising as ti

    fit = pseudo_registered
    N, T, R = 5, 20, 200
    theta = ti.generate_thetas(N, 2, T, seed=3)
    spikes = ti.generate_spikes(theta, R, seed=4)
    exact = fit(spikes, 2, progress=False)
    mise_exact = float(((exact.theta_s - theta) ** 2).mean())
    for em in ("tap", "bethe_bp"):
        with fit_warns(MAX_ITER):
            res = fit(spikes, 2, method="pseudo", eta_method=em, progress=False, max_iter=30)
        assert res.sigma_s.shape == (T, 15)
        assert res.eta_s.shape == (T, 15) and bool(torch.isfinite(torch.as_tensor(res.mll)))
        mise = float(((res.theta_s - theta) ** 2).mean())
        assert mise < 1.5 * mise_exact, (em, mise, mise_exact)
        # eta_s is the approximation at theta_s: close to the exact eta there
        assert float((res.eta_s - moments.expectation(res.theta_s, N, 2)).abs().max()) < 0.01


def test_pseudo_module_names():
    assert set(pseudo.COVARIANCES) == {"fisher", "pseudo"}


@pytest.mark.parametrize("N,O", [(4, 1), (5, 2), (5, 3)])
def test_hessian_vector_product_matches_full_hessian(N, O, device):
    theta, x = _random(N, O, 20, 11 + N + O, device, batch=(2,))
    g = torch.Generator().manual_seed(5)
    v = torch.randn(2, theta.shape[-1], generator=g).to(device)
    _, _, H = pseudo_value_grad_hess(theta, x, N, O, diagonal=False)
    want = (H @ v.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(pseudo.pseudo_hessian_vector(theta, x, v, N, O), want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("O", [2, 3])
def test_newton_cg_mode_matches_dense_newton(O, device):
    """PseudoLikelihood.mode (Newton-CG) finds the maximiser of PL + diagonal Gaussian prior."""
    from torch_ising.optim.newton import newton_ascent

    N, T, R, B = 6, 2, 40, 2
    g = torch.Generator().manual_seed(9)
    x = (torch.rand(B, T, R, N, generator=g) < 0.3).to(device)
    obs = PseudoLikelihood(x, O, eta_method="exact")
    D = obs.D
    tp = (0.2 * torch.randn(B, D, generator=g) - 0.5).to(device)
    P = torch.full((B, D), 3.0, device=device)

    def objective(th):
        v, gr, H = pseudo_value_grad_hess(th, obs.x[:, 1], N, O, diagonal=False)
        d = th - tp
        return v - 0.5 * (P * d * d).sum(-1), gr - P * d, H - torch.diag_embed(P)

    dense = newton_ascent(objective, tp.clone(), tol=1e-12, scale=R)
    cg = obs.mode(tp.clone(), 1, tp, P, tol=1e-10)
    assert cg.converged and cg.hess.shape == (B, D)
    torch.testing.assert_close(cg.x, dense.x, rtol=0, atol=1e-8)
    torch.testing.assert_close(cg.hess, torch.diagonal(objective(cg.x)[2], dim1=-2, dim2=-1))


def test_score_scale_calibrates_pairs_to_the_fisher_information(device):
    """a_S = max(1/|S|, min(1, R G~_SS / H_SS)): about 1/2 for pairs at low rates, 1 for fields; None if off."""
    N, O, R, B = 6, 2, 400, 2
    g = torch.Generator().manual_seed(2)
    x = (torch.rand(B, 1, R, N, generator=g) < 0.1).to(device)
    obs = PseudoLikelihood(x, O, eta_method="exact")
    theta = torch.cat([torch.full((B, N), -2.2), torch.zeros(B, obs.D - N)], -1).to(device)
    a = obs.score_scale(theta, 0)
    _, _, hd = pseudo_value_grad_hess(theta, obs.x[:, 0], N, O)
    # a_S = min(1, R G~_SS / H_SS), bounded below by 1/|S| (1 for fields, 1/2 for pairs)
    floor = torch.tensor([1.0] * N + [0.5] * (obs.D - N), dtype=a.dtype, device=a.device)
    torch.testing.assert_close(a, torch.maximum(torch.clamp(obs.precision(theta, 0) / -hd, max=1.0), floor))
    assert bool((a[:, :N] > 0.9).all()) and bool((a <= 1).all())
    assert 0.4 < float(a[:, N:].median()) < 0.65
    assert PseudoLikelihood(x, O, eta_method="exact", calibrate=False).score_scale(theta, 0) is None
    assert PseudoLikelihood(x, O, eta_method="exact", covariance="pseudo").score_scale(theta, 0) is None


def test_calibrated_filter_mode_and_learned_Q(pseudo_registered):
    """The filter's mode uses the prior precision p / a; EM then learns about the exact fit's Q.

    Uncalibrated, the pseudo-likelihood weights the pair data about twice as much as the
    Fisher covariance says, and EM reads the extra jitter of theta_s as state noise.
    """
    import torch_ising as ti
    from torch_ising.statespace.filter import laplace_filter
    from torch_ising.statespace.records import StateSpaceParams

    fit = pseudo_registered
    N, T, R = 8, 30, 200
    theta = ti.generate_thetas(N, 2, T, seed=5)
    spikes = ti.generate_spikes(theta, R, seed=6)
    obs = PseudoLikelihood(spikes, 2, eta_method="tap")
    D = obs.D
    mu = torch.full((1, D), -0.5, dtype=torch.float64)
    full = lambda v: torch.full((1, D), v, dtype=torch.float64)  # noqa: E731
    p = StateSpaceParams(mu, full(0.1), full(1e-3), full(1.0), None)
    f = laplace_filter(obs, p)
    a = obs.score_scale(mu, 0)
    want = obs.mode(mu.clone(), 0, mu, 10.0 / a, tol=1e-8, scale=R).x
    torch.testing.assert_close(f.theta_f[:, 0], want, rtol=0, atol=1e-7)
    torch.testing.assert_close(f.sigma_f[:, 0], 1.0 / (obs.precision(f.theta_f[:, 0], 0) + 10.0))

    q_exact = float(fit(spikes, 2, progress=False).Q[0, 0])
    q_cal = float(fit(spikes, 2, method="pseudo", eta_method="tap", progress=False).Q[0])
    q_raw = float(
        fit(spikes, 2, method="pseudo", eta_method="tap", progress=False, method_options={"calibrate": False}).Q[0]
    )
    assert abs(q_cal / q_exact - 1) < 0.3, (q_cal, q_exact)
    assert q_raw > 2 * q_exact, (q_raw, q_exact)
