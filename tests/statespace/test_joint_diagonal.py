"""The diagonal joint E-step's scalar tridiagonal solver against dense linear algebra."""

import pytest
import torch

from torch_ising.statespace.joint_diagonal import tri_factor, tri_inverse, tri_matvec, tri_solve


def _system(B: int, T: int, D: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(B, T - 1, D, generator=g, dtype=torch.float64)
    z = torch.zeros(B, 1, D, dtype=torch.float64)
    d = (
        torch.cat([e.abs(), z], 1)
        + torch.cat([z, e.abs()], 1)
        + 0.1
        + torch.rand(B, T, D, generator=g, dtype=torch.float64)
    )
    dense = torch.zeros(B, D, T, T, dtype=torch.float64)
    idx = torch.arange(T)
    dense[..., idx, idx] = d.transpose(1, 2)
    dense[..., idx[1:], idx[:-1]] = e.transpose(1, 2)
    dense[..., idx[:-1], idx[1:]] = e.transpose(1, 2)
    return d, e, dense


@pytest.mark.parametrize("T", [1, 2, 3, 4, 5, 8, 17, 100])
def test_tridiagonal_against_dense(T, device):
    d, e, dense = (v.to(device) for v in _system(2, T, 3))
    r = torch.randn(2, T, 3, dtype=torch.float64).to(device)
    fac = tri_factor(d, e)
    x_ref = torch.linalg.solve(dense, r.transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2)
    torch.testing.assert_close(tri_solve(fac, r), x_ref, rtol=0, atol=1e-12)
    inv = torch.linalg.inv(dense)
    var, lag = tri_inverse(fac)
    torch.testing.assert_close(var, torch.diagonal(inv, dim1=-2, dim2=-1).transpose(1, 2), rtol=0, atol=1e-12)
    sub = torch.diagonal(inv, offset=-1, dim1=-2, dim2=-1).transpose(1, 2)
    torch.testing.assert_close(lag, sub, rtol=0, atol=1e-12)
    torch.testing.assert_close(fac.logdet, torch.linalg.slogdet(dense)[1], rtol=0, atol=1e-10)
    mv = (dense @ r.transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2)
    torch.testing.assert_close(tri_matvec(d, e, r), mv, rtol=0, atol=1e-12)


@pytest.mark.parametrize("calibrate", [False, True])
def test_joint_diagonal_e_step_against_dense(calibrate, device):
    """The mode is stationary for the dense objective (autograd), and sigma_s, the lag-one blocks and l
    match the dense T x T posterior precision J + diag(G) of every coordinate.

    The E-step runs on ``device``; the dense references are computed on the CPU."""
    import math

    from torch_ising.approx.pseudo import PseudoLikelihood, pseudo_log_likelihood
    from torch_ising.statespace.joint_diagonal import joint_diagonal_e_step
    from torch_ising.statespace.records import StateSpaceParams

    g = torch.Generator().manual_seed(3)
    T, R, N = 7, 30, 3
    spikes = (torch.rand(1, T, R, N, generator=g) < 0.3).to(torch.float64)
    obs = PseudoLikelihood(spikes, 2, eta_method="tap", calibrate=calibrate)
    D = obs.D
    mu = 0.1 * torch.randn(1, D, generator=g, dtype=torch.float64) - 0.5
    Sigma = torch.full((1, D), 0.5, dtype=torch.float64)
    Q = torch.full((1, D), 0.05, dtype=torch.float64)
    F = torch.full((1, D), 0.9, dtype=torch.float64)
    params = StateSpaceParams(*(v.to(device) for v in (mu, Sigma, Q, F)), None)
    obs_dev = PseudoLikelihood(spikes.to(device), 2, eta_method="tap", calibrate=calibrate)
    _, smooth, mll = joint_diagonal_e_step(obs_dev, params, tol=1e-12)
    assert smooth.theta_s.device.type == torch.device(device).type
    smooth = type(smooth)(*(v.cpu() if isinstance(v, torch.Tensor) else v for v in smooth))
    mll = mll.cpu()
    x = smooth.theta_s[0]
    # the dense prior precision of each coordinate's chain, built from its definition
    Jd = torch.zeros(D, T, T, dtype=torch.float64)
    for s in range(D):
        A = torch.zeros(T, T, dtype=torch.float64)  # rows: theta_1 / sqrt(Sigma), (theta_t - F theta_{t-1}) / sqrt(Q)
        A[0, 0] = 1 / math.sqrt(Sigma[0, s])
        for t in range(1, T):
            A[t, t], A[t, t - 1] = 1 / math.sqrt(Q[0, s]), -F[0, s] / math.sqrt(Q[0, s])
        Jd[s] = A.T @ A
    m = mu[0] * F[0] ** torch.arange(T, dtype=torch.float64)[:, None]
    a = obs.score_scale_all(x[None]) if calibrate else None
    # the mode search's objective; with calibration its a_S come from the starting path (the prior mean)
    a0 = obs.score_scale_all(m[None])[0, 0] if calibrate else torch.ones(D, dtype=torch.float64)
    assert a is None or a.shape == (1, 1, D)
    xr = x.clone().requires_grad_(True)
    diff = (xr - m).T  # (D, T)
    phi = (
        pseudo_log_likelihood(xr, spikes[0], N, 2).sum()
        - 0.5 * ((diff[:, None, :] @ Jd @ diff[:, :, None]).squeeze() / a0).sum()
    )
    (grad,) = torch.autograd.grad(phi, xr)
    assert float(grad.abs().max()) < 1e-8 * R
    G = obs.precision_all(x[None])[0]  # (T, D)
    P = Jd + torch.diag_embed(G.T)
    S = torch.linalg.inv(P)
    torch.testing.assert_close(smooth.sigma_s[0], torch.diagonal(S, dim1=-2, dim2=-1).T, rtol=0, atol=1e-12)
    torch.testing.assert_close(smooth.lag_one[0], torch.diagonal(S, offset=-1, dim1=-2, dim2=-1).T, rtol=0, atol=1e-12)
    d0 = (x - m).T
    ll = obs.marginal_log_lik(x[None]).sum()
    quad = (d0[:, None, :] @ Jd @ d0[:, :, None]).sum()
    ref = ll - 0.5 * quad + 0.5 * torch.linalg.slogdet(Jd)[1].sum() - 0.5 * torch.linalg.slogdet(P)[1].sum()
    torch.testing.assert_close(mll[0], ref, rtol=0, atol=1e-8)
