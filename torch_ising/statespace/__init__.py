"""State-space (time-varying) Ising model: a functional core and its module.

* :mod:`.filter` - the Laplace filter (MODEL.md 3.1)
* :mod:`.smoother` - the smoother with lag-one covariances (3.2)
* :mod:`.joint` - the joint-mode E-step: all bins at once, block cyclic reduction
* :mod:`.online` - :class:`OnlineFilter`, the filter one bin at a time
* :mod:`.mstep` - the M-step for mu, Q (four forms), F and U (3.3)
* :mod:`.marginal` - the Laplace log marginal likelihood (3.4)
* :mod:`.em` - the EM loop with Anderson acceleration, direct maximisation of l, or the published rule (3.5)
* :mod:`.observation` - the observation models, their hooks and the registry ``fit(method=...)`` reads
* :mod:`.model` - :func:`fit` and :class:`StateSpaceIsing`
"""

from .em import EStep, e_step, run_em
from .filter import laplace_filter
from .joint import joint_e_step
from .marginal import log_marginal
from .model import FitWarning, StateSpaceIsing, fit
from .mstep import Q_FORMS, m_step
from .observation import (
    OBSERVATION_MODELS,
    ExactIsing,
    ObservationModel,
    autograd_value_grad_hess,
    register_observation_model,
    unregister_observation_model,
)
from .online import OnlineFilter
from .records import EMState, FilterResult, SmootherResult, StateSpaceParams
from .result import StateSpaceResult
from .smoother import smoother

__all__ = [
    "fit",
    "StateSpaceIsing",
    "FitWarning",
    "StateSpaceResult",
    "StateSpaceParams",
    "EMState",
    "FilterResult",
    "SmootherResult",
    "EStep",
    "ObservationModel",
    "ExactIsing",
    "OBSERVATION_MODELS",
    "register_observation_model",
    "unregister_observation_model",
    "Q_FORMS",
    "autograd_value_grad_hess",
    "laplace_filter",
    "smoother",
    "m_step",
    "log_marginal",
    "e_step",
    "run_em",
    "OnlineFilter",
    "joint_e_step",
]
