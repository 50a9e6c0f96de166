"""The EM loop: the first E-step, then the stopping rule's iterations (:mod:`.stopping`).

:func:`run_em` builds the E-step and M-step of the fit (:mod:`.estep`, :mod:`.mstep`),
runs the first E-step, and hands the rest to the rule registered under ``opts.stop``:

* ``"converged"`` (default): Anderson-accelerated EM to the fixed point x = EM(x)
  (with a learned F or U, l maximised directly);
* ``"em"``: plain EM to the fixed point;
* ``"ssll"``: the published rule (MODEL.md 3.5);
* ``"mll"``: l maximised directly by BFGS.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .estep import check_estep, e_step
from .mstep import m_step
from .observation import ObservationModel
from .records import EMOptions, EMOutcome, EMState, EStep, StateSpaceParams
from .stopping import EMLoop, stop_rule

__all__ = ["run_em"]


def run_em(
    obs: ObservationModel,
    params: StateSpaceParams,
    opts: EMOptions,
    *,
    u: torch.Tensor | None = None,
    theta_init: torch.Tensor | None = None,
    callback: Callable[[int, StateSpaceParams, torch.Tensor], None] | None = None,
    progress: Callable[[int, torch.Tensor], None] | None = None,
    resume: EMState | None = None,
    on_state: Callable[[EMState], None] | None = None,
) -> EMOutcome:
    """Run EM from ``params`` until the stopping rule of ``opts.stop`` holds.

    Args:
        obs: observation model (batched over B data sets).
        params: initial hyperparameters.
        opts: :class:`EMOptions`; ``opts.stop`` names a rule of :data:`.stopping.STOP_RULES`.
        u: exogenous input (B, T, n_u) or None.
        theta_init: starting points of the first E-step's mode searches.
        callback: called as ``callback(iteration, params, mll)`` after each iteration.
        progress: called as ``progress(iteration, mll)`` after each iteration.
        resume: an :class:`EMState` from ``on_state`` of an earlier run: the loop
            continues from it and takes the steps the uninterrupted run would
            take (``params`` and ``theta_init`` are then ignored). ``max_iter``
            counts the iterations before the resume too.
        on_state: called with the :class:`EMState` after each iteration (checkpoints).

    Returns:
        :class:`EMOutcome` with the final hyperparameters, the E-step at them,
        l per iteration for every data set, and the number of E-steps.
    """
    rule = stop_rule(opts.stop)

    def M(es: EStep, p: StateSpaceParams) -> StateSpaceParams:
        return m_step(
            es.smooth,
            p,
            q_form=opts.q_form,
            N=opts.N,
            learn_F=opts.learn_F,
            u=u,
            learn_Q=opts.learn_Q,
            mu_fixed=opts.mu_fixed,
            state_ar_prior=opts.state_ar_prior,
        )

    n_e = 0

    def E(p: StateSpaceParams, init: torch.Tensor | None) -> EStep:
        nonlocal n_e
        n_e += 1
        return e_step(
            obs, p, u=u, theta_init=init, newton_tol=opts.newton_tol, map_method=opts.map_method, estep=opts.estep
        )

    check_estep(opts.estep, rule.needs_filter(opts.learn_F))
    start = 0
    if resume is not None:
        params, theta_init, start = resume.params, resume.theta_s, int(resume.iteration)
    es = E(params, theta_init)
    history = [es.mll.tolist()]
    B = es.mll.shape[0]
    converged = torch.zeros(B, dtype=torch.bool, device=es.mll.device)
    if resume is not None:
        converged = resume.converged.to(device=converged.device, dtype=torch.bool).clone()
    if not opts.mstep:
        return EMOutcome(params, es, history, start, n_e, torch.ones_like(converged))

    def report(k: int, p: StateSpaceParams, mll: torch.Tensor, state: Callable[[], EMState]) -> None:
        history.append(mll.tolist())
        if callback is not None:
            callback(k, p, mll)
        if progress is not None:
            progress(k, mll)
        if on_state is not None:
            on_state(state())

    loop = EMLoop(obs, opts, u, E, M, report, history, start, resume)
    out = rule.run(loop, params, es, converged)
    return EMOutcome(
        out.params, out.estep, history, out.iterations, n_e + out.extra_e_steps, out.converged, out.stopped
    )
