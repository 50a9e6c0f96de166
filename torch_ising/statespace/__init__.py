"""State-space (time-varying) Ising model: a functional core and its module.

* :mod:`.covariance` - the covariance structures :data:`~.covariance.DENSE` and
  :data:`~.covariance.DIAGONAL` (the exact and the approximate methods), carried by the records
* :mod:`.filter` - the Laplace filter (MODEL.md 3.1)
* :mod:`.smoother` - the smoother with lag-one covariances (3.2)
* :mod:`.joint` - the joint-mode E-step: all bins at once, block cyclic reduction
* :mod:`.estep` - the E-steps by name (:data:`E_STEPS`: "filter", "joint")
* :mod:`.online` - :class:`OnlineFilter`, the filter one bin at a time
* :mod:`.qforms` - the forms of Q, one record each (:data:`Q_FORMS`)
* :mod:`.mstep` - the M-step for mu, Q, F and U (3.3)
* :mod:`.marginal` - the Laplace log marginal likelihood (3.4)
* :mod:`.observation` - the observation models, their hooks and the registry ``fit(method=...)`` reads
* :mod:`.stopping` - the stopping rules, one record each (:data:`STOP_RULES`): Anderson-accelerated
  EM, plain EM, the published rule (3.5), direct maximisation of l
* :mod:`.em` - the EM loop: the first E-step, then the stopping rule
* :mod:`.model` - :func:`fit` and :class:`StateSpaceIsing`
"""

from .covariance import DENSE, DIAGONAL, Covariance
from .em import run_em
from .estep import E_STEPS, e_step
from .filter import laplace_filter
from .joint import joint_e_step
from .marginal import log_marginal
from .model import FitWarning, StateSpaceIsing, fit
from .mstep import m_step
from .observation import (
    OBSERVATION_MODELS,
    ExactIsing,
    ObservationModel,
    autograd_value_grad_hess,
    register_observation_model,
    unregister_observation_model,
)
from .online import OnlineFilter
from .qforms import Q_FORMS, QForm
from .records import EMState, EStep, FilterResult, SmootherResult, StateSpaceParams
from .result import StateSpaceResult
from .smoother import smoother
from .stopping import STOP_RULES, StopRule

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
    "STOP_RULES",
    "StopRule",
    "E_STEPS",
    "QForm",
    "Covariance",
    "DENSE",
    "DIAGONAL",
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
