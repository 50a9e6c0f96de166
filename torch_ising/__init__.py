"""torch_ising: exact and approximate Ising models of spike patterns, and their
state-space (time-varying) estimation, in PyTorch.

The public API a researcher types lives here; everything else is private.
"""

from . import approx, basis, comparison, experiment, intervals, io, moments, plotting, synthesis
from .approx import ETA_METHODS, ApproximationWarning, ConvergenceError, PseudoLikelihood, approx_moments
from .basis import compute_D, enumerate_patterns, rebin, subsets, sufficient_stats
from .comparison import OrderComparison, aic, bic, compare_orders, count_hyperparameters, likelihood_gain
from .intervals import (
    CredibleInterval,
    CredibleIntervals,
    credible_intervals,
    gaussian_intervals,
    reliable_couplings,
    sample_theta,
)
from .ising import Ising
from .moments import (
    ExactMemoryError,
    Moments,
    entropy,
    expectation,
    expectation_from_probs,
    fisher,
    heat_capacity,
    log_partition,
    log_prob,
    log_probs,
    memory_estimate,
    probs,
    sample,
)
from .statespace import (
    EMState,
    ExactIsing,
    FitWarning,
    ObservationModel,
    StateSpaceIsing,
    StateSpaceParams,
    StateSpaceResult,
    fit,
    laplace_filter,
    log_marginal,
    m_step,
    smoother,
)
from .synthesis import generate_spikes, generate_stationary_thetas, generate_thetas, gibbs_sample
from .thermodynamics import QuantityError, Thermodynamics, heat_capacity_curve, thermodynamics

__version__ = "0.1.0"

__all__ = [
    "Ising",
    "fit",
    "StateSpaceIsing",
    "FitWarning",
    "StateSpaceResult",
    "StateSpaceParams",
    "EMState",
    "ObservationModel",
    "ExactIsing",
    "laplace_filter",
    "smoother",
    "m_step",
    "log_marginal",
    "Moments",
    "ExactMemoryError",
    "basis",
    "moments",
    "synthesis",
    "compute_D",
    "subsets",
    "enumerate_patterns",
    "rebin",
    "sufficient_stats",
    "log_partition",
    "log_probs",
    "log_prob",
    "probs",
    "expectation",
    "expectation_from_probs",
    "fisher",
    "entropy",
    "heat_capacity",
    "sample",
    "memory_estimate",
    "generate_thetas",
    "generate_stationary_thetas",
    "generate_spikes",
    "gibbs_sample",
    "approx",
    "ETA_METHODS",
    "ApproximationWarning",
    "ConvergenceError",
    "PseudoLikelihood",
    "approx_moments",
    "comparison",
    "intervals",
    "plotting",
    "experiment",
    "io",
    "OrderComparison",
    "aic",
    "bic",
    "compare_orders",
    "count_hyperparameters",
    "likelihood_gain",
    "CredibleInterval",
    "CredibleIntervals",
    "credible_intervals",
    "gaussian_intervals",
    "sample_theta",
    "reliable_couplings",
    "QuantityError",
    "Thermodynamics",
    "heat_capacity_curve",
    "thermodynamics",
]
