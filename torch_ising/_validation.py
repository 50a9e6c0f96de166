"""Input validation shared by the whole package.

Every check raises :class:`ValueError` naming the offending argument and what
was expected, so that a researcher sees the fix in the message itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import comb
from typing import Any

import numpy as np
import torch

#: what the public functions accept for theta, spikes and the like
ArrayLike = torch.Tensor | np.ndarray | Sequence[Any]


def check_N_order(N: Any, order: Any) -> tuple[int, int]:
    """Validate the number of neurons N and the interaction order O.

    Raises:
        ValueError: if N < 1, O < 1 or O > N, or either is not an integer.
    """
    if isinstance(N, bool) or not isinstance(N, (int, np.integer)):
        raise ValueError(f"N must be a positive integer, got {N!r}")
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)):
        raise ValueError(f"order must be a positive integer, got {order!r}")
    N, order = int(N), int(order)
    if N < 1:
        raise ValueError(f"N must be >= 1, got N={N}")
    if order < 1:
        raise ValueError(f"order must be >= 1, got order={order}")
    if order > N:
        raise ValueError(f"order must be <= N, got order={order} with N={N}")
    return N, order


def n_params(N: int, order: int) -> int:
    """D = sum_{k=1..O} C(N, k)."""
    return sum(comb(N, k) for k in range(1, order + 1))


def check_theta(theta: torch.Tensor, N: int, order: int, name: str = "theta", check_finite: bool = True) -> None:
    """Check that the last dimension of ``theta`` is D(N, order) (and that it is finite)."""
    D = n_params(N, order)
    if theta.ndim < 1 or theta.shape[-1] != D:
        raise ValueError(
            f"{name} must have shape (..., D) with D={D} for N={N}, order={order}; got shape {tuple(theta.shape)}"
        )
    if check_finite and theta.is_floating_point() and not bool(torch.isfinite(theta).all()):
        raise ValueError(f"{name} contains NaN or infinite values")


def check_positive_int(value: Any, name: str) -> int:
    """Check ``value`` is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def as_tensor(
    x: Any,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Convert an array-like (numpy array, list, tensor) to a tensor."""
    if isinstance(x, torch.Tensor):
        return x.to(dtype=dtype or x.dtype, device=device or x.device)
    arr = np.asarray(x)
    t = torch.from_numpy(np.ascontiguousarray(arr) if arr.ndim else arr.copy())
    if dtype is None and t.is_floating_point():
        dtype = torch.get_default_dtype() if t.dtype != torch.float64 else torch.float64
    return t.to(dtype=dtype or t.dtype, device=device)


def as_theta(theta: Any) -> torch.Tensor:
    """Natural parameters as a tensor: a tensor as it is; a numpy array or list converted,
    integers to float64 (the package's default precision)."""
    t = as_tensor(theta)
    return t if t.is_floating_point() else t.to(torch.float64)


def check_spikes(spikes: Any, ndim: int | tuple[int, ...] = 3, name: str = "spikes") -> torch.Tensor:
    """Validate binary spike data and return it as a tensor (original dtype kept).

    Args:
        spikes: array-like of 0/1 values.
        ndim: the allowed number(s) of dimensions.
        name: the argument name for error messages.

    Raises:
        ValueError: on NaN, values other than 0 and 1, or the wrong number of dimensions.
    """
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    t = as_tensor(spikes)
    shapes = {4: "(B, T, R, N) for a batch of B data sets", 3: "(T, R, N)", 2: "(R, N)", 1: "(N,)"}
    if t.ndim not in allowed:
        want = " or ".join(shapes.get(k, f"{k}-D") for k in allowed)
        hint = ""
        if t.ndim == 2 and 3 in allowed:
            hint = " A single bin of R trials x N neurons is spikes[None] (T = 1)."
        raise ValueError(f"{name} must have shape {want}; got {t.ndim}-D shape {tuple(t.shape)}.{hint}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(t.shape)}")
    if t.is_floating_point() and bool(torch.isnan(t).any()):
        raise ValueError(f"{name} contains NaN; spikes must be binary (0 or 1)")
    if t.dtype == torch.bool:
        return t
    if not bool(((t == 0) | (t == 1)).all()):
        bad = t[(t != 0) & (t != 1)].flatten()[:3].tolist()
        raise ValueError(
            f"{name} must be binary (0 or 1); found values such as {bad}. Binarise counts first, e.g. (counts > 0)."
        )
    return t
