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
from typing import Any

import torch

from .. import moments as _m
from ..approx.pseudo import build_pseudo_observation
from ..likelihood import ObservationModel, autograd_value_grad_hess
from ..moments import ExactMemoryError, check_memory
from .posterior import IsingBinPosterior

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
