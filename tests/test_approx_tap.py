"""TAP (second-order Plefka): against exact enumeration, finite differences and its own equations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torch_ising import basis, moments
from torch_ising.approx import ApproximationWarning, ConvergenceError, tap
from torch_ising.approx._common import split_pairwise
from torch_ising.approx.tap import tap_free_energy


def _theta(N, n, scale, seed, bias=-2.0, device="cpu"):
    """n pairwise parameter vectors with biases ~ bias +- 0.5 and couplings uniform in [-scale, scale]."""
    g = torch.Generator().manual_seed(seed)
    D = basis.compute_D(N, 2)
    th = torch.empty(n, D)
    th[:, :N] = bias + 0.5 * torch.randn(n, N, generator=g)
    th[:, N:] = scale * (2 * torch.rand(n, D - N, generator=g) - 1)
    return th.to(device)


def test_weak_coupling_accuracy(device):
    """|theta_ij| <= 0.3: every eta entry within 0.01, psi within 1e-2 relative (the issue's acceptance)."""
    N = 12
    th = _theta(N, 8, 0.3, 0, device=device)
    ex = moments.moments(th, N, 2, with_fisher=False)
    for pairs in ("linear_response", "direct"):
        a = tap(th, N, 2, pairs=pairs)
        assert bool(a.converged.all())
        assert float((a.eta - ex.eta).abs().max()) < 0.01
        assert float(((a.psi - ex.psi) / ex.psi).abs().max()) < 1e-2
        torch.testing.assert_close(a.fisher_diag, a.eta * (1 - a.eta))
    # the linear response is the better pair estimate
    lr = tap(th, N, 2).eta
    assert float((lr - ex.eta).abs().max()) < 1e-3


def test_psi_error_is_third_order(device):
    """The Plefka expansion is exact to second order: halving J divides the psi error by about 8."""
    N = 8
    th = _theta(N, 1, 0.4, 1, bias=-1.0, device=device)[0]
    errs = []
    for c in (1.0, 0.5, 0.25):
        t = th.clone()
        t[N:] *= c
        errs.append(float((tap(t, N, 2, tol=1e-13).psi - moments.log_partition(t, N, 2)).abs()))
    r1, r2 = errs[0] / errs[1], errs[1] / errs[2]
    assert 5.0 < r1 < 12.0 and 6.0 < r2 < 10.0, errs


def test_independent_model_is_exact(device):
    N = 6
    th = _theta(N, 3, 0.0, 2, device=device)
    ex = moments.moments(th, N, 2, with_fisher=False)
    a = tap(th, N, 2)
    torch.testing.assert_close(a.eta, ex.eta, rtol=0, atol=1e-12)
    torch.testing.assert_close(a.psi, ex.psi, rtol=0, atol=1e-12)
    t1 = th[:, :N]
    a1 = tap(t1, N, 1)
    torch.testing.assert_close(a1.eta, torch.sigmoid(t1))
    torch.testing.assert_close(a1.psi, moments.log_partition(t1, N, 1))


def test_direct_pairs_are_the_gradient_of_psi_tap(device):
    """eta_direct = d psi_TAP / d theta (envelope theorem), checked by central differences."""
    N = 5
    th = _theta(N, 1, 0.8, 3, bias=-0.5, device=device)[0]
    a = tap(th, N, 2, pairs="direct", tol=1e-14)
    eps = 1e-6
    fd = torch.empty_like(th)
    for k in range(th.numel()):
        e = torch.zeros_like(th)
        e[k] = eps
        fd[k] = (tap(th + e, N, 2, tol=1e-14).psi - tap(th - e, N, 2, tol=1e-14).psi) / (2 * eps)
    torch.testing.assert_close(a.eta, fd, rtol=0, atol=1e-7)


def test_linear_response_is_dm_dh(device):
    """chi_ij = dm_i / dh_j at the TAP solution, checked by central differences."""
    N = 5
    th = _theta(N, 1, 0.8, 4, bias=-0.5, device=device)[0]
    a = tap(th, N, 2, tol=1e-14)
    m = a.eta[:N]
    eps = 1e-6
    iu = torch.triu_indices(N, N, 1)
    chi_fd = torch.empty(N, N, dtype=th.dtype, device=th.device)
    for j in range(N):
        e = torch.zeros_like(th)
        e[j] = eps
        chi_fd[:, j] = (tap(th + e, N, 2, tol=1e-14).eta[:N] - tap(th - e, N, 2, tol=1e-14).eta[:N]) / (2 * eps)
    xi = a.eta[N:]
    torch.testing.assert_close(xi - m[iu[0]] * m[iu[1]], chi_fd[iu[0], iu[1]], rtol=0, atol=1e-7)


def test_solution_satisfies_tap_equations(device):
    N = 10
    th = _theta(N, 4, 0.6, 5, device=device)
    a = tap(th, N, 2, tol=1e-13)
    h, J = split_pairwise(th, N)
    m = a.eta[:, :N]
    v = m * (1 - m)
    rhs = torch.sigmoid(h + (J @ m[..., None])[..., 0] + (0.5 - m) * ((J * J) @ v[..., None])[..., 0])
    torch.testing.assert_close(m, rhs, rtol=0, atol=1e-12)
    torch.testing.assert_close(a.psi, tap_free_energy(m, h, J))


@pytest.mark.parametrize("batch", [(), (3,), (2, 2)])
def test_batch_shapes(batch, device):
    N = 4
    th = _theta(N, int(np.prod(batch, dtype=int)), 0.5, 6, device=device).reshape(*batch, 10)
    a = tap(th, N, 2)
    assert a.psi.shape == batch and a.eta.shape == (*batch, 10) and a.fisher_diag.shape == (*batch, 10)
    assert a.converged.shape == batch and a.converged.dtype == torch.bool
    flat = tap(th.reshape(-1, 10), N, 2)
    torch.testing.assert_close(a.eta.reshape(-1, 10), flat.eta)


def test_non_convergence_warns_or_raises(device):
    N = 10
    th = _theta(N, 2, 4.0, 7, bias=0.0, device=device)
    with pytest.warns(ApproximationWarning, match="TAP did not converge"):
        a = tap(th, N, 2, max_iter=3)
    assert not bool(a.converged.all())
    assert bool(torch.isfinite(a.eta).all()) and bool(torch.isfinite(a.psi).all())
    with pytest.raises(ConvergenceError, match="TAP did not converge"):
        tap(th, N, 2, max_iter=3, on_fail="raise")


def test_bad_input():
    with pytest.raises(ValueError, match="order"):
        tap(torch.zeros(basis.compute_D(4, 3)), 4, 3)
    with pytest.raises(ValueError, match="theta must have shape"):
        tap(torch.zeros(7), 4, 2)
    with pytest.raises(ValueError, match="tol"):
        tap(torch.zeros(10), 4, 2, tol=-1.0)
    with pytest.raises(ValueError, match="damping"):
        tap(torch.zeros(10), 4, 2, damping=1.0)
    with pytest.raises(ValueError, match="on_fail"):
        tap(torch.zeros(10), 4, 2, on_fail="shout")
    with pytest.raises(ValueError, match="pairs"):
        tap(torch.zeros(10), 4, 2, pairs="cavity")
    with pytest.raises(ValueError, match="floating"):
        tap(torch.zeros(10, dtype=torch.int64), 4, 2)


def _old_damping_rule(h, J, max_iter=2000, lam=0.5):
    """The damped iteration with the damping raised only where the residual grew (>), in numpy, one vector."""
    m = 1 / (1 + np.exp(-h))
    prev, res = np.inf, np.inf
    history = []
    for _ in range(max_iter):
        v = m * (1 - m)
        new = 1 / (1 + np.exp(-(h + J @ m + (0.5 - m) * ((J * J) @ v))))
        res = np.abs(new - m).max()
        history.append(res)
        if res > prev:
            lam = min(0.5 * (1 + lam), 0.99)
        prev = res
        m = lam * m + (1 - lam) * new
    return np.array(history)


def test_period_two_cycle_is_broken_by_raising_the_damping(device):
    """N = 2, |J| ~ 11: the old rule (raise the damping only where the residual grew) falls into an exact
    period-2 cycle whose residual repeats (0.1999 for all 2000 iterations), so the damping never rose;
    the rule that raises it where the residual does not fall converges. Checked against the TAP equations
    m_i = sigmoid(h_i + J_ij m_j + (1/2 - m_i) J_ij^2 m_j (1 - m_j)), written out for two neurons."""
    h = np.array([0.02841135903783095, -1.861291552134082])
    J12 = -10.941985897786243
    J = np.array([[0.0, J12], [J12, 0.0]])
    old = _old_damping_rule(h, J)
    assert old[-1] > 0.15 and np.ptp(old[-100:]) < 1e-12  # stuck: the same residual every iteration

    a = tap(torch.tensor([*h, J12], dtype=torch.float64, device=device), 2, 2, tol=1e-12)
    assert bool(a.converged)
    m0, m1 = (float(v) for v in a.eta[:2])

    def sig(z):
        return 1 / (1 + np.exp(-z))

    r0 = sig(h[0] + J12 * m1 + (0.5 - m0) * J12**2 * m1 * (1 - m1)) - m0
    r1 = sig(h[1] + J12 * m0 + (0.5 - m1) * J12**2 * m0 * (1 - m0)) - m1
    assert max(abs(r0), abs(r1)) < 1e-11
    # the pair moment: linear response, A = diag(1/v_i + J^2 v_j) - J - 1/2 J^2 (1 - 2 m_i)(1 - 2 m_j)
    v0, v1 = m0 * (1 - m0), m1 * (1 - m1)
    A = np.array(
        [
            [1 / v0 + J12**2 * v1, -J12 - 0.5 * J12**2 * (1 - 2 * m0) * (1 - 2 * m1)],
            [-J12 - 0.5 * J12**2 * (1 - 2 * m0) * (1 - 2 * m1), 1 / v1 + J12**2 * v0],
        ]
    )
    assert abs(float(a.eta[2]) - (m0 * m1 + np.linalg.inv(A)[0, 1])) < 1e-10
