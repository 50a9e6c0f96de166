"""The E-steps: posterior means, covariances, lag-one covariances and the Laplace l.

Registered by name in :data:`E_STEPS`:

* ``"filter"``: the Laplace filter, then the fixed-interval smoother (MODEL.md 3.1-3.2),
  with l of MODEL.md 3.4, one bin after another;
* ``"joint"``: the mode of the whole path's posterior
  log p(theta_{1:T} | y) = sum_t R_t (y_t . theta_t - psi(theta_t)) + log p(theta_{1:T})
  by damped Newton over all bins at once (:mod:`.joint` for full covariances,
  :mod:`.joint_diagonal` for the approximate diagonal ones), with sigma_s, the lag-one
  covariances and the Laplace l from its block-tridiagonal Hessian.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .covariance import Covariance, covariance_of
from .filter import laplace_filter
from .joint import joint_e_step
from .joint_diagonal import joint_diagonal_e_step
from .marginal import log_marginal
from .observation import ObservationModel
from .records import EStep, StateSpaceParams
from .smoother import smoother

__all__ = ["E_STEPS", "e_step", "check_estep", "default_estep", "select_estep", "select_params"]


def _filter_e_step(obs, params, *, u, theta_init, newton_tol, map_method) -> EStep:
    def run() -> EStep:
        filt = laplace_filter(obs, params, u=u, theta_init=theta_init, tol=newton_tol, map_method=map_method)
        smooth = smoother(filt, params)
        return EStep(filt, smooth, log_marginal(obs, filt))

    if any(t is not None and t.requires_grad for t in params):
        return run()
    with torch.inference_mode():  # as in _joint_e_step: no derivative flows through this E-step
        es = run()
    return EStep(*(_outside_inference(r) for r in es))


def _outside_inference(record):
    """A copy of a record (or tensor) whose tensors can take part in autograd outside inference mode."""
    if isinstance(record, torch.Tensor):
        return record.clone()
    return type(record)(*(t.clone() if isinstance(t, torch.Tensor) else t for t in record))


def _joint_e_step(obs, params, *, u, theta_init, newton_tol, map_method) -> EStep:
    if map_method != "newton":
        raise ValueError("estep='joint' uses its own Newton search; map_method='cg' needs estep='filter'")
    run = joint_diagonal_e_step if covariance_of(obs).diagonal else joint_e_step
    if any(t is not None and t.requires_grad for t in params):
        return EStep(*run(obs, params, u=u, theta_init=theta_init, tol=newton_tol))
    # no derivative flows through the E-step: inference mode skips autograd's bookkeeping,
    # which is a large part of the cost of the many small tensor operations at small N
    with torch.inference_mode():
        filt, smooth, mll = run(obs, params, u=u, theta_init=theta_init, tol=newton_tol)
    return EStep(filt, _outside_inference(smooth), mll.clone())


#: E-steps by name: "filter" (Laplace filter and smoother, MODEL.md 3.1-3.2, 3.4) and
#: "joint" (the joint Laplace posterior over all bins: :mod:`.joint` for full covariances,
#: :mod:`.joint_diagonal` for the approximate diagonal ones).
E_STEPS: dict[str, Callable[..., EStep]] = {"filter": _filter_e_step, "joint": _joint_e_step}


def check_estep(estep: str, needs_filter: str = "") -> None:
    """Raise ValueError unless the E-step ``estep`` exists and can serve the stopping rule.

    Args:
        estep: a key of :data:`E_STEPS`.
        needs_filter: why the stopping rule is defined through the filter's marginal
            likelihood, e.g. "stop='ssll'" (:meth:`.stopping.StopRule.needs_filter`), or "" when
            it is not; the joint E-step cannot serve such a rule.
    """
    if estep not in E_STEPS:
        raise ValueError(f"estep must be one of {tuple(E_STEPS)}, got {estep!r}")
    if estep == "joint" and needs_filter:
        raise ValueError(f"{needs_filter} is defined through the filter's marginal likelihood: use estep='filter'")


def default_estep(joint_default: bool, learn_F: bool, cov: Covariance, map_method: str, learn_U: bool = False) -> str:
    """The E-step ``fit`` uses when none is given.

    "joint" when the stopping rule prefers it (:attr:`.stopping.StopRule.joint_default`, the
    default rule ``stop="converged"``) with full covariances, a fixed F, no input gain and the
    Newton mode search; "filter" otherwise: ``stop="ssll"`` and ``stop="em"`` exist to
    reproduce the published numbers, ``stop="mll"``, a learned F and a learned U maximise the
    filter's l directly, and the approximate (diagonal) methods and ``map_method="cg"`` run
    through the filter. ``cov`` is the fit's covariance structure (:mod:`.covariance`).
    """
    if joint_default and not (learn_F or learn_U or cov.diagonal) and map_method == "newton":
        return "joint"
    return "filter"


def e_step(
    obs: ObservationModel,
    params: StateSpaceParams,
    *,
    u: torch.Tensor | None = None,
    theta_init: torch.Tensor | None = None,
    newton_tol: float = 1e-8,
    map_method: str = "newton",
    estep: str = "filter",
) -> EStep:
    """Posterior means, covariances, lag-one covariances and the Laplace l for the given hyperparameters.

    Args:
        estep: a key of :data:`E_STEPS`: "filter" (the Laplace filter, then the smoother)
            or "joint" (the mode of the whole path's posterior; its ``filt`` holds no tensors).
    """
    if estep not in E_STEPS:
        raise ValueError(f"estep must be one of {tuple(E_STEPS)}, got {estep!r}")
    with torch.no_grad():
        return E_STEPS[estep](obs, params, u=u, theta_init=theta_init, newton_tol=newton_tol, map_method=map_method)


def select_params(mask: torch.Tensor, a: StateSpaceParams, b: StateSpaceParams) -> StateSpaceParams:
    """Per data set, the hyperparameters ``a`` where ``mask`` holds, else ``b``."""

    def pick(x: torch.Tensor | None, y: torch.Tensor | None) -> torch.Tensor | None:
        if x is None:
            return None
        return torch.where(mask.view(-1, *([1] * (x.ndim - 1))), x, y)

    return StateSpaceParams(*(pick(x, y) for x, y in zip(a, b, strict=True)))


def select_estep(mask: torch.Tensor, a: EStep, b: EStep) -> EStep:
    """Per data set, the E-step ``a`` where ``mask`` holds, else ``b``."""

    def pick(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.where(mask.view(-1, *([1] * (x.ndim - 1))), x, y)

    pairs = zip(a.filt, b.filt, strict=True)
    filt = type(a.filt)(*(pick(x, y) if isinstance(x, torch.Tensor) else x for x, y in pairs))
    pairs = zip(a.smooth, b.smooth, strict=True)
    smooth = type(a.smooth)(*(pick(x, y) if isinstance(x, torch.Tensor) else x for x, y in pairs))
    return EStep(filt, smooth, pick(a.mll, b.mll))
