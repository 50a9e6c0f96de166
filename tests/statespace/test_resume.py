"""Resuming a fit from an EMState reproduces the uninterrupted fit (checkpoints of long runs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import torch_ising as ti
from tests.common import MAX_ITER, PARITY_DIR, fit_warns, to_np


def _spikes() -> np.ndarray:
    return np.load(PARITY_DIR / "v2_pairwise_N4.npz")["spikes"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # the default: Anderson-accelerated EM, whose history the state carries
        {"state_cov": 0.01 * np.ones(10)},  # diagonal Q
        {"stop": "em", "tol": 0.0, "max_iter": 25},
        {"stop": "ssll"},
    ],
    ids=["converged", "diagonal-Q", "em", "ssll"],
)
def test_resume_reproduces_the_uninterrupted_fit(kwargs, device):
    expected = (MAX_ITER,) if "max_iter" in kwargs else ()  # tol=0 runs all max_iter iterations
    states: list[ti.statespace.EMState] = []
    with fit_warns(*expected):
        full = ti.fit(_spikes(), 2, progress=False, on_state=states.append, **kwargs, device=device)
    assert full.iterations == len(states) and full.iterations > 6
    for k in (1, 6):
        state = states[k - 1]
        assert state.iteration == k
        with fit_warns(*expected):
            resumed = ti.fit(_spikes(), 2, progress=False, resume=state, **kwargs, device=device)
        assert resumed.iterations == full.iterations
        np.testing.assert_allclose(to_np(resumed.theta_s), to_np(full.theta_s), rtol=0, atol=1e-10)
        np.testing.assert_allclose(to_np(resumed.Q), to_np(full.Q), rtol=1e-10, atol=0)
        assert abs(resumed.mll - full.mll) < 1e-8


def test_resume_of_a_batch_from_numpy_arrays(device):
    x = _spikes()
    batch = np.stack([x, x[:, ::-1]])
    states: list[ti.statespace.EMState] = []
    full = ti.fit(batch, 2, progress=False, on_state=states.append, device=device)
    state = states[4]
    # as a checkpoint file hands it back: numpy arrays
    as_numpy = ti.statespace.EMState(
        state.iteration,
        ti.StateSpaceParams(*(None if v is None else to_np(v) for v in state.params)),
        *(to_np(v) if isinstance(v, torch.Tensor) else v for v in state[2:]),
    )
    resumed = ti.fit(batch, 2, progress=False, resume=as_numpy, device=device)
    np.testing.assert_allclose(to_np(resumed.theta_s), to_np(full.theta_s), rtol=0, atol=1e-10)
    assert resumed.iterations == full.iterations
