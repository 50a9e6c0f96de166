"""The functional core against a dense joint Gaussian posterior and against autograd."""

import math

import numpy as np
import torch

from tests.common import PARITY_DIR
from torch_ising.basis import sufficient_stats
from torch_ising.statespace import (
    ExactIsing,
    ObservationModel,
    StateSpaceParams,
    e_step,
    laplace_filter,
    log_marginal,
    m_step,
    smoother,
)


class GaussianObs(ObservationModel):
    """log p(z_t | theta) = log N(z_t; theta, Lambda^{-1}): the Laplace filter is exact."""

    def __init__(self, z: torch.Tensor, Lam: torch.Tensor) -> None:
        self.z, self.Lam = z, Lam
        self.B, self.T, self.D = z.shape
        self.R = 1

    def log_lik(self, theta, t):
        d = theta - self.z[:, t]
        const = -0.5 * self.D * math.log(2 * math.pi) + 0.5 * torch.logdet(self.Lam)
        return const - 0.5 * (d @ self.Lam * d).sum(-1)


def _dense_posterior(mu, Sigma, F, Q, z, Lam):
    T, D = z.shape
    covs = [Sigma]
    for _ in range(1, T):
        covs.append(F @ covs[-1] @ F.T + Q)
    K = torch.zeros(T * D, T * D)
    mean = torch.zeros(T * D)
    m = mu
    for t in range(T):
        mean[t * D : (t + 1) * D] = m
        m = F @ m
        for s in range(t, T):
            block = torch.linalg.matrix_power(F, s - t) @ covs[t]
            K[s * D : (s + 1) * D, t * D : (t + 1) * D] = block
            K[t * D : (t + 1) * D, s * D : (s + 1) * D] = block.T
    L_big = torch.block_diag(*([Lam] * T))
    prec = torch.linalg.inv(K) + L_big
    post_cov = torch.linalg.inv(prec)
    post_mean = post_cov @ (torch.linalg.solve(K, mean) + L_big @ z.reshape(-1))
    ev_cov = K + torch.linalg.inv(L_big)
    evidence = torch.distributions.MultivariateNormal(mean, ev_cov).log_prob(z.reshape(-1))
    return post_mean.reshape(T, D), post_cov, evidence


def _random_problem(T=6, D=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(D, D, generator=g)
    F = 0.9 * torch.eye(D) + 0.05 * A
    Q = 0.05 * torch.eye(D) + 0.01 * (A @ A.T)
    Sigma = 0.3 * torch.eye(D)
    mu = torch.randn(D, generator=g)
    z = torch.randn(T, D, generator=g)
    B = torch.randn(D, D, generator=g)
    Lam = 2.0 * torch.eye(D) + 0.3 * (B @ B.T)
    return mu, Sigma, F, Q, z, Lam


def _on(device, obs: GaussianObs, params: StateSpaceParams) -> tuple[GaussianObs, StateSpaceParams]:
    return GaussianObs(obs.z.to(device), obs.Lam.to(device)), StateSpaceParams(
        *(None if v is None else v.to(device) for v in params)
    )


def _cpu(record):
    return type(record)(*(v.cpu() if isinstance(v, torch.Tensor) else v for v in record))


def test_filter_smoother_mll_match_dense_gaussian_posterior(device):
    mu, Sigma, F, Q, z, Lam = _random_problem()
    T, D = z.shape
    obs, params = _on(device, GaussianObs(z[None], Lam), StateSpaceParams(mu[None], Sigma[None], Q[None], F[None]))
    filt = laplace_filter(obs, params, tol=1e-12)
    sm = _cpu(smoother(filt, params))
    mean, cov, evidence = _dense_posterior(mu, Sigma, F, Q, z, Lam)
    torch.testing.assert_close(sm.theta_s[0], mean, rtol=0, atol=1e-10)
    for t in range(T):
        torch.testing.assert_close(sm.sigma_s[0, t], cov[t * D : (t + 1) * D, t * D : (t + 1) * D], rtol=0, atol=1e-10)
    for t in range(T - 1):
        cross = cov[(t + 1) * D : (t + 2) * D, t * D : (t + 1) * D]  # Cov(theta_{t+1}, theta_t)
        torch.testing.assert_close(sm.lag_one[0, t], cross, rtol=0, atol=1e-10)
    torch.testing.assert_close(log_marginal(obs, filt)[0].cpu(), evidence, rtol=0, atol=1e-9)


def test_m_step_matches_dense_posterior_moments(device):
    mu, Sigma, F, Q, z, Lam = _random_problem(T=8, D=2, seed=3)
    T, D = z.shape
    obs, params = _on(device, GaussianObs(z[None], Lam), StateSpaceParams(mu[None], Sigma[None], Q[None], F[None]))
    sm_dev = smoother(laplace_filter(obs, params, tol=1e-12), params)
    new_dev = m_step(sm_dev, params, q_form="full", N=1)
    sm = _cpu(sm_dev)
    params = _cpu(params)
    mean, cov, _ = _dense_posterior(mu, Sigma, F, Q, z, Lam)

    def P(s, t):  # E[theta_s theta_t^T]
        return cov[s * D : (s + 1) * D, t * D : (t + 1) * D] + torch.outer(mean[s], mean[t])

    S11 = sum(P(t, t) for t in range(1, T))
    S00 = sum(P(t - 1, t - 1) for t in range(1, T))
    S10 = sum(P(t, t - 1) for t in range(1, T))
    Q_full = (S11 - S10 @ F.T - F @ S10.T + F @ S00 @ F.T) / (T - 1)
    new = m_step(sm, params, q_form="full", N=1)
    torch.testing.assert_close(new_dev.Q[0].cpu(), 0.5 * (Q_full + Q_full.T), rtol=0, atol=1e-10)
    torch.testing.assert_close(new.mu[0], mean[0], rtol=0, atol=1e-10)
    newF = m_step(sm, params, q_form="full", N=1, learn_F=True)
    torch.testing.assert_close(newF.F[0], S10 @ torch.linalg.inv(S00), rtol=0, atol=1e-10)
    d = torch.diagonal(Q_full)
    torch.testing.assert_close(m_step(sm, params, q_form="diag", N=1).Q[0], torch.diag(d), rtol=0, atol=1e-10)
    torch.testing.assert_close(
        m_step(sm, params, q_form="scalar", N=1).Q[0], d.mean() * torch.eye(D), rtol=0, atol=1e-10
    )
    two = m_step(sm, params, q_form="two", N=1).Q[0]
    torch.testing.assert_close(torch.diagonal(two), torch.stack([d[0], d[1]]), rtol=0, atol=1e-10)


def test_m_step_input_gain_matches_least_squares(device):
    mu, Sigma, F, Q, z, Lam = _random_problem(T=10, D=2, seed=4)
    T, D = z.shape
    u = torch.randn(1, T, 1, generator=torch.Generator().manual_seed(1))
    obs, params = _on(
        device,
        GaussianObs(z[None], Lam),
        StateSpaceParams(mu[None], Sigma[None], Q[None], F[None], torch.zeros(1, D, 1)),
    )
    ud = u.to(device)
    sm = smoother(laplace_filter(obs, params, u=ud, tol=1e-12), params)
    new = _cpu(m_step(sm, params, q_form="full", N=1, u=ud))
    m = sm.theta_s[0].cpu()
    r = m[1:] - m[:-1] @ F.T
    U_ls = torch.linalg.lstsq(u[0, 1:], r).solution.T
    torch.testing.assert_close(new.U[0], U_ls, rtol=0, atol=1e-10)


def _v2_obs(use_autograd=False):
    d = np.load(PARITY_DIR / "v2_pairwise_N4.npz")
    spikes = torch.as_tensor(d["spikes"])
    T, R, N = spikes.shape
    y = sufficient_stats(spikes, 2)[None]
    return ExactIsing(y, R, N, 2, use_autograd=use_autograd), d


def test_autograd_and_closed_form_paths_agree_on_v2():
    obs_c, _ = _v2_obs(False)
    obs_a, _ = _v2_obs(True)
    D = obs_c.D
    eye = torch.eye(D)[None]
    params = StateSpaceParams(torch.zeros(1, D), 0.1 * eye, 0.01 * eye, eye.clone(), None)
    # both mode searches run to 1e-11 so that only the derivatives can differ
    fc = laplace_filter(obs_c, params, tol=1e-11)
    fa = laplace_filter(obs_a, params, tol=1e-11)
    assert (fc.theta_f - fa.theta_f).abs().max() < 1e-8
    assert (fc.sigma_f - fa.sigma_f).abs().max() < 1e-8
    v, g, H = obs_a.value_grad_hess(fc.theta_f[:, 3], 3)
    vc, gc, Hc = obs_c.value_grad_hess(fc.theta_f[:, 3], 3)
    torch.testing.assert_close(H, Hc, rtol=0, atol=1e-9)
    torch.testing.assert_close(g, gc, rtol=0, atol=1e-9)


def test_e_step_mode_meets_tight_tolerance():
    obs, _ = _v2_obs()
    D = obs.D
    eye = torch.eye(D)[None]
    params = StateSpaceParams(torch.zeros(1, D), 0.1 * eye, 0.01 * eye, eye.clone(), None)
    es = e_step(obs, params, newton_tol=1e-10)
    filt = es.filt
    for t in range(obs.T):
        _, g, _ = obs.value_grad_hess(filt.theta_f[:, t], t)
        P = torch.linalg.inv(filt.sigma_p[:, t])
        grad = g - (P @ (filt.theta_f[:, t] - filt.theta_p[:, t]).unsqueeze(-1)).squeeze(-1)
        assert grad.abs().max() / obs.R < 1e-10


def test_direct_mll_gradient_matches_finite_difference():
    from torch_ising.statespace.direct import mll_with_grad

    obs, _ = _v2_obs()
    D = obs.D
    eye = torch.eye(D)[None]
    mu = torch.full((1, D), -1.0)

    def l_of(logq: torch.Tensor, grad: bool = False):
        p = StateSpaceParams(mu, 0.1 * eye, logq.exp() * eye, eye.clone(), None)
        filt = laplace_filter(obs, p, tol=1e-12)
        if grad:
            return mll_with_grad(obs, p, filt.theta_f)
        return log_marginal(obs, filt)

    x = torch.tensor(math.log(0.01), requires_grad=True)
    with torch.enable_grad():
        val = l_of(x, grad=True)
        (g,) = torch.autograd.grad(val.sum(), x)
    # l is evaluated through Newton solves (round-off ~1e-9), so use large steps and remove the
    # O(h^2) error of the central difference by Richardson extrapolation.
    x0 = math.log(0.01)

    def central(h: float) -> float:
        return float((l_of(torch.tensor(x0 + h)) - l_of(torch.tensor(x0 - h))) / (2 * h))

    fd = (4 * central(1e-3) - central(2e-3)) / 3
    torch.testing.assert_close(val.detach(), l_of(torch.tensor(math.log(0.01))), rtol=0, atol=1e-8)
    assert abs(float(g) - fd) < 1e-5 * max(1.0, abs(fd))
