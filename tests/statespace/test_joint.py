"""The joint-mode E-step against a dense brute force over the whole path (T D x T D)."""

import functools
import math

import numpy as np
import pytest
import torch

import torch_ising as ti
from tests.common import MAX_ITER, brute_force, fit_warns
from tests.statespace.test_core import GaussianObs, _dense_posterior, _random_problem
from torch_ising.basis import sufficient_stats
from torch_ising.statespace import ExactIsing, StateSpaceParams, laplace_filter, log_marginal, smoother
from torch_ising.statespace.joint import (
    filtered_from_joint,
    joint_e_step,
    prior_precision,
    solve_tridiagonal,
    solve_tridiagonal_sequential,
)


def _dense(diag: torch.Tensor, lower: torch.Tensor) -> torch.Tensor:
    T, D = diag.shape[0], diag.shape[-1]
    H = torch.zeros(T * D, T * D, dtype=diag.dtype, device=diag.device)
    for t in range(T):
        H[t * D : (t + 1) * D, t * D : (t + 1) * D] = diag[t]
    for t in range(T - 1):
        H[(t + 1) * D : (t + 2) * D, t * D : (t + 1) * D] = lower[t]
        H[t * D : (t + 1) * D, (t + 1) * D : (t + 2) * D] = lower[t].T
    return H


def _random_tridiagonal(B: int, T: int, D: int, seed: int, device):
    g = torch.Generator().manual_seed(seed)
    lower = 0.4 * torch.randn(B, T - 1, D, D, generator=g)
    A = torch.randn(B, T, D, D, generator=g)
    diag = A @ A.transpose(-1, -2) + 3.0 * torch.eye(D)  # diagonally dominant enough to be SPD
    rhs = torch.randn(B, T, D, generator=g)
    return diag.to(device), lower.to(device), rhs.to(device)


_STOPPED = [functools.partial(solve_tridiagonal, dense_size=s) for s in (0, 12, 48)]


@pytest.mark.parametrize("T", [1, 2, 3, 4, 5, 7, 8, 13, 33])
@pytest.mark.parametrize("solver", [solve_tridiagonal, solve_tridiagonal_sequential, *_STOPPED])
def test_block_tridiagonal_solvers_match_dense_inverse(T, solver, device):
    """Every solver, and cyclic reduction stopped at T D <= 0 (T <= 2), 12, 48 and the default, vs a dense inverse."""
    B, D = 2, 3
    diag, lower, rhs = _random_tridiagonal(B, T, D, seed=T, device=device)
    _assert_dense_inverse(solver(diag, lower, rhs, want_cov=True), diag, lower, rhs)


def _assert_dense_inverse(sol, diag, lower, rhs):
    """x, log det H and the blocks (H^{-1})_{tt}, (H^{-1})_{t+1,t} against the inverse of the dense H, to 1e-10."""
    B, T, D = rhs.shape
    for b in range(B):
        H = _dense(diag[b], lower[b])
        Hi = torch.linalg.inv(H)
        torch.testing.assert_close(sol.x[b].reshape(-1), Hi @ rhs[b].reshape(-1), rtol=0, atol=1e-10)
        torch.testing.assert_close(sol.logdet[b], torch.logdet(H), rtol=0, atol=1e-10)
        for t in range(T):
            torch.testing.assert_close(sol.cov[b, t], Hi[t * D : (t + 1) * D, t * D : (t + 1) * D], rtol=0, atol=1e-10)
        for t in range(T - 1):
            blk = Hi[(t + 1) * D : (t + 2) * D, t * D : (t + 1) * D]
            torch.testing.assert_close(sol.lag_one[b, t], blk, rtol=0, atol=1e-10)


_DIAGONAL = [functools.partial(solve_tridiagonal, dense_size=s) for s in (None, 0, 12, 48)]


@pytest.mark.parametrize("T", [1, 2, 3, 4, 5, 7, 8, 13, 33])
@pytest.mark.parametrize("solver", [solve_tridiagonal_sequential, *_DIAGONAL])
def test_solvers_with_diagonal_couplings_match_dense_inverse(T, solver, device):
    """Couplings H_{t+1,t} = diag(k_t) given as (B, T-1, D) diagonals, against the dense inverse of the blocks."""
    B, D = 2, 3
    diag, lower, rhs = _random_tridiagonal(B, T, D, seed=100 + T, device=device)
    k = torch.diagonal(lower, dim1=-2, dim2=-1)
    sol = solver(diag, k, rhs, want_cov=True, diagonal_lower=True)
    _assert_dense_inverse(sol, diag, torch.diag_embed(k), rhs)
    x_only = solver(diag, k, rhs, diagonal_lower=True)
    torch.testing.assert_close(x_only.x, sol.x, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dense_size", [None, 0, 30])
def test_parallel_and_sequential_solvers_agree(dense_size, device):
    diag, lower, rhs = _random_tridiagonal(3, 100, 6, seed=7, device=device)
    a = solve_tridiagonal(diag, lower, rhs, want_cov=True, dense_size=dense_size)
    b = solve_tridiagonal_sequential(diag, lower, rhs, want_cov=True)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-10)


def test_joint_e_step_is_exact_for_a_gaussian_likelihood(device):
    """Gaussian observations: the joint Laplace posterior is the exact one (dense joint Gaussian)."""
    mu, Sigma, F, Q, z, Lam = _random_problem(T=7, D=3, seed=2)
    T, D = z.shape
    obs = GaussianObs(z[None].to(device), Lam.to(device))
    params = StateSpaceParams(*(v[None].to(device) for v in (mu, Sigma, Q, F)), None)
    _, sm, mll = joint_e_step(obs, params, tol=1e-12)
    mean, cov, evidence = _dense_posterior(mu, Sigma, F, Q, z, Lam)
    torch.testing.assert_close(sm.theta_s[0].cpu(), mean, rtol=0, atol=1e-10)
    for t in range(T):
        blk = cov[t * D : (t + 1) * D, t * D : (t + 1) * D]
        torch.testing.assert_close(sm.sigma_s[0, t].cpu(), blk, rtol=0, atol=1e-10)
    for t in range(T - 1):
        blk = cov[(t + 1) * D : (t + 2) * D, t * D : (t + 1) * D]
        torch.testing.assert_close(sm.lag_one[0, t].cpu(), blk, rtol=0, atol=1e-10)
    torch.testing.assert_close(mll[0].cpu(), evidence, rtol=0, atol=1e-9)
    # ... so it equals the filter and smoother, gains included
    filt = laplace_filter(obs, params, tol=1e-12)
    ref = smoother(filt, params)
    gain = torch.linalg.solve(sm.sigma_s[:, 1:], sm.lag_one).transpose(-1, -2)  # A_t from the joint covariances
    torch.testing.assert_close(gain, ref.gain, rtol=0, atol=1e-10)
    # and the filtered marginals of the expansion at the mode are the Kalman filter's
    ff = filtered_from_joint(obs, params, sm.theta_s)
    torch.testing.assert_close(ff.theta_f, filt.theta_f, rtol=0, atol=1e-10)
    torch.testing.assert_close(ff.sigma_f, filt.sigma_f, rtol=0, atol=1e-10)
    torch.testing.assert_close(log_marginal(obs, ff), mll, rtol=0, atol=1e-9)


def _ising_problem(T=8, N=3, R=20, seed=0, with_u=True, diagonal=False):
    """A small Ising path problem; ``diagonal``: F and Q diagonal, so the couplings -Q^{-1} F are too."""
    O = 2
    D = ti.basis.compute_D(N, O)
    g = torch.Generator().manual_seed(seed)
    theta = ti.generate_thetas(N, O, T, seed=seed)
    spikes = ti.generate_spikes(theta, R, seed=seed + 1)
    A = torch.randn(D, D, generator=g)
    F = 0.95 * torch.eye(D) + 0.02 * A
    Q = 0.05 * torch.eye(D) + 0.005 * (A @ A.T)
    if diagonal:
        F, Q = torch.diag(torch.diagonal(F)), torch.diag(torch.diagonal(Q))
    Sigma = 0.4 * torch.eye(D)
    mu = -1.0 + 0.3 * torch.randn(D, generator=g)
    u = U = None
    if with_u:
        u = torch.randn(1, T, 2, generator=g)
        U = 0.1 * torch.randn(1, D, 2, generator=g)
    return spikes, StateSpaceParams(mu[None], Sigma[None], Q[None], F[None], U), u, N, O


def _dense_laplace(spikes, params, u, N, O, iters=60):
    """Dense Newton on the whole path with brute-force moments, the prior as a dense Gaussian."""
    y = sufficient_stats(spikes, O).numpy()
    T, R = spikes.shape[0], spikes.shape[1]
    mu, Sigma, Q, F = (v[0].numpy() for v in params[:4])
    D = mu.shape[0]
    drift = np.zeros((T, D))
    if params.U is not None:
        drift = u[0].numpy() @ params.U[0].numpy().T
    # prior mean and covariance of the stacked path, from the recursion itself
    means, covs = [mu], [Sigma]
    for t in range(1, T):
        means.append(F @ means[-1] + drift[t])
        covs.append(F @ covs[-1] @ F.T + Q)
    K = np.zeros((T * D, T * D))
    for t in range(T):
        for s in range(t, T):
            blk = np.linalg.matrix_power(F, s - t) @ covs[t]
            K[s * D : (s + 1) * D, t * D : (t + 1) * D] = blk
            K[t * D : (t + 1) * D, s * D : (s + 1) * D] = blk.T
    m0 = np.concatenate(means)
    Ki = np.linalg.inv(K)

    def parts(x):
        ll, g, G = 0.0, np.zeros(T * D), np.zeros((T * D, T * D))
        for t in range(T):
            bf = brute_force(x[t * D : (t + 1) * D], N, O)
            ll += R * (y[t] @ x[t * D : (t + 1) * D] - bf["psi"])
            g[t * D : (t + 1) * D] = R * (y[t] - bf["eta"])
            G[t * D : (t + 1) * D, t * D : (t + 1) * D] = R * bf["fisher"]
        return ll, g, G

    x = m0.copy()
    for _ in range(iters):
        _, g, G = parts(x)
        grad = g - Ki @ (x - m0)
        x = x + np.linalg.solve(Ki + G, grad)
    ll, g, G = parts(x)
    H = Ki + G
    d = x - m0
    log_prior = -0.5 * d @ Ki @ d - 0.5 * np.linalg.slogdet(K)[1] - 0.5 * T * D * math.log(2 * math.pi)
    mll = ll + log_prior + 0.5 * T * D * math.log(2 * math.pi) - 0.5 * np.linalg.slogdet(H)[1]
    return x.reshape(T, D), np.linalg.inv(H), mll


@pytest.mark.parametrize("solver", ["parallel", "sequential"])
@pytest.mark.parametrize("with_u", [False, True])
@pytest.mark.parametrize("diagonal", [False, True])
def test_joint_e_step_matches_dense_brute_force_on_ising(solver, with_u, diagonal, device):
    """Full couplings, and diagonal ones (diagonal F and Q), whose solves use scalings instead of products."""
    spikes, params, u, N, O = _ising_problem(T=9, with_u=with_u, diagonal=diagonal)
    T, R = spikes.shape[:2]
    D = params.mu.shape[-1]
    assert T * D <= 400
    obs = ExactIsing(sufficient_stats(spikes, O)[None].to(device), R, N, O)
    p_dev = StateSpaceParams(*(None if v is None else v.to(device) for v in params))
    assert (prior_precision(p_dev, T).coupling is not None) == diagonal
    u_dev = None if u is None else u.to(device)
    _, sm, mll = joint_e_step(obs, p_dev, u=u_dev, tol=1e-12, solver=solver)
    mode, cov, mll_ref = _dense_laplace(spikes, params, u, N, O)
    assert np.abs(sm.theta_s[0].cpu().numpy() - mode).max() < 1e-10
    for t in range(T):
        blk = cov[t * D : (t + 1) * D, t * D : (t + 1) * D]
        assert np.abs(sm.sigma_s[0, t].cpu().numpy() - blk).max() < 1e-10
    for t in range(T - 1):
        blk = cov[(t + 1) * D : (t + 2) * D, t * D : (t + 1) * D]
        assert np.abs(sm.lag_one[0, t].cpu().numpy() - blk).max() < 1e-10
    assert abs(float(mll[0]) - mll_ref) < 1e-10 * max(1.0, abs(mll_ref))


def test_joint_e_step_handles_a_silent_neuron(device):
    """G_t is singular when a neuron never fires; the information form only factorises H."""
    spikes, params, _, N, O = _ising_problem(T=10, with_u=False)
    spikes = spikes.clone()
    spikes[..., 0] = 0
    obs = ExactIsing(sufficient_stats(spikes, O)[None].to(device), spikes.shape[1], N, O)
    p_dev = StateSpaceParams(*(None if v is None else v.to(device) for v in params))
    filt, sm, mll = joint_e_step(obs, p_dev, tol=1e-10)
    assert filt.converged
    assert bool(torch.isfinite(mll).all()) and bool(torch.isfinite(sm.sigma_s).all())


def test_joint_e_step_batches_over_data_sets(device):
    s1, params, _, N, O = _ising_problem(T=12, seed=0, with_u=False)
    s2, _, _, _, _ = _ising_problem(T=12, seed=5, with_u=False)
    R = s1.shape[1]
    y = torch.stack([sufficient_stats(s, O) for s in (s1, s2)]).to(device)
    p2 = StateSpaceParams(*(None if v is None else torch.cat([v, v]).to(device) for v in params))
    _, sm, mll = joint_e_step(ExactIsing(y, R, N, O), p2, tol=1e-11)
    for b in range(2):
        pb = StateSpaceParams(*(None if v is None else v.to(device) for v in params))
        _, smb, mllb = joint_e_step(ExactIsing(y[b : b + 1], R, N, O), pb, tol=1e-11)
        torch.testing.assert_close(sm.theta_s[b], smb.theta_s[0], rtol=0, atol=1e-10)
        torch.testing.assert_close(sm.sigma_s[b], smb.sigma_s[0], rtol=0, atol=1e-10)
        torch.testing.assert_close(mll[b], mllb[0], rtol=0, atol=1e-9)


def test_default_e_step_is_joint_only_for_the_default_rule():
    from torch_ising.statespace.covariance import DENSE, DIAGONAL
    from torch_ising.statespace.estep import default_estep
    from torch_ising.statespace.stopping import STOP_RULES

    def default(stop, learn_F, diagonal, map_method, learn_U=False):
        cov = DIAGONAL if diagonal else DENSE
        return default_estep(STOP_RULES[stop].joint_default, learn_F, cov, map_method, learn_U=learn_U)

    assert default("converged", False, False, "newton") == "joint"
    # the published rules, the filter's own l, a learned F, approximate methods and CG keep the filter
    assert default("ssll", False, False, "cg") == "filter"
    assert default("em", False, False, "newton") == "filter"
    assert default("mll", False, False, "newton") == "filter"
    assert default("converged", True, False, "newton") == "filter"
    assert default("converged", False, True, "newton") == "filter"
    assert default("converged", False, False, "cg") == "filter"
    assert default("converged", False, False, "newton", learn_U=True) == "filter"


def test_default_fit_runs_the_joint_e_step(device):
    theta = ti.generate_thetas(3, 2, 12, seed=3)
    spikes = ti.generate_spikes(theta, 40, seed=4)
    with fit_warns(MAX_ITER):
        a = ti.fit(spikes, 2, progress=False, max_iter=6, device=device)
    with fit_warns(MAX_ITER):
        b = ti.fit(spikes, 2, progress=False, max_iter=6, device=device, estep="joint")
    with fit_warns(MAX_ITER):
        c = ti.fit(spikes, 2, progress=False, max_iter=6, device=device, estep="filter")
    assert a.mll == b.mll and torch.equal(a.theta_s, b.theta_s)
    assert a.mll != c.mll
