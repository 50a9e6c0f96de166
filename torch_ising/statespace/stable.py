"""A stable parametrisation of a learned F and the Gaussian prior on its free coordinates.

A learned F (MODEL.md 3.3, ``fit(state_ar=...)``) is written through an unconstrained
D x D matrix A,

    F = A L^{-T},    L L^T = I + A^T A    (L the lower Cholesky factor),

so that F^T F = I - (L^T L)^{-1} < I: every singular value of F, and hence its
spectral radius rho(F), is below 1. The map A -> F is a bijection of all D x D matrices
onto the open ball ||F||_2 < 1; its inverse is A = F L^T, where L is the lower-triangular
factor of L^T L = (I - F^T F)^{-1}.

The prior on F is a Gaussian on A,

    vec(A) ~ Normal(0, tau^2 I),
    log p(F) = -||A||_F^2 / (2 tau^2) - (D^2 / 2) log(2 pi tau^2),

which tends to -infinity as ||F||_2 -> 1 (||A|| -> infinity). In F itself,
||A||_F^2 = tr(A^T A) = tr(F^T F L^T L) = tr[(I - F^T F)^{-1}] - D, so

    log p(F) = -( tr[(I - F^T F)^{-1}] - D ) / (2 tau^2) - (D^2 / 2) log(2 pi tau^2),

a barrier that is concave in F on the ball (F^T (I - F F^T)^{-1} F is matrix-convex). The Laplace marginal
likelihood l is at most 0 for the exact observation model (each bin's term
R [y_t . theta - psi(theta)] is a log probability of the data, and the Gaussian terms of
MODEL.md 3.4 are at most 0), so l + log p(F) is bounded above and its maximiser over A is
finite: F stays strictly inside the unit ball, away from the boundary ||F|| = 1 where the
supremum of l alone lies.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "STATE_AR_PRIOR",
    "START_NORM",
    "stable_from_free",
    "free_from_stable",
    "log_prior_free",
    "log_prior_F",
    "prior_F_update",
]

#: the default prior scale tau of the free coordinates A of a learned F (``fit(state_ar_prior=...)``)
STATE_AR_PRIOR = 1.0

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


def log_prior_free(A: torch.Tensor, tau: float) -> torch.Tensor:
    """log p(A) = -||A||_F^2 / (2 tau^2) - (D^2 / 2) log(2 pi tau^2), one value per leading index."""
    K = A.shape[-1] * A.shape[-2]
    return -(A * A).sum((-1, -2)) / (2.0 * tau * tau) - 0.5 * K * math.log(2.0 * math.pi * tau * tau)


def log_prior_F(F: torch.Tensor, tau: float) -> torch.Tensor:
    """The prior log p(F) of a learned F with ||F||_2 < 1 (that of its free coordinates A = F L^T)."""
    return log_prior_free(free_from_stable(F), tau)


def _transpose_perm(D: int, device: torch.device) -> torch.Tensor:
    """The permutation P of row-major vec with P vec(X) = vec(X^T)."""
    idx = torch.arange(D * D, device=device).reshape(D, D)
    return idx.T.reshape(-1)


def _objective_parts(
    F: torch.Tensor, Qinv: torch.Tensor, num: torch.Tensor, S00: torch.Tensor, w: float, perm: torch.Tensor
) -> tuple[float, torch.Tensor, torch.Tensor] | None:
    """g(F) of :func:`prior_F_update`, its gradient (D, D) and Hessian (D^2, D^2) in row-major vec F.

    None outside the open unit ball.

    With M = (I - F^T F)^{-1}: d tr M = 2 tr(M^2 F^T dF), so grad tr M = 2 F M^2, and
    d(2 F M^2) = 2 dF M^2 + 2 F M E M^2 + 2 F M^2 E M with E = dF^T F + F^T dF (dM = M E M).
    """
    D = F.shape[-1]
    eye = torch.eye(D, dtype=F.dtype, device=F.device)
    C, info = torch.linalg.cholesky_ex(eye - F.T @ F)
    if int(info) != 0:
        return None
    M = torch.cholesky_inverse(C)
    M = 0.5 * (M + M.T)
    M2 = M @ M
    val = float((Qinv * (num @ F.T)).sum() - 0.5 * (Qinv * (F @ S00 @ F.T)).sum() - w * M.diagonal().sum())
    grad = Qinv @ num - Qinv @ F @ S00 - 2.0 * w * F @ M2
    FM, FM2 = F @ M, F @ M2

    def k(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:  # vec_r(X dF Y) = kron(X, Y^T) vec_r(dF)
        return torch.kron(X.contiguous(), Y.T.contiguous())

    Hb = k(eye, M2) + k(FM @ F.T, M2) + k(FM2 @ F.T, M)
    Hb = Hb + (k(FM, FM2) + k(FM2, FM))[:, perm]  # the dF^T terms: vec_r(X dF^T Y) = kron(X, Y^T) P vec_r(dF)
    H = -k(Qinv, S00) - 2.0 * w * Hb
    return val, grad, 0.5 * (H + H.T)


def prior_F_update(
    F: torch.Tensor, num: torch.Tensor, S00: torch.Tensor, Q: torch.Tensor, tau: float, max_newton: int = 100
) -> torch.Tensor:
    """The M-step of F under the prior: the maximiser over ||F||_2 < 1 of

        g(F) = tr(Q^{-1} num F^T) - 1/2 tr(Q^{-1} F S00 F^T) - tr[(I - F^T F)^{-1}] / (2 tau^2),

    the expected complete-data log-likelihood of the transitions (MODEL.md 3.3, with
    num = sum_t (P_{t,t-1} - U u_t m_{t-1}^T) and S00 = sum_t P_{t-1}) plus log p(F) up to a
    constant. g is strictly concave on the ball, so its maximiser is unique; damped Newton on
    vec F from ``F`` (scaled into the ball as in :func:`free_from_stable`), each step halved until
    it stays inside the ball and rises (Armijo), until the Newton decrement or the step is at round-off.

    Args:
        F: current F (B, D, D); num, S00, Q: (B, D, D); tau: the prior scale.
        max_newton: most Newton steps per data set.

    Returns:
        F (B, D, D) with ||F||_2 < 1.
    """
    B, D, _ = F.shape
    norm = torch.linalg.matrix_norm(F, ord=2)
    F = F * torch.where(norm < 1.0, torch.ones_like(norm), START_NORM / norm)[..., None, None]
    Qinv = torch.linalg.inv(Q)
    Qinv = 0.5 * (Qinv + Qinv.transpose(-1, -2))
    w = 1.0 / (2.0 * tau * tau)
    perm = _transpose_perm(D, F.device)
    out = []
    for b in range(B):
        Fb = F[b].clone()
        parts = _objective_parts(Fb, Qinv[b], num[b], S00[b], w, perm)
        for _ in range(max_newton):
            val, grad, H = parts
            g = grad.reshape(-1)
            step = torch.linalg.solve(-H, g)
            decrement = float(g @ step)  # the Newton decrement lambda^2 (>= 0: -H is positive definite)
            if decrement <= 1e-13 * max(1.0, abs(val)) * 1e-8:
                break
            a = 1.0
            new = None
            for _ in range(60):
                cand = Fb + a * step.reshape(D, D)
                new = _objective_parts(cand, Qinv[b], num[b], S00[b], w, perm)
                if new is not None and new[0] >= val + 1e-4 * a * decrement - 1e-15 * abs(val):
                    break
                a *= 0.5
                new = None
            if new is None:
                break
            small = float((a * step).abs().max()) <= 1e-14 * max(1.0, float(Fb.abs().max()))
            Fb, parts = cand, new
            if small:
                break
        out.append(Fb)
    return torch.stack(out)


def _barrier(F: torch.Tensor) -> torch.Tensor:
    """tr[(I - F^T F)^{-1}] (...), differentiable in F; +inf outside the open unit ball."""
    D = F.shape[-1]
    eye = torch.eye(D, dtype=F.dtype, device=F.device)
    C, info = torch.linalg.cholesky_ex(eye - F.transpose(-1, -2) @ F)
    val = torch.cholesky_inverse(C).diagonal(dim1=-2, dim2=-1).sum(-1)
    return torch.where(info == 0, val, torch.full_like(val, float("inf")))
