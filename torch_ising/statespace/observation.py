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

The E-steps ask an observation model for more than :meth:`ObservationModel.log_lik`
through optional hooks (a mode search of its own, a separate precision, a calibration,
closed forms for the joint E-step...). Every hook is declared on
:class:`ObservationModel` with a default (``None`` for an absent callable or attribute,
``False`` for a flag) that gives the generic behaviour, so a subclass defines only the
hooks it has.

:data:`OBSERVATION_MODELS` maps the names that ``fit(method=...)`` accepts to the
builders of their observation models; :func:`register_observation_model` adds one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from .. import moments as _m
from ..moments import ExactMemoryError, check_memory
from .posterior import IsingBinPosterior

if TYPE_CHECKING:
    from ..newton import NewtonResult

__all__ = [
    "ObservationModel",
    "ExactIsing",
    "autograd_value_grad_hess",
    "OBSERVATION_MODELS",
    "ObservationBuilder",
    "register_observation_model",
    "unregister_observation_model",
    "observation_builder",
]

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
    :class:`torch_ising.newton.NewtonResult` (``hess`` the diagonal of hess L).
    None: Newton's method on :meth:`value_grad_hess` (:func:`torch_ising.newton.newton_ascent`).
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

    def value_grad_hess_differentiable(
        self, theta: torch.Tensor, t: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Closed forms that stay differentiable in theta (autograd through the transforms)."""
        m = _m.moments(theta, self.N, self.order)
        y, r = self.y[:, t], self.R_t[:, t]
        return r * ((y * theta).sum(-1) - m.psi), r[:, None] * (y - m.eta), -r[:, None, None] * m.fisher

    def expectation(self, theta: torch.Tensor) -> torch.Tensor:
        return _m.expectation(theta, self.N, self.order)


# --------------------------------------------------------------------------- the registry

#: The builder of an observation model: builder(y (B, T, D), R, N, order, spikes (B, T, R, N), **opts).
ObservationBuilder = Callable[..., ObservationModel]


def _exact_observation(
    y: torch.Tensor, R: int | torch.Tensor, N: int, order: int, spikes: torch.Tensor, **_: Any
) -> ObservationModel:
    try:
        check_memory(N, 1, y.dtype, y.device)
    except ExactMemoryError as err:
        if spikes.shape[-2] < N:
            # a (T, N, R) array read as (T, R, N) makes many "neurons" and few "trials"
            raise ExactMemoryError(
                f"{err} Note: spikes were read as (T, R, N) with R = {spikes.shape[-2]} trials and N = {N} neurons; if "
                "neurons and trials are swapped, pass spikes.transpose(1, 2) (a tensor) or "
                "spikes.transpose(0, 2, 1) (numpy)."
            ) from None
        raise
    return ExactIsing(y, R, N, order)


def _pseudo_observation(
    y: torch.Tensor, R: int | torch.Tensor, N: int, order: int, spikes: torch.Tensor, **opts: Any
) -> ObservationModel:
    from ..approx.pseudo import build_pseudo_observation

    if isinstance(R, torch.Tensor):
        opts["mask"] = opts.pop("trial_mask")
        R = int(spikes.shape[-2])
    opts.pop("trial_mask", None)

    return build_pseudo_observation(y, R, N, order, spikes, **opts)


#: Registry of observation models: method -> builder(y (B,T,D), R, N, order, spikes (B,T,R,N), **opts);
#: R is an int, or with a ``mask`` a (B, T) tensor of the observed trials R_t of each bin (and then
#: opts holds ``trial_mask``, the (B, T, R) mask after re-binning, for models that sum over trials).
#: Add to it with :func:`register_observation_model`.
OBSERVATION_MODELS: dict[str, ObservationBuilder] = {
    "exact": _exact_observation,
    "pseudo": _pseudo_observation,
}


def register_observation_model(name: str, builder: ObservationBuilder, *, replace: bool = False) -> None:
    """Make ``fit(method=name)`` build its observation model with ``builder``.

    Args:
        name: the method name.
        builder: called as ``builder(y, R, N, order, spikes, **opts)`` (see :data:`OBSERVATION_MODELS`)
            and returning an :class:`ObservationModel`.
        replace: allow replacing a builder already registered under ``name``.

    Raises:
        TypeError: ``name`` is not a string or ``builder`` is not callable.
        ValueError: ``name`` is already registered and ``replace`` is False.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"an observation model's name must be a non-empty string; got {name!r}")
    if not callable(builder):
        raise TypeError(f"the builder of observation model {name!r} must be callable; got {type(builder).__name__}")
    if name in OBSERVATION_MODELS and not replace:
        raise ValueError(f"an observation model named {name!r} is already registered; pass replace=True to replace it")
    OBSERVATION_MODELS[name] = builder


def unregister_observation_model(name: str) -> ObservationBuilder:
    """Remove the observation model registered under ``name`` and return its builder.

    Raises:
        ValueError: no observation model is registered under ``name``.
    """
    if name not in OBSERVATION_MODELS:
        raise ValueError(f"no observation model named {name!r} is registered; registered: {sorted(OBSERVATION_MODELS)}")
    return OBSERVATION_MODELS.pop(name)


def observation_builder(method: str) -> ObservationBuilder:
    """The builder registered under ``method`` (the ``method`` of :func:`torch_ising.fit`).

    Raises:
        ValueError: no observation model is registered under ``method``.
    """
    if method not in OBSERVATION_MODELS:
        raise ValueError(f"method must be one of {sorted(OBSERVATION_MODELS)}, got {method!r}")
    return OBSERVATION_MODELS[method]
