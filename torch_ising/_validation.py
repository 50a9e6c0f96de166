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


def check_orders(orders: Sequence[Any], N: int) -> tuple[int, ...]:
    """Validate a list of interaction orders to compare: integers in 1..N, at least one, none repeated.

    Raises:
        ValueError: naming the offending entries.
    """
    orders = tuple(orders)
    for o in orders:
        if isinstance(o, bool) or not isinstance(o, (int, np.integer)):
            raise ValueError(f"orders must hold integers (interaction orders 1..N); got {o!r} in {orders}")
    orders = tuple(int(o) for o in orders)
    if not orders:
        raise ValueError("orders must hold at least one interaction order")
    if len(set(orders)) != len(orders):
        raise ValueError(f"orders must not repeat; got {orders}")
    bad = [o for o in orders if not 1 <= o <= N]
    if bad:
        raise ValueError(f"orders must lie in 1..N = 1..{N}; got {bad} in {orders}")
    return orders


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
    name: str = "input",
) -> torch.Tensor:
    """Convert an array-like (numpy array, list, tensor) to a tensor.

    Raises:
        ValueError: naming ``name`` for None, a ragged or non-numeric array, or a meta tensor.
    """
    if isinstance(x, torch.Tensor):
        if x.is_meta:
            raise ValueError(f"{name} is a meta tensor (shape only, no data); pass a tensor on 'cpu' or 'cuda'")
        return x.to(dtype=dtype or x.dtype, device=device or x.device)
    if x is None:
        raise ValueError(f"{name} is None; expected a numeric array (numpy array, tensor or nested list)")
    try:
        arr = np.asarray(x)
    except ValueError as err:  # a ragged nested list
        raise ValueError(f"{name} could not be read as a numeric array (a ragged nested list?): {err}") from None
    if arr.dtype.kind not in "biufc":
        raise ValueError(
            f"{name} must be a numeric array (bool, integer or float); got numpy dtype {arr.dtype} "
            f"(kind {arr.dtype.kind!r}) from {type(x).__name__}"
        )
    t = torch.from_numpy(np.ascontiguousarray(arr) if arr.ndim else arr.copy())
    if dtype is None and t.is_floating_point():
        dtype = torch.get_default_dtype() if t.dtype != torch.float64 else torch.float64
    return t.to(dtype=dtype or t.dtype, device=device)


def as_theta(theta: Any, name: str = "theta") -> torch.Tensor:
    """Natural parameters as a tensor: a tensor as it is; a numpy array or list converted,
    integers to float64 (the package's default precision)."""
    t = as_tensor(theta, name=name)
    if t.is_complex():
        raise ValueError(f"{name} must be real; got dtype {t.dtype}")
    return t if t.is_floating_point() else t.to(torch.float64)


def check_finite(t: torch.Tensor, name: str) -> torch.Tensor:
    """Refuse a floating tensor holding NaN or infinite values, naming the argument."""
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        n = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} contains NaN or infinite values ({n} of {t.numel()} entries)")
    return t


def check_real(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = True,
    hint: str = "",
) -> float:
    """Check that ``value`` is a finite real number in (low, high] (or [low, high] with ``low_open=False``).

    Returns:
        The value as a float.

    Raises:
        ValueError: naming ``name`` for a non-number, NaN, infinity or a value out of range.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex():
            value = value.item()
        else:
            raise ValueError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}")
    if low is not None and (v <= low if low_open else v < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {v:g}{hint}")
    if high is not None and v > high:
        raise ValueError(f"{name} must be <= {high:g}, got {v:g}{hint}")
    return v


#: the largest mode-search tolerance (max |grad| / R, a rate error) accepted: beyond it the search stops at its start
NEWTON_TOL_MAX = 1e-2


def check_fit_options(max_iter: Any, tol: Any, newton_tol: Any) -> tuple[int, float, float]:
    """Validate the EM iteration budget and the two tolerances of :func:`torch_ising.fit`.

    Returns:
        (max_iter, tol, newton_tol) as int, float, float.

    Raises:
        ValueError: naming the argument for a non-integer or non-positive ``max_iter``, or a tolerance
            that is not a finite number in [0, 1] (``tol``; 0 runs all ``max_iter`` iterations) or (0, 1e-2]
            (``newton_tol``).
    """
    max_iter = check_positive_int(max_iter, "max_iter")
    tol = check_real(
        tol, "tol", low=0.0, high=1.0, low_open=False, hint=" (the EM fixed-point tolerance; the default is 1e-5)"
    )
    newton_tol = check_real(
        newton_tol,
        "newton_tol",
        low=0.0,
        high=NEWTON_TOL_MAX,
        hint=" (max |grad| / R of the mode searches, an error in the firing rates; the default is 1e-8)",
    )
    return max_iter, tol, newton_tol


def check_binary(x: torch.Tensor, name: str) -> torch.Tensor:
    """Refuse values other than 0 and 1 (NaN included), naming the argument."""
    if x.dtype == torch.bool:
        return x
    if not bool(((x == 0) | (x == 1)).all()):
        bad = x[(x != 0) & (x != 1)].flatten()[:3].tolist()
        raise ValueError(f"{name} must be binary (0 or 1); found values such as {bad}")
    return x


def check_covariance(sigma: torch.Tensor, name: str, *, diagonal: bool = False) -> torch.Tensor:
    """Refuse a covariance (or a batch of them) that is not finite, symmetric and positive semi-definite.

    Args:
        sigma: (..., D, D) matrices, or (..., D) variances when ``diagonal``.
        name: the argument name for error messages.
        diagonal: whether ``sigma`` holds variances only.
    """
    check_finite(sigma, name)
    if diagonal:
        if bool((sigma < 0).any()):
            raise ValueError(f"{name} holds negative variances (min {float(sigma.min()):.3g}); a variance is >= 0")
        return sigma
    if sigma.ndim < 2 or sigma.shape[-1] != sigma.shape[-2]:
        raise ValueError(f"{name} must be square covariance matrices (..., D, D); got shape {tuple(sigma.shape)}")
    scale = sigma.abs().amax().clamp_min(1e-300)
    if not bool(torch.allclose(sigma, sigma.mT, rtol=1e-8, atol=1e-10 * float(scale))):
        raise ValueError(f"{name} must be symmetric (a covariance matrix); it differs from its transpose")
    lam = torch.linalg.eigvalsh(sigma)
    if bool((lam < -1e-8 * scale).any()):
        raise ValueError(
            f"{name} must be positive semi-definite (a covariance matrix); smallest eigenvalue {float(lam.min()):.3g}"
        )
    return sigma


def check_probabilities(p: torch.Tensor, name: str, atol: float = 1e-6) -> torch.Tensor:
    """Refuse a distribution over the last dimension that is negative, non-finite or does not sum to 1."""
    check_finite(p, name)
    if bool((p < 0).any()):
        raise ValueError(f"{name} must be non-negative probabilities; min {float(p.min()):.3g}")
    total = p.sum(-1)
    if not bool(((total - 1).abs() <= atol).all()):
        worst = float(total.flatten()[(total - 1).abs().argmax()])
        raise ValueError(f"{name} must sum to 1 over its last dimension; a row sums to {worst:.6g}")
    return p


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
    t = as_tensor(spikes, name=name)
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


def check_mask(mask: Any, shape: tuple[int, int, int], batched: bool, name: str = "mask") -> torch.Tensor:
    """Validate a boolean observation mask and return it as a (B, T_raw, R) bool tensor.

    Args:
        mask: boolean array, True = observed: (T_raw, R), or (B, T_raw, R) for batched spikes
            ((T_raw, R) is then shared by every data set).
        shape: (B, T_raw, R) of the spikes.
        batched: whether the spikes carry a leading B.
        name: the argument name for error messages.

    Raises:
        ValueError: one line naming ``name``, for a non-boolean dtype, a wrong shape, or a data set
            with no observed entry.
    """
    B, T_raw, R = shape
    if isinstance(mask, np.ndarray):
        if mask.dtype != np.bool_:
            raise ValueError(f"{name} must be boolean (True = observed); got dtype {mask.dtype}")
        m = torch.from_numpy(np.ascontiguousarray(mask))
    elif isinstance(mask, torch.Tensor):
        m = mask
    else:
        m = torch.as_tensor(np.asarray(mask))
    if m.dtype != torch.bool:
        raise ValueError(f"{name} must be boolean (True = observed); got dtype {m.dtype}")
    want = f"(T_raw, R) = ({T_raw}, {R})" + (f" or (B, T_raw, R) = ({B}, {T_raw}, {R})" if batched else "")
    if m.ndim == 2 and tuple(m.shape) == (T_raw, R):
        m = m.expand(B, T_raw, R)
    elif not (batched and m.ndim == 3 and tuple(m.shape) == (B, T_raw, R)):
        raise ValueError(f"{name} must have shape {want} like spikes; got {tuple(m.shape)}")
    if not bool(m.flatten(1).any(-1).all()):
        raise ValueError(f"{name} marks no entry as observed (in at least one data set); nothing to fit")
    return m
