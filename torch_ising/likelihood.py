"""The likelihood interface of the state-space E-steps: :class:`ObservationModel`.

An observation model supplies the log-likelihood of bin t, log p(data_t | theta), for a
batch of parameter vectors theta (B, D), one per data set. The E-steps take its gradient
and Hessian from torch autograd (:meth:`ObservationModel.value_grad_hess`), so any
differentiable log-likelihood plugs in; optional hooks supply closed forms, a mode search
of its own, a separate precision or a calibration, each declared here with a default.

This module depends on nothing else in the package, so that the exact model
(:mod:`torch_ising.statespace.observation`) and the approximate ones
(:mod:`torch_ising.approx`) both build on it without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .optim.newton import NewtonResult

__all__ = ["ObservationModel", "autograd_value_grad_hess"]

#: The objective of a mode search: theta (B, D) -> (value (B,), grad (B, D), hess (B, D, D)).
_Objective = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


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

    The optional hooks below are class attributes with a default that gives the
    generic behaviour: a flag is False, an absent tensor or callable is None. A
    subclass provides a callable hook by defining a method of that name (or sets
    the attribute on the instance); the E-steps read them as plain attributes and
    test the callables for None.

    Attributes:
        B: data sets (the batch).
        T: bins.
        D: parameters per bin.
        R: trials; the largest per-bin count, the scale of the mode searches' tolerance.
        diagonal: when True the filter keeps diagonal covariances (large D).
        separate_precision: when True the filtered covariance comes from :meth:`precision`.
        ascends_mll: whether EM on this model ascends its l (the accelerated rule's l safeguard reads it).
        R_scale: per data set (B,) trials that scale the tolerance, or None (``R``).
        R_t: observed trials per bin (B, T), or None (``R`` in every bin).
        mode: the model's own mode search of a bin (diagonal covariances), or None.
        score_scale: the calibration of a bin's mode search, or None.
        bin_posterior: a closed-form objective of a bin's mode search, or None.
        value_grad_hess_differentiable: closed forms differentiable in theta, or None.
        marginal_log_lik: the data term of the log marginal likelihood, or None.
        joint_terms: every bin's value, gradient, Hessian diagonal and Hessian-vector
            product (the diagonal joint E-step), or None.
        precision_all: every bin's diagonal observation precision, or None.
        score_scale_all: the calibration of the diagonal joint E-step, or None.
    """

    B: int
    T: int
    D: int
    R: int

    diagonal: bool = False
    """When True the filter and the E-steps keep diagonal covariances (large D)."""

    separate_precision: bool = False
    """Where the filtered covariance comes from.

    False: minus the Hessian of the mode search's objective at its maximum theta_{t|t},
    W_{t|t} = (-hess log p(data_t | theta_{t|t}) + W_{t|t-1}^{-1})^{-1}. True: the observation
    precision G_t of :meth:`precision` instead, W_{t|t} = (G_t(theta_{t|t}) + W_{t|t-1}^{-1})^{-1}
    (e.g. a Fisher information where the mode is that of a pseudo-likelihood). With diagonal
    covariances it also enables :attr:`score_scale`.
    """

    ascends_mll: bool = True
    """Whether EM on this model ascends the log marginal likelihood l it reports (up to the Laplace error).

    True: a plain EM step raises l, so an accelerated step that lowers l by more than
    :func:`torch_ising.statespace.stopping.mll_drop_tol` went astray, and the accelerated rule
    replaces it by the plain EM step. False: EM is not an ascent method of this l (the
    pseudo-likelihood scheme: its mode and covariance are not those of l, and plain EM lowers
    l near its fixed point), so a fall of l says nothing about the step and the rule does not
    test it; the residual tests remain.
    """

    R_scale: torch.Tensor | None = None
    """None, or per data set (B,) the trials that scale the mode searches' tolerance.

    A mode search of data set b stops when max |grad| / R_scale[b] < tol; set when the
    trials differ between data sets (masks). None: max |grad| / R < tol for every data set.
    """

    R_t: torch.Tensor | None = None
    """None, or the observed trials R_t of every bin (B, T) (0 for a missing bin).

    The diagonal joint E-step scales data set b's tolerance by R_b = max(1, max_t R_t[b])
    (by ``R`` when None).
    """

    mode: Callable[..., NewtonResult] | None = None
    """None, or the model's own mode search of bin t with diagonal covariances.

    Called by the filter (diagonal covariances, ``map_method="newton"``) as
    ``mode(theta0, t, m, p, *, tol, scale, max_iter)`` with theta0, the prior mean m
    and the prior precision p all (B, D); it maximises

        L(theta) = log p(data_t | theta) - 1/2 sum_d p_d (theta_d - m_d)^2

    from theta0 until max |grad L| / scale <= tol, and returns a
    :class:`torch_ising.optim.newton.NewtonResult` (``hess`` the diagonal of hess L).
    None: Newton's method on :meth:`value_grad_hess` (:func:`torch_ising.optim.newton.newton_ascent`).
    """

    score_scale: Callable[[torch.Tensor, int], torch.Tensor | None] | None = None
    """None, or the calibration a (B, D) of bin t's mode search, ``score_scale(theta_pred, t)``.

    Used only with diagonal covariances and :attr:`separate_precision`. The filter divides
    the prior precision p of the mode search by a, i.e. it maximises

        log p(data_t | theta) - 1/2 sum_d (p_d / a_d) (theta_d - theta_{t|t-1,d})^2,

    which scales the score of theta_d by a_d; the filtered covariance keeps p. None (or a
    None return): a = 1.
    """

    bin_posterior: Callable[[int, torch.Tensor, torch.Tensor], _Objective | None] | None = None
    """None, or a closed-form objective of bin t's mode search, ``bin_posterior(t, m, P)``.

    Used with full covariances only. It returns the log posterior of bin t with the prior
    N(m, P^{-1}) (m (B, D), P (B, D, D)) as a callable theta -> (value, grad, hess) of

        log p(data_t | theta) - 1/2 (theta - m)^T P (theta - m),

    or None for the generic objective built from :meth:`value_grad_hess` (as when the hook is None).
    """

    value_grad_hess_differentiable: (
        Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None
    ) = None
    """None, or log p(data_t | theta), its gradient and Hessian by closed forms differentiable in theta.

    ``value_grad_hess_differentiable(theta (B, D), t)`` -> (value (B,), grad (B, D),
    hess (B, D, D)), all in the autograd graph of theta: the direct maximisation of l
    (:mod:`torch_ising.statespace.direct`) differentiates through them. None: autograd
    through :meth:`log_lik` (with ``create_graph=True``).
    """

    marginal_log_lik: Callable[[torch.Tensor], torch.Tensor] | None = None
    """None, or the data term of the Laplace log marginal likelihood l of every bin, theta (B, T, D) -> (B, T).

    l = sum_t [ marginal_log_lik(theta_t) - 1/2 (theta_t - theta_{t|t-1})^T W_{t|t-1}^{-1} (...)
    + 1/2 log det W_{t|t} - 1/2 log det W_{t|t-1} ] (MODEL.md 3.4), e.g.
    R_t [y_t . theta - psi~(theta)] with an approximate psi~ for a pseudo-likelihood model.
    None: :meth:`log_lik_all`.
    """

    joint_terms: (
        Callable[
            [torch.Tensor],
            tuple[torch.Tensor, torch.Tensor, torch.Tensor, Callable[[torch.Tensor], torch.Tensor]],
        ]
        | None
    ) = None
    """None, or every bin's terms for the diagonal joint E-step, ``joint_terms(theta (B, T, D))``.

    Returns (value (B, T), grad (B, T, D), hess diagonal (B, T, D), hv) of log p(data_t | theta_t)
    with hv(v) = (hess log p(data_t | theta_t)) v_t for v (B, T, D). With :attr:`precision_all`
    and ``diagonal`` it makes the model eligible for the diagonal joint E-step
    (:mod:`torch_ising.statespace.joint_diagonal`).
    """

    precision_all: Callable[[torch.Tensor], torch.Tensor] | None = None
    """None, or the diagonal observation precision G_t of every bin, theta (B, T, D) -> (B, T, D).

    The diagonal joint E-step's posterior precision at the mode is P = J + diag(G_t)
    (J the prior's tridiagonal precision); :meth:`precision` of every bin at once.
    """

    score_scale_all: Callable[[torch.Tensor], torch.Tensor | None] | None = None
    """None, or the diagonal joint E-step's calibration a (B, 1, D), ``score_scale_all(theta (B, T, D))``.

    The joint E-step divides the prior precision J by a (one a_d per coordinate, for the whole
    path), which scales every bin's score of theta_d by a_d; the posterior covariance keeps J.
    None (or a None return): a = 1.
    """

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
