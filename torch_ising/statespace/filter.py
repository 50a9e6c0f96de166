"""E-step, forward pass: the Laplace filter (MODEL.md 3.1).

Prediction:

    theta_{1|0} = mu,                         W_{1|0} = Sigma
    theta_{t|t-1} = F theta_{t-1|t-1} + U u_t, W_{t|t-1} = F W_{t-1|t-1} F^T + Q

Update: theta_{t|t} is the mode of

    L_t(theta) = log p(y_t | theta) - 1/2 (theta - theta_{t|t-1})^T W_{t|t-1}^{-1} (theta - theta_{t|t-1}),

found by damped Newton (:func:`torch_ising.optim.newton.newton_ascent`), and
W_{t|t} = (-hess L_t(theta_{t|t}))^{-1} = (R G(theta_{t|t}) + W_{t|t-1}^{-1})^{-1}.

A diagonal-covariance model whose covariance comes from its own ``precision``
(``separate_precision``) may also supply ``score_scale(theta_{t|t-1}, t)`` -> a
(B, D) in (0, 1]: the mode search then scales the score of log p(y_t | theta)
by a, i.e. uses the prior precision W_{t|t-1}^{-1} / a, so that a composite
likelihood (the pseudo-likelihood) weights the data by the information of that
precision (:class:`torch_ising.approx.pseudo.PseudoLikelihood`); W_{t|t} still
uses the unscaled W_{t|t-1}^{-1}.
The recursion is sequential in t; every step is batched over data sets (B).

An observation model may supply ``bin_posterior(t, m, P)`` -> the objective L_t itself (or None);
the exact model does (:class:`~torch_ising.statespace.posterior.IsingBinPosterior`), with the line
searches of the conjugate gradient in O(2^N) per step. Otherwise L_t is built from
``value_grad_hess``.
"""

from __future__ import annotations

import torch

from ..optim import MODE_SEARCHES
from .covariance import DENSE, Covariance, covariance_of
from .observation import ObservationModel
from .records import FilterResult, StateSpaceParams

__all__ = ["laplace_filter", "predict", "MAP_METHODS", "check_map_method"]

#: mode searches, keys of :data:`torch_ising.optim.MODE_SEARCHES`: "newton" (damped Newton to ``tol``) or
#: "cg" (the published library's conjugate gradient, stopping at max |grad| / R <= 1e-4; for reproducing
#: its numbers)
MAP_METHODS = ("newton", "cg")

#: map_method -> whether the filter's ``tol`` and ``max_newton`` are the search's stopping rule ("cg" keeps
#: the published max |grad| / R <= 1e-4 and 500 iterations)
_FILTER_STOPPING = {"newton": True, "cg": False}


def check_map_method(map_method: str, cov: Covariance) -> None:
    """Raise ValueError unless ``map_method`` is one of :data:`MAP_METHODS` and fits the covariances ``cov``."""
    if map_method not in MAP_METHODS:
        raise ValueError(f"map_method must be one of {MAP_METHODS}, got {map_method!r}")
    if map_method == "cg" and cov.diagonal:
        raise ValueError(
            "map_method='cg' (the published conjugate gradient) needs full covariances (method='exact'); "
            "approximate methods keep them diagonal"
        )


def _spd_inverse(W: torch.Tensor) -> torch.Tensor:
    """Inverse of a batch of symmetric positive-definite matrices by Cholesky (:meth:`.Dense.inverse`)."""
    return DENSE.inverse(W)


def predict(
    theta_prev: torch.Tensor,
    W_prev: torch.Tensor,
    params: StateSpaceParams,
    u_t: torch.Tensor | None,
    cov: Covariance,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One prediction step: (F theta + U u_t, F W F^T + Q), with covariances of structure ``cov``."""
    theta_p, W_p = cov.predict(theta_prev, W_prev, params.F, params.Q)
    if params.U is not None and u_t is not None:
        theta_p = theta_p + (params.U @ u_t.unsqueeze(-1)).squeeze(-1)
    return theta_p, W_p


def _predictor(params: StateSpaceParams, cov: Covariance):
    """:func:`predict` for this filter run; with F = I and an exactly symmetric Q, (theta, W + Q) directly.

    That shortcut gives the same numbers as :func:`predict` (I W I^T = W exactly, and W + Q is then
    exactly symmetric, since every W_{t|t} is), with one tensor call instead of about ten.
    """
    F, Q = params.F, params.Q
    if cov.diagonal or params.U is not None:
        return lambda theta, W, u_t: predict(theta, W, params, u_t, cov)
    eye = torch.eye(F.shape[-1], dtype=F.dtype, device=F.device)
    if not (torch.equal(F, eye.expand_as(F)) and torch.equal(Q, Q.transpose(-1, -2))):
        return lambda theta, W, u_t: predict(theta, W, params, u_t, cov)
    return lambda theta, W, u_t: (theta, W + Q)


def laplace_filter(
    obs: ObservationModel,
    params: StateSpaceParams,
    *,
    u: torch.Tensor | None = None,
    theta_init: torch.Tensor | None = None,
    tol: float = 1e-8,
    max_newton: int = 100,
    map_method: str = "newton",
) -> FilterResult:
    """Run the Laplace filter over all T bins, batched over data sets.

    Args:
        obs: the observation model (exact Ising or any differentiable likelihood).
        params: hyperparameters (mu, Sigma, Q, F, U), each with a leading B.
        u: exogenous input, shape (B, T, n_u), or None.
        theta_init: starting points of the mode searches, shape (B, T, D)
            (e.g. the previous EM iteration's smoothed means); by default each
            search starts at the prediction theta_{t|t-1}.
        tol: Newton stops when max |grad L_t| / R < tol.
        max_newton: most Newton iterations per bin.
        map_method: "newton" (default) or "cg", the published library's
            conjugate-gradient search (:mod:`torch_ising.optim.conjugate_gradient`;
            its own tolerance 1e-4 replaces ``tol``; full covariances only).

    Returns:
        :class:`FilterResult`, with the covariance structure of ``obs`` (:func:`.covariance.covariance_of`).
    """
    T = obs.T
    cov = covariance_of(obs)
    diagonal = cov.diagonal
    check_map_method(map_method, cov)
    search = MODE_SEARCHES[map_method]
    stopping = {"tol": tol, "max_iter": max_newton} if _FILTER_STOPPING[map_method] else {}
    theta_f: list[torch.Tensor] = []
    theta_p: list[torch.Tensor] = []
    sigma_f: list[torch.Tensor] = []
    sigma_p: list[torch.Tensor] = []
    iters = 0
    converged = True
    separate_precision = obs.separate_precision
    mode_search = obs.mode
    score_scale = obs.score_scale if diagonal and separate_precision else None
    R_scale = obs.R_scale
    scale = obs.R if R_scale is None else R_scale[:, None]  # the tolerance's scale, per data set with masks
    bin_posterior = None if diagonal else obs.bin_posterior
    step = _predictor(params, cov)
    for t in range(T):
        if t == 0:
            tp, Wp = params.mu, params.Sigma
        else:
            tp, Wp = step(theta_f[-1], sigma_f[-1], None if u is None else u[:, t])
        P = cov.inverse(Wp)
        a = None if score_scale is None else score_scale(tp, t)
        Pm = P if a is None else P / a  # the prior precision of the mode search

        objective = None if bin_posterior is None else bin_posterior(t, tp, Pm)
        if objective is None:

            def objective(th: torch.Tensor, t: int = t, tp: torch.Tensor = tp, P: torch.Tensor = Pm):
                v, g, H = obs.value_grad_hess(th, t)
                diff = th - tp
                Pd = cov.matvec(P, diff)
                return v - 0.5 * (diff * Pd).sum(-1), g - Pd, H - P

        x0 = tp if theta_init is None else theta_init[:, t]
        if diagonal and mode_search is not None:
            # the model's own mode search (e.g. Newton-CG with Hessian-vector products); map_method is
            # "newton" here, since check_map_method refuses "cg" with diagonal covariances
            res = mode_search(x0, t, tp, Pm, tol=tol, scale=scale, max_iter=max_newton)
        else:
            res = search(objective, x0, scale=scale, **stopping)
        iters += res.iterations
        converged = converged and res.converged
        if separate_precision:
            prec = obs.precision(res.x, t) + P
        else:
            prec = -res.hess
        theta_f.append(res.x)
        theta_p.append(tp)
        sigma_p.append(Wp)
        sigma_f.append(cov.inverse(prec))
    stack = [torch.stack(v, dim=1) for v in (theta_f, sigma_f, theta_p, sigma_p)]
    return FilterResult(*stack, iters, converged, cov)
