"""Joint-mode E-step for diagonal-covariance (approximate) models, batched over all bins at once.

The approximate scheme (Donner et al. 2017; :class:`torch_ising.approx.pseudo.PseudoLikelihood`)
keeps a diagonal prior (Sigma, Q, F diagonal, (B, D)) and diagonal posterior covariances.
Instead of the filter's T sequential mode searches, this E-step finds the mode of the whole path,

    Phi(theta_{1:T}) = sum_t PL_t(theta_t) - 1/2 (theta - m)^T J~ (theta - m),

by truncated Newton over all bins at once. PL_t is the bin's (pseudo-)log-likelihood, m the prior
mean path (m_1 = mu, m_t = F m_{t-1}) and J the prior precision, which is tridiagonal in time and
independent across coordinates S:

    J_{11} = 1/Sigma + F^2/Q,  J_{tt} = (1 + F^2)/Q  (1 < t < T),  J_{TT} = 1/Q,  J_{t+1,t} = -F/Q.

With a calibrated composite likelihood (``score_scale_all`` gives one a_S in (0, 1] per coordinate,
constant in time) the prior is weighted as J~ = J / a_S: the mode then solves a_S grad_S PL_t = (J (theta - m))_{t,S},
i.e. every bin's score is scaled by a_S against the prior, as the filter's prior precision W_{t|t-1}^{-1} / a
does; without calibration J~ = J. (A calibration that varies in time cannot enter as
A^{-1/2} J A^{-1/2}: that prior no longer penalises the increments of theta but those of theta_t / a_t^{1/2},
and the mode follows the bin-to-bin noise of a_t; on N = 30 pseudo data its path was 13 times rougher.)
Each Newton direction solves (J~ - hess PL) d = grad Phi by conjugate gradients with matrix-free
Hessian-vector products of all bins in one call, preconditioned by the tridiagonal part
J~ + diag(-hess_SS PL_t), which is solved exactly per coordinate by scalar cyclic reduction
(:func:`tri_factor`, :func:`tri_solve`; O(log T) sequential depth).

At the mode theta_hat, the posterior precision of the diagonal scheme is P = J + diag(G_t) with
G_t = the model's observation precision (R_t eta~ (1 - eta~), ``precision_all``); its inverse gives
sigma_s[t, S] = (P_S^{-1})_{tt} and the lag-one covariances (P_S^{-1})_{t+1,t} (:func:`tri_inverse`),
and the Laplace log marginal likelihood is

    l = sum_t R_t [y_t . theta_hat_t - psi~(theta_hat_t)] - 1/2 (theta_hat - m)^T J (theta_hat - m)
        + 1/2 log det J - 1/2 log det P.

How it differs from the approximate filter: the filter takes the mode of each bin given the past
(with the predicted precision of the past), this E-step the mode given all bins; the covariances
come from the same diagonal precisions, combined over time exactly.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .covariance import DIAGONAL
from .joint import backtrack
from .observation import ObservationModel
from .records import FilterResult, SmootherResult, StateSpaceParams

__all__ = [
    "TriFactor",
    "tri_factor",
    "tri_solve",
    "tri_inverse",
    "tri_matvec",
    "joint_diagonal_e_step",
    "filtered_from_joint_diagonal",
    "supports_joint_diagonal",
]


# --------------------------------------------------------------------------- scalar tridiagonal systems
#
# Many independent symmetric tridiagonal systems, time on dim -2: diagonal d (..., T, D) and
# off-diagonal e (..., T-1, D) (e[t] couples t and t+1), every coordinate of the last dim its own system.


class TriFactor(NamedTuple):
    """Odd-even (cyclic) reduction of symmetric tridiagonal systems; see :func:`tri_factor`.

    Attributes:
        levels: per level (1/d_odd, e_left, e_right, padded): the pivots of the eliminated odd
            rows and their couplings to the even rows on either side.
        last_inv: 1/d of the single row left, (..., 1, D).
        logdet: log det of every system, (..., D).
    """

    levels: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]]
    last_inv: torch.Tensor
    logdet: torch.Tensor


def _pad(x: torch.Tensor, value: float) -> torch.Tensor:
    row = x.new_full((*x.shape[:-2], 1, x.shape[-1]), value)
    return torch.cat([x, row], dim=-2)


def tri_factor(d: torch.Tensor, e: torch.Tensor) -> TriFactor:
    """Factor symmetric positive-definite tridiagonal systems by odd-even reduction.

    One level eliminates the odd rows i (their neighbours i - 1 and i + 1 are even; an even
    length is padded with a row d = 1, e = 0 that couples to nothing and is dropped again):

        d'_k = d_{2k} - e_{2k}^2 / d_{2k+1} - e_{2k-1}^2 / d_{2k-1},   e'_k = -e_{2k} e_{2k+1} / d_{2k+1},

    and the even rows form the next level's system (about log2 T levels, each a handful of
    elementwise operations over all systems). log det = sum of every level's odd pivots log d_{2k+1}
    plus the last row's.

    Args:
        d: diagonals (..., T, D), positive definite systems.
        e: off-diagonals (..., T-1, D).
    """
    levels = []
    logdet = torch.zeros_like(d[..., 0, :])
    while d.shape[-2] > 1:
        padded = d.shape[-2] % 2 == 0
        if padded:
            d, e = _pad(d, 1.0), _pad(e, 0.0)
        dO = d[..., 1::2, :]
        inv = 1.0 / dO
        left, right = e[..., 0::2, :], e[..., 1::2, :]
        logdet = logdet + dO.log().sum(-2)
        dE = d[..., 0::2, :].clone()
        dE[..., :-1, :] -= left * left * inv
        dE[..., 1:, :] -= right * right * inv
        eE = -(left * inv * right)
        if padded:  # the pad row stays decoupled (d = 1, e = 0): drop it from the next level
            dE, eE = dE[..., :-1, :], eE[..., :-1, :]
        levels.append((inv, left, right, padded))
        d, e = dE, eE
    return TriFactor(levels, 1.0 / d, logdet + d.log().sum(-2))


def _interleave(even: torch.Tensor, odd: torch.Tensor) -> torch.Tensor:
    """Rows even[0], odd[0], even[1], odd[1], ... (even has one row more or as many as odd)."""
    n = odd.shape[-2]
    mid = torch.stack([even[..., :n, :], odd], dim=-2).flatten(-3, -2)
    return torch.cat([mid, even[..., n:, :]], dim=-2)


def tri_solve(fac: TriFactor, r: torch.Tensor) -> torch.Tensor:
    """Solve the factored systems for right-hand sides r (..., T, D)."""
    kept = []
    for inv, left, right, padded in fac.levels:
        if padded:
            r = _pad(r, 0.0)
        w = inv * r[..., 1::2, :]
        rE = r[..., 0::2, :].clone()
        rE[..., :-1, :] -= left * w
        rE[..., 1:, :] -= right * w
        kept.append(w)
        r = rE[..., :-1, :] if padded else rE
    x = fac.last_inv * r
    for (inv, left, right, padded), w in zip(reversed(fac.levels), reversed(kept), strict=True):
        if padded:
            x = _pad(x, 0.0)
        xO = w - inv * (left * x[..., :-1, :] + right * x[..., 1:, :])
        x = _interleave(x, xO)
        if padded:
            x = x[..., :-1, :]
    return x


def tri_inverse(fac: TriFactor) -> tuple[torch.Tensor, torch.Tensor]:
    """The diagonal (..., T, D) and first sub-diagonal (..., T-1, D) of the inverses.

    Back through the levels: with S the inverse of the even rows' system (the Schur complement),
    an odd row i between the even rows a = i - 1 and b = i + 1 has

        Cov(x_i, x_a) = -(e_l S_aa + e_r S_ab) / d_i,   Cov(x_i, x_b) = -(e_l S_ab + e_r S_bb) / d_i,
        Var(x_i) = 1/d_i - (e_l Cov(x_i, x_a) + e_r Cov(x_i, x_b)) / d_i.
    """
    var = fac.last_inv
    lag = var[..., :0, :]
    for inv, left, right, padded in reversed(fac.levels):
        if padded:
            var, lag = _pad(var, 1.0), _pad(lag, 0.0)
        Saa, Sbb = var[..., :-1, :], var[..., 1:, :]
        ca = -inv * (left * Saa + right * lag)
        cb = -inv * (left * lag + right * Sbb)
        varO = inv - inv * (left * ca + right * cb)
        var = _interleave(var, varO)
        lag = torch.stack([ca, cb], dim=-2).flatten(-3, -2)
        if padded:
            var, lag = var[..., :-1, :], lag[..., :-1, :]
    return var, lag


def tri_matvec(d: torch.Tensor, e: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(tridiag(e, d, e) v) for every coordinate, v (..., T, D)."""
    out = d * v
    if v.shape[-2] > 1:
        out[..., :-1, :] += e * v[..., 1:, :]
        out[..., 1:, :] += e * v[..., :-1, :]
    return out


# --------------------------------------------------------------------------- the E-step


def supports_joint_diagonal(obs: ObservationModel) -> bool:
    """Whether ``obs`` has what the diagonal joint E-step needs (``diagonal``, ``joint_terms``, ``precision_all``)."""
    return bool(obs.diagonal) and obs.joint_terms is not None and obs.precision_all is not None


class _DiagPrior(NamedTuple):
    d: torch.Tensor  # (B, T, D)
    e: torch.Tensor  # (B, T-1, D)
    m: torch.Tensor  # (B, T, D) prior mean path
    logdet: torch.Tensor  # (B,) log det J


def _diag_prior(params: StateSpaceParams, T: int) -> _DiagPrior:
    """J (tridiagonal per coordinate) and the prior mean path m_t = F^{t-1} mu of the diagonal model."""
    mu, Sigma, Q, F = params.mu, params.Sigma, params.Q, params.F
    B, D = mu.shape
    iQ = 1.0 / Q
    F2iQ = F * F * iQ
    d = (iQ + F2iQ)[:, None].expand(B, T, D).clone()
    d[:, 0] = 1.0 / Sigma + (F2iQ if T > 1 else 0.0)
    if T > 1:
        d[:, T - 1] = iQ
    e = (-(F * iQ))[:, None].expand(B, T - 1, D)
    powers = torch.arange(T, dtype=mu.dtype, device=mu.device)
    m = mu[:, None] * F[:, None].pow(powers[None, :, None])
    # det J = 1 / (Sigma prod_t Q) per coordinate (the chain's precision)
    logdet = -(Sigma.log() + (T - 1) * Q.log()).sum(-1)
    return _DiagPrior(d, e, m, logdet)


def joint_diagonal_e_step(
    obs: ObservationModel,
    params: StateSpaceParams,
    *,
    u: torch.Tensor | None = None,
    theta_init: torch.Tensor | None = None,
    tol: float = 1e-8,
    max_newton: int = 100,
    cg_max_iter: int = 200,
    max_halvings: int = 40,
) -> tuple[FilterResult, SmootherResult, torch.Tensor]:
    """Diagonal joint-mode E-step (see the module docstring): mode, diagonal covariances and l.

    Args:
        obs: a diagonal observation model with ``joint_terms(theta)`` -> (value (B, T), grad (B, T, D),
            hess diagonal (B, T, D), hess-vector function), ``log_lik_all``, ``precision_all(theta)``
            (B, T, D) and optionally ``score_scale_all(theta)`` and ``marginal_log_lik(theta)``.
        params: diagonal hyperparameters (mu, Sigma, Q, F all (B, D); no input gain U).
        u: must be None (an input gain needs the filter).
        theta_init: starting path (B, T, D); by default the prior mean path.
        tol: Newton stops when max |grad Phi| / R < tol for a data set.
        max_newton: most Newton iterations.
        cg_max_iter: most conjugate-gradient iterations per Newton direction.
        max_halvings: most step halvings per iteration.

    Returns:
        (filt, smooth, mll) as :func:`torch_ising.statespace.joint.joint_e_step`: ``filt`` holds only
        the Newton bookkeeping; ``smooth`` theta_s, sigma_s (B, T, D) and the lag-one covariances
        (B, T-1, D); mll (B,).
    """
    if not supports_joint_diagonal(obs):
        raise ValueError("the diagonal joint E-step needs an approximate observation model with joint_terms")
    if params.U is not None and u is not None:
        raise ValueError("estep='joint' with an input gain U needs the filter: use estep='filter'")
    B, T = obs.B, obs.T
    prior = _diag_prior(params, T)
    R_t = obs.R_t
    R_b = (
        R_t.amax(1).clamp_min(1.0)
        if R_t is not None
        else torch.full((B,), float(obs.R), dtype=params.mu.dtype, device=params.mu.device)
    )
    x = prior.m.clone() if theta_init is None else theta_init.clone()
    score_scale = obs.score_scale_all
    a = None if score_scale is None else score_scale(x)
    if a is None:
        Jd, Je = prior.d, prior.e
    else:  # one a_S per coordinate (B, 1, D): J~ = J / a_S scales every bin's score by a_S
        Jd, Je = prior.d / a, prior.e / a
    m = prior.m

    def objective(th: torch.Tensor):
        v, g, hd, hv = obs.joint_terms(th)
        Jr = tri_matvec(Jd, Je, th - m)
        return v.sum(-1) - 0.5 * ((th - m) * Jr).sum((-1, -2)), g - Jr, hd, hv

    def value(th: torch.Tensor) -> torch.Tensor:
        return obs.log_lik_all(th).sum(-1) - 0.5 * ((th - m) * tri_matvec(Jd, Je, th - m)).sum((-1, -2))

    J_max = Jd.abs().flatten(1).amax(-1)

    def small(g: torch.Tensor, th: torch.Tensor) -> torch.Tensor:
        # the rounding floor of J (theta - m) (see joint.joint_e_step)
        floor = 64 * torch.finfo(g.dtype).eps * J_max * (1 + th.abs().flatten(1).amax(-1) + m.abs().flatten(1).amax(-1))
        return g.abs().flatten(1).amax(-1) <= torch.maximum(tol * R_b, floor)

    def dot(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return (p * q).sum((-1, -2))

    f, g, hd, hv = objective(x)
    done = small(g, x)
    it = 0
    while it < max_newton and not bool(done.all()):
        it += 1
        fac = tri_factor(Jd - hd, Je)
        # preconditioned CG on (J~ - hess PL) d = g, forcing term min(0.5, sqrt |g|) |g|
        d = torch.zeros_like(g)
        r = g.clone()
        z = tri_solve(fac, r)
        p = z.clone()
        rz = dot(r, z)
        gnorm = g.flatten(1).norm(dim=-1)
        target = torch.minimum(torch.full_like(gnorm, 0.5), gnorm.sqrt()) * gnorm
        active = ~done
        for _ in range(cg_max_iter):
            Ap = tri_matvec(Jd, Je, p) - hv(p)
            pAp = dot(p, Ap)
            alpha = torch.where(active & (pAp > 0), rz / pAp.clamp_min(1e-300), torch.zeros_like(rz))
            d = d + alpha[:, None, None] * p
            r = r - alpha[:, None, None] * Ap
            active = active & (r.flatten(1).norm(dim=-1) > target)
            if not bool(active.any()):
                break
            z = tri_solve(fac, r)
            rz_new = dot(r, z)
            beta = torch.where(active, rz_new / rz.clamp_min(1e-300), torch.zeros_like(rz))
            p = z + beta[:, None, None] * p
            rz = rz_new
        d = torch.where(done[:, None, None], torch.zeros_like(d), d)
        slope = dot(g, d)
        cand = x + d
        fc, gc, hdc, hvc = objective(cand)
        ok = torch.isfinite(fc) & (fc >= f + 1e-4 * slope)
        if bool((ok | done).all()):
            keep = ok[:, None, None]
            x = torch.where(keep, cand, x)
            if bool(ok.all()):
                f, g, hd, hv = fc, gc, hdc, hvc
            else:
                f, g, hd, hv = objective(x)
            done = small(g, x)
            continue
        x, accepted = backtrack(value, x, d, cand, f, slope, done | ok, ok, max_halvings)
        f, g, hd, hv = objective(x)
        done = small(g, x) | ~accepted
    converged = bool(small(g, x).all())
    # the diagonal scheme's posterior at the mode: P = J + diag(G_t)
    G = obs.precision_all(x)
    fac = tri_factor(prior.d + G, prior.e)
    var, lag = tri_inverse(fac)
    diff = x - m
    marginal_ll = obs.marginal_log_lik
    ll = (marginal_ll(x) if marginal_ll is not None else obs.log_lik_all(x)).sum(-1)
    quad = (diff * tri_matvec(prior.d, prior.e, diff)).sum((-1, -2))
    mll = ll - 0.5 * quad + 0.5 * prior.logdet - 0.5 * fac.logdet.sum(-1)
    filt = FilterResult(None, None, None, None, it, converged, DIAGONAL)
    return filt, SmootherResult(x, var, None, lag, DIAGONAL), mll


def filtered_from_joint_diagonal(
    obs: ObservationModel, params: StateSpaceParams, theta_s: torch.Tensor
) -> FilterResult:
    """Filtered marginals of the diagonal Gaussian approximation at the joint mode.

    Bin t's term is replaced by the Gaussian of precision G_t (``precision_all``) whose linear
    term makes theta_s the mode of the approximation, b_t = G_t theta_s[t] - (J (theta_s - m))_t;
    a scalar Kalman filter per coordinate then gives

        W_{t|t-1} = F^2 W_{t-1|t-1} + Q,   W_{t|t} = W_{t|t-1} / (1 + W_{t|t-1} G_t),
        theta_{t|t} = theta_{t|t-1} + W_{t|t} (b_t - G_t theta_{t|t-1}),

    with theta_{T|T} = theta_s[T]. Sequential in t (once per fit, for the reported theta_f, sigma_f).
    """
    B, T, D = theta_s.shape
    prior = _diag_prior(params, T)
    G = obs.precision_all(theta_s)
    b = G * theta_s - tri_matvec(prior.d, prior.e, theta_s - prior.m)
    F, Q = params.F, params.Q
    theta_f, sigma_f, theta_p, sigma_p = (theta_s.new_empty(B, T, D) for _ in range(4))
    tp, Wp = params.mu, params.Sigma
    for t in range(T):
        if t > 0:
            tp, Wp = F * theta_f[:, t - 1], F * F * sigma_f[:, t - 1] + Q
        Wf = Wp / (1.0 + Wp * G[:, t])
        theta_f[:, t] = tp + Wf * (b[:, t] - G[:, t] * tp)
        theta_p[:, t], sigma_p[:, t], sigma_f[:, t] = tp, Wp, Wf
    return FilterResult(theta_f, sigma_f, theta_p, sigma_p, 0, True, DIAGONAL)
