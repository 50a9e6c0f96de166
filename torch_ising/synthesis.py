"""Synthetic parameters and spikes (MODEL.md section 6; the seed's Sections 1-3).

* :func:`generate_thetas`: Gaussian-process parameter trajectories, shape (T, D).
* :func:`generate_stationary_thetas`: one Gaussian draw, shape (1, D).
* :func:`generate_spikes`: spikes (T, R, N) drawn from p(x | theta_t), exactly
  (inverse CDF over 2^N patterns, batched over bins) or by Gibbs sampling.
* :func:`gibbs_sample`: batched Gibbs chains on any device, for large N.
"""

from __future__ import annotations

from functools import lru_cache
from math import comb
from typing import Any

import numpy as np
import torch

from ._validation import as_tensor, check_N_order, check_positive_int, check_theta, n_params
from .basis import subsets
from .moments import sample as _exact_sample

__all__ = [
    "generate_thetas",
    "generate_stationary_thetas",
    "generate_spikes",
    "gibbs_sample",
    "infer_N",
]

#: Largest N for which :func:`generate_spikes` samples exactly by default.
EXACT_SAMPLING_MAX_N = 22


def _generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    if seed is None:
        g.seed()
    else:
        g.manual_seed(int(seed))
    return g


def infer_N(D: int, order: int = 2) -> int:
    """The N with D = sum_{k<=order} C(N, k).

    Raises:
        ValueError: if no N matches.
    """
    for N in range(order, 100_000):
        d = sum(comb(N, k) for k in range(1, order + 1))
        if d == D:
            return N
        if d > D:
            break
    raise ValueError(f"no number of neurons N gives D={D} parameters at order={order}")


def _gp_paths(T: int, n: int, mean: float, sigma: float, alpha: float, g: torch.Generator) -> torch.Tensor:
    """n independent GP paths over T bins, kernel K(i,j) = exp(-(i-j)^2 / (2 sigma^2)) / alpha."""
    t = torch.arange(T, dtype=torch.float64)
    K = torch.exp(-((t[:, None] - t[None, :]) ** 2) / (2.0 * sigma**2)) / alpha
    evals, evecs = torch.linalg.eigh(K)
    L = evecs * evals.clamp_min(0.0).sqrt()
    z = torch.randn(T, n, dtype=torch.float64, generator=g)
    return mean + L @ z


def generate_thetas(
    N: int,
    O: int,  # noqa: E741 - the field's name for the order
    T: int,
    mu1: float = -2.0,
    sigma1: float = 50.0,
    mu2: float = 0.0,
    sigma2: float = 50.0,
    alpha: float = 12.0,
    ratio_modulated: float = 1.0,
    seed: int | None = None,
) -> torch.Tensor:
    """Gaussian-process parameter trajectories (MODEL.md section 6).

    Each first-order parameter is an independent GP path with mean ``mu1``
    and kernel K(i, j) = (1/alpha) exp(-(i - j)^2 / (2 sigma1^2)) over bins;
    higher-order ones likewise with ``mu2`` and ``sigma2``. A fraction
    1 - ``ratio_modulated`` of the higher-order parameters is set to 0. For
    T = 1 this is one Gaussian draw with variance 1/alpha.

    Returns:
        theta, shape (T, D), float64.
    """
    N, O = check_N_order(N, O)  # noqa: E741
    T = check_positive_int(T, "T")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    if not 0.0 <= ratio_modulated <= 1.0:
        raise ValueError(f"ratio_modulated must lie in [0, 1], got {ratio_modulated!r}")
    g = _generator(seed)
    D = n_params(N, O)
    theta = torch.empty(T, D, dtype=torch.float64)
    theta[:, :N] = _gp_paths(T, N, mu1, sigma1, alpha, g)
    if D > N:
        theta[:, N:] = _gp_paths(T, D - N, mu2, sigma2, alpha, g)
        n_zero = int(round((1.0 - ratio_modulated) * (D - N)))
        if n_zero:
            idx = N + torch.randperm(D - N, generator=g)[:n_zero]
            theta[:, idx] = 0.0
    return theta


def generate_stationary_thetas(
    N: int,
    O: int,  # noqa: E741
    mu1: float = -2.0,
    mu2: float = 0.0,
    alpha: float = 12.0,
    seed: int | None = None,
) -> torch.Tensor:
    """One Gaussian draw theta ~ Normal(mu, I / alpha), shape (1, D)."""
    return generate_thetas(N, O, 1, mu1=mu1, mu2=mu2, alpha=alpha, seed=seed)


def generate_spikes(
    theta: Any,
    R: int,
    seed: int | None = None,
    *,
    N: int | None = None,
    order: int = 2,
    method: str = "auto",
    burn_in: int = 200,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Draw R patterns per bin from p(x | theta_t).

    Args:
        theta: parameters, shape (T, D) (or (D,) for one bin).
        R: trials per bin.
        seed: random seed.
        N: number of neurons (inferred from D and ``order`` when omitted).
        order: interaction order.
        method: "exact" (inverse CDF over 2^N patterns, batched over bins),
            "gibbs", or "auto" (exact up to N = 22).
        burn_in: Gibbs sweeps per chain (method "gibbs").
        device: where to sample (default: that of ``theta``).

    Returns:
        spikes, shape (T, R, N), uint8.
    """
    R = check_positive_int(R, "R")
    th = as_tensor(theta, dtype=torch.float64, device=device)
    if th.ndim == 1:
        th = th[None]
    if th.ndim != 2:
        raise ValueError(f"theta must have shape (T, D); got {tuple(th.shape)}")
    N = infer_N(th.shape[-1], order) if N is None else N
    N, order = check_N_order(N, order)
    check_theta(th, N, order)
    if method == "auto":
        method = "exact" if N <= EXACT_SAMPLING_MAX_N else "gibbs"
    g = _generator(seed, th.device)
    if method == "exact":
        return _exact_sample(th, R, N, order, generator=g)
    if method == "gibbs":
        return gibbs_sample(th, R, N, order, burn_in=burn_in, generator=g)
    raise ValueError(f"method must be 'auto', 'exact' or 'gibbs', got {method!r}")


@lru_cache(maxsize=16)
def _neighbour_index(N: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    """For each neuron i, the subsets containing i and their other members.

    Returns:
        params (N, K) index of theta_S (S contains i), padded with D (a zero);
        others (N, K, O-1) other members of S, padded with N (a one).
    """
    D = n_params(N, order)
    lists: list[list[tuple[int, tuple[int, ...]]]] = [[] for _ in range(N)]
    for d, s in enumerate(subsets(N, order)):
        for i in s:
            lists[i].append((d, tuple(j for j in s if j != i)))
    K = max(len(v) for v in lists)
    params = np.full((N, K), D, dtype=np.int64)
    others = np.full((N, K, max(order - 1, 1)), N, dtype=np.int64)
    for i, v in enumerate(lists):
        for k, (d, rest) in enumerate(v):
            params[i, k] = d
            others[i, k, : len(rest)] = rest
    return params, others


def gibbs_sample(
    theta: torch.Tensor,
    n: int,
    N: int,
    order: int = 2,
    *,
    burn_in: int = 200,
    generator: torch.Generator | None = None,
    x0: torch.Tensor | None = None,
    return_chains: bool = False,
) -> torch.Tensor:
    """Batched Gibbs sampling: n independent chains per parameter vector.

    Each sweep visits the neurons in turn and draws
    x_i ~ Bernoulli(sigmoid(h_i)), h_i = sum_{S contains i} theta_S prod_{j in S, j != i} x_j,
    for all chains and batch entries at once. After ``burn_in`` sweeps the
    chains' states are returned as n (approximately) independent samples.

    Args:
        theta: parameters, shape (..., D).
        n: chains (samples) per parameter vector.
        N: number of neurons.
        order: interaction order.
        burn_in: sweeps before the states are returned.
        generator: torch generator on ``theta``'s device.
        x0: optional starting states, shape (..., n, N).
        return_chains: also return every sweep's states, shape (burn_in, ..., n, N).

    Returns:
        samples, shape (..., n, N), uint8 (and the chains when asked).
    """
    n = check_positive_int(n, "n")
    N, order = check_N_order(N, order)
    check_theta(theta, N, order)
    batch = theta.shape[:-1]
    dev, dt = theta.device, theta.dtype
    th = torch.cat([theta.reshape(-1, theta.shape[-1]), theta.new_zeros(int(np.prod(batch, dtype=np.int64)), 1)], -1)
    B = th.shape[0]
    params_np, others_np = _neighbour_index(N, order)
    params = torch.from_numpy(params_np).to(dev)
    others = torch.from_numpy(others_np).to(dev)
    th_i = th[:, params]  # (B, N, K)
    if x0 is None:
        x = (torch.rand(B, n, N, generator=generator, device=dev, dtype=dt) < 0.5).to(dt)
    else:
        x = x0.reshape(B, n, N).to(dt).clone()
    ones = torch.ones(B, n, 1, dtype=dt, device=dev)
    chains = []
    with torch.no_grad():
        for _ in range(burn_in):
            for i in range(N):
                xp = torch.cat([x, ones], dim=-1)
                prod = xp[:, :, others[i]].prod(-1)  # (B, n, K)
                h = (prod * th_i[:, None, i, :]).sum(-1)
                u = torch.rand(B, n, generator=generator, device=dev, dtype=dt)
                x[:, :, i] = (u < torch.sigmoid(h)).to(dt)
            if return_chains:
                chains.append(x.to(torch.uint8).reshape(*batch, n, N))
    out = x.to(torch.uint8).reshape(*batch, n, N)
    if return_chains:
        return out, torch.stack(chains)
    return out
