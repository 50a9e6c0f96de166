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

The procedure is written from that description; it is batched over data sets,
each with its own iteration counts.

The search works through the :class:`Lines` protocol: a current point, its
gradient, and the first two derivatives along a line through it. The per-row
scalars of the line searches and the D-vectors of the search (the gradients and
directions) are small, and are kept on the host as numpy float64 arrays, where a
step of arithmetic costs about a microsecond instead of a torch dispatch (the
search at small N is bound by that overhead). An objective that can do better
than one full evaluation per step supplies ``objective.lines(x0)`` (the exact
Ising posterior of a bin does, :class:`torch_ising.statespace.posterior.IsingBinPosterior`);
any other objective(x) -> (value, grad, hess) is evaluated in full at each step.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from .newton import NewtonResult, Objective

__all__ = ["conjugate_gradient_ascent", "Lines", "CG_TOL", "CG_LINE_TOL", "CG_MAX_ITER"]

#: the published gradient tolerance, max |grad| / R
CG_TOL = 1e-4
#: the published line-search tolerance on |change of a| * sum |s|
CG_LINE_TOL = 1e-2
#: the published iteration limit
CG_MAX_ITER = 500


class Lines(Protocol):
    """A current point x of a search (one per batch row) and lines x + a s through it.

    Arrays are numpy float64: gradients and directions (B, D), step lengths and derivatives (B,).
    """

    def grad(self) -> np.ndarray:
        """The gradient at the current point."""
        ...

    def along(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Start the line x + a s at the current point; (d/da f, -d^2/da^2 f) at a = 0."""
        ...

    def at(self, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Make x + alpha s the current point (per row); (d/da f, -d^2/da^2 f) there."""
        ...

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x (B, D), value (B,), grad (B, D), hess (B, D, D) or (B, D)) at the current point, as tensors."""
        ...


def _host(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(device="cpu", dtype=torch.float64).numpy()


def _quad(s: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    """s^T H s per batch row (H full (B, D, D) or diagonal (B, D))."""
    if H.ndim == s.ndim:
        return (s * H * s).sum(-1)
    return (s.unsqueeze(-2) @ H @ s.unsqueeze(-1)).reshape(s.shape[0])


class _Evaluations:
    """:class:`Lines` for a plain objective: every step is one full evaluation (value, grad, hess)."""

    def __init__(self, objective: Objective, x0: torch.Tensor) -> None:
        self.objective = objective
        self.x = self.base = x0
        self.f, self.g, self.H = objective(x0)

    def grad(self) -> np.ndarray:
        return _host(self.g)

    def _derivatives(self) -> tuple[np.ndarray, np.ndarray]:
        both = torch.stack(((self.g * self.s).sum(-1), -_quad(self.s, self.H)), dim=-1)
        d = _host(both)
        return d[:, 0], d[:, 1]

    def along(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.base = self.x
        self.s = torch.from_numpy(s).to(device=self.x.device, dtype=self.x.dtype)
        return self._derivatives()

    def at(self, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = torch.from_numpy(alpha[:, None]).to(device=self.x.device, dtype=self.x.dtype)
        self.x = self.base + a * self.s
        self.f, self.g, self.H = self.objective(self.x)
        return self._derivatives()

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.x, self.f, self.g, self.H


def _line_search(lines: Lines, s: np.ndarray, active: np.ndarray, line_tol: float) -> None:
    """Newton steps on a along x + a s (rows where ``active``; the others stay at a = 0).

    A row that has stopped keeps its last a; re-evaluating it there gives the same values.
    """
    slope, curv = lines.along(s)
    alpha = np.zeros(s.shape[0])
    snorm = np.abs(s).sum(-1)
    searching = active.copy()
    while searching.any():
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha_new = alpha + slope / curv
        negative = alpha_new < 0
        dalpha = np.where(negative, 0.5 * alpha, np.abs(alpha - alpha_new))
        alpha = np.where(searching, np.where(negative, 0.5 * alpha, alpha_new), alpha)
        sl, cu = lines.at(alpha)
        slope = np.where(searching, sl, slope)
        curv = np.where(searching, cu, curv)
        with np.errstate(invalid="ignore"):
            searching = searching & (dalpha * snorm > line_tol)


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
            (or its diagonal) of the log posterior; if it has a method
            ``lines(x0)`` returning :class:`Lines`, the line searches use that.
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
    lines_of = getattr(objective, "lines", None)
    lines: Lines = lines_of(x0) if lines_of is not None else _Evaluations(objective, x0)
    scale_h = _host(scale) if isinstance(scale, torch.Tensor) else np.float64(scale)
    B = x0.shape[0]
    g = lines.grad()
    d = s = g
    everyone = np.ones(B, dtype=bool)
    _line_search(lines, s, everyone, line_tol)
    active = everyone  # the published loop takes at least one conjugate step
    it = 0
    g = lines.grad()
    while active.any() and it < max_iter:
        some = not active.all()
        d_prev, d = d, (np.where(active[:, None], g, d) if some else g)
        with np.errstate(divide="ignore", invalid="ignore"):
            beta = np.maximum((d * (d - d_prev)).sum(-1) / (d_prev * d_prev).sum(-1), 0.0)
        s_new = d + beta[:, None] * s
        s = np.where(active[:, None], s_new, s) if some else s_new
        _line_search(lines, s, active, line_tol)
        it += 1
        g = lines.grad()
        active = active & ((np.abs(g) / scale_h).max(-1) > tol)
    x, f, g_t, H = lines.result()
    converged = bool(((np.abs(g) / scale_h).max(-1) <= tol).all())
    return NewtonResult(x, f, g_t, H, it, converged)
