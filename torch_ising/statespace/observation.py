"""Observation models for the Laplace filter.

An observation model supplies the log-likelihood of bin t, log p(data_t | theta),
for a batch of parameter vectors theta (B, D), one per data set. The filter
finds the posterior mode with Newton's method; it takes the gradient and the
Hessian from torch autograd (:meth:`ObservationModel.value_grad_hess`), so any
differentiable log-likelihood plugs in. :class:`ExactIsing` also supplies the
closed forms (MODEL.md 3.1)

    log p(y_t | theta) = R_t [ y_t . theta - psi(theta) ],
    grad = R_t (y_t - eta(theta)),  hess = -R_t G(theta),

where R_t is the number of observed trials of bin t (R in every bin without a
``mask``; R_t = 0 for a missing bin, which then contributes nothing),

computed by the O(N 2^N) transforms of :mod:`torch_ising.moments` (the fast path).
"""

from __future__ import annotations

import torch

from .. import moments as _m
from .posterior import IsingBinPosterior

__all__ = ["ObservationModel", "ExactIsing", "autograd_value_grad_hess"]


def autograd_value_grad_hess(
    fn, theta: torch.Tensor, diagonal: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Value, gradient and Hessian of a batch-separable function by autograd.

    ``fn(theta (B, D)) -> (B,)`` must treat batch rows independently. The
    gradient is one reverse pass; the Hessian rows are forward-over-reverse
    Hessian-vector products H e_d for d = 1..D, vectorised with ``torch.func.vmap``.

    Returns:
        value (B,), grad (B, D), and hess (B, D, D) (or its diagonal (B, D)).
    """
    theta = theta.detach()

    def grad_fn(th: torch.Tensor) -> torch.Tensor:
        return torch.func.grad(lambda z: fn(z).sum())(th)

    B, D = theta.shape
    with torch.enable_grad():
        value = fn(theta)
        grad = grad_fn(theta)
        basis = torch.eye(D, dtype=theta.dtype, device=theta.device)[:, None, :].expand(D, B, D)
        cols = torch.func.vmap(lambda v: torch.func.jvp(grad_fn, (theta,), (v,))[1])(basis)  # (D, B, D)
    hess = cols.permute(1, 2, 0)
    hess = 0.5 * (hess + hess.transpose(-1, -2))
    if diagonal:
        hess = torch.diagonal(hess, dim1=-2, dim2=-1)
    return value.detach(), grad.detach(), hess.detach()


class ObservationModel:
    """Base class: the likelihood of one data set per batch row, bin by bin.

    Subclasses set ``B`` (data sets), ``T`` (bins), ``D`` (parameters), ``R``
    (trials; the largest per-bin count, the scale of the mode searches' tolerance)
    and implement :meth:`log_lik`. They may override :meth:`value_grad_hess` with
    closed forms and :meth:`log_lik_all` with a batched version.

    Attributes:
        diagonal: when True the filter keeps diagonal covariances (large D).
        R_scale: None, or per data set (B,) the trials that scale the mode searches'
            tolerance (max |grad| / R_scale), when they differ between data sets (masks).
    """

    B: int
    T: int
    D: int
    R: int
    diagonal: bool = False
    R_scale: torch.Tensor | None = None

    def log_lik(self, theta: torch.Tensor, t: int) -> torch.Tensor:
        """log p(data_t | theta) for theta (B, D); shape (B,). Must be differentiable."""
        raise NotImplementedError

    def log_lik_all(self, theta: torch.Tensor) -> torch.Tensor:
        """log p(data_t | theta_t) for all bins, theta (B, T, D) -> (B, T), as used in the mll."""
        return torch.stack([self.log_lik(theta[:, t], t) for t in range(theta.shape[1])], dim=1)

    def value_grad_hess(self, theta: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-likelihood, gradient and Hessian (diagonal when ``self.diagonal``) by autograd."""
        return autograd_value_grad_hess(lambda th: self.log_lik(th, t), theta, self.diagonal)

    def value_grad_hess_all(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-likelihood (B, T), gradient (B, T, D) and Hessian (B, T, D, D) of every bin at once.

        For the joint E-step. By default autograd over :meth:`log_lik_all`, with the
        B T rows treated as one batch.
        """
        B, T, D = theta.shape

        def rows(th: torch.Tensor) -> torch.Tensor:
            return self.log_lik_all(th.reshape(B, T, D)).reshape(-1)

        v, g, H = autograd_value_grad_hess(rows, theta.reshape(B * T, D))
        return v.reshape(B, T), g.reshape(B, T, D), H.reshape(B, T, D, D)

    def precision(self, theta: torch.Tensor, t: int) -> torch.Tensor:
        """Observation precision -hess log p(data_t | theta) at the mode, for the Laplace covariance."""
        return -self.value_grad_hess(theta, t)[2]

    def expectation(self, theta: torch.Tensor) -> torch.Tensor:
        """Expectation parameters eta(theta) for theta (..., D)."""
        raise NotImplementedError


class ExactIsing(ObservationModel):
    """Exact Ising likelihood with closed-form gradient and Fisher (the fast path).

    Args:
        y: empirical statistics, shape (B, T, D) (over the observed trials of each bin).
        R: trials per bin: an int, or a tensor broadcastable to (B, T) of observed
            trials R_t (0 for a missing bin).
        N: number of neurons.
        order: interaction order.
        use_autograd: take gradient and Hessian from autograd instead of the
            closed forms (for testing the two paths against each other).
    """

    def __init__(self, y: torch.Tensor, R: int | torch.Tensor, N: int, order: int, use_autograd: bool = False) -> None:
        self.y = y
        self.B, self.T, self.D = y.shape
        if isinstance(R, torch.Tensor):
            self.R_t = R.to(dtype=y.dtype, device=y.device).expand(self.B, self.T)
            self.R = max(1, int(self.R_t.max()))
            # each data set's mode searches stop at its own max |grad| / R, as when fitted alone
            self.R_scale = self.R_t.amax(1).clamp_min(1.0)
        else:
            self.R = int(R)
            self.R_t = torch.full((self.B, self.T), float(self.R), dtype=y.dtype, device=y.device)
        self.N, self.order = int(N), int(order)
        self.use_autograd = use_autograd

    def log_lik(self, theta: torch.Tensor, t: int) -> torch.Tensor:
        return self.R_t[:, t] * ((self.y[:, t] * theta).sum(-1) - _m.log_partition(theta, self.N, self.order))

    def log_lik_all(self, theta: torch.Tensor) -> torch.Tensor:
        B, T, D = theta.shape
        psi = _m.log_partition_trusted(theta.reshape(B * T, D), self.N, self.order).reshape(B, T)
        return self.R_t * ((self.y * theta).sum(-1) - psi)

    def value_grad_hess(self, theta: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.use_autograd:
            return super().value_grad_hess(theta, t)
        m = _m.moments_trusted(theta, self.N, self.order)
        y, r = self.y[:, t], self.R_t[:, t]
        value = r * ((y * theta).sum(-1) - m.psi)
        return value, r[:, None] * (y - m.eta), -r[:, None, None] * m.fisher

    def bin_posterior(self, t: int, m: torch.Tensor, P: torch.Tensor) -> IsingBinPosterior | None:
        """The log posterior of bin t with the prior N(m, P^{-1}) (the filter's objective), or None with autograd."""
        if self.use_autograd or self.R_scale is not None:  # per-bin R_t (a mask): the general path
            return None
        return IsingBinPosterior(self.y[:, t], self.R, self.N, self.order, m, P)

    def value_grad_hess_all(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.use_autograd:
            return super().value_grad_hess_all(theta)
        B, T, D = theta.shape
        m = _m.moments_trusted(theta.reshape(B * T, D), self.N, self.order)
        psi, eta, G = m.psi.reshape(B, T), m.eta.reshape(B, T, D), m.fisher.reshape(B, T, D, D)
        r = self.R_t
        return r * ((self.y * theta).sum(-1) - psi), r[..., None] * (self.y - eta), -r[..., None, None] * G

    def value_grad_hess_differentiable(self, theta: torch.Tensor, t: int):
        """Closed forms that stay differentiable in theta (autograd through the transforms)."""
        m = _m.moments(theta, self.N, self.order)
        y, r = self.y[:, t], self.R_t[:, t]
        return r * ((y * theta).sum(-1) - m.psi), r[:, None] * (y - m.eta), -r[:, None, None] * m.fisher

    def expectation(self, theta: torch.Tensor) -> torch.Tensor:
        return _m.expectation(theta, self.N, self.order)
