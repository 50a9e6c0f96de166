"""The streaming filter against the batch Laplace filter, bin for bin."""

import pytest
import torch

import torch_ising as ti
from torch_ising.basis import sufficient_stats
from torch_ising.statespace import ExactIsing, OnlineFilter, StateSpaceParams, laplace_filter


@pytest.mark.parametrize("with_u", [False, True])
def test_online_filter_equals_laplace_filter(with_u, device):
    N, O, T, R = 4, 2, 15, 30
    D = ti.basis.compute_D(N, O)
    theta = ti.generate_thetas(N, O, T, seed=3)
    spikes = ti.generate_spikes(theta, R, seed=4)
    g = torch.Generator().manual_seed(0)
    A = torch.randn(D, D, generator=g)
    F = 0.97 * torch.eye(D) + 0.01 * A
    Q = 0.02 * torch.eye(D) + 0.002 * (A @ A.T)
    u = torch.randn(T, 2, generator=g) if with_u else None
    U = 0.1 * torch.randn(D, 2, generator=g) if with_u else None
    params = StateSpaceParams(torch.full((D,), -1.5), 0.3 * torch.eye(D), Q, F, U)
    params = StateSpaceParams(*(None if v is None else v.to(device) for v in params))
    spikes = spikes.to(device)
    u = None if u is None else u.to(device)
    batch = StateSpaceParams(*(None if v is None else v[None] for v in params))
    obs = ExactIsing(sufficient_stats(spikes, O)[None], R, N, O)
    ref = laplace_filter(obs, batch, u=None if u is None else u[None])
    f = OnlineFilter(params, N, O)
    for t in range(T):
        th, W = f.step(spikes[t], None if u is None else u[t])
        torch.testing.assert_close(th, ref.theta_f[0, t], rtol=0, atol=1e-12)
        torch.testing.assert_close(W, ref.sigma_f[0, t], rtol=0, atol=1e-12)


def test_online_filter_refuses_bad_bins():
    D = ti.basis.compute_D(3, 2)
    f = OnlineFilter(StateSpaceParams(torch.zeros(D), 0.1 * torch.eye(D), 0.01 * torch.eye(D), torch.eye(D)), 3, 2)
    with pytest.raises(ValueError, match="counts_t"):
        f.step(torch.zeros(10, 4))
    with pytest.raises(ValueError, match="binary"):
        f.step(2 * torch.ones(10, 3))
