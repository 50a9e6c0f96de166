"""Large-N approximations (Donner, Obermayer & Shimazaki 2017; MODEL.md section 5).

* :mod:`.pseudo`: the pseudo-likelihood (any order) and the
  :class:`PseudoLikelihood` observation model for the Laplace filter.
* :mod:`.tap`: TAP (second-order Plefka) eta, psi and Fisher diagonal (orders 1, 2).
* :mod:`.bethe`: the Bethe approximation by belief propagation, CCCP, or BP with
  a CCCP fallback (orders 1, 2).
* :mod:`.montecarlo`: parallel Gibbs chains and thermodynamic integration (any order).
* :mod:`.registry`: the one registry, ``ETA_METHODS``, behind ``eta_method=``.
"""

from __future__ import annotations

from ._common import ApproximationWarning, ApproxMoments, ConvergenceError, fisher_diag_from_eta
from .bethe import bethe_bp, bethe_cccp, bethe_hybrid
from .montecarlo import MonteCarloMoments, gibbs_moments, monte_carlo, thermodynamic_integration
from .pseudo import (
    PseudoLikelihood,
    build_pseudo_observation,
    local_fields,
    pseudo_log_likelihood,
    pseudo_value_grad_hess,
)
from .registry import ETA_METHODS, approx_moments, approx_thermodynamics, exact_moments, get_eta_method
from .tap import tap

__all__ = [
    "ApproxMoments",
    "ApproximationWarning",
    "ConvergenceError",
    "ETA_METHODS",
    "approx_moments",
    "approx_thermodynamics",
    "get_eta_method",
    "exact_moments",
    "fisher_diag_from_eta",
    "tap",
    "bethe_bp",
    "bethe_cccp",
    "bethe_hybrid",
    "monte_carlo",
    "gibbs_moments",
    "thermodynamic_integration",
    "MonteCarloMoments",
    "pseudo_log_likelihood",
    "pseudo_value_grad_hess",
    "local_fields",
    "PseudoLikelihood",
    "build_pseudo_observation",
]
