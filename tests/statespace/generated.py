"""Data sets generated as MODEL.md 3 describes, for the EM convergence tests and benchmarks.

theta_1 ~ N(mu, 0.1 I) with mu = -1.5 on the firing rates and 0 on the couplings,
theta_t = F theta_{t-1} + U u_t + xi_t with xi_t ~ N(0, Q), spikes drawn from p(x | theta_t).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from torch_ising.basis import n_params
from torch_ising.synthesis import generate_spikes

__all__ = ["input_data", "diag_q_data"]


def _path(rng: np.random.Generator, N: int, O: int, T: int, q: np.ndarray, drive: np.ndarray | None) -> np.ndarray:  # noqa: E741
    D = n_params(N, O)
    theta = np.empty((T, D))
    theta[0] = np.r_[np.full(N, -1.5), np.zeros(D - N)] + rng.normal(0.0, math.sqrt(0.1), D)
    for t in range(1, T):  # a short loop that makes test data
        theta[t] = theta[t - 1] + rng.normal(0.0, 1.0, D) * np.sqrt(q)
        if drive is not None:
            theta[t] += drive[t]
    return theta


def input_data(seed: int, N: int = 3, O: int = 2, T: int = 50, R: int = 50, q: float = 0.002):  # noqa: E741
    """Spikes (T, R, N), an input u (T, 2) of two smooth channels, and the true U (D, 2).

    u_t = (sin(2 pi t / T), cos(2 pi t / T)); U has N(0, 0.15^2) entries.
    """
    rng = np.random.default_rng(seed)
    D = n_params(N, O)
    t = np.arange(T)
    u = np.stack([np.sin(2 * np.pi * t / T), np.cos(2 * np.pi * t / T)], -1)
    U = rng.normal(0.0, 0.15, (D, 2))
    theta = _path(rng, N, O, T, np.full(D, q), u @ U.T)
    spikes = generate_spikes(torch.as_tensor(theta), R, seed=seed + 1000, N=N, order=O)
    return spikes, u, U


def diag_q_data(seed: int, N: int = 6, O: int = 2, T: int = 30, R: int = 100):  # noqa: E741
    """Spikes (T, R, N) with a diagonal Q: half the coordinates drift (Q_d = 0.01), half are constant (Q_d = 0)."""
    rng = np.random.default_rng(seed)
    D = n_params(N, O)
    q = np.where(rng.random(D) < 0.5, 0.01, 0.0)
    theta = _path(rng, N, O, T, q, None)
    spikes = generate_spikes(torch.as_tensor(theta), R, seed=seed + 1000, N=N, order=O)
    return spikes, q
