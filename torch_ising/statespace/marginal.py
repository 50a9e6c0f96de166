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
    """Laplace log marginal likelihood l per data set, shape (B,)."""
    marginal_ll = obs.marginal_log_lik
    with torch.no_grad():
        ll = marginal_ll(filt.theta_f) if marginal_ll is not None else obs.log_lik_all(filt.theta_f)
        diff = filt.theta_f - filt.theta_p
        if filt.sigma_f.ndim == 3:
            quad = (diff * diff / filt.sigma_p).sum(-1)
            logdet_f = filt.sigma_f.log().sum(-1)
            logdet_p = filt.sigma_p.log().sum(-1)
        else:
            Lp = torch.linalg.cholesky(filt.sigma_p)
            z = torch.linalg.solve_triangular(Lp, diff.unsqueeze(-1), upper=False).squeeze(-1)
            quad = (z * z).sum(-1)
            logdet_p = 2.0 * torch.diagonal(Lp, dim1=-2, dim2=-1).log().sum(-1)
            logdet_f = 2.0 * torch.diagonal(torch.linalg.cholesky(filt.sigma_f), dim1=-2, dim2=-1).log().sum(-1)
        return (ll - 0.5 * quad + 0.5 * logdet_f - 0.5 * logdet_p).sum(-1)
