"""A streaming Laplace filter: one bin at a time, hyperparameters fixed (closed-loop use).

Each :meth:`OnlineFilter.step` takes the spikes of the newest bin and returns its filtered
mean and covariance (MODEL.md 3.1):

    theta_{t|t-1} = F theta_{t-1|t-1} + U u_t,   W_{t|t-1} = F W_{t-1|t-1} F^T + Q   (theta_{1|0} = mu, W_{1|0} = Sigma)
    theta_{t|t} = argmax R [ y_t . theta - psi(theta) ]
                  - 1/2 (theta - theta_{t|t-1})^T W_{t|t-1}^{-1} (theta - theta_{t|t-1})
    W_{t|t} = ( R G(theta_{t|t}) + W_{t|t-1}^{-1} )^{-1}

by the same damped Newton search as :func:`~torch_ising.statespace.laplace_filter`, so a
stream of bins gives the filter's values bin for bin.
"""

from __future__ import annotations

from typing import Any

import torch

from .._validation import as_tensor, check_N_order, n_params
from ..basis import sufficient_stats
from .covariance import DENSE
from .filter import laplace_filter, predict
from .observation import ExactIsing
from .records import StateSpaceParams

__all__ = ["OnlineFilter"]


class OnlineFilter:
    """The exact-model Laplace filter as a stream.

    Args:
        params: hyperparameters (mu, Sigma, Q, F, U), unbatched ((D,), (D, D), ...) or with a
            leading batch of size 1, e.g. ``result.params`` of a fit.
        N: number of neurons.
        order: interaction order.
        tol: Newton tolerance, max |grad| / R (as ``fit``'s ``newton_tol``).

    Example:
        >>> f = OnlineFilter(result.params, N=5, order=2)
        >>> for counts in stream:            # each (R, N) binary, the trials of one bin
        ...     theta, W = f.step(counts)
    """

    def __init__(self, params: StateSpaceParams, N: int, order: int = 2, *, tol: float = 1e-8) -> None:
        self.N, self.order = check_N_order(N, order)
        D = n_params(self.N, self.order)

        def batched(v: Any, ndim: int, name: str) -> torch.Tensor | None:
            if v is None:
                return None
            t = as_tensor(v, dtype=torch.float64)
            if t.ndim == ndim:
                t = t[None]
            if t.ndim != ndim + 1 or t.shape[0] != 1 or t.shape[1] != D:
                raise ValueError(
                    f"params.{name} must have D = {D} rows (unbatched or a batch of 1); got {tuple(t.shape)}"
                )
            return t

        mu, Sigma, Q, F, U = params
        self.params = StateSpaceParams(
            batched(mu, 1, "mu"), batched(Sigma, 2, "Sigma"), batched(Q, 2, "Q"), batched(F, 2, "F"), batched(U, 2, "U")
        )
        if self.params.Sigma.ndim != 3 or self.params.Q.ndim != 3:
            raise ValueError("OnlineFilter needs full covariances: params.Sigma and params.Q as (D, D) matrices")
        self.tol = float(tol)
        self.t = 0
        self.theta: torch.Tensor | None = None
        self.W: torch.Tensor | None = None

    def step(self, counts_t: Any, u_t: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Filter the newest bin.

        Args:
            counts_t: binary spikes of the bin, shape (R, N) (R trials).
            u_t: the exogenous input of the bin (n_u,) when the model has an input gain U.

        Returns:
            (theta_{t|t} (D,), W_{t|t} (D, D)).
        """
        x = as_tensor(counts_t)
        if x.ndim != 2 or x.shape[1] != self.N:
            raise ValueError(f"counts_t must be binary spikes of shape (R, N) with N = {self.N}; got {tuple(x.shape)}")
        if not bool(((x == 0) | (x == 1)).all()):
            raise ValueError("counts_t must be binary (0/1)")
        R = x.shape[0]
        y = sufficient_stats(x[None], self.order, dtype=torch.float64)  # (1, D)
        p = self.params
        if self.t == 0:
            tp, Wp = p.mu, p.Sigma
        else:
            u = None
            if p.U is not None:
                if u_t is None:
                    raise ValueError("u_t is required: the model has an input gain U")
                u = as_tensor(u_t, dtype=torch.float64).reshape(1, -1)
            tp, Wp = predict(self.theta, self.W, p, u, DENSE)
        obs = ExactIsing(y[:, None], R, self.N, self.order)
        with torch.no_grad():
            filt = laplace_filter(obs, StateSpaceParams(tp, Wp, p.Q, p.F, None), tol=self.tol)
        self.theta, self.W = filt.theta_f[:, 0], filt.sigma_f[:, 0]
        self.t += 1
        return self.theta[0], self.W[0]
