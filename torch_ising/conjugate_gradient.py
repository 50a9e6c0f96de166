"""The published library's default MAP search: nonlinear conjugate gradient, batched.

torch_ising finds every posterior mode by damped Newton to max |grad| / R < 1e-8
(:mod:`torch_ising.newton`). The published SSLL library's default
(``map_function="cg"``) is a Polak-Ribiere conjugate-gradient ascent that stops
much earlier, so its modes, and the l computed from them, are inexact. To
reproduce its numbers (``fit(stop="ssll")``, ``compat.ssll.run``) this module
implements that procedure as the published description fixes it:

* directions  s_0 = g_0,  s_k = g_k + beta_k s_{k-1},
  beta_k = max(0, g_k . (g_k - g_{k-1}) / (g_{k-1} . g_{k-1}))   (Polak-Ribiere+);
* along each direction a one-dimensional Newton search on a,
  a <- a + (g(x + a s) . s) / (s^T (-H(x + a s)) s), halving a instead when the
  Newton value is negative, until |change of a| * sum |s| <= 1e-2;
* one line search along g_0, then at least one conjugate step, and then
  conjugate steps until max |g| / R <= 1e-4 (at most 500).

The procedure is written from that description in torch; it is batched over
data sets, each with its own iteration counts.
"""

from __future__ import annotations

import torch

from .newton import NewtonResult, Objective, select_rows

__all__ = ["conjugate_gradient_ascent", "CG_TOL", "CG_LINE_TOL", "CG_MAX_ITER"]

#: the published gradient tolerance, max |grad| / R
CG_TOL = 1e-4
#: the published line-search tolerance on |change of a| * sum |s|
CG_LINE_TOL = 1e-2
#: the published iteration limit
CG_MAX_ITER = 500


def _quad(s: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    """s^T H s per batch row (H full (B, D, D) or diagonal (B, D))."""
    if H.ndim == s.ndim:
        return (s * H * s).sum(-1)
    return (s.unsqueeze(-2) @ H @ s.unsqueeze(-1)).reshape(s.shape[0])


def _line_search(
    objective: Objective,
    x: torch.Tensor,
    s: torch.Tensor,
    f: torch.Tensor,
    g: torch.Tensor,
    H: torch.Tensor,
    active: torch.Tensor,
    line_tol: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Newton steps on a along x + a s (rows where ``active``); returns x, f, g and H there."""
    x0 = x
    slope = (g * s).sum(-1)
    curv = -_quad(s, H)
    alpha = torch.zeros_like(slope)
    snorm = s.abs().sum(-1)
    searching = active.clone()
    while bool(searching.any()):
        alpha_new = alpha + slope / curv
        negative = alpha_new < 0
        dalpha = torch.where(negative, 0.5 * alpha, (alpha - alpha_new).abs())
        alpha = torch.where(searching, torch.where(negative, 0.5 * alpha, alpha_new), alpha)
        cand = x0 + alpha[:, None] * s
        fc, gc, Hc = objective(cand)
        x, f, g, H = select_rows(searching, (cand, fc, gc, Hc), (x, f, g, H))
        slope = torch.where(searching, (gc * s).sum(-1), slope)
        curv = torch.where(searching, -_quad(s, Hc), curv)
        searching = searching & (dalpha * snorm > line_tol)
    return x, f, g, H


def conjugate_gradient_ascent(
    objective: Objective,
    x0: torch.Tensor,
    *,
    tol: float = CG_TOL,
    scale: float | torch.Tensor = 1.0,
    max_iter: int = CG_MAX_ITER,
    line_tol: float = CG_LINE_TOL,
) -> NewtonResult:
    """Maximise a concave objective by the published Polak-Ribiere conjugate gradient.

    Args:
        objective: returns value (B,), gradient (B, D) and Hessian (B, D, D)
            (or its diagonal) of the log posterior.
        x0: starting points (B, D); the published library starts from the
            previous EM iteration's smoothed means (zeros at first).
        tol: stop when max |grad| / scale <= tol (published: 1e-4).
        scale: the gradient scale, the number of trials R.
        max_iter: most conjugate steps (published: 500).
        line_tol: line-search tolerance on |change of a| * sum |s| (published: 1e-2).

    Returns:
        a :class:`~torch_ising.newton.NewtonResult` at the final point; its
        ``hess`` gives the Laplace covariance there, as in the published code.
    """
    scale_t = torch.as_tensor(scale, dtype=x0.dtype, device=x0.device)
    f, g, H = objective(x0)
    all_rows = torch.ones(x0.shape[0], dtype=torch.bool, device=x0.device)
    d = g
    s = g
    x, f, g, H = _line_search(objective, x0, s, f, g, H, all_rows, line_tol)
    active = all_rows.clone()  # the published loop takes at least one conjugate step
    it = 0
    while bool(active.any()) and it < max_iter:
        d_prev, d = d, torch.where(active[:, None], g, d)
        beta = ((d * (d - d_prev)).sum(-1) / (d_prev * d_prev).sum(-1)).clamp_min(0.0)
        s = torch.where(active[:, None], d + beta[:, None] * s, s)
        x, f, g, H = _line_search(objective, x, s, f, g, H, active, line_tol)
        it += 1
        active = active & ((g.abs() / scale_t).amax(-1) > tol)
    converged = bool(((g.abs() / scale_t).amax(-1) <= tol).all())
    return NewtonResult(x, f, g, H, it, converged)
