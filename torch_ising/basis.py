"""The interaction basis: subsets, bit masks, pattern order and sufficient statistics.

Conventions (MODEL.md section 1):

* An interaction subset S of {0..N-1} with 1 <= |S| <= O. Subsets are ordered
  first by size, then lexicographically (``itertools.combinations`` order), so
  for O = 2 the parameter vector is
  ``theta = (theta_0..theta_{N-1}, theta_01, theta_02, ..., theta_{N-2,N-1})``.
* D = sum_{k=1..O} C(N, k).
* A binary pattern x is identified with the bit mask ``sum_i x_i 2^i`` of its
  active neurons ("mask order" is the internal order of all 2^N-vectors).
* The *seed order* of patterns is the empty pattern followed by one pattern
  per subset of every size 1..N in subset order (N = 3: 000, 100, 010, 001,
  110, 101, 011, 111). Every public vector over patterns uses the seed order.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import combinations

import numpy as np
import torch

from ._validation import check_N_order, check_positive_int, check_spikes, n_params

__all__ = [
    "compute_D",
    "subsets",
    "subset_masks",
    "enumerate_patterns",
    "seed_order_masks",
    "mask_to_seed",
    "seed_to_mask",
    "rebin",
    "rebin_mask",
    "features",
    "sufficient_stats",
]


def compute_D(N: int, order: int = 2) -> int:
    """Number of natural parameters, D = sum_{k=1..O} C(N, k).

    Example:
        >>> compute_D(4, 2)
        10
    """
    N, order = check_N_order(N, order)
    return n_params(N, order)


@lru_cache(maxsize=64)
def subsets(N: int, order: int = 2) -> tuple[tuple[int, ...], ...]:
    """All interaction subsets S, 1 <= |S| <= O, in MODEL.md order."""
    N, order = check_N_order(N, order)
    return tuple(s for k in range(1, order + 1) for s in combinations(range(N), k))


@lru_cache(maxsize=64)
def _subset_masks_np(N: int, order: int) -> np.ndarray:
    if N > 62:
        raise ValueError(f"bit masks need N <= 62, got N={N}")
    return np.array([sum(1 << i for i in s) for s in subsets(N, order)], dtype=np.int64)


def subset_masks(N: int, order: int = 2, device: torch.device | str | None = None) -> torch.Tensor:
    """Bit masks of the interaction subsets, shape (D,), int64 (a fresh tensor: editing it changes no cache)."""
    return torch.tensor(_subset_masks_np(N, order), device=device)


@lru_cache(maxsize=16)
def _subset_index_np(N: int, order: int) -> np.ndarray:
    """(D, O) member indices of every subset, padded with N (a column of ones)."""
    idx = np.full((n_params(N, order), order), N, dtype=np.int64)
    for d, s in enumerate(subsets(N, order)):
        idx[d, : len(s)] = s
    return idx


@lru_cache(maxsize=16)
def _or_index_np(N: int, order: int) -> np.ndarray:
    m = _subset_masks_np(N, order)
    return m[:, None] | m[None, :]


def or_index(N: int, order: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Matrix of ``mask(S) | mask(T)`` over pairs of subsets, shape (D, D).

    Used to read the Fisher matrix G[S, T] = q[mask(S) | mask(T)] - eta_S eta_T. A fresh tensor.
    """
    return torch.tensor(_or_index_np(N, order), device=device)


@lru_cache(maxsize=8)
def _seed_order_np(N: int) -> np.ndarray:
    check_N_order(N, 1)
    if N > 30:
        raise ValueError(f"the seed pattern order is only built for N <= 30, got N={N}")
    masks = np.arange(1 << N, dtype=np.int64)
    pop = np.zeros_like(masks)
    rev = np.zeros_like(masks)
    for i in range(N):
        bit = (masks >> i) & 1
        pop += bit
        rev |= bit << (N - 1 - i)
    # Lexicographic order of subsets of equal size == descending bit-reversed mask.
    return np.lexsort((-rev, pop)).astype(np.int64)


def seed_order_masks(N: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Masks of the 2^N patterns listed in the seed order, shape (2^N,).

    ``p_seed = p_mask[..., seed_order_masks(N)]`` converts mask order to seed order. A fresh tensor.
    """
    return torch.tensor(_seed_order_np(N), device=device)


def mask_to_seed(v: torch.Tensor, N: int) -> torch.Tensor:
    """Reorder a vector over patterns (last dim) from mask order to seed order."""
    return v[..., seed_order_masks(N, v.device)]


def seed_to_mask(v: torch.Tensor, N: int) -> torch.Tensor:
    """Reorder a vector over patterns (last dim) from seed order to mask order."""
    perm = seed_order_masks(N, v.device)
    out = torch.empty_like(v)
    out[..., perm] = v
    return out


def enumerate_patterns(N: int, device: torch.device | str | None = None) -> torch.Tensor:
    """All 2^N binary patterns in the seed order, shape (2^N, N), int64.

    Example:
        >>> enumerate_patterns(2).tolist()
        [[0, 0], [1, 0], [0, 1], [1, 1]]
    """
    masks = seed_order_masks(N, device)
    return (masks[:, None] >> torch.arange(N, device=masks.device)) & 1


def rebin(spikes: torch.Tensor, window: int = 1) -> torch.Tensor:
    """Re-bin spikes (T_raw, R, N) with bin width ``window``.

    A new bin is 1 when any of its ``window`` raw bins is 1; the trailing
    remainder T_raw mod window is dropped, so T = floor(T_raw / window).
    """
    window = check_positive_int(window, "window")
    if window == 1:
        return spikes
    T_raw = spikes.shape[0]
    T = T_raw // window
    if T < 1:
        raise ValueError(f"window={window} is longer than the recording (T_raw={T_raw} bins)")
    x = spikes[: T * window].reshape(T, window, *spikes.shape[1:])
    return x.amax(dim=1)


def rebin_mask(mask: torch.Tensor, window: int = 1) -> torch.Tensor:
    """Re-bin an observation mask (T_raw, R, ...) (True = observed) like :func:`rebin`.

    A re-binned bin of a trial is observed only when all of its ``window`` raw
    bins are: the "any spike" of a partly observed bin would undercount its
    spikes. The trailing remainder is dropped, as by :func:`rebin`.
    """
    window = check_positive_int(window, "window")
    if window == 1:
        return mask
    T = mask.shape[0] // window
    if T < 1:
        raise ValueError(f"window={window} is longer than the recording (T_raw={mask.shape[0]} bins)")
    return mask[: T * window].reshape(T, window, *mask.shape[1:]).all(dim=1)


def features(x: torch.Tensor, N: int, order: int = 2, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Sufficient statistics F_S(x) = prod_{i in S} x_i of patterns x (..., N) -> (..., D)."""
    N, order = check_N_order(N, order)
    if x.shape[-1] != N:
        raise ValueError(f"x must have shape (..., N) with N={N}; got {tuple(x.shape)}")
    dtype = dtype or (x.dtype if x.is_floating_point() else torch.get_default_dtype())
    xf = x.to(dtype)
    if order == 1:
        return xf
    ones = torch.ones(*xf.shape[:-1], 1, dtype=dtype, device=x.device)
    xp = torch.cat([xf, ones], dim=-1)
    idx = torch.from_numpy(_subset_index_np(N, order)).to(x.device)
    return xp[..., idx].prod(dim=-1)


def sufficient_stats(
    spikes: object,
    order: int = 2,
    window: int = 1,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    max_chunk_bytes: int = 2**28,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Empirical statistics y_t = (1/R) sum_r F(x_{t,r}), shape (T, D).

    With a ``mask`` (T, R) (True = observed, already re-binned) the sum runs over the R_t
    observed trials of bin t only, y_t = (1/R_t) sum_{r observed} F(x_{t,r}), and y_t = 0
    where R_t = 0 (a missing bin).

    Args:
        spikes: binary array (T_raw, R, N) (numpy or tensor).
        order: interaction order O.
        window: re-binning width (MODEL.md section 1).
        dtype: floating dtype of the result.
        device: device of the result (default: that of ``spikes``).
        max_chunk_bytes: memory budget of one chunk of bins.
        mask: boolean (T, R) of the re-binned bins, True = observed (see :func:`rebin_mask`).
    """
    x = check_spikes(spikes, 3)
    if device is not None:
        x = x.to(device)
    x = rebin(x, window)
    T, R, N = x.shape
    N, order = check_N_order(N, order)
    D = n_params(N, order)
    per_bin = max(1, R * D * order * torch.finfo(dtype).bits // 8)
    chunk = max(1, max_chunk_bytes // per_bin)
    out = torch.empty(T, D, dtype=dtype, device=x.device)
    if mask is None:
        for s in range(0, T, chunk):
            out[s : s + chunk] = features(x[s : s + chunk], N, order, dtype).mean(dim=1)
        return out
    if tuple(mask.shape) != (T, R) or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a boolean (T, R) = ({T}, {R}) array; got {mask.dtype} {tuple(mask.shape)}")
    m = mask.to(x.device)
    R_t = m.sum(1, keepdim=True).to(dtype)
    for s in range(0, T, chunk):
        # an unobserved trial adds an exact 0 to the sum, so y_t equals the mean over the observed trials alone
        f = features(x[s : s + chunk], N, order, dtype) * m[s : s + chunk, :, None]
        out[s : s + chunk] = f.sum(dim=1) / R_t[s : s + chunk].clamp_min(1.0)
    return out
