"""The exact Ising (log-linear) distribution as an ``nn.Module``.

    p(x | theta) = exp(theta . F(x) - psi(theta))

``theta`` is an ``nn.Parameter`` of shape batch_shape + (D,). All moments are
exact and computed in O(N 2^N) by :mod:`torch_ising.moments`.

psi, eta and the Fisher matrix G come from one pass of the transforms, without
autograd (the fast, in-place path), cached until ``theta`` changes (its
version counter, storage, dtype or shape). Their derivatives are the next
moments, supplied by custom autograd functions: d psi / d theta = eta,
d eta / d theta = G, and d G / d theta (the third cumulants) by autograd
through the transforms, computed only when something is differentiated
through G.
"""

from __future__ import annotations

import warnings
import weakref
from typing import Any

import torch
from torch import nn

from . import moments as _m
from ._validation import as_tensor, as_theta, check_N_order, check_spikes, check_theta, n_params
from .basis import sufficient_stats
from .optim.newton import newton_ascent

__all__ = ["Ising"]

#: Above this many Fisher entries (batch x D^2) psi() and expectation() do not compute G along with them.
FISHER_CACHE_ENTRIES = 2**22


class _Fisher(torch.autograd.Function):
    """G(theta) from cached moments; its derivative by autograd through the transforms."""

    @staticmethod
    def forward(ctx, theta: torch.Tensor, G: torch.Tensor, N: int, order: int) -> torch.Tensor:
        ctx.save_for_backward(theta)
        ctx.N, ctx.order = N, order
        return G.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (theta,) = ctx.saved_tensors
        create = torch.is_grad_enabled()
        with torch.enable_grad():
            th = theta if create else theta.detach().requires_grad_(True)
            G = _m.fisher(th, ctx.N, ctx.order)
            (g,) = torch.autograd.grad(G, th, grad, create_graph=create)
        return g, None, None, None


class _FromMoments(torch.autograd.Function):
    """A moment of theta already computed (``value``), with the model and moments kept for backward."""

    @staticmethod
    def forward(ctx, theta: torch.Tensor, model: Ising, mo: _m.Moments, value: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(theta)
        ctx.model, ctx.mo = model, mo
        return value.clone()


class _Expectation(_FromMoments):
    """eta(theta) from cached moments; d eta / d theta = G."""

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (theta,) = ctx.saved_tensors
        G = ctx.model._fisher_of(theta, ctx.mo)
        return (grad.unsqueeze(-2) @ G).squeeze(-2), None, None, None


class _LogPartition(_FromMoments):
    """psi(theta) from cached moments; d psi / d theta = eta."""

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (theta,) = ctx.saved_tensors
        eta = _Expectation.apply(theta, ctx.model, ctx.mo, ctx.mo.eta) if torch.is_grad_enabled() else ctx.mo.eta
        return grad.unsqueeze(-1) * eta, None, None, None


class Ising(nn.Module):
    """Exact Ising model of N binary neurons with interactions up to ``order``.

    Args:
        N: number of neurons.
        order: interaction order O (1 = independent, 2 = pairwise, ...).
        batch_shape: leading batch dimensions of ``theta`` (e.g. time bins).
        dtype: floating dtype of ``theta`` (float64 by default).
        device: device of ``theta``.

    Attributes:
        theta: natural parameters, ``nn.Parameter`` of shape batch_shape + (D,),
            ordered as in MODEL.md section 1 (biases, then pairs, ...).

    Example:
        >>> m = Ising.from_theta(torch.tensor([-1.0, -1.0, 2.0]), N=2, order=2)
        >>> m.probs()  # seed order 00, 10, 01, 11
    """

    def __init__(
        self,
        N: int,
        order: int = 2,
        batch_shape: tuple[int, ...] = (),
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.N, self.order = check_N_order(N, order)
        self.D = n_params(self.N, self.order)
        self.theta = nn.Parameter(torch.zeros(*batch_shape, self.D, dtype=dtype, device=device))

    @classmethod
    def from_theta(cls, theta: Any, N: int, order: int = 2) -> Ising:
        """Build a model whose ``theta`` is a copy of ``theta`` (..., D)."""
        t = as_theta(theta)
        N, order = check_N_order(N, order)
        check_theta(t, N, order)
        model = cls(N, order, tuple(t.shape[:-1]), dtype=t.dtype, device=t.device)
        with torch.no_grad():
            model.theta.copy_(t)
        return model

    @property
    def batch_shape(self) -> torch.Size:
        return self.theta.shape[:-1]

    def extra_repr(self) -> str:
        return f"N={self.N}, order={self.order}, D={self.D}, batch_shape={tuple(self.batch_shape)}"

    # ------------------------------------------------------------------ moments
    def _key(self) -> tuple:
        """What identifies the values of theta: its version counter (bumped by every in-place change),
        storage, dtype, device and shape."""
        t = self.theta
        return (t._version, t.data_ptr(), t.dtype, t.device, tuple(t.shape))

    def _moments(self, with_fisher: bool) -> _m.Moments:
        """psi, eta (and G) at the current theta, detached; one transform pass per theta version."""
        key = self._key()
        cache = self.__dict__.get("_moments_cache")
        if (
            cache is not None
            and cache[0]() is self.theta  # the same tensor (a replaced theta is a new one)
            and cache[1] == key
            and (cache[2].fisher is not None or not with_fisher)
        ):
            return cache[2]
        theta = self.theta.detach()
        if not with_fisher:  # compute G along with psi and eta where it is small: fisher() is then free
            with_fisher = theta[..., :1].numel() * self.D**2 <= FISHER_CACHE_ENTRIES
        with torch.no_grad():
            mo = _m.moments(theta, self.N, self.order, with_fisher=with_fisher)
        self.__dict__["_moments_cache"] = (weakref.ref(self.theta), key, mo)
        return mo

    def _fisher_of(self, theta: torch.Tensor, mo: _m.Moments) -> torch.Tensor:
        """G at ``theta`` (whose moments are ``mo``), differentiable when autograd records."""
        G = mo.fisher
        if G is None:
            with torch.no_grad():
                G = _m.fisher(theta.detach(), self.N, self.order)
        if torch.is_grad_enabled() and theta.requires_grad:
            return _Fisher.apply(theta, G, self.N, self.order)
        return G if G is not mo.fisher else G.clone()

    def _tracked(self) -> bool:
        return torch.is_grad_enabled() and self.theta.requires_grad

    def psi(self) -> torch.Tensor:
        """Log-partition psi(theta) = log sum_x exp(theta . F(x)), shape batch_shape. Differentiable."""
        mo = self._moments(with_fisher=False)
        return _LogPartition.apply(self.theta, self, mo, mo.psi) if self._tracked() else mo.psi.clone()

    def forward(self) -> torch.Tensor:
        """Same as :meth:`psi`."""
        return self.psi()

    def log_probs(self) -> torch.Tensor:
        """log p(x) for every pattern in seed order, shape batch_shape + (2^N,)."""
        return _m.log_probs(self.theta, self.N, self.order)

    def probs(self) -> torch.Tensor:
        """p(x) for every pattern in seed order, shape batch_shape + (2^N,)."""
        return _m.probs(self.theta, self.N, self.order)

    def log_prob(self, x: Any) -> torch.Tensor:
        """log p(x | theta) = theta . F(x) - psi for binary patterns x (..., N)."""
        xt = as_tensor(x, device=self.theta.device)
        return _m.log_prob(self.theta, xt, self.N, self.order)

    def expectation(self) -> torch.Tensor:
        """eta = E[F(x)] = grad psi, shape batch_shape + (D,). Differentiable."""
        mo = self._moments(with_fisher=False)
        return _Expectation.apply(self.theta, self, mo, mo.eta) if self._tracked() else mo.eta.clone()

    def fisher(self) -> torch.Tensor:
        """Fisher information G = Cov[F(x)] = hess psi, shape batch_shape + (D, D). Differentiable."""
        return self._fisher_of(self.theta, self._moments(with_fisher=True))

    def entropy(self) -> torch.Tensor:
        """Entropy H = psi - theta . eta in nats, shape batch_shape."""
        return self.psi() - (self.theta * self.expectation()).sum(-1)

    def heat_capacity(self, beta: float | torch.Tensor = 1.0) -> torch.Tensor:
        """Exact heat capacity C(beta) = beta^2 theta^T G(beta theta) theta."""
        return _m.heat_capacity(self.theta, self.N, self.order, beta)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Exact samples, shape (n,) + batch_shape + (N,), dtype uint8."""
        s = _m.sample(self.theta.detach(), n, self.N, self.order, generator)
        return s.movedim(-2, 0)

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        spikes: Any,
        prior_mean: float | torch.Tensor = 0.0,
        prior_var: float | None = None,
        *,
        tol: float = 1e-10,
        max_iter: int = 200,
    ) -> Ising:
        """Stationary maximum-likelihood or MAP fit by Newton's method with the exact Fisher.

        Maximises (MODEL.md 3.6)

            l(theta) = R [ y . theta - psi(theta) ] - |theta - prior_mean|^2 / (2 prior_var)

        where y = (1/R) sum_r F(x_r) pools all trials (and bins). Without
        ``prior_var`` this is maximum likelihood; it diverges when some
        statistic y_S is 0 or 1, and a warning says so.

        Args:
            spikes: binary array (R, N), or (T, R, N) pooled over T.
            prior_mean: Gaussian prior mean (scalar or (D,)).
            prior_var: Gaussian prior variance (scalar); None for ML.
            tol: stop when max |grad| / R < tol.
            max_iter: most Newton iterations.

        Returns:
            self, with ``theta`` set to the estimate (same for every batch entry).
        """
        x = check_spikes(spikes, (2, 3))
        if x.ndim == 2:
            x = x.unsqueeze(0)
        if x.shape[-1] != self.N:
            raise ValueError(f"spikes must have N={self.N} neurons in the last dimension; got {tuple(x.shape)}")
        if prior_var is not None and not prior_var > 0:
            raise ValueError(f"prior_var must be > 0 or None, got {prior_var!r}")
        dtype, device = self.theta.dtype, self.theta.device
        R = x.shape[0] * x.shape[1]
        y = sufficient_stats(x.reshape(1, R, self.N), self.order, dtype=dtype, device=device)
        mu = torch.as_tensor(prior_mean, dtype=dtype, device=device).expand(1, self.D)
        prec = 0.0 if prior_var is None else 1.0 / float(prior_var)
        eye = torch.eye(self.D, dtype=dtype, device=device)
        if prior_var is None and bool(((y <= 0) | (y >= 1)).any()):
            warnings.warn(
                "some pattern statistic is 0 or 1, so the maximum-likelihood theta is infinite; "
                "the estimate will be large and arbitrary. Pass prior_var for a MAP estimate.",
                RuntimeWarning,
                stacklevel=2,
            )

        def objective(th: torch.Tensor):
            m = _m.moments(th, self.N, self.order)
            diff = th - mu
            f = R * ((y * th).sum(-1) - m.psi) - 0.5 * prec * (diff * diff).sum(-1)
            g = R * (y - m.eta) - prec * diff
            H = -R * m.fisher - prec * eye
            return f, g, H

        with torch.no_grad():
            res = newton_ascent(objective, mu.clone(), tol=tol, scale=R, max_iter=max_iter)
            if not res.converged:
                warnings.warn(
                    "Ising.fit did not converge: without a prior the maximum-likelihood estimate "
                    "does not exist when some pattern statistic is 0 or 1; pass prior_var.",
                    RuntimeWarning,
                    stacklevel=2,
                )
            self.theta.copy_(res.x[0].expand_as(self.theta))
        return self
