"""Batched truncated Newton (Newton-CG) ascent with matrix-free Hessian-vector products.

For an objective whose Hessian is too large to form or factor (D x D with D in the
thousands) but whose products (-H) v cost about one gradient, e.g. the
pseudo-likelihood plus a diagonal Gaussian prior
(:meth:`torch_ising.approx.pseudo.PseudoLikelihood.mode`). Each iteration solves

    (-H) d = g

approximately by conjugate gradients preconditioned with diag(-H), to the relative
residual |r| <= min(0.5, sqrt(|g|)) |g| (a forcing sequence that gives superlinear
convergence), and then takes

    x <- x + a d,

with a = 1, 1/2, 1/4, ... (at most ``max_halvings`` trials), the first that meets the
Armijo condition f(x + a d) >= f(x) + 1e-4 a g . d.

The objective comes in three parts, so that the backtracking evaluates the value only:
``evaluate(x) -> (value (B,), aux)``, where ``aux`` is a tuple of batched tensors
(leading dimension B) that the other two reuse; ``derivatives(x, aux) -> (grad (B, D),
hess diagonal (B, D))``; and ``curvature(x, aux, v) -> (-H) v`` for v (B, D).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .newton import NewtonResult, select_rows

__all__ = ["newton_cg_ascent"]

#: x (B, D) -> (value (B,), aux: a tuple of tensors with leading dimension B)
Evaluate = Callable[[torch.Tensor], tuple[torch.Tensor, tuple[torch.Tensor, ...]]]
#: (x, aux) -> (grad (B, D), diagonal of the Hessian (B, D))
Derivatives = Callable[[torch.Tensor, tuple[torch.Tensor, ...]], tuple[torch.Tensor, torch.Tensor]]
#: (x, aux, v (B, D)) -> (-H) v (B, D), H the Hessian at x
Curvature = Callable[[torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor], torch.Tensor]


def _cg_direction(
    g: torch.Tensor,
    hd: torch.Tensor,
    apply: Callable[[torch.Tensor], torch.Tensor],
    done: torch.Tensor,
    cg_max_iter: int,
) -> torch.Tensor:
    """Preconditioned CG on A d = g, A = -H (positive definite), M = diag(-H), from d = 0.

    Per row: alpha = r.z / p.A p, d <- d + alpha p, r <- r - alpha A p, z = M^{-1} r,
    p <- z + (r.z)_new / (r.z) p; a row stops once |r| <= min(0.5, sqrt(|g|)) |g| (or where
    p.A p <= 0, or ``done``), and keeps its d.
    """
    Minv = 1.0 / (-hd)
    d = torch.zeros_like(g)
    r = g.clone()
    z = Minv * r
    pdir = z.clone()
    rz = (r * z).sum(-1)
    gnorm = g.norm(dim=-1)
    target = torch.minimum(torch.full_like(gnorm, 0.5), gnorm.sqrt()) * gnorm
    active = ~done
    for _ in range(cg_max_iter):
        Ap = apply(pdir)
        pAp = (pdir * Ap).sum(-1)
        alpha = torch.where(active & (pAp > 0), rz / pAp.clamp_min(1e-300), torch.zeros_like(rz))
        d = d + alpha[:, None] * pdir
        r = r - alpha[:, None] * Ap
        active = active & (r.norm(dim=-1) > target)
        if not bool(active.any()):
            break
        z = Minv * r
        rz_new = (r * z).sum(-1)
        beta = torch.where(active, rz_new / rz.clamp_min(1e-300), torch.zeros_like(rz))
        pdir = z + beta[:, None] * pdir
        rz = rz_new
    return d


def newton_cg_ascent(
    evaluate: Evaluate,
    derivatives: Derivatives,
    curvature: Curvature,
    x0: torch.Tensor,
    *,
    tol: float = 1e-8,
    scale: float | torch.Tensor = 1.0,
    max_iter: int = 100,
    cg_max_iter: int = 100,
    max_halvings: int = 40,
) -> NewtonResult:
    """Maximise a strictly concave objective by truncated Newton, batched over the first dimension.

    Each iteration solves (-H) d = g by preconditioned conjugate gradients (matrix-free, see the
    module docstring) and takes x <- x + a d, halving a from 1 until the Armijo condition
    f(x + a d) >= f(x) + 1e-4 a g . d holds. A row stops when max |g| / scale <= tol, or when
    no step of ``max_halvings`` halvings is accepted (it then keeps its point).

    Args:
        evaluate: x (B, D) -> (value (B,), aux), ``aux`` a tuple of tensors with leading dimension B.
        derivatives: (x, aux) -> (gradient (B, D), Hessian diagonal (B, D)), negative.
        curvature: (x, aux, v) -> (-H) v, v (B, D).
        x0: starting point, shape (B, D).
        tol: gradient tolerance (after division by ``scale``).
        scale: the gradient scale, a float or a tensor broadcasting against (B, D) (e.g. (B, 1)).
        max_iter: most Newton iterations.
        cg_max_iter: most conjugate-gradient iterations per Newton direction.
        max_halvings: most step trials per iteration.

    Returns:
        :class:`~torch_ising.optim.newton.NewtonResult`; ``hess`` is the Hessian diagonal (B, D)
        at ``x``; ``converged`` is max |grad| / scale <= tol for every row.
    """
    x = x0.clone()
    f, aux = evaluate(x)
    g, hd = derivatives(x, aux)
    it = 0
    done = (g.abs() / scale).amax(-1) <= tol
    while it < max_iter and not bool(done.all()):
        it += 1
        d = _cg_direction(g, hd, lambda v, x=x, aux=aux: curvature(x, aux, v), done, cg_max_iter)
        d = torch.where(done[:, None], torch.zeros_like(d), d)
        slope = (g * d).sum(-1)
        step = torch.ones_like(f)
        accepted = done.clone()
        x_new, f_new, aux_new = x, f, aux
        for _ in range(max_halvings):
            cand = x + step[:, None] * d
            fc, auxc = evaluate(cand)
            ok = (~accepted) & torch.isfinite(fc) & (fc >= f + 1e-4 * step * slope)
            x_new, f_new, *rest = select_rows(ok, (cand, fc, *auxc), (x_new, f_new, *aux_new))
            aux_new = tuple(rest)
            accepted = accepted | ok
            if bool(accepted.all()):
                break
            step = torch.where(accepted, step, 0.5 * step)
        stalled = ~accepted
        x, f, aux = x_new, f_new, aux_new
        g, hd = derivatives(x, aux)
        done = ((g.abs() / scale).amax(-1) <= tol) | stalled
    converged = bool(((g.abs() / scale).amax(-1) <= tol).all())
    return NewtonResult(x, f, g, hd, it, converged)
