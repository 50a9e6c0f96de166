"""Model comparison: AIC, BIC, the order comparison of the 2012 paper, and the likelihood gain.

With l the Laplace log marginal likelihood of a fit (MODEL.md 3.4) and k its
number of free hyperparameters (Shimazaki et al. 2012 count the parameters
that EM optimises, not the latent theta_t):

    AIC = -2 l + 2 k
    BIC = -2 l + k log(n),   n = sum_t R_t (the number of observed patterns; T R without a mask)

For the default model k = D (the prior mean mu = theta_o) + the Q
parameters (1 scalar, D diagonal, D (D + 1) / 2 full, 2 for the two-value
form, 0 without state noise) + D^2 when F is learned + D n_u for the input
gain U. The lower the criterion, the better the model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

from ._validation import check_orders, check_spikes
from .statespace import fit
from .statespace.criteria import Q_PARAMETERS, aic, bic, n_hyperparameters

__all__ = [
    "Q_PARAMETERS",
    "n_hyperparameters",
    "aic",
    "bic",
    "OrderComparison",
    "compare_orders",
    "likelihood_gain",
]


class OrderComparison(NamedTuple):
    """Fits of several interaction orders to the same data, tabulated.

    With B data sets fitted in one batch, mll, aic and bic have shape (K, B);
    otherwise (K,).

    Attributes:
        orders: the orders O, (K,).
        mll: log marginal likelihood l of each fit.
        k: free hyperparameters of each fit, (K,).
        aic: -2 l + 2 k.
        bic: -2 l + k log(n_obs).
        n_obs: sum_t R_t, the number of observed patterns (T R without a mask; a (B,) tensor for a masked batch).
        results: the :class:`~torch_ising.StateSpaceResult` of each order.
    """

    orders: tuple[int, ...]
    mll: torch.Tensor
    k: tuple[int, ...]
    aic: torch.Tensor
    bic: torch.Tensor
    n_obs: int | torch.Tensor
    results: tuple[Any, ...]

    @property
    def best_aic(self) -> int | torch.Tensor:
        """The order with the lowest AIC (a tensor (B,) for a batch)."""
        return self._best(self.aic)

    @property
    def best_bic(self) -> int | torch.Tensor:
        """The order with the lowest BIC (a tensor (B,) for a batch)."""
        return self._best(self.bic)

    def _best(self, crit: torch.Tensor) -> int | torch.Tensor:
        orders = torch.tensor(self.orders, device=crit.device)
        best = orders[crit.argmin(dim=0)]
        return int(best) if best.ndim == 0 else best

    def table(self) -> str:
        """A plain-text table: order, k, mll, AIC, BIC (the first data set of a batch)."""
        rows = [f"{'order':>5} {'k':>5} {'mll':>14} {'AIC':>14} {'BIC':>14}"]
        for i, o in enumerate(self.orders):
            m, a, b = (float(x[i].reshape(-1)[0]) for x in (self.mll, self.aic, self.bic))
            rows.append(f"{o:>5d} {self.k[i]:>5d} {m:>14.4f} {a:>14.4f} {b:>14.4f}")
        return "\n".join(rows)


def compare_orders(spikes: Any, orders: Sequence[int] = (1, 2, 3), **fit_kwargs: Any) -> OrderComparison:
    """Fit each interaction order to the same spikes with :func:`torch_ising.fit` and tabulate l, AIC and BIC.

    This is the order comparison of Shimazaki et al. (2012): the order with the
    lowest AIC = -2 l + 2 k is selected.

    Args:
        spikes: binary spikes (T_raw, R, N), or (B, T_raw, R, N) for B data sets fitted in one batch.
        orders: the orders to fit, each in 1..N.
        **fit_kwargs: passed to :func:`torch_ising.fit` (``progress`` defaults to False).

    Returns:
        An :class:`OrderComparison`.

    Raises:
        ValueError: for malformed spikes, an empty or repeated ``orders`` or an order outside 1..N.
    """

    x = check_spikes(spikes, (3, 4))
    N = int(x.shape[-1])
    orders = check_orders(orders, N)
    fit_kwargs.setdefault("progress", False)
    results, mlls, ks = [], [], []
    for o in orders:
        res = fit(spikes, order=o, **fit_kwargs)
        results.append(res)
        mlls.append(torch.as_tensor(res.mll, dtype=torch.float64).detach().cpu())
        ks.append(res.n_hyperparameters)
    mll = torch.stack(mlls)
    n_obs = results[0].n_observations  # sum_t R_t (T R without a mask); (B,) for a masked batch
    kt = torch.tensor(ks, dtype=torch.float64).reshape(-1, *([1] * (mll.ndim - 1)))
    log_n = math.log(n_obs) if isinstance(n_obs, int) else torch.log(n_obs.to(torch.float64))
    return OrderComparison(
        orders=orders,
        mll=mll,
        k=tuple(ks),
        aic=-2.0 * mll + 2.0 * kt,
        bic=-2.0 * mll + kt * log_n,
        n_obs=n_obs,
        results=tuple(results),
    )


def likelihood_gain(theta: Any, N: int, order: int, y: Any, R: Any) -> torch.Tensor:
    """Per-bin log-likelihood gain of the fitted over the rate-matched independent model, llk2 - llk1.

        llk2 - llk1 = R [(y . theta - psi) - (y[:N] . theta1 - psi1)],  theta1 = logit(eta[:N])

    Args:
        theta: natural parameters (..., D).
        N: number of neurons.
        order: interaction order of ``theta``.
        y: sufficient statistics (..., D).
        R: number of trials.

    Returns:
        The gain, shape (...); 0 for an order-1 model.
    """
    from .thermodynamics import thermodynamics

    if y is None or R is None:
        raise ValueError("likelihood_gain needs the data: y (sufficient statistics) and R (trials)")
    return thermodynamics(theta, N, order, y=y, R=R).gain
