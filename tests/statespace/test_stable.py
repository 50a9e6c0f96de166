"""The stable parametrisation of a learned F and its prior (torch_ising.statespace.stable).

Every check is against an independent computation: numpy linear algebra for the prior's value,
autograd of an objective written out here for the M-step's gradient and Hessian.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import torch_ising as ti
from torch_ising.statespace.stable import (
    FPrior,
    _objective_parts,
    _transpose_perm,
    free_from_stable,
    log_prior_F,
    log_prior_free,
    prior_F_update,
    stable_from_free,
)

DT = torch.float64


def _random_problem(D: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(D, D, generator=g, dtype=DT)
    S00 = X @ X.T + D * torch.eye(D, dtype=DT)
    num = 3.0 * torch.randn(D, D, generator=g, dtype=DT)
    C = torch.randn(D, D, generator=g, dtype=DT)
    Q = 0.01 * (C @ C.T) + 0.01 * torch.eye(D, dtype=DT)
    F = stable_from_free(torch.randn(D, D, generator=g, dtype=DT))
    return F, num, S00, Q


def _g_independent(v: torch.Tensor, num, S00, Q, tau: float, s: float | None = None) -> torch.Tensor:
    """tr(Q^-1 num F^T) - 1/2 tr(Q^-1 F S00 F^T) - ||F - I||^2 / (2 s^2) - tr[(I - F^T F)^-1] / (2 tau^2)."""
    D = S00.shape[0]
    F = v.reshape(D, D)
    Qi = torch.linalg.inv(Q)
    eye = torch.eye(D, dtype=DT)
    out = (
        torch.trace(Qi @ num @ F.T)
        - 0.5 * torch.trace(Qi @ F @ S00 @ F.T)
        - torch.trace(torch.linalg.inv(eye - F.T @ F)) / (2 * tau * tau)
    )
    if s is not None:
        out = out - torch.trace((F - eye).T @ (F - eye)) / (2 * s * s)
    return out


@pytest.mark.parametrize("D", [1, 3, 6])
def test_parametrisation_is_inside_the_unit_ball_and_inverts(D):
    g = torch.Generator().manual_seed(D)
    A = 5.0 * torch.randn(4, D, D, generator=g, dtype=DT)
    F = stable_from_free(A)
    sv = np.linalg.svd(F.numpy(), compute_uv=False)
    assert sv.max() < 1.0
    assert np.abs(np.linalg.eigvals(F.numpy())).max() < 1.0
    # F^T F = I - (L^T L)^-1 with L L^T = I + A^T A, checked with numpy
    for a, f in zip(A.numpy(), F.numpy(), strict=True):
        L = np.linalg.cholesky(np.eye(D) + a.T @ a)
        assert np.allclose(f @ L.T, a, atol=1e-10)
    assert torch.allclose(free_from_stable(F), A, atol=1e-8, rtol=1e-8)


def test_an_F_on_or_outside_the_ball_starts_at_norm_0_99():  # state_ar=1.0 starts at F = I
    A = free_from_stable(torch.eye(3, dtype=DT)[None])
    F = stable_from_free(A)
    assert torch.allclose(F, 0.99 * torch.eye(3, dtype=DT)[None], atol=1e-12)


@pytest.mark.parametrize("prior", [FPrior(0.05, 1.0), FPrior(0.3, 0.5), FPrior(2.0, 4.0)])
def test_log_prior_matches_its_closed_form_in_F(prior):
    # log p = -||F - I||^2 / (2 s^2) - ||A||^2 / (2 tau^2) and ||A||^2 = tr[(I - F^T F)^-1] - D, in numpy
    s, tau = prior
    g = torch.Generator().manual_seed(7)
    D = 4
    A = 2.0 * torch.randn(D, D, generator=g, dtype=DT)
    F = stable_from_free(A).numpy()
    a = A.numpy()
    shrink = ((F - np.eye(D)) ** 2).sum() / (2 * s**2)
    in_F = -shrink - (np.trace(np.linalg.inv(np.eye(D) - F.T @ F)) - D) / (2 * tau**2)
    in_A = -shrink - (a**2).sum() / (2 * tau**2)
    assert in_F == pytest.approx(in_A, rel=1e-9)
    assert float(log_prior_F(torch.as_tensor(F), prior)) == pytest.approx(in_F, rel=1e-10)
    assert float(log_prior_free(A, prior)) == pytest.approx(in_A, rel=1e-10)
    assert float(log_prior_F(torch.eye(D, dtype=DT), prior)) == -math.inf  # the boundary ||F|| = 1


def test_log_prior_gradient_matches_finite_differences():
    # the gradient the direct maximisation adds to l's (autograd through F = A L^-T) against central differences
    g = torch.Generator().manual_seed(3)
    D, prior, h = 3, FPrior(0.1, 1.0), 1e-6
    A = torch.randn(D, D, generator=g, dtype=DT).requires_grad_(True)
    (grad,) = torch.autograd.grad(log_prior_free(A, prior), A)
    fd = torch.zeros(D, D, dtype=DT)

    def numpy_log_prior(a: np.ndarray) -> float:  # written from the formula with numpy only
        L = np.linalg.cholesky(np.eye(D) + a.T @ a)
        F = a @ np.linalg.inv(L).T
        return -((F - np.eye(D)) ** 2).sum() / (2 * prior.shrink**2) - (a**2).sum() / (2 * prior.tau**2)

    a0 = A.detach().numpy()
    for i in range(D):
        for j in range(D):
            e = np.zeros((D, D))
            e[i, j] = h
            fd[i, j] = (numpy_log_prior(a0 + e) - numpy_log_prior(a0 - e)) / (2 * h)
    assert (grad - fd).abs().max() <= 1e-5 * max(1.0, float(fd.abs().max()))


@pytest.mark.parametrize("shrink", [None, 0.2])
def test_m_step_objective_gradient_and_hessian_match_autograd(shrink):
    D = 4
    F, num, S00, Q = _random_problem(D, 0)
    tau = 0.7
    Qinv = torch.linalg.inv(Q)
    val, grad, H = _objective_parts(F, Qinv, num, S00, 1 / (2 * tau * tau), _transpose_perm(D, F.device), shrink)
    v = F.reshape(-1)
    f = lambda w: _g_independent(w, num, S00, Q, tau, shrink)  # noqa: E731
    scale = float(H.abs().max())
    assert val == pytest.approx(float(f(v)), rel=1e-10)
    assert (torch.func.grad(f)(v) - grad.reshape(-1)).abs().max() <= 1e-9 * scale
    assert (torch.func.hessian(f)(v) - H).abs().max() <= 1e-9 * scale


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_m_step_F_is_the_constrained_maximiser(seed):
    D = 4
    F0, num, S00, Q = _random_problem(D, seed)
    prior = FPrior(0.3, 1.0)
    F = prior_F_update(F0[None], num[None], S00[None], Q[None], prior)[0]
    assert np.linalg.svd(F.numpy(), compute_uv=False).max() < 1.0
    f = lambda w: _g_independent(w, num, S00, Q, prior.tau, prior.shrink)  # noqa: E731
    g = torch.func.grad(f)(F.reshape(-1))
    assert float(g.abs().max()) <= 1e-7 * float(torch.linalg.inv(Q).abs().max() * S00.abs().max())
    # no other point of the ball does better (the objective is strictly concave there)
    gen = torch.Generator().manual_seed(100 + seed)
    best = float(f(F.reshape(-1)))
    for _ in range(20):
        other = stable_from_free(free_from_stable(F) + 0.3 * torch.randn(D, D, generator=gen, dtype=DT))
        assert float(f(other.reshape(-1))) < best


@pytest.fixture(scope="module")
def small():
    theta = ti.generate_thetas(N=3, O=2, T=30, seed=3)
    return ti.generate_spikes(theta, R=50, seed=4)


def _fit(x, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ti.FitWarning)  # converged, F stable: no FitWarning
        return ti.fit(x, 2, state_ar=1.0, progress=False, **kw)


def test_learned_F_has_one_answer_whatever_tol_and_max_iter(small):
    """With the default prior the fit converges to a finite interior point that tol and max_iter do not move."""
    a = _fit(small, tol=1e-5)
    b = _fit(small, tol=1e-7)
    c = _fit(small, tol=1e-5, max_iter=2000)
    for r in (a, b, c):
        assert r.converged
        assert np.linalg.svd(r.F.numpy(), compute_uv=False).max() < 1.0
        assert np.abs(np.linalg.eigvals(r.F.numpy())).max() < 1.0
    assert np.abs(a.theta_s.numpy() - b.theta_s.numpy()).max() <= 1e-3
    assert np.abs(a.F.numpy() - b.F.numpy()).max() <= 1e-3
    assert abs(a.mll - b.mll) <= 1e-3
    assert torch.equal(a.theta_s, c.theta_s)  # converged before either max_iter: the same steps


def test_learned_F_converges_at_the_same_point_by_EM_and_by_direct_maximisation(small):
    # the accelerated EM's fixed point with the prior's F update and BFGS on l + log p(F) over A are two
    # independent routes; the Laplace l is not exactly EM's objective, so they agree closely, not exactly
    em = _fit(small)
    direct = _fit(small, stop="mll")
    assert em.converged and direct.converged
    assert np.abs(em.F.numpy() - direct.F.numpy()).max() <= 0.02
    # the direct route maximises l + log p(F) itself, so it is at least as high there
    prior = ti.statespace.stable.STATE_AR_PRIOR
    objective = [r.mll + float(log_prior_F(r.F, prior)) for r in (em, direct)]
    assert objective[1] >= objective[0] - 1e-6


@pytest.mark.parametrize("stop", ["converged", "mll"])
def test_fit_with_the_prior_keeps_F_stable_at_every_iteration(small, stop):
    norms = []

    def cb(k, params, mll):
        norms.append(float(torch.linalg.matrix_norm(params.F, ord=2).max()))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not converged within 15 iterations (a FitWarning)
        r = ti.fit(
            small, 2, state_ar=1.0, state_ar_prior=(0.5, 1.0), max_iter=15, progress=False, stop=stop, callback=cb
        )
    assert norms and max(norms) < 1.0
    assert float(torch.linalg.eigvals(r.F).abs().max()) < 1.0
    assert np.isfinite(r.mll)


def test_the_prior_leaves_the_published_F_update_alone(small):
    # stop="em" and "ssll" keep the closed-form F update of MODEL.md 3.3: the prior is not applied there
    for stop in ("em", "ssll"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = ti.fit(small, 2, state_ar=1.0, state_ar_prior=None, max_iter=5, progress=False, stop=stop)
            b = ti.fit(small, 2, state_ar=1.0, max_iter=5, progress=False, stop=stop)
        assert torch.equal(a.F, b.F) and torch.equal(a.theta_s, b.theta_s) and a.mll == b.mll


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan"), "1", True, (0.1, 0.0), (0.1, 1.0, 2.0)])
def test_state_ar_prior_is_checked(small, bad):
    with pytest.raises(ValueError, match="state_ar_prior"):
        ti.fit(small, 2, state_ar=1.0, state_ar_prior=bad, max_iter=2, progress=False)
