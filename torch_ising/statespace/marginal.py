"""The Laplace log marginal likelihood (MODEL.md 3.4; eq. 45 of the 2012 paper).

    l = sum_t { log p(y_t | theta_{t|t})
                - 1/2 (theta_{t|t} - theta_{t|t-1})^T W_{t|t-1}^{-1} (theta_{t|t} - theta_{t|t-1})
                + 1/2 log det W_{t|t} - 1/2 log det W_{t|t-1} }

with log p(y_t | theta) = R [ y_t . theta - psi(theta) ] for the exact model.
Computed for all bins in one batched call.
"""

from __future__ import annotations

import torch

from .observation import ObservationModel
from .records import FilterResult

__all__ = ["log_marginal"]


def log_marginal(obs: ObservationModel, filt: FilterResult) -> torch.Tensor:
    """Laplace log marginal likelihood l per data set, shape (B,), with the covariances of structure ``filt.cov``."""
    marginal_ll = obs.marginal_log_lik
    with torch.no_grad():
        ll = marginal_ll(filt.theta_f) if marginal_ll is not None else obs.log_lik_all(filt.theta_f)
        diff = filt.theta_f - filt.theta_p
        cov = filt.cov
        quad, logdet_p = cov.quad_logdet(filt.sigma_p, diff)
        logdet_f = cov.logdet(filt.sigma_f)
        return (ll - 0.5 * quad + 0.5 * logdet_f - 0.5 * logdet_p).sum(-1)
