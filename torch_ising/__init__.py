"""torch_ising: exact and approximate Ising models of spike patterns, and their
state-space (time-varying) estimation, in PyTorch.

The top level holds what a researcher types in an analysis (``__all__``): the
model classes, ``fit`` and its result, the warnings and errors, synthetic data,
and the analyses that take a fit. Everything else lives in its submodule, the
map of the library:

* :mod:`torch_ising.basis` - the subsets of an order, D, pattern enumeration, rebinning,
  sufficient statistics (``compute_D``, ``subsets``, ``enumerate_patterns``, ``rebin``,
  ``sufficient_stats``)
* :mod:`torch_ising.moments` - exact O(N 2^N) functions of theta (``log_partition``,
  ``log_probs``, ``log_prob``, ``probs``, ``expectation``, ``expectation_from_probs``,
  ``fisher``, ``entropy``, ``heat_capacity``, ``sample``, ``memory_estimate``, ``Moments``)
* :mod:`torch_ising.approx` - approximations beyond exact enumeration (``ETA_METHODS``,
  ``approx_moments``, ``PseudoLikelihood``)
* :mod:`torch_ising.statespace` - the state-space machinery (``laplace_filter``, ``smoother``,
  ``m_step``, ``log_marginal``, ``EMState``, ``ObservationModel``, ``ExactIsing``)
* :mod:`torch_ising.optim` - the numerical mode searches and their registry
* :mod:`torch_ising.synthesis` - synthetic parameters and spikes (``gibbs_sample``)
* :mod:`torch_ising.comparison` - AIC, BIC, the order comparison (``aic``, ``bic``,
  ``n_hyperparameters``, ``likelihood_gain``, ``OrderComparison``)
* :mod:`torch_ising.crossval` - held-out likelihood (``CrossValidation``)
* :mod:`torch_ising.surrogates` - trial-shuffle surrogates (``SurrogateTest``)
* :mod:`torch_ising.distance` - distances between pattern distributions (``PatternDistance``)
* :mod:`torch_ising.intervals` - posterior credible intervals (``CredibleInterval``,
  ``CredibleIntervals``, ``gaussian_intervals``, ``sample_theta``)
* ``torch_ising.thermodynamics`` - entropy, energy, KL, heat capacity of fits (``Thermodynamics``,
  ``QuantityError``); the name ``torch_ising.thermodynamics`` is the function, so import the
  module's names with ``from torch_ising.thermodynamics import Thermodynamics``
* :mod:`torch_ising.plotting` - figures (matplotlib, imported lazily)
* :mod:`torch_ising.io` - saving and loading results
* :mod:`torch_ising.experiment` - the Hydra experiment runner (``torch-ising`` command)
* :mod:`torch_ising.compat` - the facade of the published SSLL library (imported on demand:
  ``from torch_ising.compat import ssll``)
"""

# the submodules: reachable as torch_ising.<name> (the explicit alias re-exports them)
from . import approx as approx
from . import basis as basis
from . import comparison as comparison
from . import crossval as crossval
from . import distance as distance
from . import experiment as experiment
from . import intervals as intervals
from . import io as io
from . import moments as moments
from . import optim as optim
from . import plotting as plotting
from . import statespace as statespace
from . import surrogates as surrogates
from . import synthesis as synthesis
from .approx import ApproximationWarning, ConvergenceError
from .comparison import compare_orders
from .crossval import cross_validate
from .distance import pattern_distance
from .intervals import credible_intervals, reliable_couplings
from .ising import Ising
from .moments import ExactMemoryError
from .statespace import FitWarning, StateSpaceIsing, StateSpaceParams, StateSpaceResult, fit
from .surrogates import surrogate_test, trial_shuffle
from .synthesis import generate_spikes, generate_stationary_thetas, generate_thetas
from .thermodynamics import heat_capacity_curve, thermodynamics

__version__ = "0.1.0"

__all__ = [
    "Ising",
    "fit",
    "StateSpaceIsing",
    "StateSpaceResult",
    "StateSpaceParams",
    "FitWarning",
    "ExactMemoryError",
    "ApproximationWarning",
    "ConvergenceError",
    "generate_thetas",
    "generate_stationary_thetas",
    "generate_spikes",
    "compare_orders",
    "cross_validate",
    "surrogate_test",
    "trial_shuffle",
    "pattern_distance",
    "credible_intervals",
    "reliable_couplings",
    "thermodynamics",
    "heat_capacity_curve",
]
