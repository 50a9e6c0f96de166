"""Small named records of the state-space model (MODEL.md section 3).

All tensors carry a leading batch dimension B (independent data sets).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, NamedTuple

import numpy as np
import torch

from .covariance import Covariance


class StateSpaceParams(NamedTuple):
    """Hyperparameters of the state-space model.

        theta_1 ~ Normal(mu, Sigma),  theta_t = F theta_{t-1} + U u_t + xi_t,  xi_t ~ Normal(0, Q)

    Attributes:
        mu: initial mean theta_o, shape (B, D).
        Sigma: initial covariance sigma_o I, shape (B, D, D) (or (B, D) when diagonal).
        Q: state-noise covariance, shape (B, D, D) (or (B, D) when diagonal).
        F: autoregressive matrix, shape (B, D, D) (or (B, D) when diagonal).
        U: input gain, shape (B, D, n_u), or None without input.
    """

    mu: torch.Tensor
    Sigma: torch.Tensor
    Q: torch.Tensor
    F: torch.Tensor
    U: torch.Tensor | None = None


class FilterResult(NamedTuple):
    """Output of the Laplace filter (MODEL.md 3.1).

    Attributes:
        theta_f: filtered means theta_{t|t}, shape (B, T, D).
        sigma_f: filtered covariances W_{t|t}, shape (B, T, D, D) (or (B, T, D) diagonal).
        theta_p: one-step predictions theta_{t|t-1}, shape (B, T, D).
        sigma_p: predicted covariances W_{t|t-1}, shape (B, T, D, D) (or (B, T, D)).
        newton_iterations: Newton iterations summed over bins.
        converged: whether every mode search met its tolerance.
        cov: the structure of the covariances (:data:`.covariance.DENSE` or :data:`.covariance.DIAGONAL`).
    """

    theta_f: torch.Tensor
    sigma_f: torch.Tensor
    theta_p: torch.Tensor
    sigma_p: torch.Tensor
    newton_iterations: int
    converged: bool
    cov: Covariance


class SmootherResult(NamedTuple):
    """Output of the fixed-interval smoother (MODEL.md 3.2).

    Attributes:
        theta_s: smoothed means theta_{t|T}, shape (B, T, D).
        sigma_s: smoothed covariances W_{t|T}, shape (B, T, D, D) (or (B, T, D)).
        gain: smoother gains A_t = W_{t|t} F^T W_{t+1|t}^{-1}, shape (B, T-1, D, D) (or (B, T-1, D)).
        lag_one: Cov(theta_{t+1}, theta_t | all data) = W_{t+1|T} A_t^T, shape (B, T-1, D, D) (or (B, T-1, D)).
        cov: the structure of the covariances, gains and lag-one covariances (that of the filter).
    """

    theta_s: torch.Tensor
    sigma_s: torch.Tensor
    gain: torch.Tensor
    lag_one: torch.Tensor
    cov: Covariance


class EStep(NamedTuple):
    """One E-step: filter, smoother and the marginal likelihood l (B,)."""

    filt: FilterResult
    smooth: SmootherResult
    mll: torch.Tensor


class EMOptions(NamedTuple):
    """Settings of the EM loop (see :func:`torch_ising.statespace.em.run_em`)."""

    q_form: str = "scalar"
    learn_F: bool = False
    learn_Q: bool = True
    mstep: bool = True
    stop: str = "converged"
    max_iter: int = 1000
    tol: float = 1e-5
    newton_tol: float = 1e-8
    map_method: str = "newton"
    N: int = 1
    depth: int = 5
    estep: str = "filter"
    #: (B, D) bool: entries of mu the M-step keeps fixed (statistics with no finite estimate), or None
    mu_fixed: torch.Tensor | None = None
    #: the prior on a learned F (:class:`.stable.FPrior`) for stop="converged" and "mll"; None: F free
    state_ar_prior: Any = None


class EMOutcome(NamedTuple):
    """Result of :func:`torch_ising.statespace.em.run_em`."""

    params: StateSpaceParams
    estep: EStep
    mll_list: list[list[float]]
    iterations: int
    e_steps: int
    converged: torch.Tensor
    #: why EM stopped before its rule was met, other than max_iter ("" when it was not stopped early)
    stopped: str = ""


class EMState(NamedTuple):
    """Where the EM loop stands after an iteration: enough to continue it exactly.

    A fit given this state (``fit(..., resume=state)``) takes the same further
    steps as the uninterrupted fit: the hyperparameters, the warm start of the
    mode searches and, for the accelerated scheme, the Anderson history.

    Attributes:
        iteration: EM iterations done.
        params: the hyperparameters after ``iteration`` iterations.
        theta_s: smoothed means of the last E-step (B, T, D): the next E-step's starting points.
        mll: l of the last E-step (B,) (the published rule compares against it).
        converged: per data set, whether the stopping rule already holds (B,).
        post: mean posterior variance of the last E-step (B,) (the Q = 0 boundary test), or None.
        x: the hyperparameters as the EM schemes' unconstrained vector (B, K), or None
            (the published rule and direct l use ``params``).
        g: the EM image EM(x) (B, K), or None.
        f_prev: the previous residual EM(x) - x (B, K), or None.
        g_prev: the previous EM image (B, K), or None.
        dF: Anderson residual differences (B, K, m), or None (no history yet, or plain EM).
        dG: Anderson image differences (B, K, m), or None.
        fingerprint: what the fit was run on, as JSON text (:func:`fit_fingerprint`): a hash of the data
            and the value of every setting that changes the fit; a resume with other data or settings is
            refused. None in states made before fingerprints existed (then nothing is checked).
    """

    iteration: int
    params: StateSpaceParams
    theta_s: torch.Tensor
    mll: torch.Tensor
    converged: torch.Tensor
    post: torch.Tensor | None = None
    x: torch.Tensor | None = None
    g: torch.Tensor | None = None
    f_prev: torch.Tensor | None = None
    g_prev: torch.Tensor | None = None
    dF: torch.Tensor | None = None
    dG: torch.Tensor | None = None
    fingerprint: str | None = None


def _describe(value: Any) -> Any:
    """A JSON-able description of a setting: numbers as they are, arrays (beyond 8 entries) by shape and hash."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.dtype):
        return str(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, (bool, int, float)) for v in value):
        return list(value)
    if isinstance(value, dict):
        return {str(k): _describe(v) for k, v in sorted(value.items())}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named record such as StateSpaceParams
        return {k: _describe(v) for k, v in zip(value._fields, value, strict=True)}
    a = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if a.dtype == object:
        return repr(value)
    if a.size <= 8:
        return a.astype(np.float64).tolist() if a.dtype.kind in "biuf" else a.tolist()
    digest = hashlib.sha256(np.ascontiguousarray(a.astype(np.float64) if a.dtype.kind in "biu" else a)).hexdigest()
    return f"array{tuple(a.shape)} sha256:{digest[:16]}"


def fit_fingerprint(spikes: torch.Tensor, settings: dict[str, Any]) -> str:
    """JSON text recording the data (shape and a SHA-256 of its 0/1 values) and every setting of a fit."""
    x = spikes.detach().to("cpu", torch.uint8).contiguous().numpy()
    data = f"shape {tuple(x.shape)} sha256:{hashlib.sha256(x).hexdigest()[:16]}"
    return json.dumps({"data": data, **{k: _describe(v) for k, v in settings.items()}}, sort_keys=True)


def check_fingerprint(saved: str | None, current: str) -> None:
    """Refuse to resume a state made for other data or settings, naming what differs.

    Raises:
        ValueError: listing each differing entry with the state's and this fit's values.
    """
    if saved is None:
        return
    try:
        old = json.loads(saved)
    except (TypeError, json.JSONDecodeError):
        raise ValueError("resume: the EMState's fingerprint is not valid JSON; start afresh") from None
    new = json.loads(current)
    diff = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if diff:
        parts = "; ".join(f"{k}: {old.get(k)!r} in the state, {new.get(k)!r} now" for k in diff)
        what = "other data" if "data" in diff else "other settings"
        raise ValueError(
            f"resume: the EMState was made for {what} ({parts}); resume with the same data and settings, "
            "or start afresh without resume="
        )
