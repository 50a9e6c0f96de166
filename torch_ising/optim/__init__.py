"""Numerical mode searches (optimisers), batched over the first dimension, and their one registry.

Every search works on plain tensors and callables and imports nothing from
:mod:`torch_ising.approx` or :mod:`torch_ising.statespace`. Their call forms differ
with what the objective supplies:

=================  ====================================================================================
name               call
=================  ====================================================================================
``"newton"``       ``newton_ascent(objective, x0, *, tol, scale, max_iter)``, objective(x) -> (f, g, H)
``"cg"``           ``conjugate_gradient_ascent(objective, x0, *, tol, scale, max_iter, line_tol)``, same
``"newton_cg"``    ``newton_cg_ascent(evaluate, derivatives, curvature, x0, *, tol, scale, max_iter)``
``"bfgs"``         ``bfgs_maximise(fun, x0, *, tol, max_eval)``, fun(x) -> (f, g)
=================  ====================================================================================

The first three return a :class:`NewtonResult`; ``bfgs_maximise`` returns
(x, value, converged, evaluations). :func:`anderson_extrapolate` is not a search but the
accelerator of a fixed-point iteration x = G(x) (the EM map, :mod:`torch_ising.statespace.stopping`).
The filter's ``map_method`` names a key of
:data:`MODE_SEARCHES` (:func:`torch_ising.statespace.filter.laplace_filter`).
"""

from __future__ import annotations

from collections.abc import Callable

from .anderson import anderson_extrapolate
from .bfgs import bfgs_maximise
from .conjugate_gradient import CG_LINE_TOL, CG_MAX_ITER, CG_TOL, Lines, conjugate_gradient_ascent
from .newton import NewtonResult, newton_ascent
from .newton_cg import newton_cg_ascent

__all__ = [
    "MODE_SEARCHES",
    "NewtonResult",
    "Lines",
    "CG_TOL",
    "CG_LINE_TOL",
    "CG_MAX_ITER",
    "newton_ascent",
    "conjugate_gradient_ascent",
    "newton_cg_ascent",
    "bfgs_maximise",
    "anderson_extrapolate",
]

#: mode-search name -> function; each entry's comment: what it maximises, and when it stops (besides its
#: iteration limit, max_iter or max_eval).
MODE_SEARCHES: dict[str, Callable[..., object]] = {
    # damped Newton x <- x - a H^{-1} g, maximises a strictly concave f; max |g| / scale <= tol or no ascent step
    "newton": newton_ascent,
    # the published Polak-Ribiere+ conjugate gradient, maximises a concave f; max |g| / scale <= tol (1e-4)
    "cg": conjugate_gradient_ascent,
    # truncated Newton ((-H) d = g by PCG), maximises a strictly concave f; max |g| / scale <= tol or no ascent step
    "newton_cg": newton_cg_ascent,
    # BFGS from values and gradients, maximises a smooth f; max |g| < tol or no ascent step
    "bfgs": bfgs_maximise,
}
