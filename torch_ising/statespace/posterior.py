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

from functools import lru_cache

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


#: Up to this N, on a CPU in float64, the line searches' 2^N-vectors stay on the host as numpy arrays too
#: (:class:`_HostPatterns`): at 2^N <= 256 a numpy step costs about a microsecond against several for a
#: torch call, and the search's time is its calls' overhead (the published library's own regime).
HOST_PATTERNS_MAX_N = 8


class _TorchPatterns:
    """The 2^N-vector steps of the line searches as torch calls (any device and dtype).

    Probabilities and energies are (B, 1, 2^N) for batched products; D-vectors come in and go out as
    numpy float64 arrays (B, D).
    """

    def __init__(self, N: int, order: int, B: int, like: torch.Tensor) -> None:
        self._common(N, order, B, like)
        self.subset_sums = _m.transform_operator(N, False, self.dtype, self.device)
        self.superset_sums = _m.transform_operator(N, True, self.dtype, self.device)
        self.zeros = like.new_zeros(B, 2**N)  # scatter buffer: g[mask(S)] = theta_S, zeros elsewhere

    def _common(self, N: int, order: int, B: int, like: torch.Tensor) -> None:
        self.B, self.dtype, self.device = B, like.dtype, like.device
        self.plain = like.device.type == "cpu" and like.dtype == torch.float64  # numpy shares the memory
        self.masks = _m.subset_masks_cached(N, order, self.device)

    def host(self, t: torch.Tensor) -> np.ndarray:
        return t.numpy() if self.plain and not t.requires_grad else host(t)

    def tensor(self, a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.asarray(a))
        return t if self.plain else t.to(device=self.device, dtype=self.dtype)

    def energies(self, theta: np.ndarray) -> torch.Tensor:
        """E = theta . F(x) for all patterns (B, 1, 2^N): the subset sums of theta scattered to its masks."""
        return self.subset_sums(self.zeros.index_copy_(-1, self.masks, self.tensor(theta))).unsqueeze(1)

    def softmax(self, E: torch.Tensor) -> torch.Tensor:
        return torch.softmax(E, dim=-1)

    def line(self, E: torch.Tensor, Es: torch.Tensor, alpha: list[float]) -> torch.Tensor:
        """E + alpha Es, one alpha per row."""
        if self.B == 1:
            return torch.add(E, Es, alpha=alpha[0])
        col = torch.tensor(alpha, dtype=self.dtype, device=self.device).view(self.B, 1, 1)
        return torch.addcmul(E, col, Es)

    def joint(self, p: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
        """(q (B, 1, 2^N), eta (B, D) on the host): q[S] = P(all of S fire), eta its entries at the masks."""
        q = self.superset_sums(p)
        return q, self.host(q.index_select(-1, self.masks))[:, 0]

    def centred(self, Es: torch.Tensor, c: np.ndarray) -> torch.Tensor:
        """The columns (E(s) - c, (E(s) - c)^2), (B, 2^N, 2)."""
        Ec = Es[:, 0] - (float(c[0]) if self.B == 1 else self.tensor(c[:, None]))
        return torch.stack((Ec, Ec * Ec), dim=-1)

    def moments(self, p: torch.Tensor, cols: torch.Tensor) -> list[list[list[float]]]:
        """E_p of the columns, per row, as nested lists (B, 1, 2)."""
        return torch.bmm(p, cols).tolist()

    def psi(self, E: torch.Tensor, p: torch.Tensor) -> np.ndarray:
        """psi = E(0) - log p(0) = -log p(0) (the silent pattern has energy 0), unless p(0) underflows."""
        p0 = self.host(p[:, 0, 0])
        if bool((p0 > 1e-200).all()):
            return -np.log(p0)
        return self.host(torch.logsumexp(E[:, 0], dim=-1))

    def fisher(self, q: torch.Tensor, N: int, order: int) -> torch.Tensor:
        return _m.fisher_from_joint_trusted(q[:, 0], N, order)


@lru_cache(maxsize=16)
def _host_zeta(N: int) -> tuple[np.ndarray, np.ndarray]:
    """(Z, Z^T) as read-only C-contiguous float64 arrays, Z[a, b] = [a subset of b] (built once per N)."""
    Z = _m._zeta_matrix(N, torch.float64, torch.device("cpu")).numpy()
    Zt = np.ascontiguousarray(Z.T)
    Z.flags.writeable = False
    Zt.flags.writeable = False
    return Z, Zt


class _HostPatterns(_TorchPatterns):
    """The same steps as numpy float64 arrays on the host (:data:`HOST_PATTERNS_MAX_N`; CPU, float64 only).

    The transforms are one product with the 2^N x 2^N zeta matrix Z[a, b] = [a subset of b] (subset sums
    v Z, superset sums v Z^T), as :func:`torch_ising.moments.transform_operator` does at these N.
    """

    def __init__(self, N: int, order: int, B: int, like: torch.Tensor) -> None:
        self._common(N, order, B, like)  # the torch transforms and buffer are not needed here
        self.masks_np = self.masks.numpy()
        self.Z, self.Zt = _host_zeta(N)
        self.scatter = np.zeros((B, 2**N))

    def energies(self, theta: np.ndarray) -> np.ndarray:
        self.scatter[:, self.masks_np] = theta
        return (self.scatter @ self.Z)[:, None, :]

    def softmax(self, E: np.ndarray) -> np.ndarray:
        e = np.exp(E - (E.max() if self.B == 1 else E.max(-1, keepdims=True)))
        e /= e.sum() if self.B == 1 else e.sum(-1, keepdims=True)
        return e

    def line(self, E: np.ndarray, Es: np.ndarray, alpha: list[float]) -> np.ndarray:
        return E + (alpha[0] if self.B == 1 else np.array(alpha)[:, None, None]) * Es

    def joint(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = p @ self.Zt
        return q, q[:, 0, self.masks_np]

    def centred(self, Es: np.ndarray, c: np.ndarray) -> np.ndarray:
        Ec = Es[:, 0] - c[:, None]
        cols = np.empty(Ec.shape + (2,))
        cols[..., 0] = Ec
        np.multiply(Ec, Ec, out=cols[..., 1])
        return cols

    def moments(self, p: np.ndarray, cols: np.ndarray) -> list[list[list[float]]]:
        return np.matmul(p, cols).tolist()

    def psi(self, E: np.ndarray, p: np.ndarray) -> np.ndarray:
        p0 = p[:, 0, 0]
        if bool((p0 > 1e-200).all()):
            return -np.log(p0)
        m = E[:, 0].max(-1)
        return m + np.log(np.exp(E[:, 0] - m[:, None]).sum(-1))

    def fisher(self, q: np.ndarray, N: int, order: int) -> torch.Tensor:
        return _m.fisher_from_joint_trusted(torch.from_numpy(q[:, 0]), N, order)


class _IsingLines:
    """Current point x, and the line x + a s through it, of a conjugate-gradient search on L_t.

    The 2^N-vectors (energies, probabilities) live in ``self.ops`` (:class:`_HostPatterns` at small N on a
    CPU in float64, else :class:`_TorchPatterns`). On the host: r = R y_t - P (x - m), so that
    grad L_t = r - R eta, and the steps taken from x0 (x itself is needed only at the end).
    """

    def __init__(self, post: IsingBinPosterior, x0: torch.Tensor) -> None:
        self.post = post
        N, order = self.N, self.order = post.N, post.order
        self.B = x0.shape[0]
        small = N <= HOST_PATTERNS_MAX_N and x0.device.type == "cpu" and x0.dtype == torch.float64
        self.ops = ops = (_HostPatterns if small else _TorchPatterns)(N, order, self.B, x0)
        self.R = float(post.R)
        self.P = ops.host(post.P)
        self.x0 = ops.host(x0)
        self.Ry = self.R * ops.host(post.y)
        self.r = self.Ry - self._Pv(self.x0 - ops.host(post.m))
        self.E = ops.energies(self.x0)
        self.p = ops.softmax(self.E)
        self.steps: list[tuple[object, np.ndarray]] = []  # (a, s) of the lines taken
        self.alpha: list[float] | None = None
        self._g: np.ndarray | None = None

    def _Pv(self, v: np.ndarray) -> np.ndarray:
        return (self.P @ v[..., None])[..., 0]

    def grad(self) -> np.ndarray:
        """grad L_t = r - R eta at the current point, (B, D)."""
        if self._g is None:
            if self.alpha is not None:  # make the point reached along the line (x + a s) the current point
                a = self.alpha[0] if self.B == 1 else np.array(self.alpha)[:, None]
                self.steps.append((a, self.s))
                self.r = self.r - a * self.Ps
                self.E = self.E_line
                self.alpha = None
            self.q, self.eta = self.ops.joint(self.p)
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
        self.Es = self.ops.energies(s)
        self.cols = self.ops.centred(self.Es, dot(self.eta, s))
        return self._derivatives([0.0] * self.B)

    def at(self, alpha: list[float]) -> tuple[list[float], list[float]]:
        """Move to x + alpha s (one step length per row); (d/da L_t, -d^2/da^2 L_t) there."""
        self.alpha = list(alpha)
        self.E_line = self.ops.line(self.E, self.Es, alpha)
        self.p = self.ops.softmax(self.E_line)
        self._g = None
        return self._derivatives(alpha)

    def _derivatives(self, alpha: list[float]) -> tuple[list[float], list[float]]:
        # per row: E_p[E(s) - c] and E_p[(E(s) - c)^2]; slope = g.s - a s^T P s - R (E_p[E(s)] - c)
        mom = self.ops.moments(self.p, self.cols)
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
        ops = self.ops
        psi = ops.psi(self.E, self.p)
        # L_t = R y.x - R psi - (x - m)^T P (x - m) / 2 with P (x - m) = R y - r
        Ry, m = self.Ry, ops.host(self.post.m)
        value = dot(Ry, x) - self.R * psi - 0.5 * dot(x - m, Ry - self.r)
        G = ops.fisher(self.q, self.N, self.order)  # q at this point, from grad()
        hess = -self.R * G - self.post.P
        return ops.tensor(np.array(x)), ops.tensor(value), ops.tensor(np.array(g)), hess
