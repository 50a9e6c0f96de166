"""The published library's default MAP search: nonlinear conjugate gradient, batched.

torch_ising finds every posterior mode by damped Newton to max |grad| / R < 1e-8
(:mod:`torch_ising.optim.newton`). The published SSLL library's default
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
gradient, and the first two derivatives along a line through it. At small N the
search is bound by per-call overhead, not arithmetic, so its small quantities stay
on the host: the per-row scalars of the line searches (step lengths, derivatives,
stopping flags) as Python floats, a fraction of a microsecond per operation, and
the D-vectors (gradients, directions) as numpy float64 arrays (B, D), about a
microsecond, against several for a torch call. An objective that can do better
than one full evaluation per step supplies ``objective.lines(x0)`` (the exact
Ising posterior of a bin does, :class:`torch_ising.statespace.posterior.IsingBinPosterior`);
any other objective(x) -> (value, grad, hess) is evaluated in full at each step.
"""

from __future__ import annotations

import math
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

    Gradients and directions are numpy float64 arrays (B, D); step lengths and
    derivatives are lists of B Python floats.
    """

    def grad(self) -> np.ndarray:
        """The gradient at the current point."""
        ...

    def along(self, s: np.ndarray) -> tuple[list[float], list[float]]:
        """Start the line x + a s at the current point; (d/da f, -d^2/da^2 f) at a = 0."""
        ...

    def at(self, alpha: list[float]) -> tuple[list[float], list[float]]:
        """Make x + alpha s the current point (per row); (d/da f, -d^2/da^2 f) there."""
        ...

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x (B, D), value (B,), grad (B, D), hess (B, D, D) or (B, D)) at the current point, as tensors."""
        ...


def host(t: torch.Tensor) -> np.ndarray:
    """A float64 numpy array of a small tensor (on the CPU in float64: a view, no copy)."""
    t = t.detach()
    if t.device.type != "cpu" or t.dtype != torch.float64:
        t = t.to(device="cpu", dtype=torch.float64)
    return t.numpy()


#: row-wise dot product of (B, D) arrays
dot = getattr(np, "vecdot", None) or (lambda a, b: (a * b).sum(-1))


def divide(a: float, b: float) -> float:
    """a / b with the IEEE result (+-inf or nan) where b == 0, as the batched (tensor) form gives."""
    try:
        return a / b
    except ZeroDivisionError:
        return math.nan if a == 0 or a != a else math.copysign(math.inf, a) * math.copysign(1.0, b)


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
        return host(self.g)

    def _derivatives(self) -> tuple[list[float], list[float]]:
        both = torch.stack(((self.g * self.s).sum(-1), -_quad(self.s, self.H)), dim=-1).tolist()
        return [b[0] for b in both], [b[1] for b in both]

    def along(self, s: np.ndarray) -> tuple[list[float], list[float]]:
        self.base = self.x
        self.s = torch.from_numpy(s).to(device=self.x.device, dtype=self.x.dtype)
        return self._derivatives()

    def at(self, alpha: list[float]) -> tuple[list[float], list[float]]:
        a = torch.tensor(alpha, device=self.x.device, dtype=self.x.dtype)
        self.x = self.base + a[:, None] * self.s
        self.f, self.g, self.H = self.objective(self.x)
        return self._derivatives()

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.x, self.f, self.g, self.H


def _line_search(lines: Lines, s: np.ndarray, active: list[bool], line_tol: float) -> None:
    """Newton steps on a along x + a s (rows where ``active``; the others stay at a = 0).

    Each step is a <- a + slope / curvature, or a <- a / 2 where that would be negative
    (a never falls below 0); a row stops once |change of a| * sum |s| <= line_tol and keeps
    its last a, where re-evaluating it gives the same values.
    """
    slope, curv = lines.along(s)
    snorm = np.abs(s).sum(-1).tolist()
    B = len(active)
    alpha = [0.0] * B
    searching = list(active)
    while True:
        for b in range(B):
            if searching[b]:
                a = alpha[b]
                step = divide(slope[b], curv[b])
                if a + step < 0:
                    step = -0.5 * a
                alpha[b] = a + step
                searching[b] = abs(step) * snorm[b] > line_tol
        slope, curv = lines.at(alpha)
        if not any(searching):
            return


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
        a :class:`~torch_ising.optim.newton.NewtonResult` at the final point; its
        ``hess`` gives the Laplace covariance there, as in the published code.
    """
    lines_of = getattr(objective, "lines", None)
    lines: Lines = lines_of(x0) if lines_of is not None else _Evaluations(objective, x0)
    B = x0.shape[0]
    if isinstance(scale, torch.Tensor):
        scale = host(scale)

    g = lines.grad()
    d = s = g
    _line_search(lines, s, [True] * B, line_tol)
    active = [True] * B  # the published loop takes at least one conjugate step
    it = 0
    g = lines.grad()
    while it < max_iter:
        every = all(active)
        rows = None if every else np.array(active)[:, None]
        d_prev, d = d, (g if every else np.where(rows, g, d))
        # Polak-Ribiere+ (a nan, from a row that has stopped, stays nan as with a tensor clamp)
        num, den = dot(d, d - d_prev).tolist(), dot(d_prev, d_prev).tolist()
        beta = [b if not b < 0 else 0.0 for b in map(divide, num, den)]
        s_new = d + (beta[0] if B == 1 else np.array(beta)[:, None]) * s
        s = s_new if every else np.where(rows, s_new, s)
        _line_search(lines, s, active, line_tol)
        it += 1
        g = lines.grad()
        size = (np.abs(g) / scale).max(-1).tolist()
        active = [a and m > tol for a, m in zip(active, size, strict=True)]
        if not any(active):
            break
    else:
        size = (np.abs(g) / scale).max(-1).tolist()
    x, f, g_t, H = lines.result()
    return NewtonResult(x, f, g_t, H, it, all(m <= tol for m in size))
