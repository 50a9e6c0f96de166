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

The maximiser is a batched BFGS with a backtracking (Armijo) line search; every
data set of a batch has its own curvature estimate, step and stopping test, so
a batched fit gives the same result as separate fits.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .filter import _spd_inverse, predict
from .observation import ObservationModel
from .records import StateSpaceParams

__all__ = ["mll_with_grad", "bfgs_maximise"]


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
            tp, Wp = predict(theta_prev, W_prev, params, None if u is None else u[:, t], False)
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


def bfgs_maximise(
    fun: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    x0: torch.Tensor,
    *,
    tol: float,
    max_eval: int,
    direction0: torch.Tensor | None = None,
    on_eval: Callable[[torch.Tensor, torch.Tensor], bool | None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Batched BFGS ascent: maximise fun(x) (B,) with gradient, per batch row.

    Args:
        fun: returns (value (B,), grad (B, K)).
        x0: start, (B, K).
        tol: stop a row when max |grad| < tol (or its step is below round-off).
        max_eval: most evaluations of ``fun``.
        direction0: an ascent direction to scale the first inverse Hessian
            (e.g. one EM step); by default the gradient.
        on_eval: called as on_eval(x, value) after each evaluation, with the current accepted
            point; a True return ends the search there.

    Returns:
        (x, value, converged (B,), evaluations)
    """
    B, K = x0.shape
    x = x0.clone()
    f, g = fun(x)
    n_eval = 1
    eye = torch.eye(K, dtype=x.dtype, device=x.device).expand(B, K, K)
    if direction0 is not None:
        gam = ((direction0 * g).sum(-1) / (g * g).sum(-1).clamp_min(1e-300)).clamp_min(1e-8)
    else:
        gam = 1.0 / g.abs().amax(-1).clamp_min(1.0)
    Hinv = eye * gam[:, None, None]
    done = g.abs().amax(-1) < tol
    halt = False
    while n_eval < max_eval and not bool(done.all()) and not halt:
        d = (Hinv @ g.unsqueeze(-1)).squeeze(-1)
        slope = (g * d).sum(-1)
        bad = slope <= 0
        if bool(bad.any()):  # reset to the gradient where curvature information went wrong
            Hinv = torch.where(bad[:, None, None], eye * gam[:, None, None], Hinv)
            d = torch.where(bad[:, None], gam[:, None] * g, d)
            slope = (g * d).sum(-1)
        d = torch.where(done[:, None], torch.zeros_like(d), d)
        step = torch.ones(B, dtype=x.dtype, device=x.device)
        accepted = done.clone()
        x_new, f_new, g_new = x, f, g
        for _ in range(30):
            cand = x + step[:, None] * d
            try:
                fc, gc = fun(cand)
                ok = torch.isfinite(fc) & (fc >= f + 1e-4 * step * slope) & ~accepted
            except (torch.linalg.LinAlgError, RuntimeError):
                fc, gc, ok = f, g, torch.zeros_like(accepted)
            n_eval += 1
            x_new = torch.where(ok[:, None], cand, x_new)
            f_new = torch.where(ok, fc, f_new)
            g_new = torch.where(ok[:, None], gc, g_new)
            accepted = accepted | ok
            if on_eval is not None:
                halt = bool(on_eval(x_new, f_new))
            if halt or bool(accepted.all()) or n_eval >= max_eval:
                break
            step = torch.where(accepted, step, step * 0.5)
        stalled = ~accepted
        s = x_new - x
        yv = g - g_new  # curvature of -f
        sy = (s * yv).sum(-1)
        upd = accepted & ~done & (sy > 1e-12 * s.norm(dim=-1) * yv.norm(dim=-1))
        if bool(upd.any()):
            rho = torch.where(upd, 1.0 / sy.where(upd, torch.ones_like(sy)), torch.zeros_like(sy))
            Vt = eye - rho[:, None, None] * s.unsqueeze(-1) @ yv.unsqueeze(-2)
            Hn = Vt @ Hinv @ Vt.transpose(-1, -2) + rho[:, None, None] * s.unsqueeze(-1) @ s.unsqueeze(-2)
            Hinv = torch.where(upd[:, None, None], Hn, Hinv)
        x, f, g = x_new, f_new, g_new
        done = done | (g.abs().amax(-1) < tol) | stalled
    converged = g.abs().amax(-1) < tol
    return x, f, converged, n_eval
