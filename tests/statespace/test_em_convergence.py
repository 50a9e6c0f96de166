"""Convergence of the default EM schemes on generated data (issue 12): a learned U, Q near its boundary.

The reference is independent of the scheme under test: plain EM (``stop="em"``) run long.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import torch_ising as ti
from tests.common import MAX_ITER, fit_warns, to_np
from tests.statespace.generated import diag_q_data, input_data
from torch_ising.statespace.stopping import MLL_DROP_TOL


def test_learned_U_default_fit_reaches_at_least_long_plain_EM(device):
    spikes, u, _ = input_data(3, N=2, T=20, R=50)
    x = torch.as_tensor(spikes, device=device)
    r = ti.fit(x, 2, u=u, progress=False)
    with fit_warns(MAX_ITER):  # plain EM needs about 7000 iterations here
        ref = ti.fit(x, 2, u=u, stop="em", max_iter=600, progress=False)
    assert r.converged
    assert r.mll >= ref.mll - 1e-6
    # the direct ascent never lowers l between accepted points
    assert np.diff(r.mll_list).min() >= -MLL_DROP_TOL
    assert np.abs(to_np(r.U) - to_np(ref.U)).max() < 0.05 and np.abs(to_np(r.theta_s) - to_np(ref.theta_s)).max() < 0.05


@pytest.mark.parametrize("estep", ["joint", "filter"])
def test_accelerated_steps_never_lower_l_beyond_the_safeguard(estep, device):
    # accelerated and plain EM of the same E-step (each E-step has its own l); "joint" is the default here
    spikes, _ = diag_q_data(1, N=3, T=20, R=100)
    x = torch.as_tensor(spikes, device=device)
    D = 6
    r = ti.fit(x, 2, state_cov=0.01 * np.ones(D), progress=False, estep=estep)
    with fit_warns(MAX_ITER):  # plain EM needs thousands of iterations here
        ref = ti.fit(x, 2, state_cov=0.01 * np.ones(D), stop="em", max_iter=600, progress=False, estep=estep)
    assert r.converged
    assert np.diff(r.mll_list).min() >= -MLL_DROP_TOL
    assert r.mll >= ref.mll - 0.01
    assert np.abs(to_np(r.theta_s) - to_np(ref.theta_s)).max() <= 0.02
