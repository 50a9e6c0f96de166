"""The published ``synthesis`` module on torch_ising: Gaussian-process parameters and spikes.

Both functions take and return numpy arrays. Without a ``seed`` they draw their
torch seed from numpy's global random state, so ``numpy.random.seed(...)`` at
the top of a notebook makes a run reproducible, as it did with the published library.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import synthesis as _synthesis
from .._validation import check_positive_int
from ..basis import enumerate_patterns

__all__ = ["generate_thetas", "generate_spikes"]


def _seed(seed: int | None) -> int:
    """The given seed, or one drawn from numpy's global random state."""
    if seed is None:
        return int(np.random.randint(0, 2**62, dtype=np.int64))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an integer or None; got {seed!r}")
    return int(seed)


def generate_thetas(
    N: int,
    O: int,  # noqa: E741 - the seed's name for the order
    T: int,
    mu1: float = -2.0,
    sigma1: float = 50.0,
    mu2: float = 0.0,
    sigma2: float = 50.0,
    alpha: float = 12.0,
    ratio_modulated: float = 1.0,
    seed: int | None = None,
) -> np.ndarray:
    """Gaussian-process parameter trajectories (MODEL.md section 6), shape (T, D).

    Each first-order parameter is an independent GP path with mean ``mu1`` and
    kernel K(i, j) = (1/alpha) exp(-(i - j)^2 / (2 sigma1^2)); higher-order
    ones likewise with ``mu2`` and ``sigma2``; a fraction 1 - ``ratio_modulated``
    of the higher-order parameters is set to 0. For T = 1 this is one draw
    theta ~ Normal(mu, I / alpha). Calls :func:`torch_ising.generate_thetas`.

    Returns:
        theta, numpy float64 array of shape (T, D).
    """
    theta = _synthesis.generate_thetas(
        N,
        O,
        T,
        mu1=mu1,
        sigma1=sigma1,
        mu2=mu2,
        sigma2=sigma2,
        alpha=alpha,
        ratio_modulated=ratio_modulated,
        seed=_seed(seed),
    )
    return theta.numpy()


def generate_spikes(p: Any, R: int, seed: int | None = None) -> np.ndarray:
    """Draw R patterns per time bin from the pattern distributions ``p``.

    Pattern indices are drawn from the categorical distribution p[t] over the
    2^N patterns (the order of :func:`torch_ising.compat.transforms.enumerate_patterns`)
    and turned into binary words.

    Args:
        p: probabilities, shape (T, 2^N) (or (2^N,) for one bin), rows summing to 1.
        R: trials per bin.
        seed: random seed (default: drawn from numpy's global random state).

    Returns:
        spikes, numpy float64 array of shape (T, R, N) with entries 0 and 1.
    """
    R = check_positive_int(R, "R")
    pt = torch.as_tensor(np.asarray(p, dtype=np.float64))
    if pt.ndim == 1:
        pt = pt[None]
    if pt.ndim != 2:
        raise ValueError(f"p must have shape (T, 2^N); got shape {tuple(pt.shape)}")
    N = int(round(np.log2(max(pt.shape[1], 1))))
    if pt.shape[1] != 2**N or N < 1:
        raise ValueError(f"p must have 2^N columns (one per pattern); got {pt.shape[1]}")
    if not bool(torch.isfinite(pt).all()) or bool((pt < 0).any()):
        raise ValueError("p must hold finite, non-negative probabilities")
    total = pt.sum(-1)
    if not bool(torch.allclose(total, torch.ones_like(total), atol=1e-6)):
        raise ValueError(f"each row of p must sum to 1; got sums {total.tolist()[:5]}")
    g = torch.Generator().manual_seed(_seed(seed))
    idx = torch.multinomial(pt, R, replacement=True, generator=g)  # (T, R), seed-order pattern indices
    return enumerate_patterns(N)[idx].to(torch.float64).numpy()
