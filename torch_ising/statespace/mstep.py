"""M-step: re-estimate mu, Q, F and U from the smoother (MODEL.md 3.3).

With m_t = theta_{t|T}, P_t = W_{t|T} + m_t m_t^T and
P_{t,t-1} = Cov(theta_t, theta_{t-1} | all) + m_t m_{t-1}^T = W_{t|T} A_{t-1}^T + m_t m_{t-1}^T,
sums over t = 2..T:

    mu <- m_1              (for the coordinates the M-step learns; see ``mu_fixed``)
    E_t = P_t - P_{t,t-1} F^T - F P_{t,t-1}^T + F P_{t-1} F^T
          - (m_t - F m_{t-1})(U u_t)^T - (U u_t)(m_t - F m_{t-1})^T + (U u_t)(U u_t)^T
    Q  <- sum_t E_t / (T - 1)   in one of the forms of :data:`.qforms.Q_FORMS`
    F  <- [ sum_t (P_{t,t-1} - U u_t m_{t-1}^T) ] [ sum_t P_{t-1} ]^{-1}
    U  <- [ sum_t (m_t - F m_{t-1}) u_t^T ] [ sum_t u_t u_t^T ]^{-1}

updated in the order mu, Q, F, U. Note Cov(theta_t, theta_{t-1}), not its
transpose (the published library uses the transpose; MODEL.md 7).
All sums are batched over t; nothing loops over bins.
"""

from __future__ import annotations

import torch

from .qforms import Q_FORMS
from .records import SmootherResult, StateSpaceParams
from .stable import FPrior, prior_F_update

__all__ = ["m_step"]


def m_step(
    smooth: SmootherResult,
    params: StateSpaceParams,
    *,
    q_form: str = "scalar",
    N: int,
    learn_F: bool = False,
    u: torch.Tensor | None = None,
    learn_Q: bool = True,
    mu_fixed: torch.Tensor | None = None,
    state_ar_prior: FPrior | None = None,
) -> StateSpaceParams:
    """One M-step.

    Args:
        smooth: the smoother's output (B, T, ...); its ``cov`` says whether the covariances are diagonal.
        params: the current hyperparameters.
        q_form: a key of :data:`.qforms.Q_FORMS`: "scalar", "diag", "full" or "two".
        N: number of neurons (for the two-value form).
        learn_F: re-estimate F (else it stays as given).
        u: exogenous input (B, T, n_u); U is re-estimated when given.
        learn_Q: re-estimate Q (False with T = 1).
        mu_fixed: (B, D) bool, the entries of mu kept at their current value
            (mu_d <- m_{1,d} only where it is False); None updates all of mu.
        state_ar_prior: with ``learn_F``, the prior on F (:class:`.stable.FPrior`):
            F is then the maximiser of the transitions' expected complete-data log-likelihood
            plus log p(F) over ||F||_2 < 1 (:func:`.stable.prior_F_update`); None: the free
            closed-form update above.

    Returns:
        The new :class:`StateSpaceParams` (Sigma unchanged).
    """
    m, W = smooth.theta_s, smooth.sigma_s
    B, T, D = m.shape
    mu = m[:, 0].clone() if mu_fixed is None else torch.where(mu_fixed, params.mu, m[:, 0])
    if T < 2:
        return params._replace(mu=mu)
    if smooth.cov.diagonal:
        return _m_step_diag(smooth, params, mu, q_form, N, learn_Q)
    F, U = params.F, params.U
    m0, m1 = m[:, :-1], m[:, 1:]
    S00 = W[:, :-1].sum(1) + m0.transpose(1, 2) @ m0  # sum P_{t-1}
    S11 = W[:, 1:].sum(1) + m1.transpose(1, 2) @ m1  # sum P_t
    S10 = smooth.lag_one.sum(1) + m1.transpose(1, 2) @ m0  # sum P_{t,t-1}
    Ft = F.transpose(-1, -2)

    def sum_E(F: torch.Tensor, U: torch.Tensor | None) -> torch.Tensor:
        Ft = F.transpose(-1, -2)
        S = S11 - S10 @ Ft - F @ S10.transpose(-1, -2) + F @ S00 @ Ft
        if U is not None and u is not None:
            Uu = u[:, 1:] @ U.transpose(-1, -2)  # (B, T-1, D)
            r = m1 - m0 @ Ft
            C = r.transpose(1, 2) @ Uu
            S = S - C - C.transpose(-1, -2) + Uu.transpose(1, 2) @ Uu
        return S

    Q = Q_FORMS[q_form].m_step(sum_E(F, U), T - 1, N) if learn_Q else params.Q
    if learn_F:
        num = S10
        if U is not None and u is not None:
            num = num - (u[:, 1:] @ U.transpose(-1, -2)).transpose(1, 2) @ m0
        if state_ar_prior is None:
            F = torch.linalg.solve(S00, num.transpose(-1, -2)).transpose(-1, -2)
        else:
            F = prior_F_update(F, num, S00, Q, state_ar_prior)
        Ft = F.transpose(-1, -2)
    if U is not None and u is not None:
        u1 = u[:, 1:]
        r = m1 - m0 @ Ft
        Suu = u1.transpose(1, 2) @ u1
        U = torch.linalg.solve(Suu, (r.transpose(1, 2) @ u1).transpose(-1, -2)).transpose(-1, -2)
    return StateSpaceParams(mu, params.Sigma, Q, F, U)


def _m_step_diag(
    smooth: SmootherResult, params: StateSpaceParams, mu: torch.Tensor, q_form: str, N: int, learn_Q: bool
) -> StateSpaceParams:
    """Diagonal-covariance M-step (F diagonal, fixed; Q scalar, diagonal or two-value)."""
    m, W = smooth.theta_s, smooth.sigma_s
    T = m.shape[1]
    F = params.F
    m0, m1 = m[:, :-1], m[:, 1:]
    e = (W[:, 1:] + m1 * m1) - 2 * F[:, None] * (smooth.lag_one + m1 * m0) + F[:, None] ** 2 * (W[:, :-1] + m0 * m0)
    d = e.sum(1) / (T - 1)
    if not learn_Q:
        return params._replace(mu=mu)
    diag_m_step = Q_FORMS[q_form].m_step_diag
    if diag_m_step is None:
        raise ValueError(f"state_cov form {q_form!r} needs full covariances; use a scalar, vector or two values")
    Q = diag_m_step(d, N)
    return params._replace(mu=mu, Q=Q)
