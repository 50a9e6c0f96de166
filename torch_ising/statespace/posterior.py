"""The log posterior of one bin, the objective of the filter's mode search (MODEL.md 3.1).

    L_t(theta) = R [ y_t . theta - psi(theta) ] - 1/2 (theta - m)^T P (theta - m),
    grad L_t = R (y_t - eta(theta)) - P (theta - m),   hess L_t = -R G(theta) - P,

with m = theta_{t|t-1} and P = W_{t|t-1}^{-1}, for the exact Ising likelihood, batched over data sets (B).

Called as ``L(theta) -> (value, grad, hess)`` it serves damped Newton. Its :meth:`IsingBinPosterior.lines`
serves the conjugate gradient's line searches (:class:`torch_ising.optim.conjugate_gradient.Lines`) in O(2^N) per
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
from ..optim.conjugate_gradient import dot, host

__all__ = ["IsingBinPosterior"]


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
        self.y = y
        self.m = m
        self.P = P

    def __call__(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(L_t (B,), grad (B, D), hess (B, D, D)) at theta (B, D)."""
        mo = _m.moments_trusted(theta, self.N, self.order)
        R, diff = self.R, theta - self.m
        Pd = (self.P @ diff.unsqueeze(-1)).squeeze(-1)
        value = R * ((self.y * theta).sum(-1) - mo.psi) - 0.5 * (diff * Pd).sum(-1)
        return value, R * (self.y - mo.eta) - Pd, -R * mo.fisher - self.P

    def lines(self, x0: torch.Tensor) -> _IsingLines:
        """The line searches of the conjugate gradient from x0 (:class:`torch_ising.optim.conjugate_gradient.Lines`)."""
        return _IsingLines(self, x0)


class _IsingLines:
    """Current point x, and the line x + a s through it, of a conjugate-gradient search on L_t.

    The probabilities are kept as (B, 1, 2^N) for batched products. On the host: r = R y_t - P (x - m),
    so that grad L_t = r - R eta, and the steps taken from x0 (x itself is needed only at the end).
    """

    def __init__(self, post: IsingBinPosterior, x0: torch.Tensor) -> None:
        self.post = post
        N, order = self.N, self.order = post.N, post.order
        self.B = x0.shape[0]
        self.dtype, self.device = x0.dtype, x0.device
        self.plain = x0.device.type == "cpu" and x0.dtype == torch.float64  # numpy shares the memory
        self.R = float(post.R)
        self.P = self._host(post.P)
        self.x0 = self._host(x0)
        self.Ry = self.R * self._host(post.y)
        self.r = self.Ry - self._Pv(self.x0 - self._host(post.m))
        self.masks = _m.subset_masks_cached(N, order, self.device)
        self.subset_sums = _m.transform_operator(N, False, self.dtype, self.device)
        self.superset_sums = _m.transform_operator(N, True, self.dtype, self.device)
        self.zeros = x0.new_zeros(self.B, 2**N)  # scatter buffer: g[mask(S)] = theta_S, zeros elsewhere
        self.E = self._energies(x0).unsqueeze(1)
        self.p = torch.softmax(self.E, dim=-1)
        self.steps: list[tuple[object, np.ndarray]] = []  # (a, s) of the lines taken
        self.alpha: list[float] | None = None
        self._g: np.ndarray | None = None

    def _host(self, t: torch.Tensor) -> np.ndarray:
        return t.numpy() if self.plain and not t.requires_grad else host(t)

    def _device(self, a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(a)
        return t if self.plain else t.to(device=self.device, dtype=self.dtype)

    def _column(self, v: list[float]) -> torch.Tensor:
        return torch.tensor(v, dtype=self.dtype, device=self.device).view(self.B, 1, 1)

    def _Pv(self, v: np.ndarray) -> np.ndarray:
        return (self.P @ v[..., None])[..., 0]

    def _energies(self, theta: torch.Tensor) -> torch.Tensor:
        """E = theta . F(x) for all patterns (B, 2^N): the subset sums of theta scattered to its masks."""
        return self.subset_sums(self.zeros.index_copy_(-1, self.masks, theta))

    def grad(self) -> np.ndarray:
        """grad L_t = r - R eta at the current point, (B, D)."""
        if self._g is None:
            if self.alpha is not None:  # make the point reached along the line (x + a s) the current point
                a = self.alpha[0] if self.B == 1 else np.array(self.alpha)[:, None]
                self.steps.append((a, self.s))
                self.r = self.r - a * self.Ps
                self.E = self.E_line
                self.alpha = None
            self.q = self.superset_sums(self.p)  # (B, 1, 2^N): q[S] = P(all of S fire)
            self.eta = self._host(self.q.index_select(-1, self.masks))[:, 0]
            self._g = self.r - self.R * self.eta
        return self._g

    def along(self, s: np.ndarray) -> tuple[list[float], list[float]]:
        """Start the line x + a s at the current point; (d/da L_t, -d^2/da^2 L_t) at a = 0."""
        g = self.grad()  # settles, and gives eta at the current point
        self.s = s
        self.Ps = self._Pv(s)
        self.gs = dot(g, s).tolist()
        self.sPs = dot(s, self.Ps).tolist()
        # E(s) - c and (E(s) - c)^2 with c = E_p[E(s)] = eta . s at a = 0: the mean and variance of E(s)
        # along the line are read from centred values (no cancellation in E[z^2] - E[z]^2)
        c = dot(self.eta, s)
        Es = self._energies(self._device(s))
        self.Es = Es.unsqueeze(1)
        Ec = Es - (float(c[0]) if self.B == 1 else self._device(c[:, None]))
        self.cols = torch.stack((Ec, Ec * Ec), dim=-1)  # (B, 2^N, 2)
        return self._derivatives([0.0] * self.B)

    def at(self, alpha: list[float]) -> tuple[list[float], list[float]]:
        """Move to x + alpha s (one step length per row); (d/da L_t, -d^2/da^2 L_t) there."""
        self.alpha = list(alpha)
        if self.B == 1:
            self.E_line = torch.add(self.E, self.Es, alpha=alpha[0])
        else:
            self.E_line = torch.addcmul(self.E, self._column(alpha), self.Es)
        self.p = torch.softmax(self.E_line, dim=-1)
        self._g = None
        return self._derivatives(alpha)

    def _derivatives(self, alpha: list[float]) -> tuple[list[float], list[float]]:
        # per row: E_p[E(s) - c] and E_p[(E(s) - c)^2]; slope = g.s - a s^T P s - R (E_p[E(s)] - c)
        mom = torch.bmm(self.p, self.cols).tolist()
        R = self.R
        if self.B == 1:
            (centred, second), a, gs, sPs = mom[0][0], alpha[0], self.gs[0], self.sPs[0]
            return [gs - a * sPs - R * centred], [sPs + R * (second - centred * centred)]
        slope, curv = [], []
        for m, a, gs, sPs in zip(mom, alpha, self.gs, self.sPs, strict=True):
            centred, second = m[0]
            slope.append(gs - a * sPs - R * centred)
            curv.append(sPs + R * (second - centred * centred))
        return slope, curv

    def result(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x, L_t, grad, hess) at the current point, as tensors."""
        g = self.grad()
        x = self.x0
        for a, s in self.steps:
            x = x + a * s
        p = self.p[:, 0]
        # psi = E(0) - log p(0) = -log p(0) (the silent pattern has energy 0), unless p(0) underflows
        p0 = self._host(p[:, 0])
        if bool((p0 > 1e-200).all()):
            psi = -np.log(p0)
        else:
            psi = self._host(torch.logsumexp(self.E[:, 0], dim=-1))
        # L_t = R y.x - R psi - (x - m)^T P (x - m) / 2 with P (x - m) = R y - r
        Ry, m = self.Ry, self._host(self.post.m)
        value = dot(Ry, x) - self.R * psi - 0.5 * dot(x - m, Ry - self.r)
        G = _m.fisher_from_joint_trusted(self.q[:, 0], self.N, self.order)  # q at this point, from grad()
        hess = -self.R * G - self.post.P
        return self._device(np.array(x)), self._device(value), self._device(np.array(g)), hess
