"""The one registry of eta methods: how psi, eta and the Fisher diagonal are approximated.

Every entry has the signature

    fn(theta (..., D), N, order=2, **options) -> ApproxMoments(psi, eta, fisher_diag, converged)

and is selected by name, e.g. ``fit(..., method="pseudo", eta_method="tap")``:

=================  ==========================================  =======================
name               method                                      orders
=================  ==========================================  =======================
``"tap"``          TAP, second-order Plefka mean field         1, 2
``"bethe_bp"``     Bethe free energy, loopy belief propagation 1, 2
``"bethe_cccp"``   Bethe free energy, CCCP double loop         1, 2
``"bethe_hybrid"`` BP, falling back to CCCP where BP fails     1, 2
``"mc"``           parallel Gibbs chains + thermodynamic int.  any
``"exact"``        O(N 2^N) enumeration (small N; a reference) any
=================  ==========================================  =======================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .. import moments as _moments
from ._common import ApproxMoments, check_inputs, fisher_diag_from_eta
from .bethe import bethe_bp, bethe_cccp, bethe_hybrid
from .montecarlo import monte_carlo
from .tap import tap

__all__ = ["ETA_METHODS", "approx_moments", "approx_thermodynamics", "exact_moments", "get_eta_method"]


def exact_moments(theta: torch.Tensor, N: int, order: int = 2) -> ApproxMoments:
    """Exact psi, eta and Fisher diagonal by enumeration (:mod:`torch_ising.moments`), for reference.

    Raises:
        torch_ising.ExactMemoryError: when 2^N patterns do not fit in memory.
    """
    theta, N, order = check_inputs(theta, N, order, None, "exact")
    m = _moments.moments(theta, N, order, with_fisher=False)
    conv = torch.ones(theta.shape[:-1], dtype=torch.bool, device=theta.device)
    return ApproxMoments(m.psi, m.eta, fisher_diag_from_eta(m.eta), conv)


#: eta_method name -> fn(theta (..., D), N, order, **options) -> ApproxMoments.
ETA_METHODS: dict[str, Callable[..., ApproxMoments]] = {
    "tap": tap,
    "bethe_bp": bethe_bp,
    "bethe_cccp": bethe_cccp,
    "bethe_hybrid": bethe_hybrid,
    "mc": monte_carlo,
    "exact": exact_moments,
}


def get_eta_method(name: str) -> Callable[..., ApproxMoments]:
    """The registered function for ``name``.

    Raises:
        ValueError: naming the valid choices for an unknown name.
    """
    if not isinstance(name, str) or name not in ETA_METHODS:
        raise ValueError(f"eta_method must be one of {sorted(ETA_METHODS)}, got {name!r}")
    return ETA_METHODS[name]


def approx_moments(theta: torch.Tensor, N: int, order: int = 2, method: str = "tap", **options: Any) -> ApproxMoments:
    """Approximate psi, eta and the Fisher diagonal of theta (..., D) by the method ``method``.

    Args:
        theta: natural parameters, shape (..., D).
        N: number of neurons.
        order: interaction order.
        method: a key of :data:`ETA_METHODS`.
        **options: the method's keyword options (tol, max_iter, damping, on_fail, ...).

    Returns:
        :class:`ApproxMoments`.
    """
    return get_eta_method(method)(theta, N, order, **options)


def approx_thermodynamics(
    theta: torch.Tensor,
    N: int,
    order: int = 2,
    method: str = "tap",
    y: torch.Tensor | None = None,
    R: int | torch.Tensor | None = None,
    *,
    beta_step: float = 1e-2,
    **options: Any,
):
    """The derived quantities of MODEL.md section 4 for an approximate fit (large N).

    The same record as :func:`torch_ising.thermodynamics.thermodynamics`, with the
    exact psi and eta replaced by those of ``method`` (e.g. the smoothed
    ``theta_s`` of ``fit(method="pseudo")``). The heat capacity
    C(1) = d^2/dbeta^2 psi(beta theta) at beta = 1 is the central second difference
    [psi~((1 + s) theta) - 2 psi~(theta) + psi~((1 - s) theta)] / s^2 with s = ``beta_step``
    (all three evaluated in one batched call). For ``method="mc"`` pass a fixed
    ``seed`` (the default) so the three evaluations share their random numbers.

    Args:
        theta: natural parameters (..., D).
        N: number of neurons.
        order: interaction order.
        method: a key of :data:`ETA_METHODS`.
        y: empirical statistics (..., D) for llk1 and llk2 (optional, with R).
        R: trials.
        beta_step: the step s of the second difference.
        **options: the method's options.

    Returns:
        :class:`torch_ising.thermodynamics.Thermodynamics`.
    """
    from ..thermodynamics import from_moments

    theta, N, order = check_inputs(theta, N, order, None, "approx_thermodynamics")
    if not (isinstance(beta_step, (int, float)) and 0 < beta_step < 0.5):
        raise ValueError(f"beta_step must lie in (0, 0.5), got {beta_step!r}")
    if (y is None) != (R is None):
        raise ValueError("y and R must be given together (for llk1 and llk2)")
    betas = torch.tensor([1.0, 1.0 + beta_step, 1.0 - beta_step], dtype=theta.dtype, device=theta.device)
    th3 = betas.reshape(3, *([1] * theta.ndim)) * theta
    am = approx_moments(th3, N, order, method, **options)
    psi, eta = am.psi[0], am.eta[0]
    C = (am.psi[1] - 2.0 * psi + am.psi[2]) / beta_step**2
    y_t = None if y is None else torch.as_tensor(y, dtype=theta.dtype, device=theta.device)
    R_t = None if R is None else torch.as_tensor(R, dtype=theta.dtype, device=theta.device)
    return from_moments(theta, psi, eta, C, N, order, y_t, R_t, exact_marginals=False)
