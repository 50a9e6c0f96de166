"""The published ``ssll.run`` on torch_ising: one call, the seed's container, numpy in and out.

:func:`run` keeps the published signature and defaults and calls
:func:`torch_ising.fit` with ``stop="ssll"``, the published EM loop and stopping
rule (MODEL.md 3.5): l is computed once from the initial state, then E-step,
M-step and l are repeated until (l_prev - l) / l_prev < 1e-4 or ``max_iter``
iterations. It returns an :class:`EMData` container with the published
attribute names, as numpy arrays.

Notes on the published keyword arguments:

* ``map_function="cg"`` (the published default) runs the published
  conjugate-gradient MAP search (:mod:`torch_ising.optim.conjugate_gradient`): it stops
  at max |grad| / R <= 1e-4, so its modes are inexact, exactly as in the published
  runs; with it the parity cases' default runs are reproduced to about 1e-12
  (tests/compat/test_ssll.py). ``"nr"`` and ``"bf"`` use torch_ising's damped
  Newton to max |grad| / R < 1e-8 (the exact modes that the published Newton and
  BFGS searches approach to 1e-4).
* ``param_est="exact"`` is the exact likelihood; ``param_est="pseudo"`` maps to
  ``method="pseudo"`` (the pseudo-likelihood). Its mode search is calibrated to
  the Fisher covariances (:mod:`torch_ising.approx.pseudo`), which the published
  library does not do; the calibration keeps EM from reading the
  pseudo-likelihood's double counting of couplings as state noise.
* ``param_est_eta`` maps "mf" to "tap", "bethe_BP" to "bethe_bp", "bethe_CCCP"
  to "bethe_cccp" and "bethe_hybrid" to "bethe_hybrid"; it is used only with
  ``param_est="pseudo"``. With ``param_est="exact"`` eta and l are exact and
  ``param_est_eta`` is ignored.
* A learned F (``state_ar`` given) follows MODEL.md 3.3; the published library
  uses the transposed lag-one covariance there (MODEL.md 7), so its F differs.
* A two-value ``state_cov=[q1, q2]`` is learned as two scalars (MODEL.md 3),
  where the published library learns a full diagonal.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..statespace import StateSpaceResult, fit
from . import transforms

__all__ = ["run", "EMData", "MAP_FUNCTIONS", "PARAM_EST", "PARAM_EST_ETA"]

#: Published MAP optimisers -> the filter's ``map_method``: "cg" is the published conjugate
#: gradient; "nr" and "bf" are served by torch_ising's damped Newton (exact modes).
MAP_FUNCTIONS = {"cg": "cg", "nr": "newton", "bf": "newton"}

#: Published ``param_est`` -> torch_ising ``method``.
PARAM_EST = {"exact": "exact", "pseudo": "pseudo"}

#: Published ``param_est_eta`` -> torch_ising ``eta_method`` (used with ``param_est="pseudo"``).
PARAM_EST_ETA = {
    "exact": "exact",
    "mf": "tap",
    "bethe_BP": "bethe_bp",
    "bethe_CCCP": "bethe_cccp",
    "bethe_hybrid": "bethe_hybrid",
}


def _np(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return x


class EMData:
    """The published container of a fit, filled from a :class:`torch_ising.StateSpaceResult`.

    All arrays are numpy. ``energies.get_energies(emd)`` attaches the
    thermodynamic quantities (S1, S2, S_ratio, dkl, llk1, llk2, U1, U2, psi, eta).

    Attributes:
        theta_s: smoothed means theta_{t|T}, (T, D).
        eta_s: smoothed expectation parameters eta(theta_{t|T}), (T, D).
        sigma_s: smoothed covariances W_{t|T}, (T, D, D) ((T, D) for diagonal approximate fits).
        theta_f: filtered means theta_{t|t}, (T, D).
        sigma_f: filtered covariances W_{t|t}.
        mll: log marginal likelihood l (eq. 45 of the 2012 paper) after the last iteration.
        mll_list: l after every EM iteration, (iterations,).
        mllk, mllk_list: the same under the published library's older names.
        N, D, T, R, order, window: sizes and settings (T after re-binning;
            R trials per bin, T_raw R for a stationary fit).
        y: empirical statistics per bin, (T, D).
        Q: state-noise covariance, (D, D). F: autoregressive matrix, (D, D).
        U: input gain, (D, n_u), or None without input ``u``.
        theta_o: the learned prior mean of theta_1, (D,).
        iterations: EM iterations run.
        converged: whether the stopping rule was met before ``max_iter``.
        result: the native :class:`torch_ising.StateSpaceResult` (tensors).
    """

    theta_s: np.ndarray
    eta_s: np.ndarray
    sigma_s: np.ndarray
    theta_f: np.ndarray
    sigma_f: np.ndarray
    y: np.ndarray
    Q: np.ndarray
    F: np.ndarray
    U: np.ndarray | None
    N: int
    D: int
    T: int
    R: int
    order: int
    window: int
    iterations: int

    def __init__(self, result: StateSpaceResult) -> None:
        self.result = result
        for name in ("theta_s", "eta_s", "sigma_s", "theta_f", "sigma_f", "y", "Q", "F", "U"):
            setattr(self, name, _np(getattr(result, name)))
        self.theta_o = _np(result.mu)
        self.mll = float(result.mll)
        # the published list has one l per iteration; torch_ising's opens with the first E-step's
        self.mll_list = [float(v) for v in result.mll_list[1:]] if result.iterations else [float(result.mll)]
        for name in ("N", "D", "T", "R", "order", "window", "iterations"):
            setattr(self, name, int(getattr(result, name)))
        self.converged = bool(result.converged)

    @property
    def mllk(self) -> float:
        """Alias of :attr:`mll` (the published library's older name)."""
        return self.mll

    @property
    def mllk_list(self) -> list[float]:
        """Alias of :attr:`mll_list`."""
        return self.mll_list

    def __repr__(self) -> str:
        return (
            f"EMData(N={self.N}, order={self.order}, D={self.D}, T={self.T}, R={self.R}, "
            f"iterations={self.iterations}, mll={self.mll:.6f})"
        )


def _state_cov(state_cov: Any) -> Any:
    """The published forms of ``state_cov``: a one-element list is a scalar, [q1, q2] two values."""
    if isinstance(state_cov, (list, tuple)):
        if len(state_cov) == 0:
            raise ValueError("state_cov as a list must hold one value q or two values [q1, q2]; got []")
        if len(state_cov) == 1:
            return float(state_cov[0])
        return np.asarray(state_cov, dtype=np.float64)
    return state_cov


def run(
    spikes: Any,
    order: int = 2,
    window: int = 1,
    map_function: str = "cg",
    state_cov: Any = 0.01,
    state_ar: Any = None,
    max_iter: int = 100,
    param_est: str = "exact",
    param_est_eta: str = "exact",
    theta_o: Any = 0,
    sigma_o: Any = 0.1,
    mstep: bool = True,
    EM_Info: bool = True,  # the published name
    stationary: bool = False,
    u: Any = None,
) -> EMData:
    """Fit the state-space Ising model with the published EM loop and stopping rule.

    The model (MODEL.md 3): theta_1 ~ Normal(theta_o, sigma_o I),
    theta_t = F theta_{t-1} + U u_t + xi_t with xi_t ~ Normal(0, Q), and
    log p(y_t | theta_t) = R [y_t . theta_t - psi(theta_t)]. EM stops when
    (l_prev - l) / l_prev < 1e-4 or after ``max_iter`` iterations.

    Args:
        spikes: binary array (T_raw, R, N) (time, trials, cells).
        order: interaction order (1 independent, 2 pairwise, 3 triplets, ...).
        window: bin width for re-binning the spikes (T = floor(T_raw / window)).
        map_function: the published MAP optimiser: "cg" (default, the
            published conjugate gradient, reproducing its inexact modes), or "nr"
            or "bf" (both served by damped Newton to exact modes).
        state_cov: initial Q: a scalar q (Q = q I), a length-D vector
            (diagonal), a (D, D) matrix (full), [q] or [q1, q2] (first-order and
            higher-order values). Re-estimated in the M-step (for T > 1).
        state_ar: None (F = I, fixed) or an initial F, (D, D), then learned.
        max_iter: most EM iterations.
        param_est: "exact" or "pseudo" (pseudo-likelihood).
        param_est_eta: "exact", "mf", "bethe_BP", "bethe_CCCP" or
            "bethe_hybrid" (used with ``param_est="pseudo"``).
        theta_o: prior mean of theta_1 (scalar or (D,)); learned.
        sigma_o: prior covariance of theta_1 (scalar, times I); fixed.
        mstep: False keeps the hyperparameters at their initial values.
        EM_Info: show a progress bar and print the final log marginal likelihood.
        stationary: pool all T x R observations into one bin (T = 1) and fit
            one MAP estimate.
        u: exogenous input (T, n_u); its gain U is learned.

    Returns:
        :class:`EMData` with theta_s, eta_s, sigma_s, mll, mll_list, N, D, T,
        y, R, Q, F, U, iterations and more, as numpy arrays.

    Raises:
        ValueError: for spikes that are not (T, R, N), an unknown map_function,
            param_est or param_est_eta, and for any input that :func:`torch_ising.fit` rejects.
    """
    if np.ndim(spikes) != 3:
        raise ValueError(f"spikes must have shape (T, R, N) (time, trials, cells); got shape {np.shape(spikes)}")
    if map_function not in MAP_FUNCTIONS:
        raise ValueError(f"map_function must be one of {tuple(MAP_FUNCTIONS)}; got {map_function!r}")
    if param_est not in PARAM_EST:
        raise ValueError(f"param_est must be one of {tuple(PARAM_EST)}; got {param_est!r}")
    if param_est_eta not in PARAM_EST_ETA:
        raise ValueError(f"param_est_eta must be one of {tuple(PARAM_EST_ETA)}; got {param_est_eta!r}")
    method = PARAM_EST[param_est]
    eta_method = PARAM_EST_ETA[param_est_eta] if method != "exact" else None
    result = fit(
        spikes,
        order,
        window=window,
        state_cov=_state_cov(state_cov),
        state_ar=state_ar,
        u=u,
        theta_o=theta_o,
        sigma_o=sigma_o,
        max_iter=max_iter,
        stop="ssll",
        stationary=stationary,
        mstep=mstep,
        progress=bool(EM_Info),
        method=method,
        eta_method=eta_method,
        # the published CG needs full covariances; approximate (diagonal) fits keep their own search
        map_method=MAP_FUNCTIONS[map_function] if method == "exact" else None,
    )
    # The published run leaves the transforms module initialised to the fitted model.
    transforms.initialise(result.N, result.order)
    emd = EMData(result)
    if EM_Info:
        print(f"Log marginal likelihood = {emd.mll:.6f}")
    return emd
