"""Information criteria of a state-space fit: the hyperparameter count k, AIC and BIC.

With l the Laplace log marginal likelihood of a fit (MODEL.md 3.4) and k its number of
free hyperparameters (Shimazaki et al. 2012 count the parameters that EM optimises, not
the latent theta_t):

    AIC = -2 l + 2 k
    BIC = -2 l + k log(n),   n = sum_t R_t (the number of observed patterns; T R without a mask)

They live with the state-space model, whose result reports them
(:meth:`StateSpaceResult.aic`, :meth:`StateSpaceResult.bic`); :mod:`torch_ising.comparison`
re-exports them beside the order comparison.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

from .._validation import as_tensor, check_positive_int
from .qforms import Q_FORMS

__all__ = ["Q_PARAMETERS", "n_hyperparameters", "aic", "bic"]


def _q_count(q_form: str, D: int) -> int:
    return Q_PARAMETERS[q_form](D)


class _QCounts(Mapping[str, Callable[[int], int]]):
    """A read-only view of the forms' parameter counts: it reads :data:`Q_FORMS` at each lookup,
    so a form registered later is counted too."""

    def __getitem__(self, name: str) -> Callable[[int], int]:
        return _no_noise if name == "none" else Q_FORMS[name].n_params

    def __iter__(self) -> Iterator[str]:
        yield from Q_FORMS
        yield "none"

    def __len__(self) -> int:
        return len(Q_FORMS) + 1


def _no_noise(D: int) -> int:
    return 0


#: Number of free parameters of each state-noise form (:data:`torch_ising.statespace.Q_FORMS`), as a
#: function of D; "none" for a fit without state noise.
Q_PARAMETERS: Mapping[str, Callable[[int], int]] = _QCounts()


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
