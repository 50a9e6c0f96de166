"""Direct maximisation of the Laplace marginal likelihood over the hyperparameters.

The gradient of l (MODEL.md 3.4) with respect to the hyperparameters is taken
by autograd through the filter. The filter's modes are found first without
autograd; a second, differentiable pass then writes each filtered mean as one
Newton step from its (detached) converged mode,

    theta_{t|t} = theta_hat - H^{-1} grad L_t(theta_hat),

which has the value theta_hat and, because grad L_t(theta_hat) = 0, exactly the
implicit-function derivative d theta_{t|t} / d hyperparameters. The filtered
covariance W_{t|t} = (-hess log p(y_t | theta_{t|t}) + W_{t|t-1}^{-1})^{-1} and
every term of l are then differentiable.

The maximiser over the hyperparameters is the batched BFGS of
:func:`torch_ising.optim.bfgs.bfgs_maximise` (its caller is :mod:`.stopping`).
"""

from __future__ import annotations

import torch

from .covariance import DENSE
from .filter import _spd_inverse, predict
from .observation import ObservationModel
from .records import StateSpaceParams

__all__ = ["mll_with_grad"]


def mll_with_grad(
    obs: ObservationModel,
    params: StateSpaceParams,
    theta_hat: torch.Tensor,
    *,
    u: torch.Tensor | None = None,
) -> torch.Tensor:
    """The Laplace log marginal likelihood l (B,) as a differentiable function of ``params``.

    Args:
        obs: observation model with closed-form ``value_grad_hess`` or autograd.
        params: hyperparameters; tensors that require grad get gradients.
        theta_hat: the filter's converged modes for these hyperparameters, (B, T, D).
        u: exogenous input (B, T, n_u) or None.
    """
    if obs.diagonal:
        raise NotImplementedError("direct maximisation needs full covariances")
    B, T, D = theta_hat.shape
    theta_hat = theta_hat.detach()
    total = theta_hat.new_zeros(B)
    theta_prev = W_prev = None
    for t in range(T):
        if t == 0:
            tp, Wp = params.mu, params.Sigma
        else:
            tp, Wp = predict(theta_prev, W_prev, params, None if u is None else u[:, t], DENSE)
        Lp = torch.linalg.cholesky(Wp)
        P = _spd_inverse(Wp)
        with torch.no_grad():
            _, g_obs, H_obs = obs.value_grad_hess(theta_hat[:, t], t)
        diff_hat = theta_hat[:, t] - tp
        grad = g_obs - (P @ diff_hat.unsqueeze(-1)).squeeze(-1)
        H = H_obs - P
        theta_t = theta_hat[:, t] - torch.linalg.solve(H, grad.unsqueeze(-1)).squeeze(-1)
        # differentiable log-likelihood value and observation Hessian at theta_t
        value, _, H_t = _value_hess_differentiable(obs, theta_t, t)
        prec = -H_t + P
        W_f = _spd_inverse(prec)
        diff = theta_t - tp
        z = torch.linalg.solve_triangular(Lp, diff.unsqueeze(-1), upper=False).squeeze(-1)
        logdet_p = 2.0 * torch.diagonal(Lp, dim1=-2, dim2=-1).log().sum(-1)
        logdet_f = -2.0 * torch.diagonal(torch.linalg.cholesky(prec), dim1=-2, dim2=-1).log().sum(-1)
        total = total + value - 0.5 * (z * z).sum(-1) + 0.5 * logdet_f - 0.5 * logdet_p
        theta_prev, W_prev = theta_t, W_f
    return total


def _value_hess_differentiable(obs: ObservationModel, theta: torch.Tensor, t: int):
    """log p(y_t | theta) and its Hessian, both differentiable in theta."""
    closed = obs.value_grad_hess_differentiable
    if closed is not None:
        return closed(theta, t)
    value = obs.log_lik(theta, t)
    (g,) = torch.autograd.grad(value.sum(), theta, create_graph=True)
    rows = [torch.autograd.grad(g[:, d].sum(), theta, create_graph=True)[0] for d in range(theta.shape[-1])]
    return value, g, torch.stack(rows, dim=-2)
