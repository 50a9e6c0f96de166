"""The EM loop: E-step, M-step, marginal likelihood, and the stopping schemes.

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
  the plain EM step.
* ``stop="converged"`` with a learned F or a learned input gain U: l is maximised
  directly (as ``stop="mll"``). Accelerated EM over the D^2 entries of F is
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
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from ..optim.bfgs import bfgs_maximise
from .direct import mll_with_grad
from .filter import laplace_filter
from .joint import joint_e_step
from .joint_diagonal import joint_diagonal_e_step
from .marginal import log_marginal
from .mstep import m_step
from .observation import ObservationModel
from .records import EMState, FilterResult, SmootherResult, StateSpaceParams
from .smoother import smoother

__all__ = ["EStep", "e_step", "run_em", "EMOptions", "EMOutcome", "SSLL_TOL", "E_STEPS", "check_estep", "default_estep"]

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


#: "converged": Anderson-accelerated EM to its fixed point (default); "em": plain EM to
#: the fixed point; "ssll": the published rule; "mll": maximise the Laplace l directly.
STOP_RULES = ("converged", "em", "ssll", "mll")


class EStep(NamedTuple):
    """One E-step: filter, smoother and the marginal likelihood l (B,)."""

    filt: FilterResult
    smooth: SmootherResult
    mll: torch.Tensor


class EMOptions(NamedTuple):
    """Settings of the EM loop (see :func:`run_em`)."""

    q_form: str = "scalar"
    learn_F: bool = False
    learn_Q: bool = True
    mstep: bool = True
    stop: str = "converged"
    max_iter: int = 1000
    tol: float = 1e-5
    newton_tol: float = 1e-8
    map_method: str = "newton"
    N: int = 1
    depth: int = 5
    estep: str = "filter"
    #: (B, D) bool: entries of mu the M-step keeps fixed (statistics with no finite estimate), or None
    mu_fixed: torch.Tensor | None = None


class EMOutcome(NamedTuple):
    """Result of :func:`run_em`."""

    params: StateSpaceParams
    estep: EStep
    mll_list: list[list[float]]
    iterations: int
    e_steps: int
    converged: torch.Tensor
    #: why EM stopped before its rule was met, other than max_iter ("" when it was not stopped early)
    stopped: str = ""


def _filter_e_step(obs, params, *, u, theta_init, newton_tol, map_method) -> EStep:
    filt = laplace_filter(obs, params, u=u, theta_init=theta_init, tol=newton_tol, map_method=map_method)
    smooth = smoother(filt, params)
    return EStep(filt, smooth, log_marginal(obs, filt))


def _joint_e_step(obs, params, *, u, theta_init, newton_tol, map_method) -> EStep:
    if map_method != "newton":
        raise ValueError("estep='joint' uses its own Newton search; map_method='cg' needs estep='filter'")
    run = joint_diagonal_e_step if obs.diagonal else joint_e_step
    if any(t is not None and t.requires_grad for t in params):
        return EStep(*run(obs, params, u=u, theta_init=theta_init, tol=newton_tol))
    # no derivative flows through the E-step: inference mode skips autograd's bookkeeping,
    # which is a large part of the cost of the many small tensor operations at small N
    with torch.inference_mode():
        filt, smooth, mll = run(obs, params, u=u, theta_init=theta_init, tol=newton_tol)
    smooth = SmootherResult(*(None if t is None else t.clone() for t in smooth))
    return EStep(filt, smooth, mll.clone())


#: E-steps by name: "filter" (Laplace filter and smoother, MODEL.md 3.1-3.2, 3.4) and
#: "joint" (the joint Laplace posterior over all bins: :mod:`.joint` for full covariances,
#: :mod:`.joint_diagonal` for the approximate diagonal ones).
E_STEPS: dict[str, Callable[..., EStep]] = {"filter": _filter_e_step, "joint": _joint_e_step}


def check_estep(estep: str, stop: str, learn_F: bool, diagonal: bool) -> None:
    """Raise ValueError unless the E-step ``estep`` can serve the stopping rule ``stop``.

    The joint E-step serves the EM-map rules ("converged", "em"), with full covariances
    (:mod:`.joint`) and with the diagonal ones of the approximate methods (:mod:`.joint_diagonal`).
    "ssll" and "mll" (and "converged" with a learned F, which maximises l directly) are
    defined through the filter's l.
    """
    if estep not in E_STEPS:
        raise ValueError(f"estep must be one of {tuple(E_STEPS)}, got {estep!r}")
    if estep != "joint":
        return
    if stop in ("ssll", "mll") or (stop == "converged" and learn_F):
        what = "a learned F" if stop == "converged" else f"stop={stop!r}"
        raise ValueError(f"{what} is defined through the filter's marginal likelihood: use estep='filter'")


def default_estep(stop: str, learn_F: bool, diagonal: bool, map_method: str, learn_U: bool = False) -> str:
    """The E-step ``fit`` uses when none is given.

    "joint" for the default rule ``stop="converged"`` with full covariances, a fixed F, no
    input gain and the Newton mode search; "filter" otherwise: ``stop="ssll"`` and
    ``stop="em"`` exist to reproduce the published numbers, ``stop="mll"``, a learned F and a
    learned U maximise the filter's l directly, and the approximate (diagonal) methods and
    ``map_method="cg"`` run through the filter.
    """
    if stop == "converged" and not (learn_F or learn_U or diagonal) and map_method == "newton":
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


# --------------------------------------------------------------------------- coordinates


class _Coords:
    """Map hyperparameters to an unconstrained vector per data set and back."""

    def __init__(self, template: StateSpaceParams, opts: EMOptions, diagonal: bool) -> None:
        self.t = template
        self.opts = opts
        self.diagonal = diagonal
        self.D = template.mu.shape[-1]

    def _q_index(self) -> list[slice]:
        """Blocks of diagonal entries of Q that share one variance."""
        D, N = self.D, self.opts.N
        form = self.opts.q_form
        if form == "scalar":
            return [slice(0, D)]
        if form == "two":
            return [slice(0, N), slice(N, D)] if D > N else [slice(0, D)]
        return [slice(d, d + 1) for d in range(D)]

    def logvar_scale(self, K: int, device: torch.device) -> torch.Tensor:
        """Per coordinate: 1 for a log variance, 2 for a log Cholesky diagonal (log sd), 0 otherwise."""
        scale = torch.zeros(K, device=device)
        if self.opts.learn_Q:
            D = self.D
            if not self.diagonal and self.opts.q_form == "full":
                scale[D : 2 * D] = 2.0
            else:
                n = D if self.opts.q_form == "diag" else len(self._q_index())
                scale[D : D + n] = 1.0
        return scale

    def to_vec(self, p: StateSpaceParams) -> torch.Tensor:
        parts = [p.mu]
        if self.opts.learn_Q:
            Q = p.Q
            if not self.diagonal and self.opts.q_form == "full":
                L = torch.linalg.cholesky(Q)
                il = torch.tril_indices(self.D, self.D, -1, device=Q.device)
                parts += [torch.diagonal(L, dim1=-2, dim2=-1).log(), L[:, il[0], il[1]]]
            else:
                d = Q if self.diagonal else torch.diagonal(Q, dim1=-2, dim2=-1)
                if self.opts.q_form == "diag":
                    parts.append(d.log())
                else:
                    parts.append(torch.stack([d[:, s].mean(-1).log() for s in self._q_index()], dim=-1))
        if self.opts.learn_F:
            parts.append(p.F.reshape(p.F.shape[0], -1))
        if p.U is not None:
            parts.append(p.U.reshape(p.U.shape[0], -1))
        return torch.cat(parts, dim=-1)

    def from_vec(self, x: torch.Tensor) -> StateSpaceParams:
        D, t = self.D, self.t
        B = x.shape[0]
        i = D
        mu = x[:, :D]
        Q = t.Q
        if self.opts.learn_Q:
            if not self.diagonal and self.opts.q_form == "full":
                il = torch.tril_indices(D, D, -1, device=x.device)
                L = torch.diag_embed(x[:, i : i + D].exp())
                i += D
                n = il.shape[1]
                L[:, il[0], il[1]] = x[:, i : i + n]
                i += n
                Q = L @ L.transpose(-1, -2)
            else:
                if self.opts.q_form == "diag":
                    d = x[:, i : i + D].exp()
                    i += D
                else:
                    blocks = self._q_index()
                    logs = x[:, i : i + len(blocks)]
                    i += len(blocks)
                    d = torch.cat(
                        [logs[:, k : k + 1].exp().expand(B, s.stop - s.start) for k, s in enumerate(blocks)], -1
                    )
                Q = d if self.diagonal else torch.diag_embed(d)
        F = t.F
        if self.opts.learn_F:
            F = x[:, i : i + D * D].reshape(B, D, D)
            i += D * D
        U = t.U
        if U is not None:
            n = U.shape[1] * U.shape[2]
            U = x[:, i : i + n].reshape(U.shape)
        return StateSpaceParams(mu, t.Sigma, Q, F, U)


# --------------------------------------------------------------------------- loop


def _select_params(mask: torch.Tensor, a: StateSpaceParams, b: StateSpaceParams) -> StateSpaceParams:
    """Per data set, the hyperparameters ``a`` where ``mask`` holds, else ``b``."""

    def pick(x: torch.Tensor | None, y: torch.Tensor | None) -> torch.Tensor | None:
        if x is None:
            return None
        return torch.where(mask.view(-1, *([1] * (x.ndim - 1))), x, y)

    return StateSpaceParams(*(pick(x, y) for x, y in zip(a, b, strict=True)))


def _select(mask: torch.Tensor, a: EStep, b: EStep) -> EStep:
    """Per data set, the E-step ``a`` where ``mask`` holds, else ``b``."""

    def pick(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.where(mask.view(-1, *([1] * (x.ndim - 1))), x, y)

    pairs = zip(a.filt, b.filt, strict=True)
    filt = type(a.filt)(*(pick(x, y) if isinstance(x, torch.Tensor) else x for x, y in pairs))
    smooth = type(a.smooth)(*(None if x is None else pick(x, y) for x, y in zip(a.smooth, b.smooth, strict=True)))
    return EStep(filt, smooth, pick(a.mll, b.mll))


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
        opts: :class:`EMOptions`.
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
    diagonal = obs.diagonal

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
        )

    n_e = 0

    def E(p: StateSpaceParams, init: torch.Tensor | None) -> EStep:
        nonlocal n_e
        n_e += 1
        return e_step(
            obs, p, u=u, theta_init=init, newton_tol=opts.newton_tol, map_method=opts.map_method, estep=opts.estep
        )

    if opts.stop not in STOP_RULES:
        raise ValueError(f"stop must be one of {STOP_RULES}, got {opts.stop!r}")
    check_estep(opts.estep, opts.stop, opts.learn_F, diagonal)
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
    it = start

    def report(k: int, p: StateSpaceParams, mll: torch.Tensor, state: Callable[[], EMState]) -> None:
        history.append(mll.tolist())
        if callback is not None:
            callback(k, p, mll)
        if progress is not None:
            progress(k, mll)
        if on_state is not None:
            on_state(state())

    if opts.stop == "ssll":
        # The published loop: E-step, M-step, then l from that E-step's filter with the
        # new prior mean mu (as the published library computes it); stop when
        # (l_prev - l) / l_prev < 1e-4. history[0] is the first E-step's l, as for every rule.
        prev = None
        if resume is not None:
            prev = resume.mll.to(es.mll)
            es = es._replace(mll=torch.where(converged, prev, es.mll))
        fresh = True
        while it < opts.max_iter and not bool(converged.all()):
            it += 1
            if not fresh:
                es = _select(converged, es, E(params, es.smooth.theta_s))
            fresh = False
            new_params = M(es, params)
            params = _select_params(converged, params, new_params)
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
        return EMOutcome(params, es, history, it, n_e, converged)

    coords = _Coords(params, opts, diagonal)
    x0 = coords.to_vec(params)
    stopped = ""
    learned_gain = opts.learn_F or (params.U is not None and u is not None and opts.estep == "filter")
    if opts.stop == "mll" or (opts.stop == "converged" and learned_gain and not diagonal):
        # With a learned F or U, accelerated EM is unreliable (see the module docstring): maximise l directly.
        # A resumed run starts BFGS afresh from the checkpoint (its curvature memory is not kept).
        x0, es, converged, n_fun, stopped = _maximise_mll(
            obs, es, x0, coords, opts._replace(max_iter=opts.max_iter - start), u, M, E, report, start
        )
        n_e += n_fun
        it = start + len(history) - 1
    elif opts.stop == "em":
        x0, es, converged, it = _anderson(es, x0, coords, opts._replace(depth=0), M, E, report, start, resume)
    else:
        x0, es, converged, it = _anderson(es, x0, coords, opts, M, E, report, start, resume)
    final = coords.from_vec(x0)
    if not math.isfinite(float(es.mll.sum())):
        raise FloatingPointError("the marginal likelihood became non-finite during EM")
    return EMOutcome(final, es, history, it, n_e, converged, stopped)


def _anderson(
    es: EStep,
    x0: torch.Tensor,
    coords: _Coords,
    opts: EMOptions,
    M,
    E,
    report,
    start: int = 0,
    resume: EMState | None = None,
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
    function of EM, so even plain EM may lower it slightly.
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
        W = es_.smooth.sigma_s
        return (W if W.ndim == 3 else torch.diagonal(W, dim1=-2, dim2=-1)).mean((-1, -2))

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
            Fm = torch.stack(dF, dim=-1)  # (B, K, m)
            Gm = torch.stack(dG, dim=-1)
            A = Fm.transpose(-1, -2) @ Fm
            reg = 1e-10 * torch.diagonal(A, dim1=-2, dim2=-1).amax(-1).clamp_min(1e-300)
            A = A + reg[:, None, None] * torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
            gamma = torch.linalg.solve(A, (Fm.transpose(-1, -2) @ f.unsqueeze(-1))).squeeze(-1)
            x_aa = g - (Gm @ gamma.unsqueeze(-1)).squeeze(-1)
            extrapolated = torch.isfinite(x_aa).all(-1) & (Fm.abs().sum((-1, -2)) > 0)
            x_new = torch.where(extrapolated[:, None], x_aa, g)
        x_new = torch.where(converged[:, None], x0, x_new)
        extrapolated = extrapolated & ~converged
        it += 1
        try:
            es_new = E(coords.from_vec(x_new), es.smooth.theta_s)
            g_new, f_new = image(es_new, x_new)
            grew = f_new.norm(dim=-1) > 2.0 * f.norm(dim=-1)
            fell = es_new.mll < es.mll
            dropped = es_new.mll < es.mll - mll_drop_tol(es.mll)
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
                es_new = _select(bad, es_g, es_new)
                x_new = torch.where(bad[:, None], g, x_new)
                g_new = torch.where(bad[:, None], g_g, g_new)
                f_new = torch.where(bad[:, None], f_g, f_new)
            keep = (~bad)[:, None].to(x0.dtype)
            dF[:] = [d * keep for d in dF]
            dG[:] = [d * keep for d in dG]
        x0 = x_new
        es = _select(converged, es, es_new)
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


def _maximise_mll(obs, es: EStep, x0: torch.Tensor, coords: _Coords, opts: EMOptions, u, M, E, report, start=0):
    """Maximise the Laplace l itself over the hyperparameters (batched BFGS, autograd gradient).

    Returns:
        (x, E-step at x, converged (B,), evaluations, why it stopped early: "" or a sentence).
    """
    if obs.diagonal:
        raise ValueError("stop='mll' needs full covariances (method='exact')")
    if opts.map_method != "newton":
        raise ValueError("stop='mll' (and a learned F) needs exact modes: use map_method='newton'")
    direction0 = coords.to_vec(M(es, coords.from_vec(x0))) - x0
    cache = {"theta": es.smooth.theta_s}

    def fun(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = coords.from_vec(x)
        filt = laplace_filter(obs, p, u=u, theta_init=cache["theta"], tol=opts.newton_tol)
        xg = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            val = mll_with_grad(obs, coords.from_vec(xg), filt.theta_f, u=u)
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
