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


def _g_independent(v: torch.Tensor, num, S00, Q, tau: float) -> torch.Tensor:
    """tr(Q^-1 num F^T) - 1/2 tr(Q^-1 F S00 F^T) - tr[(I - F^T F)^-1] / (2 tau^2), written out again."""
    D = S00.shape[0]
    F = v.reshape(D, D)
    Qi = torch.linalg.inv(Q)
    return (
        torch.trace(Qi @ num @ F.T)
        - 0.5 * torch.trace(Qi @ F @ S00 @ F.T)
        - torch.trace(torch.linalg.inv(torch.eye(D, dtype=DT) - F.T @ F)) / (2 * tau * tau)
    )


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


def test_an_F_on_or_outside_the_ball_starts_at_norm_0_99():
    A = free_from_stable(torch.eye(3, dtype=DT)[None])
    F = stable_from_free(A)
    assert torch.allclose(F, 0.99 * torch.eye(3, dtype=DT)[None], atol=1e-12)


@pytest.mark.parametrize("tau", [0.3, 1.0, 4.0])
def test_log_prior_matches_its_closed_form_in_F(tau):
    # log p = -||A||^2 / (2 tau^2) - (D^2/2) log(2 pi tau^2) and ||A||^2 = tr[(I - F^T F)^-1] - D
    g = torch.Generator().manual_seed(7)
    D = 4
    A = 2.0 * torch.randn(D, D, generator=g, dtype=DT)
    F = stable_from_free(A).numpy()
    expected = -(np.trace(np.linalg.inv(np.eye(D) - F.T @ F)) - D) / (2 * tau**2) - 0.5 * D * D * math.log(
        2 * math.pi * tau**2
    )
    direct = -(A.numpy() ** 2).sum() / (2 * tau**2) - 0.5 * D * D * math.log(2 * math.pi * tau**2)
    assert float(log_prior_F(torch.as_tensor(F), tau)) == pytest.approx(expected, rel=1e-10)
    assert float(log_prior_free(A, tau)) == pytest.approx(direct, rel=1e-12)
    assert expected == pytest.approx(direct, rel=1e-9)


def test_m_step_objective_gradient_and_hessian_match_autograd():
    D = 4
    F, num, S00, Q = _random_problem(D, 0)
    tau = 0.7
    Qinv = torch.linalg.inv(Q)
    val, grad, H = _objective_parts(F, Qinv, num, S00, 1 / (2 * tau * tau), _transpose_perm(D, F.device))
    v = F.reshape(-1)
    f = lambda w: _g_independent(w, num, S00, Q, tau)  # noqa: E731
    scale = float(H.abs().max())
    assert val == pytest.approx(float(f(v)), rel=1e-10)
    assert (torch.func.grad(f)(v) - grad.reshape(-1)).abs().max() <= 1e-9 * scale
    assert (torch.func.hessian(f)(v) - H).abs().max() <= 1e-9 * scale


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_m_step_F_is_the_constrained_maximiser(seed):
    D = 4
    F0, num, S00, Q = _random_problem(D, seed)
    tau = 1.0
    F = prior_F_update(F0[None], num[None], S00[None], Q[None], tau)[0]
    assert np.linalg.svd(F.numpy(), compute_uv=False).max() < 1.0
    f = lambda w: _g_independent(w, num, S00, Q, tau)  # noqa: E731
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


@pytest.mark.parametrize("stop", ["converged", "mll"])
def test_fit_with_the_prior_keeps_F_stable_at_every_iteration(small, stop):
    norms = []

    def cb(k, params, mll):
        norms.append(float(torch.linalg.matrix_norm(params.F, ord=2).max()))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # not converged within 15 iterations (a FitWarning)
        r = ti.fit(small, 2, state_ar=1.0, state_ar_prior=1.0, max_iter=15, progress=False, stop=stop, callback=cb)
    assert norms and max(norms) < 1.0
    assert float(torch.linalg.eigvals(r.F).abs().max()) < 1.0
    assert np.isfinite(r.mll)


def test_the_prior_leaves_the_published_F_update_alone(small):
    # stop="em" and "ssll" keep the closed-form F update of MODEL.md 3.3: the prior is not applied there
    for stop in ("em", "ssll"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = ti.fit(small, 2, state_ar=1.0, max_iter=5, progress=False, stop=stop)
            b = ti.fit(small, 2, state_ar=1.0, state_ar_prior=1.0, max_iter=5, progress=False, stop=stop)
        assert torch.equal(a.F, b.F) and torch.equal(a.theta_s, b.theta_s) and a.mll == b.mll


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan"), "1", True])
def test_state_ar_prior_is_checked(small, bad):
    with pytest.raises(ValueError, match="state_ar_prior"):
        ti.fit(small, 2, state_ar=1.0, state_ar_prior=bad, max_iter=2, progress=False)
