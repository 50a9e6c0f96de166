"""Bethe approximation (BP, CCCP, hybrid): exact on trees, against exact enumeration, convergence."""

from __future__ import annotations

import pytest
import torch

from torch_ising import basis, moments
from torch_ising.approx import ApproximationWarning, ConvergenceError, bethe_bp, bethe_cccp, bethe_hybrid
from torch_ising.approx._common import split_pairwise
from torch_ising.approx.bethe import _F_grad_hess, bethe_free_energy, pair_belief

METHODS = [bethe_bp, bethe_cccp, bethe_hybrid]


def _theta(N, n, scale, seed, bias=-2.0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    D = basis.compute_D(N, 2)
    th = torch.empty(n, D)
    th[:, :N] = bias + 0.5 * torch.randn(n, N, generator=g)
    th[:, N:] = scale * (2 * torch.rand(n, D - N, generator=g) - 1)
    return th.to(device)


def _tree_theta(N, seed, device):
    """Random fields and strong couplings on a random tree (the rest zero)."""
    g = torch.Generator().manual_seed(seed)
    th = torch.zeros(basis.compute_D(N, 2))
    th[:N] = torch.randn(N, generator=g)
    index = {s: k for k, s in enumerate(basis.subsets(N, 2))}
    edges = []
    for i in range(1, N):
        j = int(torch.randint(0, i, (1,), generator=g))
        th[index[(j, i)]] = 2.5 * torch.randn((), generator=g)
        edges.append(index[(j, i)])
    return th.to(device), torch.tensor(edges, device=device)


@pytest.mark.parametrize("method", METHODS)
def test_exact_on_trees(method, device):
    """Bethe is exact on a tree: psi, all singles and the pair marginals of the edges."""
    for N, seed in [(2, 0), (6, 1), (9, 2)]:
        th, edges = _tree_theta(N, seed, device)
        a = method(th, N, 2)
        ex = moments.moments(th, N, 2, with_fisher=False)
        assert bool(a.converged)
        torch.testing.assert_close(a.psi, ex.psi, rtol=0, atol=1e-9)
        torch.testing.assert_close(a.eta[:N], ex.eta[:N], rtol=0, atol=1e-8)
        torch.testing.assert_close(a.eta[edges], ex.eta[edges], rtol=0, atol=1e-8)


@pytest.mark.parametrize("method", METHODS)
def test_weak_coupling_accuracy(method, device):
    """|theta_ij| <= 0.3 at N = 12: eta within 0.01 and psi within 1e-2 relative of exact."""
    N = 12
    th = _theta(N, 6, 0.3, 3, device=device)
    ex = moments.moments(th, N, 2, with_fisher=False)
    a = method(th, N, 2)
    assert bool(a.converged.all())
    assert float((a.eta - ex.eta).abs().max()) < 0.01
    assert float(((a.psi - ex.psi) / ex.psi).abs().max()) < 1e-2
    torch.testing.assert_close(a.fisher_diag, a.eta * (1 - a.eta))


def test_bp_and_cccp_reach_the_same_fixed_point(device):
    N = 10
    th = _theta(N, 5, 1.0, 4, bias=-1.0, device=device)
    bp = bethe_bp(th, N, 2, tol=1e-12)
    cc = bethe_cccp(th, N, 2, tol=1e-11)
    assert bool(bp.converged.all()) and bool(cc.converged.all())
    torch.testing.assert_close(bp.eta, cc.eta, rtol=0, atol=1e-9)
    torch.testing.assert_close(bp.psi, cc.psi, rtol=0, atol=1e-10)


def test_psi_gradient_is_eta(device):
    """At a stationary point d psi_Bethe / d theta = (m, xi), checked by central differences."""
    N = 5
    th = _theta(N, 1, 1.0, 5, bias=-0.5, device=device)[0]
    a = bethe_bp(th, N, 2, tol=1e-14)
    eps = 1e-6
    fd = torch.empty_like(th)
    for k in range(th.numel()):
        e = torch.zeros_like(th)
        e[k] = eps
        fd[k] = (bethe_bp(th + e, N, 2, tol=1e-14).psi - bethe_bp(th - e, N, 2, tol=1e-14).psi) / (2 * eps)
    torch.testing.assert_close(a.eta, fd, rtol=0, atol=1e-7)


def test_pair_belief_closed_form(device):
    """xi solves xi p00 = e^J p10 p01 and maximises J xi + H(pair table) (compared on a fine grid)."""
    g = torch.Generator().manual_seed(6)
    mi = torch.rand(200, generator=g).to(device) * 0.98 + 0.01
    mj = torch.rand(200, generator=g).to(device) * 0.98 + 0.01
    J = (torch.randn(200, generator=g) * 4).to(device)
    xi = pair_belief(mi, mj, J)
    lo, hi = (mi + mj - 1).clamp_min(0), torch.minimum(mi, mj)
    assert bool((xi >= lo).all() and (xi <= hi).all())
    lhs = torch.log(xi) + torch.log(1 - mi - mj + xi)
    rhs = J + torch.log(mi - xi) + torch.log(mj - xi)
    torch.testing.assert_close(lhs, rhs, rtol=0, atol=1e-8)
    torch.testing.assert_close(pair_belief(mi, mj, torch.zeros_like(J)), mi * mj, rtol=1e-13, atol=1e-15)


def test_cccp_gradient_and_monotone_descent(device):
    """The closed-form dF/dm matches autograd, and F never increases over CCCP iterations."""
    N = 8
    th = _theta(N, 2, 2.5, 7, bias=-0.5, device=device)
    h, J = split_pairwise(th, N)
    m = torch.sigmoid(h).clone().requires_grad_(True)
    F, grad, _, _ = _F_grad_hess(m, h, J)
    (ga,) = torch.autograd.grad(F.sum(), m)
    torch.testing.assert_close(grad, ga, rtol=0, atol=1e-10)
    F_prev = None
    for it in (1, 2, 4, 8, 16, 32):
        F_now = -bethe_cccp(th, N, 2, max_iter=it, on_fail="ignore").psi  # psi = -F at the beliefs
        if F_prev is not None:
            assert bool((F_now <= F_prev + 1e-10).all())
        F_prev = F_now
    # psi is -F at the beliefs returned
    a = bethe_cccp(th, N, 2)
    iu = torch.triu_indices(N, N, 1, device=th.device)
    xi = torch.zeros(2, N, N, dtype=th.dtype, device=th.device)
    xi[:, iu[0], iu[1]] = a.eta[:, N:]
    xi = xi + xi.transpose(-1, -2)
    torch.testing.assert_close(a.psi, -bethe_free_energy(a.eta[:, :N], xi, h, J))


def test_hybrid_falls_back_to_cccp(device):
    """Where BP oscillates (strong frustrated couplings), the hybrid converges through CCCP."""
    N = 10
    th = _theta(N, 4, 3.0, 8, bias=0.0, device=device)
    with pytest.warns(ApproximationWarning, match="BP did not converge"):
        bp = bethe_bp(th, N, 2, max_iter=30, damping=0.0)
    assert not bool(bp.converged.all())
    assert bool(torch.isfinite(bp.eta).all())
    hy = bethe_hybrid(th, N, 2, max_iter=30, damping=0.0)
    assert bool(hy.converged.all())
    cc = bethe_cccp(th, N, 2)
    # where BP failed the hybrid is the CCCP answer
    bad = ~bp.converged
    torch.testing.assert_close(hy.eta[bad], cc.eta[bad], rtol=0, atol=1e-6)
    with pytest.raises(ConvergenceError, match="BP did not converge"):
        bethe_bp(th, N, 2, max_iter=30, damping=0.0, on_fail="raise")
    with pytest.warns(ApproximationWarning, match="CCCP did not converge"):
        bethe_cccp(th, N, 2, max_iter=2)


@pytest.mark.parametrize("batch", [(), (3,), (2, 2)])
def test_batch_shapes(batch, device):
    N = 4
    n = 1
    for b in batch:
        n *= b
    th = _theta(N, n, 0.5, 9, device=device).reshape(*batch, 10)
    for method in METHODS:
        a = method(th, N, 2)
        assert a.psi.shape == batch and a.eta.shape == (*batch, 10) and a.converged.shape == batch


def test_order_one_and_bad_input(device):
    t1 = torch.randn(5, device=device)
    for method in METHODS:
        a = method(t1, 5, 1)
        torch.testing.assert_close(a.eta, torch.sigmoid(t1))
        with pytest.raises(ValueError, match="order"):
            method(torch.zeros(basis.compute_D(4, 3)), 4, 3)
        with pytest.raises(ValueError, match="theta must have shape"):
            method(torch.zeros(9), 4, 2)
    with pytest.raises(ValueError, match="kappa"):
        bethe_cccp(torch.zeros(10), 4, 2, kappa=0.0)
    with pytest.raises(ValueError, match="max_iter"):
        bethe_bp(torch.zeros(10), 4, 2, max_iter=0)
