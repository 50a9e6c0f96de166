"""The log posterior of one bin, the objective of the filter's mode search (MODEL.md 3.1).

    L_t(theta) = R [ y_t . theta - psi(theta) ] - 1/2 (theta - m)^T P (theta - m),
    grad L_t = R (y_t - eta(theta)) - P (theta - m),   hess L_t = -R G(theta) - P,

with m = theta_{t|t-1} and P = W_{t|t-1}^{-1}, for the exact Ising likelihood, batched over data sets (B).

Called as ``L(theta) -> (value, grad, hess)`` it serves damped Newton. Its :meth:`IsingBinPosterior.lines`
serves the conjugate gradient's line searches (:class:`torch_ising.conjugate_gradient.Lines`) in O(2^N) per
step: the energies are linear in theta (a zeta transform), E(x + a s) = E(x) + a E(s), so with
p_a = softmax(E(x) + a E(s)) the derivatives along the line are

    d/da L_t(x + a s)     = (R y_t - P (x - m)) . s - a s^T P s - R p_a . E(s),
    -d^2/da^2 L_t(x + a s) = s^T P s + R Var_{p_a}[E(s)]      (s^T G s = Var[s . F(x)]),

one softmax and one product with E(s) per step, without the D x D Fisher matrix. The D-vectors of the
search (x, P (x - m), the direction) are small; they are kept on the host as numpy arrays, where a step of
arithmetic costs about a microsecond instead of a torch dispatch.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import moments as _m

__all__ = ["IsingBinPosterior"]


def _host(t: torch.Tensor) -> np.ndarray:
    """A float64 numpy copy (or, on the CPU, view) of a small tensor."""
    return t.detach().to(device="cpu", dtype=torch.float64).numpy()


class IsingBinPosterior:
    """L_t(theta) for the exact Ising likelihood of bin t, with a Gaussian prior N(m, P^{-1}).

    Args:
        y: the bin's empirical statistics y_t, (B, D).
        R: trials per bin.
        N: number of neurons.
        order: interaction order.
        m: prior mean theta_{t|t-1}, (B, D).
        P: prior precision, (B, D, D).
    """

    def __init__(self, y: torch.Tensor, R: int, N: int, order: int, m: torch.Tensor, P: torch.Tensor) -> None:
        self.R, self.N, self.order = R, N, order
        self.Ry = R * y
        self.m = m
        self.P = P

    def __call__(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(L_t (B,), grad (B, D), hess (B, D, D)) at theta (B, D)."""
        mo = _m.moments_trusted(theta, self.N, self.order)
        diff = theta - self.m
        Pd = (self.P @ diff.unsqueeze(-1)).squeeze(-1)
        value = (self.Ry * theta).sum(-1) - self.R * mo.psi - 0.5 * (diff * Pd).sum(-1)
        return value, self.Ry - self.R * mo.eta - Pd, -self.R * mo.fisher - self.P

    def lines(self, x0: torch.Tensor) -> _IsingLines:
        """The line-search protocol of :func:`torch_ising.conjugate_gradient.conjugate_gradient_ascent`, from x0."""
        return _IsingLines(self, x0)


class _IsingLines:
    """Current point x, and the line x + a s through it, of a conjugate-gradient search on L_t."""

    def __init__(self, post: IsingBinPosterior, x0: torch.Tensor) -> None:
        self.post = post
        self.dtype, self.device = x0.dtype, x0.device
        self.R = float(post.R)
        self.Ry, self.m, self.P = _host(post.Ry), _host(post.m), _host(post.P)
        self.x = _host(x0)
        self.Pd = self._Pv(self.x - self.m)
        self.E = _m.energies_trusted(x0, post.N, post.order)
        self.p = torch.softmax(self.E, dim=-1)
        self.alpha: np.ndarray | None = None
        self._g: np.ndarray | None = None

    def _Pv(self, v: np.ndarray) -> np.ndarray:
        return (self.P @ v[..., None])[..., 0]

    def _device(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).to(device=self.device, dtype=self.dtype)

    def _settle(self) -> None:
        """Make the point reached along the current line (x + a s) the current point."""
        if self.alpha is not None:
            a = self.alpha[:, None]
            self.x = self.x + a * self.s
            self.Pd = self.Pd + a * self.Ps
            self.E = self.E_line
            self.alpha = None

    def grad(self) -> np.ndarray:
        """grad L_t at the current point, (B, D)."""
        if self._g is None:
            self._settle()
            eta, _ = _m.moments_from_probs_trusted(self.p, self.post.N, self.post.order, with_fisher=False)
            self._g = self.Ry - self.R * _host(eta) - self.Pd
        return self._g

    def along(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Start the line x + a s at the current point; (d/da L_t, -d^2/da^2 L_t) at a = 0, each (B,)."""
        self._settle()
        self.s = s
        self.Ps = self._Pv(s)
        self.c0 = ((self.Ry - self.Pd) * s).sum(-1)
        self.sPs = (s * self.Ps).sum(-1)
        Es = _m.energies_trusted(self._device(s), self.post.N, self.post.order)
        self.Es = Es
        # columns E(s) - c, (E(s) - c)^2 and E(s), with c = E_p[E(s)] at a = 0 so that the variance is
        # read from centred values (no cancellation in E[z^2] - E[z]^2)
        c = (self.p * Es).sum(-1, keepdim=True)
        Ec = Es - c
        self.cols = torch.stack((Ec, Ec * Ec, Es), dim=-1)
        return self._derivatives(np.zeros(s.shape[0]))

    def at(self, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Move to x + alpha s (alpha (B,)); (d/da L_t, -d^2/da^2 L_t) there."""
        self.alpha = alpha
        self.E_line = torch.addcmul(self.E, self._device(alpha[:, None]), self.Es)
        self.p = torch.softmax(self.E_line, dim=-1)
        self._g = None
        return self._derivatives(alpha)

    def _derivatives(self, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mom = _host(torch.bmm(self.p.unsqueeze(1), self.cols))[:, 0]  # (B, 3)
        centred, second, mean = mom[:, 0], mom[:, 1], mom[:, 2]
        slope = self.c0 - alpha * self.sPs - self.R * mean
        curvature = self.sPs + self.R * (second - centred * centred)
        return slope, curvature

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x, L_t, grad, hess) at the current point, as tensors."""
        g = self.grad()
        psi = _host(torch.logsumexp(self.E, dim=-1))
        diff = self.x - self.m
        value = (self.Ry * self.x).sum(-1) - self.R * psi - 0.5 * (diff * self.Pd).sum(-1)
        _, G = _m.moments_from_probs_trusted(self.p, self.post.N, self.post.order, with_fisher=True)
        hess = -self.R * G - self.post.P
        return self._device(self.x), self._device(value), self._device(g), hess
