"""The stopping rules of EM, one record each (:data:`STOP_RULES`).

* ``stop="converged"`` (default): Anderson-accelerated EM (type II, depth 5)
  to the EM fixed point x = EM(x). Hyperparameters are extrapolated in an
  unconstrained coordinate system (mu, log variances, a Cholesky factor with
  log diagonal for a full Q, F and U entries), so Q stays positive definite.
  It stops when the largest change of one plain EM step in those coordinates
  is below ``tol``, a state-noise variance that has fallen below
  ``Q_FLOOR`` x the posterior variance counting as settled (the fixed point
  is then the boundary Q = 0).
  Safeguard: an extrapolated step that lowers l by more than ``mll_drop_tol(l)``
  (or lowers it at all while more than doubling the residual) is replaced by
  the plain EM step. The first test applies only where EM ascends l
  (``ObservationModel.ascends_mll``; not the pseudo-likelihood scheme, whose plain
  EM steps lower its approximate l near the fixed point).
* ``stop="converged"`` with a learned F under its prior (:mod:`.stable`, the default):
  the accelerated EM above, in the free coordinates A of F = A L^{-T}, with the prior's
  F update; the safeguard compares l + log p(F), the objective that EM ascends.
* ``stop="converged"`` with a free learned F (``state_ar_prior=None``) or a learned input gain U:
  l is maximised directly (as ``stop="mll"``). Accelerated EM over the D^2 entries of F is
  unreliable, and with U the state-noise variance typically tends to 0, where the
  EM map of U tends to the identity (the smoothed increments follow the current
  U u_t): EM creeps, and its residual says nothing about the distance to the
  fixed point.
* ``stop="mll"``: l itself is maximised over the hyperparameters by a batched BFGS with
  the gradient from autograd through the filter (:mod:`.direct`).
* ``stop="em"``: plain EM to the fixed point (slow; a reference).
* ``stop="ssll"``: the published rule (MODEL.md 3.5): plain EM; after each
  E-step and M-step, l from that E-step with the new prior mean; stop when
  (l_prev - l) / l_prev < 1e-4 or after ``max_iter`` iterations.

Each rule is a :class:`StopRule` that owns its defaults (``max_iter``, the mode search,
whether ``fit`` prefers the joint E-step, whether it is defined through the filter's l).
A new rule is one record in :data:`STOP_RULES`: its ``run(loop, params, estep, converged)``
gets the fit's E-step, M-step and reporting hook in an :class:`EMLoop`, iterates from the
first E-step, and returns a :class:`RuleOutcome`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..optim.anderson import anderson_extrapolate
from ..optim.bfgs import bfgs_maximise
from .coords import Coords
from .covariance import Covariance
from .direct import mll_with_grad
from .estep import select_estep, select_params
from .filter import laplace_filter
from .marginal import log_marginal
from .observation import ObservationModel
from .records import EMOptions, EMState, EStep, StateSpaceParams

__all__ = ["StopRule", "STOP_RULES", "stop_rule", "EMLoop", "RuleOutcome", "SSLL_TOL", "RUNAWAY_THETA", "mll_drop_tol"]

#: the published library's relative stopping tolerance
SSLL_TOL = 1e-4

#: a state-noise variance below this fraction of the mean posterior variance counts as 0
Q_FLOOR = 1e-3

#: the accelerated scheme's safeguard: an extrapolated step that lowers l by more than
#: max(MLL_DROP_TOL, MLL_DROP_REL |l|) is replaced by the plain EM step
MLL_DROP_TOL = 1e-3
#: the relative part of the safeguard's tolerance: l of a long recording (|l| ~ 1e5-1e6) moves by
#: more than 1e-3 under steps that are fine (N = 5, T = 2000, R = 50: a 1e-3 bar rejected so many
#: steps that the fit took 213 iterations instead of 18)
MLL_DROP_REL = 1e-7


def mll_drop_tol(mll: torch.Tensor) -> torch.Tensor:
    """The most an accelerated step may lower l: max(MLL_DROP_TOL, MLL_DROP_REL |l|), per data set."""
    return (MLL_DROP_REL * mll.abs()).clamp_min(MLL_DROP_TOL)


class EMLoop(NamedTuple):
    """What :func:`torch_ising.statespace.em.run_em` hands a stopping rule.

    Attributes:
        obs: the observation model (B data sets).
        opts: the EM settings.
        u: exogenous input (B, T, n_u), or None.
        E: ``E(params, theta_init) -> EStep``, one E-step (counted).
        M: ``M(estep, params) -> params``, one M-step (MODEL.md 3.3).
        report: ``report(iteration, params, mll, state)``, after each iteration: appends l to
            the history and calls the user's callback, progress bar and checkpoint hook
            (``state()`` builds the :class:`EMState`).
        history: l per iteration so far (its first entry is the first E-step's l).
        start: the iteration the loop starts from (0, or a resumed run's).
        resume: the :class:`EMState` a resumed run continues from, or None.
    """

    obs: ObservationModel
    opts: EMOptions
    u: torch.Tensor | None
    E: Callable[[StateSpaceParams, torch.Tensor | None], EStep]
    M: Callable[[EStep, StateSpaceParams], StateSpaceParams]
    report: Callable[..., None]
    history: list[list[float]]
    start: int
    resume: EMState | None


class RuleOutcome(NamedTuple):
    """What a stopping rule returns: the final hyperparameters and E-step, and how it ended.

    Attributes:
        params: the final hyperparameters.
        estep: the E-step at them.
        converged: (B,) whether the rule was met for each data set.
        iterations: the iteration count at the end (a resumed run's earlier ones included).
        stopped: why the rule ended before it was met, other than max_iter ("" otherwise).
        extra_e_steps: E-steps run outside ``EMLoop.E`` (the direct maximisation's filter passes).
    """

    params: StateSpaceParams
    estep: EStep
    converged: torch.Tensor
    iterations: int
    stopped: str = ""
    extra_e_steps: int = 0


def _published(loop: EMLoop, params: StateSpaceParams, es: EStep, converged: torch.Tensor) -> RuleOutcome:
    """The published loop (MODEL.md 3.5): E-step, M-step, then l from that E-step's filter with the
    new prior mean mu (as the published library computes it); stop when (l_prev - l) / l_prev < 1e-4.
    """
    obs, opts, E, M, report, resume = loop.obs, loop.opts, loop.E, loop.M, loop.report, loop.resume
    it = loop.start
    prev = None
    if resume is not None:
        prev = resume.mll.to(es.mll)
        es = es._replace(mll=torch.where(converged, prev, es.mll))
    fresh = True
    while it < opts.max_iter and not bool(converged.all()):
        it += 1
        if not fresh:
            es = select_estep(converged, es, E(params, es.smooth.theta_s))
        fresh = False
        new_params = M(es, params)
        params = select_params(converged, params, new_params)
        theta_p = es.filt.theta_p.clone()
        theta_p[:, 0] = params.mu
        mll = log_marginal(obs, es.filt._replace(theta_p=theta_p))
        mll = torch.where(converged, es.mll, mll)
        es = es._replace(mll=mll)
        if prev is not None:
            converged = converged | ((prev - mll) / prev < SSLL_TOL)
        prev = mll
        snap = EMState(it, params, es.smooth.theta_s, mll, converged)
        report(it, params, mll, lambda snap=snap: snap)
    return RuleOutcome(params, es, converged, it)


def _finite(es: EStep) -> None:
    if not math.isfinite(float(es.mll.sum())):
        raise FloatingPointError("the marginal likelihood became non-finite during EM")


def _fixed_point(depth: int) -> Callable[[EMLoop, StateSpaceParams, EStep, torch.Tensor], RuleOutcome]:
    """EM to its fixed point x = EM(x), Anderson-accelerated with ``depth`` > 0, plain with 0."""

    def run(loop: EMLoop, params: StateSpaceParams, es: EStep, converged: torch.Tensor) -> RuleOutcome:
        coords = Coords(params, loop.opts, es.filt.cov, stable_F=True)
        x0 = coords.to_vec(params)
        opts = loop.opts._replace(depth=depth)
        x0, es, converged, it = _anderson(
            es, x0, coords, opts, loop.M, loop.E, loop.report, loop.start, loop.resume, loop.obs.ascends_mll
        )
        _finite(es)
        return RuleOutcome(coords.from_vec(x0), es, converged, it)

    return run


def _direct(loop: EMLoop, params: StateSpaceParams, es: EStep, converged: torch.Tensor) -> RuleOutcome:
    """Maximise l itself over the hyperparameters (batched BFGS, autograd gradient through the filter).

    A resumed run starts BFGS afresh from the checkpoint (its curvature memory is not kept).
    With a learned F and a prior scale ``opts.state_ar_prior`` the objective is l + log p(F), over
    the free coordinates A of the stable parametrisation (:mod:`.stable`), so ||F||_2 < 1.
    """
    coords = Coords(params, loop.opts, es.filt.cov, stable_F=True)
    x0 = coords.to_vec(params)
    opts = loop.opts._replace(max_iter=loop.opts.max_iter - loop.start)
    x0, es, converged, n_fun, stopped = _maximise_mll(
        loop.obs, es, x0, coords, opts, loop.u, loop.M, loop.E, loop.report, loop.start
    )
    _finite(es)
    return RuleOutcome(coords.from_vec(x0), es, converged, loop.start + len(loop.history) - 1, stopped, n_fun)


_accelerated = _fixed_point(EMOptions().depth)


def _converged(loop: EMLoop, params: StateSpaceParams, es: EStep, converged: torch.Tensor) -> RuleOutcome:
    """Accelerated EM to its fixed point; with a learned F or U (and full covariances), l maximised directly.

    Accelerated EM over the D^2 entries of F is unreliable, and with U the state-noise variance
    typically tends to 0, where the EM map of U tends to the identity: EM creeps, and its residual
    says nothing about the distance to the fixed point.
    """
    opts = loop.opts
    learned_U = params.U is not None and loop.u is not None and opts.estep == "filter"
    free_F = opts.learn_F and opts.state_ar_prior is None
    if (free_F or learned_U) and not es.filt.cov.diagonal:
        return _direct(loop, params, es, converged)
    return _accelerated(loop, params, es, converged)


@dataclass(frozen=True)
class StopRule:
    """One stopping rule of EM, with the defaults it owns.

    Attributes:
        name: the value of ``fit(stop=...)``.
        summary: what the rule does, in one line.
        run: ``run(loop, params, estep, converged) -> RuleOutcome``, from the first E-step on.
        max_iter: the default most iterations.
        published_search: whether the rule exists to reproduce the published numbers with the
            published mode search (``map_method="cg"`` by default for the exact method, which
            starts the first E-step's searches from theta = 0 as the published code does).
        joint_default: whether ``fit`` uses the joint E-step by default under this rule
            (where it can: :func:`.estep.default_estep`).
        filter_l: "always", "never" or "learned_F": when the rule is defined through the
            filter's marginal likelihood, which the joint E-step cannot serve.
        prior_on_F: whether a learned F gets the prior of :mod:`.stable` (``fit(state_ar_prior=)``)
            under this rule; the published rules keep the free closed-form F update of MODEL.md 3.3.
    """

    name: str
    summary: str
    run: Callable[[EMLoop, StateSpaceParams, EStep, torch.Tensor], RuleOutcome]
    max_iter: int = 1000
    published_search: bool = False
    joint_default: bool = False
    filter_l: str = "never"
    prior_on_F: bool = False

    def default_map_method(self, cov: Covariance) -> str:
        """The mode search when none is given: "cg" for a published rule with dense ``cov``, else "newton"."""
        return "cg" if self.published_search and not cov.diagonal else "newton"

    def needs_filter(self, learn_F: bool) -> str:
        """Why the rule needs the filter's l (a phrase for an error message), or "" when it does not."""
        if self.filter_l == "always":
            return f"stop={self.name!r}"
        if self.filter_l == "learned_F" and learn_F:
            return "a learned F"
        return ""


#: The stopping rules by name (``fit(stop=...)``); see the module docstring.
STOP_RULES: dict[str, StopRule] = {
    r.name: r
    for r in (
        StopRule("converged", "accelerated EM to its fixed point (a learned F or U: l maximised directly)",
                 _converged, joint_default=True, filter_l="learned_F", prior_on_F=True),
        StopRule("em", "plain EM to its fixed point (slow; a reference)", _fixed_point(0)),
        StopRule("ssll", "the published rule: relative change of l below 1e-4", _published, max_iter=100,
                 published_search=True, filter_l="always"),
        StopRule("mll", "l maximised directly by BFGS with the autograd gradient", _direct, filter_l="always",
                 prior_on_F=True),
    )
}  # fmt: skip


def stop_rule(name: str) -> StopRule:
    """The :class:`StopRule` called ``name``; ValueError naming the rules otherwise."""
    if name not in STOP_RULES:
        raise ValueError(f"stop must be one of {tuple(STOP_RULES)}, got {name!r}")
    return STOP_RULES[name]


def _anderson(
    es: EStep,
    x0: torch.Tensor,
    coords: Coords,
    opts: EMOptions,
    M,
    E,
    report,
    start: int = 0,
    resume: EMState | None = None,
    ascends_mll: bool = True,
):
    """Anderson-accelerated EM (type II, depth ``opts.depth``) to the fixed point x = EM(x).

    With residuals f_k = EM(x_k) - x_k and the differences dF, dG of the last
    residuals and EM images, gamma = argmin |f_k - dF gamma| and
    x_{k+1} = EM(x_k) - dG gamma. Safeguard: an extrapolated step is kept only
    if its l is at least l(x_k) - :func:`mll_drop_tol` (max(1e-3, 1e-7 |l|)) and it does not both
    lower l and more than double the residual; otherwise (or if it is not
    finite) the plain EM step x_{k+1} = EM(x_k) is taken and that data set's
    history is cleared. No iteration therefore lowers l by more than the
    tolerance, except a plain EM step: the Laplace l is not an exact Lyapunov
    function of EM, so even plain EM may lower it slightly. With
    ``ascends_mll=False`` (the observation model's flag: EM does not ascend its l,
    as in the pseudo-likelihood scheme) the tolerance test is left out, since it
    would reject the very steps EM takes near its fixed point.
    Every data set has its own history, safeguard and stopping test, so a
    batched fit equals separate fits.
    """
    B = x0.shape[0]
    converged = torch.zeros(B, dtype=torch.bool, device=x0.device)
    dF: list[torch.Tensor] = []
    dG: list[torch.Tensor] = []

    def image(es_: EStep, x_: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g_ = coords.to_vec(M(es_, coords.from_vec(x_)))
        return g_, g_ - x_

    def posterior_variance(es_: EStep) -> torch.Tensor:
        smooth = es_.smooth
        return smooth.cov.diag(smooth.sigma_s).mean((-1, -2))

    f_prev = g_prev = None
    if resume is not None and resume.x is not None:
        # continue exactly: the stored vector, image, l and history, not ones recomputed from params
        converged = resume.converged.to(device=x0.device, dtype=torch.bool).clone()
        x0, g = resume.x.to(x0), resume.g.to(x0)
        f = g - x0
        f_prev, g_prev = resume.f_prev, resume.g_prev
        post = resume.post.to(x0)
        es = es._replace(mll=resume.mll.to(es.mll), smooth=es.smooth._replace(theta_s=resume.theta_s.to(x0)))
        if opts.depth > 0 and resume.dF is not None:
            dF = list(resume.dF.to(x0).unbind(-1))
            dG = list(resume.dG.to(x0).unbind(-1))
    else:
        g, f = image(es, x0)
        post = posterior_variance(es)
    it = start
    logvar = coords.logvar_scale(x0.shape[-1], x0.device).to(x0.dtype)

    def at_fixed_point(x: torch.Tensor, f: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
        # A state-noise variance below Q_FLOOR x the mean posterior variance no longer moves
        # theta_s: EM would only creep towards the boundary Q = 0, so that coordinate counts as settled.
        # Only while EM still pushes it down (f <= 0): one it pushes back up is not at the boundary.
        negligible = (logvar > 0) & (logvar * x < torch.log(Q_FLOOR * post)[:, None]) & (f <= 0)
        return ((f.abs() < opts.tol) | negligible).all(-1)

    while it < opts.max_iter:
        converged = converged | at_fixed_point(x0, f, post)
        if bool(converged.all()):
            break
        if f_prev is not None and opts.depth > 0:
            dF.append(f - f_prev)
            dG.append(g - g_prev)
            if len(dF) > opts.depth:
                dF.pop(0)
                dG.pop(0)
        f_prev, g_prev = f, g
        x_new = g
        extrapolated = torch.zeros_like(converged)
        if dF:
            x_aa, extrapolated = anderson_extrapolate(dF, dG, f, g)
            x_new = torch.where(extrapolated[:, None], x_aa, g)
        x_new = torch.where(converged[:, None], x0, x_new)
        extrapolated = extrapolated & ~converged
        it += 1
        try:
            es_new = E(coords.from_vec(x_new), es.smooth.theta_s)
            g_new, f_new = image(es_new, x_new)
            grew = f_new.norm(dim=-1) > 2.0 * f.norm(dim=-1)
            # the objective EM ascends: l, plus log p(F) under a prior on a learned F (0 otherwise)
            obj, obj_new = es.mll + coords.log_prior(x0), es_new.mll + coords.log_prior(x_new)
            fell = obj_new < obj
            # only where EM ascends l: otherwise a fall of l is what plain EM does too
            dropped = (obj_new < obj - mll_drop_tol(obj)) & ascends_mll
            bad = ~torch.isfinite(f_new).all(-1) | ~torch.isfinite(es_new.mll) | (grew & fell) | dropped
        except (torch.linalg.LinAlgError, RuntimeError):
            if not bool(extrapolated.any()):
                raise
            es_new, bad = None, torch.ones_like(converged)
        # a plain EM step is never replaced (by itself)
        bad = bad & extrapolated
        if bool(bad.any()):
            # safeguard: the plain EM step where the extrapolation went astray; restart that history
            es_g = E(coords.from_vec(g), es.smooth.theta_s)
            g_g, f_g = image(es_g, g)
            if es_new is None:
                es_new, x_new, g_new, f_new = es_g, g, g_g, f_g
            else:
                es_new = select_estep(bad, es_g, es_new)
                x_new = torch.where(bad[:, None], g, x_new)
                g_new = torch.where(bad[:, None], g_g, g_new)
                f_new = torch.where(bad[:, None], f_g, f_new)
            keep = (~bad)[:, None].to(x0.dtype)
            dF[:] = [d * keep for d in dF]
            dG[:] = [d * keep for d in dG]
        x0 = x_new
        es = select_estep(converged, es, es_new)
        g = torch.where(converged[:, None], g, g_new)
        f = torch.where(converged[:, None], f, f_new)
        post = torch.where(converged, post, posterior_variance(es_new))
        params = coords.from_vec(x0)

        def state(x0=x0, p=params, es=es, f_prev=f_prev, g_prev=g_prev, it=it, g=g, post=post, done=converged):
            return EMState(
                it,
                p,
                es.smooth.theta_s,
                es.mll,
                done.clone(),
                post,
                x0,
                g,
                f_prev,
                g_prev,
                torch.stack(dF, -1) if dF else None,
                torch.stack(dG, -1) if dG else None,
            )

        report(it, params, es.mll, state)
    return x0, es, converged, it


#: with a learned F, a filtered path beyond |theta| = RUNAWAY_THETA (probabilities below e^-100) stops
#: the direct maximisation of l: theta_s is running off and l has no finite maximiser
RUNAWAY_THETA = 100.0


def _maximise_mll(obs, es: EStep, x0: torch.Tensor, coords: Coords, opts: EMOptions, u, M, E, report, start=0):
    """Maximise the Laplace l itself over the hyperparameters (batched BFGS, autograd gradient).

    Returns:
        (x, E-step at x, converged (B,), evaluations, why it stopped early: "" or a sentence).
    """
    if obs.diagonal:
        raise ValueError("stop='mll' needs full covariances (method='exact')")
    if opts.map_method != "newton":
        raise ValueError("stop='mll' (and a learned F) needs exact modes: use map_method='newton'")
    x_em = coords.to_vec(M(es, coords.from_vec(x0)))
    if coords.stable_F:  # the published F update may leave the unit ball: the first direction takes mu, Q, U
        x_em = coords.without_F_step(x_em, x0)
    direction0 = x_em - x0
    cache = {"theta": es.smooth.theta_s}

    def fun(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = coords.from_vec(x)
        filt = laplace_filter(obs, p, u=u, theta_init=cache["theta"], tol=opts.newton_tol)
        xg = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            val = mll_with_grad(obs, coords.from_vec(xg), filt.theta_f, u=u) + coords.log_prior(xg)
            (grad,) = torch.autograd.grad(val.sum(), xg)
        if opts.mu_fixed is not None:  # a fixed entry of mu (the first D coordinates) does not move
            grad[:, : coords.D] = grad[:, : coords.D].masked_fill(opts.mu_fixed, 0.0)
        cache["theta"], cache["x"] = filt.theta_f, x
        return val.detach(), grad

    evals = [start]
    runaway: dict[str, float] = {}

    def _report_eval(x: torch.Tensor, f: torch.Tensor) -> bool:
        evals[0] += 1
        p = coords.from_vec(x)
        k = evals[0]
        B = f.shape[0]
        no = torch.zeros(B, dtype=torch.bool, device=f.device)
        f = f - coords.log_prior(x)  # the history holds l itself, without log p(F)
        report(k, p, f, lambda: EMState(k, p, cache["theta"], f, no))
        # cache["theta"] is the filter's path at the point just evaluated; when that point was accepted,
        # a path beyond RUNAWAY_THETA means l is growing without bound (a learned F, MODEL.md 3.3): stop
        if opts.learn_F and torch.equal(x, cache["x"]):
            big = float(cache["theta"].abs().amax())
            if big > RUNAWAY_THETA:
                runaway.update(theta=big, iterations=k - start)
                return True
        return False

    x0, _, converged, n_fun = bfgs_maximise(
        fun,
        x0,
        tol=opts.tol,
        max_eval=opts.max_iter + 1,  # the first evaluation, at x0, is the E-step already in the history
        direction0=direction0,
        on_eval=_report_eval,
    )
    stopped = ""
    if runaway:
        converged = torch.zeros_like(converged)
        stopped = (
            f"stopped after {runaway['iterations']:g} iterations: the learned F lets theta_s run off (max |theta_s| = "
            f"{runaway['theta']:.3g} > {RUNAWAY_THETA:g}), so l grows without bound and has no finite maximiser"
        )
    elif bool((~converged).any()) and evals[0] - start < opts.max_iter:  # ended before max_iter, unconverged
        n = converged.numel()
        which = "" if n == 1 else f" for {int((~converged).sum())} of {n} data sets"
        stopped = (
            f"stopped after {evals[0] - start} iterations before its stopping rule was met{which}: the "
            "line search of the direct maximisation of l found no ascent (l is at a round-off plateau)"
        )
    return x0, E(coords.from_vec(x0), cache["theta"]), converged, n_fun, stopped
