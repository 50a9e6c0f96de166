"""A stable parametrisation of a learned F and the prior on it (``fit(state_ar_prior=...)``).

A learned F (MODEL.md 3.3, ``fit(state_ar=...)``) is written through an unconstrained
D x D matrix A,

    F = A L^{-T},    L L^T = I + A^T A    (L the lower Cholesky factor),

so that F^T F = I - (L^T L)^{-1} < I: every singular value of F, and hence its
spectral radius rho(F), is below 1. The map A -> F is a bijection of all D x D matrices
onto the open ball ||F||_2 < 1; its inverse is A = F L^T, where L is the lower-triangular
factor of L^T L = (I - F^T F)^{-1}.

The prior (:class:`FPrior`, scales s and tau) is a Gaussian on A, vec(A) ~ N(0, tau^2 I),
tilted by a Gaussian on F centred at the random walk F = I (MODEL.md 3's default), with
scale s; up to its normalising constant,

    log p(F) = -||F - I||_F^2 / (2 s^2) - ||A||_F^2 / (2 tau^2)
             = -||F - I||_F^2 / (2 s^2) - ( tr[(I - F^T F)^{-1}] - D ) / (2 tau^2),

since ||A||_F^2 = tr(A^T A) = tr(F^T F L^T L) = tr[(I - F^T F)^{-1}] - D. The second term is a
barrier: log p(F) -> -infinity as ||F||_2 -> 1. Both terms are concave in F on the ball
(F^T (I - F F^T)^{-1} F is matrix-convex). The first keeps F near I in every direction, so
F cannot map a direction of theta_1 to 0 and leave mu free to run off along it; the
second keeps F stable. The Laplace l is at most 0 for the exact observation model (each
bin's term R [y_t . theta - psi(theta)] is a log probability of the data, and the Gaussian
terms of MODEL.md 3.4 are at most 0), so l + log p(F) is bounded above and its maximiser
over F lies strictly inside the unit ball.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = [
    "FPrior",
    "STATE_AR_PRIOR",
    "START_NORM",
    "stable_from_free",
    "free_from_stable",
    "log_prior_free",
    "log_prior_F",
    "prior_F_update",
]


class FPrior(NamedTuple):
    """The scales of the prior on a learned F.

    Attributes:
        shrink: s, the scale of the Gaussian on F centred at I: -||F - I||_F^2 / (2 s^2).
        tau: the scale of the Gaussian on the free coordinates A: -||A||_F^2 / (2 tau^2).
    """

    shrink: float = 0.05
    tau: float = 1.0


#: the default prior of a learned F (``fit(state_ar_prior=...)``): s = 0.05, tau = 1
STATE_AR_PRIOR = FPrior()

#: an initial F with ||F||_2 >= 1 (outside the domain, e.g. state_ar=1.0: F = I) starts scaled to this norm
START_NORM = 0.99


def stable_from_free(A: torch.Tensor) -> torch.Tensor:
    """F = A L^{-T} with L L^T = I + A^T A, so ||F||_2 < 1; A (..., D, D), differentiable."""
    D = A.shape[-1]
    eye = torch.eye(D, dtype=A.dtype, device=A.device)
    L = torch.linalg.cholesky(eye + A.transpose(-1, -2) @ A)
    # F L^T = A, i.e. L F^T = A^T
    return torch.linalg.solve_triangular(L, A.transpose(-1, -2), upper=False).transpose(-1, -2)


def free_from_stable(F: torch.Tensor, start_norm: float = START_NORM) -> torch.Tensor:
    """The A with ``stable_from_free(A) = F``; an F outside the open unit ball (||F||_2 >= 1, e.g. the
    start F = I) is first scaled to ||F||_2 = ``start_norm``.

    With L^T L = (I - F^T F)^{-1} (L lower triangular), A = F L^T. The flip J (the reversal
    permutation) turns the upper Cholesky factor into the lower one: if C C^T = J M J, then
    L = J C^T J is lower triangular with L^T L = M.
    """
    D = F.shape[-1]
    norm = torch.linalg.matrix_norm(F, ord=2)
    F = F * torch.where(norm < 1.0, torch.ones_like(norm), start_norm / norm)[..., None, None]
    eye = torch.eye(D, dtype=F.dtype, device=F.device)
    M = torch.linalg.inv(eye - F.transpose(-1, -2) @ F)
    M = 0.5 * (M + M.transpose(-1, -2))
    J = torch.flip(eye, dims=(-1,))
    C = torch.linalg.cholesky(J @ M @ J)
    L = J @ C.transpose(-1, -2) @ J
    return F @ L.transpose(-1, -2)


def log_prior_free(A: torch.Tensor, prior: FPrior) -> torch.Tensor:
    """log p(F) at F = stable_from_free(A), up to a constant: -||F - I||^2 / (2 s^2) - ||A||^2 / (2 tau^2)."""
    F = stable_from_free(A)
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    shrink = ((F - eye) ** 2).sum((-1, -2)) / (2.0 * prior.shrink**2)
    return -shrink - (A * A).sum((-1, -2)) / (2.0 * prior.tau**2)


def log_prior_F(F: torch.Tensor, prior: FPrior) -> torch.Tensor:
    """log p(F), up to a constant, in F: -||F - I||^2 / (2 s^2) - (tr[(I - F^T F)^{-1}] - D) / (2 tau^2).

    -inf outside the open unit ball; differentiable in F.
    """
    D = F.shape[-1]
    eye = torch.eye(D, dtype=F.dtype, device=F.device)
    return -((F - eye) ** 2).sum((-1, -2)) / (2.0 * prior.shrink**2) - (_barrier(F) - D) / (2.0 * prior.tau**2)


def _transpose_perm(D: int, device: torch.device) -> torch.Tensor:
    """The permutation P of row-major vec with P vec(X) = vec(X^T)."""
    idx = torch.arange(D * D, device=device).reshape(D, D)
    return idx.T.reshape(-1)


def _kron(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """kron(X, Y^T) per batch row, (B, D^2, D^2): vec_r(X dF Y) = kron(X, Y^T) vec_r(dF)."""
    B, D = X.shape[0], X.shape[-1]
    return torch.einsum("bij,blk->bikjl", X, Y).reshape(B, D * D, D * D)


def _objective_parts_batch(
    F: torch.Tensor,
    Qinv: torch.Tensor,
    num: torch.Tensor,
    S00: torch.Tensor,
    w: float,
    perm: torch.Tensor,
    shrink: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """g(F) of :func:`prior_F_update` (B,), its gradient (B, D, D), Hessian (B, D^2, D^2) in row-major
    vec F, and whether each F lies in the open unit ball (B,); outside it g is -inf (and the rest unused).

    With M = (I - F^T F)^{-1}: d tr M = 2 tr(M^2 F^T dF), so grad tr M = 2 F M^2, and
    d(2 F M^2) = 2 dF M^2 + 2 F M E M^2 + 2 F M^2 E M with E = dF^T F + F^T dF (dM = M E M).
    """
    B, D = F.shape[0], F.shape[-1]
    eye = torch.eye(D, dtype=F.dtype, device=F.device).expand(B, D, D)
    Ft = F.transpose(-1, -2)
    C, info = torch.linalg.cholesky_ex(eye - Ft @ F)
    inside = info == 0
    C = torch.where(inside[:, None, None], C, eye)  # a placeholder where F is outside the ball
    M = torch.cholesky_inverse(C)
    M = 0.5 * (M + M.transpose(-1, -2))
    M2 = M @ M
    val = (Qinv * (num @ Ft)).sum((-1, -2)) - 0.5 * (Qinv * (F @ S00 @ Ft)).sum((-1, -2))
    val = val - w * M.diagonal(dim1=-2, dim2=-1).sum(-1)
    grad = Qinv @ num - Qinv @ F @ S00 - 2.0 * w * F @ M2
    FM, FM2 = F @ M, F @ M2
    Hb = _kron(eye, M2) + _kron(FM @ Ft, M2) + _kron(FM2 @ Ft, M)
    Hb = Hb + (_kron(FM, FM2) + _kron(FM2, FM))[..., perm]  # the dF^T terms: kron(X, Y^T) P vec_r(dF)
    H = -_kron(Qinv, S00) - 2.0 * w * Hb
    if shrink is not None:  # - ||F - I||_F^2 / (2 s^2)
        v = 1.0 / (2.0 * shrink * shrink)
        val = val - v * ((F - eye) ** 2).sum((-1, -2))
        grad = grad - 2.0 * v * (F - eye)
        H = H - 2.0 * v * torch.eye(D * D, dtype=F.dtype, device=F.device)
    val = torch.where(inside, val, torch.full_like(val, -float("inf")))
    return val, grad, 0.5 * (H + H.transpose(-1, -2)), inside


def _objective_parts(
    F: torch.Tensor,
    Qinv: torch.Tensor,
    num: torch.Tensor,
    S00: torch.Tensor,
    w: float,
    perm: torch.Tensor,
    shrink: float | None = None,
) -> tuple[float, torch.Tensor, torch.Tensor] | None:
    """:func:`_objective_parts_batch` for one F (D, D): (g, gradient (D, D), Hessian (D^2, D^2)).

    None outside the open unit ball.
    """
    val, grad, H, inside = _objective_parts_batch(F[None], Qinv[None], num[None], S00[None], w, perm, shrink)
    if not bool(inside[0]):
        return None
    return float(val[0]), grad[0], H[0]


def prior_F_update(
    F: torch.Tensor, num: torch.Tensor, S00: torch.Tensor, Q: torch.Tensor, prior: FPrior, max_newton: int = 100
) -> torch.Tensor:
    """The M-step of F under the prior: the maximiser over ||F||_2 < 1 of

        g(F) = tr(Q^{-1} num F^T) - 1/2 tr(Q^{-1} F S00 F^T) - ||F - I||^2 / (2 s^2) - tr[(I - F^T F)^{-1}] / (2 tau^2),

    the expected complete-data log-likelihood of the transitions (MODEL.md 3.3, with
    num = sum_t (P_{t,t-1} - U u_t m_{t-1}^T) and S00 = sum_t P_{t-1}) plus log p(F) up to a
    constant. g is strictly concave on the ball, so its maximiser is unique; damped Newton on
    vec F from ``F`` (scaled into the ball as in :func:`free_from_stable`), each step halved until
    it stays inside the ball and rises (Armijo), until the Newton decrement or the step is at round-off.
    Batched over data sets, each with its own steps and stopping.

    Args:
        F: current F (B, D, D); num, S00, Q: (B, D, D); prior: the scales s and tau.
        max_newton: most Newton steps per data set.

    Returns:
        F (B, D, D) with ||F||_2 < 1.
    """
    B, D, _ = F.shape
    norm = torch.linalg.matrix_norm(F, ord=2)
    F = F * torch.where(norm < 1.0, torch.ones_like(norm), START_NORM / norm)[..., None, None]
    Qinv = torch.linalg.inv(Q)
    Qinv = 0.5 * (Qinv + Qinv.transpose(-1, -2))
    w = 1.0 / (2.0 * prior.tau**2)
    perm = _transpose_perm(D, F.device)

    def parts(X: torch.Tensor):
        return _objective_parts_batch(X, Qinv, num, S00, w, perm, prior.shrink)

    val, grad, H, _ = parts(F)
    active = torch.ones(B, dtype=torch.bool, device=F.device)
    for _ in range(max_newton):
        g = grad.reshape(B, -1)
        step = torch.linalg.solve(-H, g)
        decrement = (g * step).sum(-1)  # the Newton decrement lambda^2 (>= 0: -H is positive definite)
        active = active & ~(decrement <= 1e-21 * val.abs().clamp(min=1.0))
        if not bool(active.any()):
            break
        step = step.reshape(B, D, D)
        a = torch.ones_like(val)
        found = ~active  # rows that have stopped take no step
        new = (F, val, grad, H)
        for _ in range(60):
            cand = F + a[:, None, None] * step
            cv, cg, cH, inside = parts(cand)
            ok = ~found & inside & (cv >= val + 1e-4 * a * decrement - 1e-15 * val.abs())
            new = tuple(
                torch.where(ok.view(-1, *[1] * (o.ndim - 1)), c, o)
                for c, o in zip((cand, cv, cg, cH), new, strict=True)
            )
            found = found | ok
            if bool(found.all()):
                break
            a = torch.where(found, a, 0.5 * a)
        moved = active & found  # a row with no ascent left stops where it is
        small = (a[:, None, None] * step).abs().amax((-1, -2)) <= 1e-14 * F.abs().amax((-1, -2)).clamp(min=1.0)
        F, val, grad, H = new
        active = moved & ~small
        if not bool(active.any()):
            break
    return F


def _barrier(F: torch.Tensor) -> torch.Tensor:
    """tr[(I - F^T F)^{-1}] (...), differentiable in F; +inf outside the open unit ball."""
    D = F.shape[-1]
    eye = torch.eye(D, dtype=F.dtype, device=F.device)
    C, info = torch.linalg.cholesky_ex(eye - F.transpose(-1, -2) @ F)
    inside = info == 0
    C = torch.where(inside[..., None, None], C, eye)  # rows outside the ball: a placeholder, their value is +inf
    val = torch.cholesky_inverse(C).diagonal(dim1=-2, dim2=-1).sum(-1)
    return torch.where(inside, val, torch.full_like(val, float("inf")))
