"""E-step, backward pass: the fixed-interval (Rauch-Tung-Striebel) smoother (MODEL.md 3.2).

    A_t = W_{t|t} F^T W_{t+1|t}^{-1}
    theta_{t|T} = theta_{t|t} + A_t (theta_{t+1|T} - theta_{t+1|t})
    W_{t|T}     = W_{t|t} + A_t (W_{t+1|T} - W_{t+1|t}) A_t^T
    Cov(theta_{t+1}, theta_t | all data) = W_{t+1|T} A_t^T            (lag-one covariance)

The gains A_t depend only on the filter and are computed for all t in one
batched solve; the backward recursion itself is sequential in t.
"""

from __future__ import annotations

import torch

from .records import FilterResult, SmootherResult, StateSpaceParams

__all__ = ["smoother"]


def smoother(filt: FilterResult, params: StateSpaceParams) -> SmootherResult:
    """Smoothed means, covariances, gains and lag-one covariances.

    Args:
        filt: the filter's output (its ``cov`` is the structure of the covariances).
        params: the hyperparameters used by the filter (F is needed).

    Returns:
        :class:`SmootherResult`, with the filter's covariance structure.
    """
    theta_f, sigma_f, theta_p, sigma_p = filt.theta_f, filt.sigma_f, filt.theta_p, filt.sigma_p
    cov = filt.cov
    B, T, D = theta_f.shape
    if T == 1:
        empty = sigma_f[:, :0]
        return SmootherResult(theta_f.clone(), sigma_f.clone(), empty, empty, cov)
    # A_t = W_{t|t} F^T W_{t+1|t}^{-1} for all t at once
    gain = cov.smoother_gain(sigma_f[:, :-1], params.F[:, None], sigma_p[:, 1:])
    # the backward recursion on per-bin views (unbind once; no per-step indexing of the big tensors)
    m_f, W_f, m_p, W_p, A_all = (
        theta_f.unbind(1),
        sigma_f.unbind(1),
        theta_p.unbind(1),
        sigma_p.unbind(1),
        gain.unbind(1),
    )
    m_s = [None] * T
    W_s = [None] * T
    m_s[T - 1], W_s[T - 1] = m_f[T - 1], W_f[T - 1]
    for t in range(T - 2, -1, -1):
        A = A_all[t]
        dm = m_s[t + 1] - m_p[t + 1]
        dW = W_s[t + 1] - W_p[t + 1]
        m_s[t] = m_f[t] + cov.matvec(A, dm)
        W_s[t] = cov.propagate(A, dW, W_f[t])  # W_{t|t} + A_t dW A_t^T
    theta_s = torch.stack(m_s, 1)
    sigma_s = torch.stack(W_s, 1)
    lag_one = cov.matmul_t(sigma_s[:, 1:], gain)
    return SmootherResult(theta_s, sigma_s, gain, lag_one, cov)
