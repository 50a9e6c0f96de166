"""The public state-space API: :func:`fit` and :class:`StateSpaceIsing`.

The model (MODEL.md section 3):

    theta_1 ~ Normal(theta_o, sigma_o I),  theta_t = F theta_{t-1} + U u_t + xi_t,  xi_t ~ Normal(0, Q),
    log p(y_t | theta_t) = R_t [ y_t . theta_t - psi(theta_t) ]   (R_t observed trials of bin t).
"""

from __future__ import annotations

import hashlib
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .._threads import threads_for
from .._validation import (
    check_fit_options,
)
from .._warnings import user_stacklevel
from ..basis import subsets
from .covariance import covariance_of
from .em import run_em
from .estep import check_estep, default_estep
from .filter import check_map_method
from .inputs import parse_prior, parse_state_ar, parse_state_ar_prior, prepare_data
from .joint import filtered_from_joint
from .joint_diagonal import filtered_from_joint_diagonal
from .observation import observation_builder
from .qforms import parse_state_cov
from .records import EMOptions, EMState, StateSpaceParams, check_fingerprint, fit_fingerprint
from .result import StateSpaceResult
from .stable import STATE_AR_PRIOR
from .stopping import stop_rule

__all__ = ["fit", "StateSpaceIsing", "FitWarning"]


class FitWarning(UserWarning):
    """A fit's estimates need care: not converged, an explosive learned F, or a statistic with no finite estimate."""


#: prior covariance sigma_o of a stationary fit when none is given (the prior is fixed: mu is not learned)
STATIONARY_SIGMA_O = 1.0
#: prior covariance sigma_o of a time-varying fit when none is given
SIGMA_O = 0.1


class _Progress:
    """A one-line progress bar on stderr: EM iteration and l."""

    def __init__(self, enabled: bool, max_iter: int) -> None:
        self.enabled = enabled
        self.max_iter = max_iter
        self.t0 = time.perf_counter()
        self.last: tuple[int, float] | None = None

    def _line(self, it: int, val: float, tail: str = "", full: bool = False) -> None:
        bar = "#" * (20 if full else int(20 * min(1.0, it / max(self.max_iter, 1))))
        sys.stderr.write(f"\rEM [{bar:<20}] iter {it:4d}  mll {val: .6f}  {time.perf_counter() - self.t0:6.1f}s{tail}")
        sys.stderr.flush()

    def __call__(self, it: int, mll: torch.Tensor) -> None:
        """The bar fills towards ``max_iter``; a converged fit completes it on :meth:`close`."""
        if not self.enabled:
            return
        val = float(mll.sum()) if mll.numel() > 1 else float(mll)
        self.last = (it, val)
        self._line(it, val)

    def close(self, converged: torch.Tensor | None = None) -> None:
        """End the line, saying whether the stopping rule was met."""
        if not self.enabled:
            return
        if self.last is not None and converged is not None:
            done = int(converged.sum())
            n = converged.numel()
            status = "  converged" if done == n else f"  NOT converged ({n - done} of {n} data sets)"
            self._line(*self.last, status, full=done == n)
        sys.stderr.write("\n")
        sys.stderr.flush()


def fit(
    spikes: Any,
    order: int = 2,
    *,
    window: int = 1,
    state_cov: Any = 0.01,
    q_form: str | None = None,
    state_ar: Any = None,
    state_ar_prior: Any = STATE_AR_PRIOR,
    u: Any = None,
    theta_o: Any = 0.0,
    sigma_o: Any = None,
    max_iter: int | None = None,
    tol: float = 1e-5,
    stop: str = "converged",
    stationary: bool = False,
    mstep: bool | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
    progress: bool | None = None,
    method: str = "exact",
    eta_method: str | None = None,
    newton_tol: float = 1e-8,
    map_method: str | None = None,
    callback: Callable[[int, StateSpaceParams, torch.Tensor], None] | None = None,
    init: StateSpaceParams | None = None,
    method_options: dict[str, Any] | None = None,
    resume: EMState | None = None,
    on_state: Callable[[EMState], None] | None = None,
    estep: str | None = None,
    mask: Any = None,
) -> StateSpaceResult:
    """Fit the state-space Ising model by EM with a Laplace filter and smoother.

    Args:
        spikes: binary spikes (T_raw, R, N), or (B, T_raw, R, N) for B
            independent data sets fitted in one batched call; numpy or torch.
        order: interaction order O.
        window: re-binning width (T = floor(T_raw / window)).
        state_cov: initial Q: a scalar q (Q = q I, learned as a scalar), a
            length-D vector (diagonal), a (D, D) matrix (full), or [q1, q2]
            (first-order and higher-order blocks). None/0 only with T = 1.
        q_form: the form of Q, when the shape of ``state_cov`` should not decide it:
            "scalar" (Q = q I), "diag", "full" or "two" (or a registered form; the config
            aliases "diagonal" and "two_block" work too). A scalar ``state_cov`` q then
            starts Q at that form's q: ``q_form="diag", state_cov=0.01`` learns D variances
            from 0.01 each, and ``q_form="two"`` is unambiguous at any D.
        state_ar: None (F = I, fixed) or an initial F (scalar or (D, D)), then learned.
        state_ar_prior: the prior on a learned F under ``stop="converged"`` and ``"mll"``
            (:mod:`torch_ising.statespace.stable`): (s, tau), a number s (tau = 1), or None
            (F free, no prior: l may have no finite maximiser). Default (0.05, 1.0). F is
            written F = A L^{-T} with L L^T = I + A^T A, so ||F||_2 < 1 and rho(F) < 1, and

                log p(F) = -||F - I||_F^2 / (2 s^2) - ||A||_F^2 / (2 tau^2) + const
                         = -||F - I||_F^2 / (2 s^2) - (tr[(I - F^T F)^{-1}] - D) / (2 tau^2) + const:

            a Gaussian N(0, tau^2) on each entry of A, tilted towards the random walk F = I.
            In MODEL.md terms: the transition theta_t = F theta_{t-1} + U u_t + xi_t of
            section 3 is kept a contraction near I, and the fit maximises l + log p(F) instead
            of l (3.4). The second term is a barrier at ||F||_2 = 1, where the supremum of l
            alone lies; the first keeps F from mapping a direction of theta_1 to 0, which would
            let mu run off along it. l <= 0 for the exact model, so l + log p(F) has a finite
            maximiser inside the ball. ``stop="converged"`` runs accelerated EM whose F update
            (3.3) maximises the transitions' expected complete-data log-likelihood plus
            log p(F) over the ball (strictly concave; Newton), in the coordinates A;
            ``stop="mll"`` maximises l + log p(F) over A by BFGS. ``mll`` and ``mll_list``
            stay l. ``stop="em"``, ``"ssll"`` and the compat facade keep the published free
            closed-form F update of 3.3 and ignore the prior. On the README tour's data the
            default fit converges in 26 iterations (about 4 s, rho(F) = 0.993); a larger s
            lets F leave I further (higher l) but converges more slowly (s = 0.5: not within
            1000 iterations).
        u: exogenous input (T, n_u) (or (B, T, n_u)); U is learned.
        theta_o: prior mean of theta_1 (scalar or (D,)); the start of mu,
            learned unless ``mstep=False`` (the default with ``stationary=True``).
        sigma_o: prior covariance Sigma of theta_1 (scalar s: Sigma = s I,
            (D,) or (D, D)); fixed. None (default): 0.1, or
            :data:`STATIONARY_SIGMA_O` = 1 with ``stationary=True``.
        max_iter: most EM iterations (default 1000; 100 with ``stop="ssll"``).
        tol: fixed-point tolerance (largest change of one EM step in
            log-variance / mean coordinates). With a full Q the fixed point is
            often a rank-deficient Q, which EM approaches sublinearly; a smaller
            tol (1e-6) gets closer to it (on parity case v5: l +0.011 for 1.5x
            the iterations).
        stop: "converged" (default: Anderson-accelerated EM to the fixed point;
            with a free learned F or an input gain U, direct maximisation of l), "em" (plain EM to the
            fixed point; slow, a reference), "mll" (maximise l directly by BFGS
            with an autograd gradient through the filter) or "ssll" (the
            published stopping rule, MODEL.md 3.5, which stops early). With a
            learned F under its prior (``state_ar_prior``) "converged" is accelerated EM with
            the prior's F update. With a free F (``state_ar_prior=None``), l can grow without
            bound as theta_s runs off; the direct maximisation then stops at the first accepted
            path with max |theta_s| > 100 (``stopping.RUNAWAY_THETA``), unconverged, with a FitWarning.
        stationary: pool all bins into one (T = 1) and fit a MAP estimate
            (MODEL.md 3.6). Its defaults are a fixed prior
            theta ~ N(theta_o = 0, sigma_o = 1 I): mu is not learned
            (``mstep=False``), because with one bin the EM fixed point of a
            learned mu is mu = theta_MAP, i.e. the maximum-likelihood estimate,
            whose intervals count the data twice (they covered 0.52 of the true
            couplings at a nominal 0.9) and which is not finite for a
            statistic that is 0 in every bin. With this prior the closed-form
            intervals :meth:`StateSpaceResult.theta_intervals` cover the true
            theta at close to their nominal rate on ``generate_thetas`` data
            (0.87-0.93 at 0.9 for N = 3, 5 and R = 30, 300;
            ``benchmarks/stationary_coverage.py``). Pass ``mstep=True`` and
            ``sigma_o=0.1`` for the published library's stationary fit.
        mstep: False keeps the hyperparameters fixed (E-step only). None
            (default): True, or False with ``stationary=True``.
        device: "cpu", "cuda", "auto" or None (the device of ``spikes``).
        dtype: torch.float64 (float32 is refused with an explanation: it
            moves theta_s by 1.4e-2 on a 4-neuron test case).
        progress: show a progress bar on stderr; None (default): only when stderr is an
            interactive terminal (``sys.stderr.isatty()``), so logs and notebooks get no ``\r`` lines.
        method: observation model, "exact" (default) or a registered
            approximation such as "pseudo".
        eta_method: approximation of eta/psi for approximate methods.
        newton_tol: mode-search tolerance, max |grad| / R.
        map_method: the filter's mode search: "newton" (damped Newton to
            ``newton_tol``) or "cg" (the published library's conjugate gradient,
            which stops at max |grad| / R <= 1e-4 and starts the first E-step
            from theta = 0, as the published code does). None (default): "cg"
            with ``stop="ssll"`` and the exact method, so that the published
            rule reproduces the published numbers; "newton" otherwise.
        callback: ``callback(iteration, params, mll)`` after each EM iteration.
        init: hyperparameters (a :class:`StateSpaceParams`) to start from,
            e.g. a checkpoint; overrides theta_o, state_cov and state_ar values.
        method_options: extra keyword arguments for the observation model.
        resume: an :class:`~torch_ising.statespace.records.EMState` passed to
            ``on_state`` by an earlier fit of the same data and settings. The
            fit continues from it and takes the same steps as the uninterrupted
            fit (hyperparameters, mode-search starting points and the Anderson
            history); ``max_iter`` counts the earlier iterations too. With
            ``stop="mll"`` (or a learned F) the BFGS memory starts afresh.
        on_state: ``on_state(state)`` with the :class:`EMState` after each EM
            iteration, e.g. to write a checkpoint.
        mask: which (bin, trial) entries were observed: a boolean array (T_raw, R),
            or (B, T_raw, R) for batched spikes ((T_raw, R) is shared by the batch);
            True = observed. None (default): everything is. Bin t then has R_t
            observed trials, y_t = (1/R_t) sum_{r observed} F(x_{t,r}) is taken over
            them only (y_t = 0 where R_t = 0), and the likelihood of a path is

                l = sum_t R_t [ y_t . theta_t - psi(theta_t) ] + log p(theta_{1:T}) + ...,

            so a bin with R_t = 0 is missing: the filter predicts through it
            (theta_{t|t} = theta_{t|t-1}, W_{t|t} = W_{t|t-1}) and it adds nothing to l.
            The filter, the joint E-step, the smoother, l, the result's
            thermodynamics and credible intervals (llk1, llk2 use R_t) and BIC
            (n = sum_t R_t) all use R_t; ``result.mask`` and ``result.R_t`` keep them.
            With ``window`` > 1 a re-binned bin of a trial is observed only when all its
            raw bins are; with ``stationary=True`` the observed trials of all bins are
            pooled. Entries under False may hold anything binary (they are ignored);
            NaN is still refused (the loaders' ``nan="mask"`` option turns NaN into a
            mask). ``method="pseudo"`` sums its pseudo-likelihood over the observed
            trials only. A wrong shape or dtype is a one-line error naming ``mask``.
        estep: the E-step. "filter": the Laplace filter and smoother (MODEL.md 3.1-3.2)
            with l of eq. 45, one bin after another. "joint": the mode of the whole
            path's posterior log p(theta_{1:T} | y) by damped Newton on all bins at
            once, with the block-tridiagonal system solved by cyclic reduction
            (O(log T) depth); sigma_s, the lag-one covariances and
            l = log p(y | theta_hat) + log p(theta_hat) + (T D/2) log 2 pi - 1/2 log det H
            come from its Hessian H (:mod:`torch_ising.statespace.joint`). The filter
            expands each bin's likelihood at its filtered mode, the joint E-step at the
            smoothed mode; both are exact for Gaussian likelihoods. "joint" serves
            ``stop="converged"`` and ``"em"`` with ``method="exact"`` and a fixed F; its
            theta_f and sigma_f are the filtered marginals of the Gaussian expansion at
            the mode. With ``method="pseudo"`` (opt-in, experimental) "joint" is the
            diagonal scheme's path mode by Newton-CG over all bins
            (:mod:`torch_ising.statespace.joint_diagonal`); on N = 30 its fixed point had a
            lower MISE than the filter's but the EM took 658 iterations. None (default):
            "joint" for ``stop="converged"`` with
            ``method="exact"``, a fixed F and the Newton mode search; "filter" otherwise
            (``stop="ssll"`` and ``"em"`` reproduce the published numbers, which are the
            filter's; ``"mll"`` and a learned F maximise the filter's l; the approximate
            methods keep diagonal covariances, whose filter costs O(T D) per sweep). On
            generated data (N = 5, T = 100, R = 200 and R = 20, 20 seeds) the joint
            E-step's MISE, KL and coverage are within 1.2% of the filter's (slightly
            better; ``benchmarks/accuracy_estep.py``). Its l is the Laplace evidence at
            the smoothed mode, so it differs from the filter's (by 0 to 0.2 nats on the
            parity cases): compare l only between fits with the same E-step.

    Statistics with no finite estimate: a statistic S whose empirical value
    y_{t,S} (after re-binning and pooling) is 0 in every bin t, i.e. its
    neurons never fire together, or 1 in every bin, has no finite maximum of
    l: with mu learned, l keeps rising as theta_S -> -infinity (+infinity), so
    EM would stop wherever ``tol`` cuts it off. The fit warns
    (:class:`FitWarning`, naming them by their neurons) and leaves those
    entries of mu at theta_o: the M-step sets mu_d <- theta_{1|T,d} only for
    the others. The prior theta_{1,S} ~ N(theta_o_S, Sigma_SS) then bounds
    theta_S, the EM fixed point is finite, and the estimate does not depend
    on ``tol`` or ``max_iter``. Data where every statistic is observed are
    fitted exactly as without this rule.

    Returns:
        :class:`StateSpaceResult`.
    """
    t_start = time.perf_counter()
    if dtype == torch.float32:
        raise ValueError(
            "dtype=torch.float32 is refused for state-space fits: on a 4-neuron test data set it moves theta_s "
            "by 1.4e-2 from the float64 fit (the accuracy bar is 1e-3), because the Newton mode searches and "
            "the log-determinants of l need float64. Use dtype=torch.float64 (the default); spikes of any dtype "
            "are fine."
        )
    if dtype != torch.float64:
        raise ValueError(f"dtype must be torch.float64, got {dtype}")
    if sigma_o is None:
        sigma_o = STATIONARY_SIGMA_O if stationary else SIGMA_O
    if mstep is None:
        mstep = not stationary
    data = prepare_data(spikes, order, window=window, mask=mask, stationary=stationary, u=u, device=device, dtype=dtype)
    x, y, m, m_raw, R_t, u_t, dev = data.x, data.y, data.mask, data.mask_raw, data.R_t, data.u, data.device
    B, T, N, order, D, R_eff, batched = data.B, data.T, data.N, data.order, data.D, data.R, data.batched
    window = data.window
    R = data.R_raw

    build_obs = observation_builder(method)
    opts_m = dict(method_options or {})
    if eta_method is not None:
        opts_m["eta_method"] = eta_method
    if m is not None:
        opts_m["trial_mask"] = m  # (B, T, R) of the observed trials, for models that sum over trials
    obs = build_obs(y, R_eff if R_t is None else R_t, N, order, x, **opts_m)
    cov = covariance_of(obs)  # the covariance structure of the whole fit
    diag = cov.diagonal
    named_form = {} if q_form is None else {"q_form": q_form}  # for the fingerprint
    q_form, Q0, learn_Q = parse_state_cov(state_cov, D, N, B, T, dtype, dev, diag, q_form)
    F0, learn_F = parse_state_ar(state_ar, D, B, dtype, dev, diag)
    state_ar_prior = parse_state_ar_prior(state_ar_prior)
    if T == 1:
        learn_F = False
    mu0, Sigma0 = parse_prior(theta_o, sigma_o, D, B, dtype, dev, diag)
    mu_fixed = _unidentifiable(y, N, order, bool(mstep), None if R_t is None else R_t > 0)
    U0 = None if u_t is None else torch.zeros(B, D, u_t.shape[-1], dtype=dtype, device=dev)
    params = StateSpaceParams(mu0, Sigma0, Q0, F0, U0)
    if init is not None:
        params = StateSpaceParams(*(None if v is None else v.to(device=dev, dtype=dtype) for v in init))
        if diag:
            params = _diagonalise(params, False)

    rule = stop_rule(stop)
    if max_iter is None:
        max_iter = rule.max_iter
    max_iter, tol, newton_tol = check_fit_options(max_iter, tol, newton_tol)
    fingerprint = fit_fingerprint(
        x,
        dict(order=order, window=window, state_cov=state_cov, state_ar=state_ar, u=u, theta_o=theta_o,
             sigma_o=sigma_o, tol=tol, stop=stop, stationary=stationary, mstep=mstep, dtype=dtype, method=method,
             eta_method=eta_method, newton_tol=newton_tol, map_method=map_method, init=init,
             method_options=method_options, **_mask_setting(m_raw), **named_form,
             **({} if state_ar is None else {"state_ar_prior": None if state_ar_prior is None
                                               else list(state_ar_prior)})),
    )  # fmt: skip
    if resume is not None:
        check_fingerprint(resume.fingerprint, fingerprint)
    if on_state is not None:
        on_state = _with_fingerprint(on_state, fingerprint)
    if map_method is None:
        map_method = rule.default_map_method(cov)
    check_map_method(map_method, cov)
    if estep is None:
        estep = default_estep(rule.joint_default, learn_F, cov, map_method, learn_U=u_t is not None)
    check_estep(estep, rule.needs_filter(learn_F))
    # the published library starts its first conjugate-gradient searches from theta = 0
    theta_init = torch.zeros(B, T, D, dtype=dtype, device=dev) if map_method == "cg" else None
    opts = EMOptions(
        q_form=q_form,
        learn_F=learn_F,
        learn_Q=learn_Q,
        mstep=mstep,
        stop=stop,
        max_iter=int(max_iter),
        tol=tol,
        newton_tol=newton_tol,
        map_method=map_method,
        N=N,
        estep=estep,
        mu_fixed=mu_fixed,
        state_ar_prior=state_ar_prior if learn_F and rule.prior_on_F else None,
    )
    if progress is None:
        progress = bool(getattr(sys.stderr, "isatty", lambda: False)())
    bar = _Progress(bool(progress), opts.max_iter)
    out = None
    try:
        with threads_for(B * 2 ** min(N, 62) if method == "exact" else B * T * R * N, D, dev):
            out = run_em(
                obs,
                params,
                opts,
                u=u_t,
                theta_init=theta_init,
                callback=callback,
                progress=bar,
                resume=_state_to(resume, dev, dtype),
                on_state=on_state,
            )
    except torch.linalg.LinAlgError as err:
        raise ValueError(_singular_message(err, N, order, D, R_eff, T, q_form, learn_F)) from None
    finally:
        bar.close(None if out is None else out.converged)
    _warn_on_outcome(out, opts.max_iter, mstep, learn_F)
    es = out.estep
    if estep == "joint":
        with torch.inference_mode():
            if cov.diagonal:
                filt = filtered_from_joint_diagonal(obs, out.params, es.smooth.theta_s)
            else:
                filt = filtered_from_joint(obs, out.params, es.smooth.theta_s, u_t)
        fields = ("theta_f", "sigma_f", "theta_p", "sigma_p")
        es = es._replace(filt=filt._replace(**{k: getattr(filt, k).clone() for k in fields}))
    theta_s = es.smooth.theta_s
    with torch.no_grad():
        eta_s = obs.expectation(theta_s)
    mll_hist = [list(r) for r in zip(*out.mll_list, strict=True)]  # per data set
    sq = (lambda v: v) if batched else (lambda v: None if v is None else v[0])
    p = out.params
    return StateSpaceResult(
        theta_s=sq(theta_s),
        sigma_s=sq(es.smooth.sigma_s),
        eta_s=sq(eta_s),
        theta_f=sq(es.filt.theta_f),
        sigma_f=sq(es.filt.sigma_f),
        mll=es.mll if batched else float(es.mll[0]),
        mll_list=mll_hist if batched else mll_hist[0],
        N=N,
        D=D,
        T=T,
        R=R_eff,
        order=order,
        Q=sq(p.Q),
        F=sq(p.F),
        U=sq(p.U),
        mu=sq(p.mu),
        Sigma=sq(p.Sigma),
        y=sq(y),
        iterations=out.iterations,
        e_steps=out.e_steps,
        converged=out.converged if batched else bool(out.converged[0]),
        window=window,
        method=method,
        stop=stop,
        q_form=q_form,
        wall_time=time.perf_counter() - t_start,
        learn_Q=learn_Q,
        learn_F=learn_F,
        mstep=mstep,
        mask=None if m_raw is None else sq(m_raw),
        R_t=None if R_t is None else sq(R_t),
    )


def _mask_setting(mask: torch.Tensor | None) -> dict[str, str]:
    """The mask's entry of the fit fingerprint (none without a mask, so older fingerprints still match)."""
    if mask is None:
        return {}
    a = mask.detach().to("cpu", torch.uint8).contiguous().numpy()
    return {"mask": f"shape {tuple(a.shape)} sha256:{hashlib.sha256(a).hexdigest()[:16]}"}


def _unidentifiable(
    y: torch.Tensor, N: int, order: int, mstep: bool, observed: torch.Tensor | None = None
) -> torch.Tensor | None:
    """The statistics with no finite estimate, (B, D) bool, or None when there are none; warns once if any.

    A statistic S whose empirical value y_{t,S} is 0 in every bin t (its neurons
    never fire together) pushes l up without bound as theta_S -> -infinity; one
    that is 1 in every bin, as theta_S -> +infinity. A neuron j that fires in every
    trial of every bin also leaves every other S that contains j without one: then
    y_S = y_{S minus j} in every bin, so the data fix only theta_S + theta_{S minus j}
    and l keeps rising along the split (theta_S -> -infinity, theta_{S minus j} -> +infinity,
    as theta_j -> +infinity). The M-step keeps mu_S at theta_o for all of these, so the
    prior N(theta_o, sigma_o) bounds theta_S. Only the bins in ``observed``
    (B, T) count, when given (a missing bin carries no y).
    """
    skip = torch.zeros_like(y, dtype=torch.bool) if observed is None else ~observed[..., None].expand_as(y)
    never = ((y == 0) | skip).all(1)
    always = ((y == 1) | skip).all(1)
    flagged = never | always
    sets = subsets(N, order)
    fires = always[:, :N].cpu()  # (B, N): the neurons that fire in every trial of every observed bin
    split = torch.zeros_like(flagged)
    if bool(fires.any()):
        member = torch.zeros(len(sets), N, dtype=torch.bool)
        for d, S in enumerate(sets):
            member[d, list(S)] = True
        split = (member[None] & fires[:, None]).any(-1).to(flagged.device) & ~flagged
        flagged = flagged | split
    if not bool(flagged.any()):
        return None
    B = y.shape[0]

    def where(idx: list[int]) -> str:
        if B == 1 or len(idx) == B:
            return ""
        shown_sets = ", ".join(map(str, idx[:5])) + (", ..." if len(idx) > 5 else "")
        return f" (data set{'s' if len(idx) > 1 else ''} {shown_sets})"

    def label(S: tuple[int, ...]) -> str:
        return ",".join(map(str, S))

    def name(S: tuple[int, ...]) -> str:
        return f"theta({label(S)})"

    names = []
    for d, S in enumerate(sets):
        one = len(S) == 1
        who = f"neuron {S[0]}" if one else "neurons " + ", ".join(map(str, S[:-1])) + f" and {S[-1]}"
        verb = "fires" if one else "fire together"
        for what, mask in (
            (f"never {verb} in any bin", never[:, d]),
            (f"{verb} in every trial of every bin", always[:, d]),
        ):
            if bool(mask.any()):
                names.append(f"{name(S)}: {who} {what}{where(mask.nonzero().flatten().tolist())}")
        if bool(split[:, d].any()):
            by_members: dict[tuple[int, ...], list[int]] = {}
            for b in split[:, d].nonzero().flatten().tolist():
                by_members.setdefault(tuple(j for j in S if bool(fires[b, j])), []).append(b)
            for js, idx in by_members.items():
                rest = tuple(i for i in S if i not in js)
                who_j = f"neuron {js[0]} fires" if len(js) == 1 else "neurons " + ", ".join(map(str, js)) + " fire"
                names.append(
                    f"{name(S)}: {who_j} in every trial of every bin, so y({label(S)}) = y({label(rest)}) and the data "
                    f"fix only {name(S)} + {name(rest)}{where(idx)}"
                )
    shown = "; ".join(names[:8]) + (f"; and {len(names) - 8} more" if len(names) > 8 else "")
    how = (
        "the fit holds their prior mean mu at theta_o (the M-step does not learn it for them)"
        if mstep
        else "mu is not learned (mstep=False)"
    )
    warnings.warn(
        f"{shown}. Their maximum-likelihood estimates are not finite: {how}, so the prior N(theta_o, sigma_o) "
        "bounds them and their theta_s do not depend on tol or max_iter; read them as prior-dominated.",
        FitWarning,
        stacklevel=user_stacklevel(),
    )
    return flagged


def _singular_message(err: Exception, N: int, order: int, D: int, R: int, T: int, q_form: str, learn_F: bool) -> str:
    """Why a covariance of the filter or smoother stopped being positive definite, and what to change."""
    first = str(err).splitlines()[0]
    return (
        f"the fit stopped: a posterior or state covariance became numerically singular ({first}). "
        f"The data leave some of the D={D} statistics (N={N}, order={order}) with no information, e.g. "
        f"patterns of order {order} that never occur in sparse data ({T} bins x {R} trials), a neuron that never "
        f"or always fires, or duplicated neurons"
        + (" with a full Q" if q_form == "full" else "")
        + (" and a learned F" if learn_F else "")
        + f". Fit a lower order (order={max(1, order - 1)}), a scalar state_cov, state_ar=None, or pool "
        "more trials (window=)."
    )


def _warn_on_outcome(out: Any, max_iter: int, mstep: bool, learn_F: bool) -> None:
    """Warn (:class:`FitWarning`) when the stopping rule was not met, or a learned F is explosive.

    With a free F and Q -> 0 the trajectory theta_t = F theta_{t-1} can follow the
    empirical rates of every bin, so l grows without bound while theta_s runs off
    towards +-infinity; a spectral radius rho(F) > 1 is the sign of it.
    """
    conv = out.converged
    if getattr(out, "stopped", ""):
        warnings.warn(f"EM {out.stopped}.", FitWarning, stacklevel=user_stacklevel())
    elif mstep and not bool(conv.all()):
        n = conv.numel()
        which = "" if n == 1 else f" for {int((~conv).sum())} of {n} data sets"
        warnings.warn(
            f"EM stopped after max_iter={max_iter} iterations before its stopping rule was met{which}; the "
            "hyperparameters may still move. Pass a larger max_iter, or continue the fit with resume= (see on_state).",
            FitWarning,
            stacklevel=user_stacklevel(),
        )
    if learn_F:
        rho = torch.linalg.eigvals(out.params.F).abs().amax(-1)
        if bool((rho > 1.0).any()):
            big = float(out.estep.smooth.theta_s.abs().amax())
            warnings.warn(
                f"the learned F has spectral radius {float(rho.amax()):.4f} > 1, an explosive state process "
                f"(max |theta_s| = {big:.3g}). With a free F the marginal likelihood can grow without bound as "
                "theta_s runs off towards +-infinity; consider F fixed at I (state_ar=None), or more bins and trials.",
                FitWarning,
                stacklevel=user_stacklevel(),
            )


def _state_to(state: EMState | None, dev: torch.device, dtype: torch.dtype) -> EMState | None:
    """``state`` with its floating tensors on ``dev`` in ``dtype`` (a checkpoint may come from numpy)."""
    if state is None:
        return None

    def move(v: Any) -> Any:
        if v is None or isinstance(v, (int, str)):
            return v
        if isinstance(v, tuple):
            return type(v)(*(move(w) for w in v))
        t = torch.as_tensor(v, device=dev)
        return t if t.dtype == torch.bool else t.to(dtype)

    return EMState(*(move(v) for v in state))


def _with_fingerprint(on_state: Callable[[EMState], None], fingerprint: str) -> Callable[[EMState], None]:
    """``on_state`` given each state with the fit's fingerprint attached."""
    return lambda state: on_state(state._replace(fingerprint=fingerprint))


def _diagonalise(p: StateSpaceParams, learn_F: bool) -> StateSpaceParams:
    if learn_F:
        raise ValueError("state_ar (a learned F) needs full covariances; approximate methods assume F = I")

    def d(M: torch.Tensor) -> torch.Tensor:
        return torch.diagonal(M, dim1=-2, dim2=-1).clone() if M.ndim == 3 else M

    return StateSpaceParams(p.mu, d(p.Sigma), d(p.Q), d(p.F), p.U)


class StateSpaceIsing(nn.Module):
    """The time-varying Ising model as a module owning its hyperparameters.

    The constructor takes the keyword arguments of :func:`fit`; :meth:`fit`
    runs EM on data and stores the learned hyperparameters (``mu``, ``Q``,
    ``F``, ``U``) as buffers, so a later ``fit`` on new data starts from them
    (``warm_start=True``).

    Example:
        >>> model = StateSpaceIsing(order=2, state_cov=0.01)
        >>> result = model.fit(spikes)
        >>> result.theta_s.shape   # (T, D)
    """

    def __init__(self, order: int = 2, **fit_kwargs: Any) -> None:
        super().__init__()
        self.order = int(order)
        self.fit_kwargs = fit_kwargs
        self.result: StateSpaceResult | None = None
        self.register_buffer("mu", None)
        self.register_buffer("Q", None)
        self.register_buffer("F", None)
        self.register_buffer("U", None)

    def fit(self, spikes: Any, warm_start: bool = False, **overrides: Any) -> StateSpaceResult:
        """Fit to ``spikes`` (T_raw, R, N) and return the :class:`StateSpaceResult`."""
        kwargs = {**self.fit_kwargs, **overrides}
        if warm_start and self.result is not None:
            kwargs["init"] = self.result.params
        res = fit(spikes, self.order, **kwargs)
        self.result = res
        self.mu, self.Q, self.F, self.U = res.mu, res.Q, res.F, res.U
        return res

    def forward(self, spikes: Any) -> StateSpaceResult:
        return self.fit(spikes)
