"""Batched damped Newton ascent for strictly concave objectives.

Each iteration takes the Newton step and backtracks,

    x <- x - a H^{-1} g,    a = 1, 1/2, 1/4, ...,

with g and H the gradient and Hessian at x. Used for the MAP problems with a
Hessian small enough to factor: the stationary fit (:meth:`torch_ising.Ising.fit`),
the mode search of the Laplace filter (``map_method="newton"``) and the Laplace
predictive density of :mod:`torch_ising.crossval`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

__all__ = ["NewtonResult", "newton_ascent"]

#: objective(x) -> (value (B,), grad (B, D), hess (B, D, D) or its diagonal (B, D))
Objective = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


class NewtonResult(NamedTuple):
    """Result of :func:`newton_ascent`.

    Attributes:
        x: the maximiser, shape (B, D).
        value: objective at ``x``, shape (B,).
        grad: gradient at ``x``, shape (B, D).
        hess: Hessian at ``x``, shape (B, D, D) (or (B, D) when diagonal).
        iterations: Newton iterations taken.
        converged: whether max |grad| / scale <= tol for every batch element.
    """

    x: torch.Tensor
    value: torch.Tensor
    grad: torch.Tensor
    hess: torch.Tensor
    iterations: int
    converged: bool


#: an accepted step shorter than this (after halvings) that changes the objective by less than _ROUND_OFF,
#: relative, is at round-off level
_TINY_STEP = 2.0**-16
_ROUND_OFF = 16 * torch.finfo(torch.float64).eps


def _direction(grad: torch.Tensor, hess: torch.Tensor) -> torch.Tensor:
    """Newton direction d = (-H)^{-1} g, with a gradient fallback where -H is not PD."""
    if hess.ndim == grad.ndim:  # diagonal Hessian
        neg = (-hess).clamp_min(torch.finfo(hess.dtype).tiny)
        return grad / neg
    L, info = torch.linalg.cholesky_ex(-hess)
    d = torch.cholesky_solve(grad.unsqueeze(-1), L).squeeze(-1)
    bad = info != 0
    if bool(bad.any()):
        d = torch.where(bad[:, None], grad, d)
    return d


def select_rows(mask: torch.Tensor, new: tuple, old: tuple) -> tuple:
    """Per batch row, the tensors of ``new`` where ``mask`` (B,) holds, else those of ``old``.

    For the search state (x (B, D), f (B,), g (B, D), H (B, D, D) or (B, D)).
    """
    return tuple(torch.where(mask.view(-1, *([1] * (a.ndim - 1))), a, b) for a, b in zip(new, old, strict=True))


def _halve(objective: Objective, x, f, g, H, d, slope, done, first, max_halvings: int):
    """Backtracking: halve the step per row until the Armijo condition holds (``first``: the full step)."""
    step = torch.ones_like(f)
    accepted = done.clone()
    x_new, f_new, g_new, H_new = x, f, g, H
    for k in range(max_halvings):
        if k == 0:
            cand, fc, gc, Hc = first
        else:
            cand = x + step[:, None] * d
            fc, gc, Hc = objective(cand)
        ok = (~accepted) & torch.isfinite(fc) & (fc >= f + 1e-4 * step * slope)
        x_new, f_new, g_new, H_new = select_rows(ok, (cand, fc, gc, Hc), (x_new, f_new, g_new, H_new))
        accepted = accepted | ok
        if bool(accepted.all()):
            break
        step = torch.where(accepted, step, step * 0.5)
    return x_new, f_new, g_new, H_new, accepted, step


def newton_ascent(
    objective: Objective,
    x0: torch.Tensor,
    *,
    tol: float = 1e-8,
    scale: float | torch.Tensor = 1.0,
    max_iter: int = 100,
    max_halvings: int = 40,
) -> NewtonResult:
    """Maximise a strictly concave objective, batched over the first dimension.

    Each iteration takes the Newton step d = (-H)^{-1} grad, i.e. x <- x - a H^{-1} grad,
    and halves a from 1 until the Armijo condition f(x + a d) >= f(x) + 1e-4 a grad . d
    holds, so the iteration never diverges. Where -H is not positive definite the step
    is the gradient instead (d = grad); a diagonal H gives d = grad / max(-H, tiny). It
    stops when max |grad| / scale <= tol for every batch element; a row that finds no
    ascent in ``max_halvings`` halvings, or only a step of at most 2^-16 that changes f
    at round-off level, stops there (and counts as not converged unless it meets ``tol``).

    Args:
        objective: returns value (B,), gradient (B, D) and Hessian (B, D, D),
            or its diagonal (B, D) for a diagonal Newton scheme.
        x0: starting point, shape (B, D).
        tol: gradient tolerance (after division by ``scale``).
        scale: the gradient scale, e.g. the number of trials R.
        max_iter: most Newton iterations.
        max_halvings: most step halvings per iteration.
    """
    x = x0
    f, g, H = objective(x)
    scale_t = torch.as_tensor(scale, dtype=x.dtype, device=x.device)
    it = 0
    done = (g.abs() / scale_t).amax(-1) <= tol
    while it < max_iter and not bool(done.all()):
        it += 1
        d = _direction(g, H)
        some_done = bool(done.any())
        if some_done:
            d = torch.where(done[:, None], torch.zeros_like(d), d)
        slope = (g * d).sum(-1)
        cand = x + d
        fc, gc, Hc = objective(cand)
        ok = torch.isfinite(fc) & (fc >= f + 1e-4 * slope)
        if not some_done and bool(ok.all()):
            # the full Newton step is accepted everywhere (the usual case)
            x, f, g, H = cand, fc, gc, Hc
            done = (g.abs() / scale_t).amax(-1) <= tol
            continue
        f_old = f
        x, f, g, H, accepted, step = _halve(objective, x, f, g, H, d, slope, done, (cand, fc, gc, Hc), max_halvings)
        # no ascent possible, or only a tiny step that gains at round-off level: the objective cannot tell better
        # points apart, so each further iteration would cost up to max_halvings evaluations for nothing
        at_round_off = (step <= _TINY_STEP) & ((f - f_old).abs() <= _ROUND_OFF * f_old.abs().clamp_min(1.0))
        stalled = ~accepted | at_round_off
        done = ((g.abs() / scale_t).amax(-1) <= tol) | stalled
    converged = bool(((g.abs() / scale_t).amax(-1) <= tol).all())
    return NewtonResult(x, f, g, H, it, converged)
