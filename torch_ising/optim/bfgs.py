"""Batched BFGS ascent with a backtracking (Armijo) line search.

Maximises f(x) (B,) from its value and gradient alone, batched over the first
dimension; every row has its own inverse-Hessian estimate, step and stopping test,
so a batched search gives the same result as separate ones. Used for the direct
maximisation of the Laplace marginal likelihood l over the hyperparameters
(:mod:`torch_ising.statespace.direct`, :mod:`torch_ising.statespace.stopping`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["bfgs_maximise"]


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

    With V the current inverse-Hessian estimate of -f (V_0 = gamma I, gamma = d0 . g / g . g
    for ``direction0`` d0, at least 1e-8, else 1 / max(1, max |g|)), each iteration takes

        d = V g,    x <- x + a d,    a = 1, 1/2, 1/4, ... (at most 30 trials),

    the first a with f(x + a d) >= f(x) + 1e-4 a g . d, and then, with s = x_new - x and
    y = g - g_new, the BFGS update (where s . y > 1e-12 |s| |y|)

        V <- (I - rho s y^T) V (I - rho y s^T) + rho s s^T,    rho = 1 / (s . y).

    A row whose d is no ascent direction (g . d <= 0) restarts from V = gamma I. A row
    stops once max |g| < tol or no step is accepted; the search ends when every row has
    stopped, after ``max_eval`` evaluations, or when ``on_eval`` returns True. An
    evaluation that raises a LinAlgError or RuntimeError counts as a rejected step.

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
