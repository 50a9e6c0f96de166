"""Convergence of the default EM schemes on generated data (issue 12): a learned U, Q near its boundary.

References are independent of the scheme under test: plain EM (``stop="em"``) run long, and
closed forms for the coordinate maps.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import torch_ising as ti
from tests.statespace.generated import diag_q_data, input_data
from torch_ising.statespace.em import MLL_DROP_TOL, EMOptions, _Coords
from torch_ising.statespace.records import StateSpaceParams


def test_learned_U_default_fit_reaches_at_least_long_plain_EM(device):
    spikes, u, _ = input_data(3, N=2, T=30, R=50)
    x = torch.as_tensor(spikes, device=device)
    r = ti.fit(x, 2, u=u, progress=False)
    ref = ti.fit(x, 2, u=u, stop="em", max_iter=1500, progress=False)
    assert r.converged
    assert r.mll >= ref.mll - 1e-6
    # the direct ascent never lowers l between accepted points
    assert np.diff(r.mll_list).min() >= -MLL_DROP_TOL
    assert np.abs(r.U - ref.U).max() < 0.05 and np.abs(r.theta_s - ref.theta_s).max() < 0.05


def test_accelerated_steps_never_lower_l_beyond_the_safeguard(device):
    spikes, _ = diag_q_data(1, N=3, T=30, R=100)
    x = torch.as_tensor(spikes, device=device)
    D = 6
    r = ti.fit(x, 2, state_cov=0.01 * np.ones(D), progress=False)
    ref = ti.fit(x, 2, state_cov=0.01 * np.ones(D), stop="em", max_iter=1500, progress=False)
    assert r.converged
    assert np.diff(r.mll_list).min() >= -MLL_DROP_TOL
    assert r.mll >= ref.mll - 0.01
    assert np.abs(r.theta_s - ref.theta_s).max() <= 0.02


@pytest.mark.parametrize("q_form", ["scalar", "two", "diag", "full"])
def test_square_root_coordinates_round_trip_and_reach_the_boundary(q_form):
    D, N, B = 6, 3, 2
    g = torch.Generator().manual_seed(0)
    eye = torch.eye(D).expand(B, D, D)
    if q_form == "full":
        A = torch.randn(B, D, D, generator=g)
        Q = A @ A.transpose(-1, -2) / D + 0.01 * eye
    elif q_form == "diag":
        Q = torch.diag_embed(torch.rand(B, D, generator=g) * 0.01)
    elif q_form == "two":
        Q = torch.diag_embed(torch.cat([torch.full((B, N), 0.02), torch.full((B, D - N), 0.005)], -1))
    else:
        Q = 0.01 * eye.clone()
    p = StateSpaceParams(torch.randn(B, D, generator=g), 0.1 * eye, Q, eye.clone(), None)
    coords = _Coords(p, EMOptions(q_form=q_form, N=N), diagonal=False)
    x = coords.to_vec(p)
    torch.testing.assert_close(coords.from_vec(x).Q, Q, rtol=0, atol=1e-12)
    mask = coords.variance_mask(x.shape[-1], x.device)
    assert bool((x[:, mask] > 0).all())
    # s and -s give the same Q (a full Q's Cholesky columns flip with their pivot); to_vec takes the reference's signs
    flipped = coords.to_vec(p, ref=-x)
    assert bool((flipped[:, mask] < 0).all())
    torch.testing.assert_close(coords.from_vec(flipped).Q, Q, rtol=0, atol=1e-12)
    torch.testing.assert_close(flipped[:, ~mask][:, :D], x[:, :D], rtol=0, atol=0)
    # the boundary Q = 0 (all square-root coordinates 0, off-diagonal Cholesky entries 0) is a finite point
    zero = torch.where(mask, torch.zeros_like(x), x)
    if q_form == "full":
        zero[:, 2 * D :] = 0.0
    torch.testing.assert_close(coords.from_vec(zero).Q, torch.zeros_like(Q), rtol=0, atol=0)
