"""The published conjugate-gradient MAP search (torch_ising.optim.conjugate_gradient)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.common import brute_force
from torch_ising.optim.conjugate_gradient import CG_TOL, conjugate_gradient_ascent
from torch_ising.statespace.observation import ExactIsing


def _quadratic(A: torch.Tensor, b: torch.Tensor):
    """f(x) = b.x - x^T A x / 2 per batch row: grad b - A x, Hessian -A."""

    def objective(x: torch.Tensor):
        Ax = (A @ x.unsqueeze(-1)).squeeze(-1)
        return (b * x).sum(-1) - 0.5 * (x * Ax).sum(-1), b - Ax, -A

    return objective


def test_quadratic_reaches_the_closed_form_maximiser():
    # on a quadratic the line search's Newton step is exact, so CG is linear CG: the maximiser A^{-1} b
    g = torch.Generator().manual_seed(0)
    B, D = 3, 6
    M = torch.randn(B, D, D, generator=g, dtype=torch.float64)
    A = M @ M.transpose(-1, -2) + D * torch.eye(D, dtype=torch.float64)
    b = torch.randn(B, D, generator=g, dtype=torch.float64)
    res = conjugate_gradient_ascent(_quadratic(A, b), torch.zeros(B, D, dtype=torch.float64), tol=1e-12)
    expected = torch.linalg.solve(A, b)
    assert res.converged
    torch.testing.assert_close(res.x, expected, rtol=0, atol=1e-10)
    torch.testing.assert_close(res.hess, -A)


def test_ising_posterior_mode_meets_the_published_tolerance_and_batches():
    # log posterior R (y.theta - psi) - |theta - m|^2 / (2 s), gradient checked against a brute force
    N, O, R, s2 = 4, 2, 20, 0.1
    g = torch.Generator().manual_seed(3)
    D = 10
    y = torch.rand(2, 1, D, generator=g, dtype=torch.float64) * 0.3
    obs = ExactIsing(y, R, N, O)
    m = torch.zeros(2, D, dtype=torch.float64)

    def objective(theta: torch.Tensor):
        v, gr, H = obs.value_grad_hess(theta, 0)
        d = theta - m
        return v - 0.5 * (d * d).sum(-1) / s2, gr - d / s2, H - torch.eye(D, dtype=torch.float64) / s2

    res = conjugate_gradient_ascent(objective, torch.zeros(2, D, dtype=torch.float64), scale=R)
    for b in range(2):
        bf = brute_force(res.x[b].numpy(), N, O)
        grad = R * (y[b, 0].numpy() - bf["eta"]) - (res.x[b] - m[b]).numpy() / s2
        assert np.abs(grad).max() / R <= CG_TOL
        alone = conjugate_gradient_ascent(
            lambda th, b=b: tuple(v[b : b + 1] if v.ndim > 0 else v for v in objective(th.expand(2, D))),
            torch.zeros(1, D, dtype=torch.float64),
            scale=R,
        )
        torch.testing.assert_close(alone.x[0], res.x[b], rtol=0, atol=1e-12)


@pytest.mark.parametrize("host_max_n", [8, 0])
def test_ising_lines_follow_the_same_search_as_full_evaluations(host_max_n, device, monkeypatch):
    # the exact posterior's line protocol (E(x + a s) = E(x) + a E(s)) against one full evaluation per step,
    # on a batch in which every row has its own stopping tests; each row equals its own search alone.
    # host_max_n = 8: on a CPU the 2^N-vectors are numpy arrays (_HostPatterns); 0: torch calls everywhere
    from torch_ising.statespace import posterior
    from torch_ising.statespace.posterior import IsingBinPosterior

    monkeypatch.setattr(posterior, "HOST_PATTERNS_MAX_N", host_max_n)

    N, O, R = 5, 2, 50
    g = torch.Generator().manual_seed(11)
    B, D = 3, 15
    y = (torch.rand(B, D, generator=g, dtype=torch.float64) * 0.4).to(device)
    m = (0.3 * torch.randn(B, D, generator=g, dtype=torch.float64)).to(device)
    A = torch.randn(B, D, D, generator=g, dtype=torch.float64)
    P = (A @ A.transpose(-1, -2) / D + torch.eye(D, dtype=torch.float64)).to(device)
    post = IsingBinPosterior(y, R, N, O, m, P)
    x0 = torch.zeros(B, D, dtype=torch.float64, device=device)
    fast = conjugate_gradient_ascent(post, x0, scale=R)
    host = isinstance(post.lines(x0).ops, posterior._HostPatterns)
    assert host == (host_max_n >= N and x0.device.type == "cpu")
    slow = conjugate_gradient_ascent(lambda th: post(th), x0, scale=R)  # a plain callable: full evaluations
    assert fast.iterations == slow.iterations and fast.converged and slow.converged
    torch.testing.assert_close(fast.x, slow.x, rtol=0, atol=1e-10)
    torch.testing.assert_close(fast.value, slow.value, rtol=1e-12, atol=0)
    torch.testing.assert_close(fast.grad, slow.grad, rtol=0, atol=1e-8)
    torch.testing.assert_close(fast.hess, slow.hess, rtol=0, atol=1e-10)
    for b in range(B):
        bf = brute_force(fast.x[b].cpu().numpy(), N, O)
        grad = R * (y[b].cpu().numpy() - bf["eta"]) - P[b].cpu().numpy() @ (fast.x[b] - m[b]).cpu().numpy()
        assert np.abs(grad).max() / R <= CG_TOL
        np.testing.assert_allclose(fast.grad[b].cpu().numpy(), grad, rtol=0, atol=1e-9)
        np.testing.assert_allclose(fast.hess[b].cpu().numpy(), -R * bf["fisher"] - P[b].cpu().numpy(), atol=1e-9)
        alone = conjugate_gradient_ascent(
            IsingBinPosterior(y[b : b + 1], R, N, O, m[b : b + 1], P[b : b + 1]), x0[b : b + 1], scale=R
        )
        torch.testing.assert_close(alone.x[0], fast.x[b], rtol=0, atol=1e-12)


def test_ising_lines_in_float32_follow_the_float64_search():
    # the host arithmetic is float64 whatever the tensors' dtype; a float32 posterior (the path that
    # converts between host arrays and tensors) lands near the float64 mode
    from torch_ising.statespace.posterior import IsingBinPosterior

    N, O, R, D = 4, 2, 40, 10
    g = torch.Generator().manual_seed(4)
    y = torch.rand(2, D, generator=g, dtype=torch.float64) * 0.4
    m = torch.zeros(2, D, dtype=torch.float64)
    P = 5.0 * torch.eye(D, dtype=torch.float64).expand(2, D, D)
    exact = conjugate_gradient_ascent(IsingBinPosterior(y, R, N, O, m, P), m, scale=R)
    single = conjugate_gradient_ascent(IsingBinPosterior(y.float(), R, N, O, m.float(), P.float()), m.float(), scale=R)
    assert single.x.dtype == torch.float32 and single.hess.dtype == torch.float32
    torch.testing.assert_close(single.x.double(), exact.x, rtol=0, atol=1e-3)
    torch.testing.assert_close(single.hess.double(), exact.hess, rtol=1e-4, atol=1e-3)
