"""What :func:`torch_ising.fit` reads from its arguments: the data (binned, masked, pooled) and the prior.

:func:`prepare_data` turns the spikes (T_raw, R, N) or (B, T_raw, R, N), a mask, the
re-binning window and the stationary pooling into the statistics of every bin,

    y_t = (1 / R_t) sum_{r observed in bin t} F(x_{t,r}),   R_t = the observed trials of bin t,

and :func:`parse_state_ar` and :func:`parse_prior` read F and the prior N(theta_o, Sigma)
of theta_1 (the forms of Q are read by :func:`.qforms.parse_state_cov`).
"""

from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import torch

from .._device import resolve_device
from .._validation import as_tensor, check_finite, check_mask, check_N_order, check_positive_int, check_spikes, n_params
from ..basis import rebin, rebin_mask, sufficient_stats
from .stable import FPrior

__all__ = ["FitData", "prepare_data", "parse_state_ar", "parse_state_ar_prior", "parse_prior"]


class FitData(NamedTuple):
    """The data of a fit after re-binning, masking and pooling.

    Attributes:
        x: spikes (B, T, R, N) after re-binning (unobserved entries zeroed); (B, 1, T R, N) when pooled.
        y: statistics y_t (B, T, D) over the observed trials of each bin.
        mask: the observed (bin, trial) entries (B, T, R) after re-binning (pooled: (B, 1, T R)), or None.
        mask_raw: the mask as given, (B, T_raw, R), or None.
        R_t: (B, T) observed trials per bin, or None without a mask.
        u: exogenous input (B, T, n_u), or None.
        R: the trials per bin (R, or R T when pooled).
        R_raw: the trials of the spikes as given.
        B: data sets; T: bins; N: neurons; order: interaction order; D: parameters.
        window: the re-binning width.
        batched: whether the spikes had a data-set dimension.
        device: the device of the fit.
    """

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor | None
    mask_raw: torch.Tensor | None
    R_t: torch.Tensor | None
    u: torch.Tensor | None
    R: int
    R_raw: int
    B: int
    T: int
    N: int
    order: int
    D: int
    window: int
    batched: bool
    device: torch.device


def prepare_data(
    spikes: Any,
    order: int,
    *,
    window: int,
    mask: Any,
    stationary: bool,
    u: Any,
    device: torch.device | str | None,
    dtype: torch.dtype,
) -> FitData:
    """Check, re-bin, mask and (with ``stationary``) pool the spikes; the arguments are :func:`torch_ising.fit`'s."""
    x = check_spikes(spikes, (3, 4))
    batched = x.ndim == 4
    if not batched:
        x = x.unsqueeze(0)
    dev = resolve_device(device, x.device)
    x = x.to(dev)
    B, T_raw, R, N = x.shape
    N, order = check_N_order(N, order)
    window = check_positive_int(window, "window")
    D = n_params(N, order)
    m_raw = None if mask is None else check_mask(mask, (B, T_raw, R), batched).to(dev)
    x = torch.stack([rebin(x[b], window) for b in range(B)]) if window > 1 else x
    T = x.shape[1]
    m = None
    if m_raw is not None:
        m = torch.stack([rebin_mask(m_raw[b], window) for b in range(B)]) if window > 1 else m_raw
        if window > 1 and not bool(m.flatten(1).any(-1).all()):
            raise ValueError(
                f"mask: no re-binned bin of any trial is fully observed with window={window} (in at least one "
                "data set); a re-binned bin is observed only when all its raw bins are"
            )
        # the unobserved entries are zeroed (F(0) = 0), so they add nothing to any sum over trials
        x = torch.where(m[..., None], x, torch.zeros_like(x))
    # y_t over the R_t observed trials of each bin; 0 in a missing bin (R_t = 0), where it is multiplied by 0
    y = sufficient_stats(
        x.reshape(B * T, R, N), order, dtype=dtype, mask=None if m is None else m.reshape(B * T, R)
    ).reshape(B, T, D)
    R_eff = R
    R_t = None if m is None else m.sum(-1).to(dtype)  # (B, T) observed trials per bin, with a mask
    if stationary and T > 1:
        if R_t is None:
            y = y.mean(1, keepdim=True)
        else:
            pooled = R_t.sum(1, keepdim=True)
            y = (y * R_t[..., None]).sum(1, keepdim=True) / pooled[..., None]
            R_t = pooled
            m = m.reshape(B, 1, T * R)
        R_eff = R * T
        x = x.reshape(B, 1, T * R, N)
        T = 1

    if u is not None:
        if stationary:
            raise ValueError("u (exogenous input) cannot be combined with stationary=True")
        ut = check_finite(as_tensor(u, dtype=dtype, device=dev, name="u"), "u")
        if ut.ndim == 1:
            ut = ut[:, None]
        if ut.ndim == 2:
            ut = ut.expand(B, *ut.shape)
        if ut.ndim != 3 or ut.shape[1] != T or ut.shape[0] != B:
            raise ValueError(f"u must have shape (T, n_u) with T={T} rows (after re-binning); got {tuple(ut.shape)}")
        u_t: torch.Tensor | None = ut
    else:
        u_t = None

    return FitData(x, y, m, m_raw, R_t, u_t, R_eff, R, B, T, N, order, D, window, batched, dev)


def parse_state_ar(state_ar: Any, D: int, B: int, dtype, device, diagonal: bool = False) -> tuple[torch.Tensor, bool]:
    if diagonal:
        if state_ar is not None:
            raise ValueError("state_ar (a learned F) needs full covariances; approximate methods assume F = I")
        return torch.ones(B, D, dtype=dtype, device=device), False
    eye = torch.eye(D, dtype=dtype, device=device)
    if state_ar is None:
        return eye.expand(B, D, D).clone(), False
    F = check_finite(as_tensor(state_ar, dtype=dtype, device=device, name="state_ar"), "state_ar")
    if F.ndim == 0:
        return (F * eye).expand(B, D, D).clone(), True
    if F.shape != (D, D):
        raise ValueError(f"state_ar must be a scalar or a (D, D) = ({D}, {D}) matrix; got {tuple(F.shape)}")
    return F.expand(B, D, D).clone(), True


def parse_state_ar_prior(state_ar_prior: Any) -> FPrior | None:
    """The prior on a learned F (:mod:`.stable`): None (no prior), s (a number: FPrior(s, tau=1)), (s, tau)."""
    if state_ar_prior is None:
        return None
    vals = tuple(state_ar_prior) if isinstance(state_ar_prior, (tuple, list)) else (state_ar_prior,)
    ok = 1 <= len(vals) <= 2 and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in vals)
    if not ok or not all(0 < float(v) < float("inf") for v in vals):
        raise ValueError(
            "state_ar_prior must be None, a positive scale s, or (s, tau) with s, tau > 0 and finite; "
            f"got {state_ar_prior!r}"
        )
    return FPrior(*(float(v) for v in vals))


def parse_prior(
    theta_o: Any, sigma_o: Any, D: int, B: int, dtype, device, diagonal: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    mu = check_finite(as_tensor(theta_o, dtype=dtype, device=device, name="theta_o"), "theta_o")
    if mu.ndim == 0:
        mu = mu.expand(D)
    if mu.shape != (D,):
        raise ValueError(f"theta_o must be a scalar or have shape (D,) = ({D},); got {tuple(mu.shape)}")
    s = check_finite(as_tensor(sigma_o, dtype=dtype, device=device, name="sigma_o"), "sigma_o")
    if diagonal:
        if s.ndim == 0 and not float(s) > 0:
            raise ValueError(f"sigma_o must be > 0, got {float(s)}")
        if s.ndim > 1 or (s.ndim == 1 and s.shape != (D,)) or bool((s <= 0).any()):
            raise ValueError(f"sigma_o must be a positive scalar or (D,) vector with D={D} for approximate fits")
        return mu.expand(B, D).clone(), s.expand(D).expand(B, D).clone()
    if s.ndim == 0:
        if not float(s) > 0:
            raise ValueError(f"sigma_o must be > 0, got {float(s)}")
        S = s * torch.eye(D, dtype=dtype, device=device)
    elif s.shape == (D,):
        if bool((s <= 0).any()):
            raise ValueError("sigma_o entries must be > 0")
        S = torch.diag_embed(s)
    elif s.shape == (D, D):
        if torch.linalg.cholesky_ex(s).info != 0:
            raise ValueError("sigma_o must be symmetric positive definite")
        S = s
    else:
        raise ValueError(f"sigma_o must be a scalar, (D,) or (D, D) with D={D}; got {tuple(s.shape)}")
    return mu.expand(B, D).clone(), S.expand(B, D, D).clone()
