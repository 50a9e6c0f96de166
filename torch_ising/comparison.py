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

import numpy as np
import torch

from ._validation import as_tensor, check_positive_int, check_spikes
from .statespace.qforms import Q_FORMS

__all__ = [
    "Q_PARAMETERS",
    "n_hyperparameters",
    "aic",
    "bic",
    "OrderComparison",
    "compare_orders",
    "likelihood_gain",
]


def _q_count(q_form: str, D: int) -> int:
    return Q_PARAMETERS[q_form](D)


#: Number of free parameters of each state-noise form (:data:`torch_ising.statespace.Q_FORMS`), as a
#: function of D; "none" for a fit without state noise.
Q_PARAMETERS = {**{name: form.n_params for name, form in Q_FORMS.items()}, "none": lambda D: 0}


def n_hyperparameters(
    D: int,
    q_form: str = "scalar",
    *,
    learn_mu: bool = True,
    learn_Q: bool = True,
    learn_F: bool = False,
    n_u: int = 0,
) -> int:
    """Number k of free hyperparameters of a state-space fit (the 2012 paper's count).

        k = D [mu] + |Q| [its form] + D^2 [F, when learned] + D n_u [U, when there is an input]

    Args:
        D: number of natural parameters.
        q_form: ``"scalar"``, ``"diag"``, ``"full"``, ``"two"`` or ``"none"`` (no state noise).
        learn_mu: whether the prior mean mu = theta_o is re-estimated (it is by default).
        learn_Q: whether Q is re-estimated.
        learn_F: whether F is re-estimated.
        n_u: number of input channels (U is D x n_u, learned).

    Raises:
        ValueError: for an unknown ``q_form`` or a negative ``n_u``.
    """
    D = check_positive_int(D, "D")
    if q_form not in Q_PARAMETERS:
        raise ValueError(f"q_form must be one of {', '.join(Q_PARAMETERS)}; got {q_form!r}")
    if isinstance(n_u, bool) or not isinstance(n_u, int) or n_u < 0:
        raise ValueError(f"n_u must be an integer >= 0; got {n_u!r}")
    k = D if learn_mu else 0
    k += _q_count(q_form, D) if learn_Q else 0
    k += D * D if learn_F else 0
    k += D * n_u
    return k


def _is_identity(F: torch.Tensor) -> bool:
    eye = torch.eye(F.shape[-1], dtype=F.dtype, device=F.device)
    return bool((F == eye).all()) if F.ndim >= 2 and F.shape[-1] == F.shape[-2] else bool((F == 1).all())


def _count_for(result: Any) -> int:
    """k for a :class:`~torch_ising.StateSpaceResult`, read from its settings (its ``n_hyperparameters``).

    The one count is :func:`n_hyperparameters`; this reads its arguments off a
    result. Uses ``result.q_form`` (default ``"scalar"``) and ``result.U`` (input gain).
    Whether Q and F were learned is read from ``result.learn_Q`` and
    ``result.learn_F`` when the result records them; otherwise Q counts when
    T > 1 (a single bin has no state noise to learn) and F counts when it
    differs from the identity (F = I is held fixed unless ``state_ar`` is given).

    Args:
        result: a :class:`~torch_ising.StateSpaceResult`, or any record with its ``D``,
            ``T``, ``F`` and (optionally) ``q_form``, ``U``, ``learn_mu``, ``learn_Q``, ``learn_F``.

    Returns:
        k, the number of free hyperparameters.
    """
    D = int(result.D)
    T = int(result.T)
    q_form = str(getattr(result, "q_form", None) or "scalar")
    learn_Q = getattr(result, "learn_Q", None)
    if learn_Q is None:
        learn_Q = T > 1
    learn_F = getattr(result, "learn_F", None)
    if learn_F is None:
        learn_F = T > 1 and not _is_identity(torch.as_tensor(result.F))
    U = getattr(result, "U", None)
    n_u = 0 if U is None else int(torch.as_tensor(U).shape[-1])
    learn_mu = bool(getattr(result, "learn_mu", True))
    return n_hyperparameters(D, q_form, learn_mu=learn_mu, learn_Q=bool(learn_Q), learn_F=bool(learn_F), n_u=n_u)


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"k (the number of free hyperparameters) must be an integer >= 0; got {k!r}")
    return k


def aic(mll: Any, k: int) -> torch.Tensor:
    """Akaike information criterion AIC = -2 l + 2 k (l: log marginal likelihood, k: free hyperparameters)."""
    k = _check_k(k)
    return -2.0 * as_tensor(mll, dtype=torch.float64) + 2.0 * k


def bic(mll: Any, k: int, n: int) -> torch.Tensor:
    """Bayesian information criterion BIC = -2 l + k log n (n: observations, T R patterns)."""
    k = _check_k(k)
    n = check_positive_int(n, "n")
    return -2.0 * as_tensor(mll, dtype=torch.float64) + k * math.log(n)


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
    from . import fit  # the state-space fit; imported here to keep this module importable on its own

    x = check_spikes(spikes, (3, 4))
    N = int(x.shape[-1])
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
