"""Held-out likelihood: K-fold cross-validation over trials, and the predictive score of held-out trials.

The R trials are split into K folds at random. For fold k the model is fitted to the other
trials, and the held-out trials X_k are scored by their predictive log-likelihood under the
smoothed posterior of the training fit, bin by bin,

    score_k = sum_t log E_{theta_t ~ Normal(theta_s[t], sigma_s[t])} [ p(X_{k,t} | theta_t) ],
    log p(X_{k,t} | theta) = R_k [ y_{k,t} . theta - psi(theta) ],

where y_{k,t} are the held-out trials' statistics in bin t and R_k their number. The
expectation averages over the posterior (it is not the plug-in p(X | theta_s)); it is taken
over each bin's marginal posterior, i.e. the posterior's correlations between bins are not
used (the product of the per-bin predictive densities). Two ways to compute it:

* ``score_method="laplace"`` (default; deterministic): the Laplace approximation of the integral,
  the same approximation as the filter's update and the marginal likelihood l (MODEL.md 3.4).
  With P = sigma_s^{-1} and g(theta) = R_k [y . theta - psi(theta)] - 1/2 (theta - theta_s)^T P (theta - theta_s),

      log E[...] ~= g(theta*) - 1/2 log det(I + R_k sigma_s G(theta*)),   theta* = argmax g

  (theta* by Newton's method, batched over bins and folds).
* ``score_method="sample"``: Monte Carlo, log (1/S) sum_j p(X_{k,t} | theta_t^(j)) with
  theta_t^(j) ~ Normal(theta_s[t], sigma_s[t]) (seeded, S = ``n_samples``).

The score of an order is the mean over folds of score_k, with its standard error
sd_k(score_k) / sqrt(K); the order with the highest mean is selected.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from . import moments as _moments
from ._validation import check_N_order, check_orders, check_positive_int, check_spikes
from .basis import rebin, sufficient_stats
from .statespace import fit

__all__ = ["CrossValidation", "cross_validate", "heldout_loglik", "SCORE_METHODS", "fold_assignment"]

#: The ways to take the posterior expectation of the held-out likelihood.
SCORE_METHODS = ("laplace", "sample")


class CrossValidation(NamedTuple):
    """K-fold held-out log-likelihood of several interaction orders, tabulated like :class:`OrderComparison`.

    With B data sets (spikes (B, T, R, N)) score has shape (K_orders, folds, B) and mean, se
    (K_orders, B); otherwise (K_orders, folds) and (K_orders,).

    Attributes:
        orders: the orders O.
        score: held-out log-likelihood (nats) of each order and fold.
        mean: mean over folds of the score.
        se: standard error of the mean, sd over folds / sqrt(folds).
        folds: the number of folds K.
        fold: the fold of every trial, (R,) integers in 0..K-1.
        method: "laplace" or "sample".
    """

    orders: tuple[int, ...]
    score: torch.Tensor
    mean: torch.Tensor
    se: torch.Tensor
    folds: int
    fold: torch.Tensor
    method: str

    @property
    def best(self) -> int | torch.Tensor:
        """The order with the highest mean held-out log-likelihood (a tensor (B,) for a batch)."""
        orders = torch.tensor(self.orders)
        best = orders[self.mean.argmax(dim=0)]
        return int(best) if best.ndim == 0 else best

    @property
    def best_1se(self) -> int | torch.Tensor:
        """The lowest order whose mean score is within one paired standard error of the best order's.

        The paired standard error of orders i and b is sd_k(score_{i,k} - score_{b,k}) / sqrt(K): the folds
        are shared, so the fold-to-fold variation of the held-out data cancels from the difference. This is
        the one-standard-error rule (Hastie, Tibshirani & Friedman 2009, 7.10), which prefers the simpler
        model among those the folds cannot tell apart.
        """
        orders = torch.tensor(self.orders)
        b = self.mean.argmax(dim=0)  # (...) index of the best order
        best_score = self.score.gather(0, b.reshape(1, 1, *b.shape).expand(1, *self.score.shape[1:]))
        diff = self.score - best_score  # (K_orders, folds, ...)
        se = diff.std(1) / math.sqrt(self.folds)
        ok = diff.mean(1) >= -se  # within one paired standard error (the best order itself always)
        pick = torch.where(ok, orders.reshape(-1, *([1] * (ok.ndim - 1))), torch.iinfo(torch.int64).max).amin(0)
        return int(pick) if pick.ndim == 0 else pick

    def table(self) -> str:
        """A plain-text table: order, mean held-out log-likelihood, its standard error (first data set)."""
        rows = [f"{'order':>5} {'heldout_ll':>14} {'se':>10}"]
        for i, o in enumerate(self.orders):
            m, s = (float(v[i].reshape(-1)[0]) for v in (self.mean, self.se))
            rows.append(f"{o:>5d} {m:>14.4f} {s:>10.4f}")
        return "\n".join(rows)


def fold_assignment(R: int, folds: int, seed: int | None = None) -> torch.Tensor:
    """The fold of each of R trials: a random permutation of (0, 1, ..., K-1, 0, 1, ...); sizes differ by <= 1."""
    g = torch.Generator()
    if seed is None:
        g.seed()
    else:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer or None; got {seed!r}")
        g.manual_seed(seed)
    base = torch.arange(R) % folds
    return base[torch.randperm(R, generator=g)]


def _check_folds(folds: Any, R: int) -> int:
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ValueError(f"folds must be an integer >= 2; got {folds!r}")
    if folds > R:
        raise ValueError(f"folds={folds} is larger than the number of trials R={R}; use folds <= {R}")
    return int(folds)


def heldout_loglik(
    theta_s: torch.Tensor,
    sigma_s: torch.Tensor,
    y: torch.Tensor,
    R: Any,
    N: int,
    order: int,
    *,
    method: str = "laplace",
    n_samples: int = 1000,
    seed: int | None = 0,
    newton_tol: float = 1e-10,
) -> torch.Tensor:
    """log E_{theta ~ Normal(theta_s, sigma_s)} exp(R [y . theta - psi(theta)]) per bin (see the module docstring).

    Args:
        theta_s: posterior means (..., D).
        sigma_s: posterior covariances (..., D, D) or variances (..., D).
        y: held-out statistics (..., D).
        R: held-out trials (a number, or a tensor broadcasting against the batch shape (...)).
        N: number of neurons.
        order: interaction order.
        method: "laplace" or "sample".
        n_samples: posterior samples (method "sample").
        seed: seed of the samples (method "sample").
        newton_tol: gradient tolerance (divided by R) of the Laplace mode search.

    Returns:
        log predictive density of each bin, shape (...).
    """
    from .intervals import sample_theta
    from .optim.newton import newton_ascent

    if method not in SCORE_METHODS:
        raise ValueError(f"method must be one of {SCORE_METHODS}; got {method!r}")
    N, order = check_N_order(N, order)
    m = theta_s
    S = sigma_s if sigma_s.shape == (*m.shape, m.shape[-1]) else torch.diag_embed(sigma_s)
    Rt = torch.as_tensor(R, dtype=m.dtype, device=m.device).expand(m.shape[:-1])
    if method == "sample":
        n_samples = check_positive_int(n_samples, "n_samples")
        th = sample_theta(m, S, n_samples, seed=seed)  # (S, ..., D)
        psi = _moments.log_partition(th, N, order)
        ll = Rt * ((y * th).sum(-1) - psi)
        return torch.logsumexp(ll, dim=0) - math.log(n_samples)
    batch = m.shape[:-1]
    D = m.shape[-1]
    mf, Sf = m.reshape(-1, D), S.reshape(-1, D, D)
    yf, Rf = y.reshape(-1, D), Rt.reshape(-1)
    P = torch.cholesky_inverse(torch.linalg.cholesky(Sf))
    P = 0.5 * (P + P.mT)

    def objective(theta: torch.Tensor):
        mo = _moments.moments(theta, N, order, with_fisher=True)
        d = theta - mf
        Pd = (P @ d.unsqueeze(-1)).squeeze(-1)
        f = Rf * ((yf * theta).sum(-1) - mo.psi) - 0.5 * (d * Pd).sum(-1)
        g = Rf[:, None] * (yf - mo.eta) - Pd
        H = -Rf[:, None, None] * mo.fisher - P
        return f, g, H

    out = newton_ascent(objective, mf.clone(), tol=newton_tol, scale=Rf.clamp_min(1.0).amax())
    logdet_negH = 2.0 * torch.linalg.cholesky(-out.hess).diagonal(dim1=-2, dim2=-1).log().sum(-1)
    logdet_S = 2.0 * torch.linalg.cholesky(Sf).diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return (out.value - 0.5 * (logdet_negH + logdet_S)).reshape(batch)


def cross_validate(
    spikes: Any,
    orders: Sequence[int] = (1, 2, 3),
    folds: int = 5,
    seed: int | None = None,
    *,
    score_method: str = "laplace",
    n_samples: int = 1000,
    **fit_kwargs: Any,
) -> CrossValidation:
    """K-fold cross-validation over trials: fit each order on K-1 folds, score the held-out fold.

    Every fold's training fit of one order is one batched :func:`~torch_ising.fit` call (folds
    with the same number of training trials go into one batch). The score is the held-out trials'
    predictive log-likelihood averaged over the smoothed posterior (see the module docstring).

    Args:
        spikes: binary spikes (T_raw, R, N), or (B, T_raw, R, N) for B data sets split alike.
        orders: the orders to compare, each in 1..N.
        folds: the number of folds K, 2 <= K <= R.
        seed: seed of the split into folds (None: random).
        score_method: "laplace" (default) or "sample" (Monte Carlo over the posterior).
        n_samples: posterior samples per bin for score_method "sample".
        **fit_kwargs: passed to :func:`~torch_ising.fit` (``progress`` defaults to False), e.g.
            ``method="pseudo"`` for large N.

    Returns:
        :class:`CrossValidation` (``.best``: the selected order; ``.table()``).

    Raises:
        ValueError: for malformed spikes, bad orders, folds < 2 or folds > R, an unknown method.
    """

    x = check_spikes(spikes, (3, 4))
    batched = x.ndim == 4
    if not batched:
        x = x.unsqueeze(0)
    B, T_raw, R, N = x.shape
    orders = check_orders(orders, N)
    folds = _check_folds(folds, R)
    if score_method not in SCORE_METHODS:
        raise ValueError(f"score_method must be one of {SCORE_METHODS}; got {score_method!r}")
    if "mask" in fit_kwargs:
        raise ValueError("mask is not supported by cross_validate yet; pass complete trials")
    fit_kwargs.setdefault("progress", False)
    window = fit_kwargs.get("window", 1)
    stationary = bool(fit_kwargs.get("stationary", False))
    fold = fold_assignment(R, folds, seed).to(x.device)
    members = [torch.nonzero(fold == k).flatten() for k in range(folds)]
    groups: dict[int, list[int]] = {}
    for k in range(folds):
        groups.setdefault(R - len(members[k]), []).append(k)
    score = torch.empty(len(orders), folds, B, dtype=torch.float64)
    for i, o in enumerate(orders):
        for ks in groups.values():
            train = torch.cat([x[:, :, fold != k] for k in ks])  # (len(ks) B, T_raw, R_train, N)
            res = fit(train, o, **fit_kwargs)
            th_s, sg_s = res.theta_s, res.sigma_s  # (len(ks) B, T, D ...)
            ys, Rs = [], []
            for k in ks:
                test = x[:, :, members[k]]
                Rk = test.shape[2]
                xr = torch.stack([rebin(test[b], window) for b in range(B)]) if window > 1 else test
                T = xr.shape[1]
                y = sufficient_stats(xr.reshape(B * T, Rk, N), o).reshape(B, T, -1).to(th_s)
                if stationary and T > 1:
                    y, Rk = y.mean(1, keepdim=True), Rk * T
                ys.append(y)
                Rs.append(torch.full((B, y.shape[1]), float(Rk), dtype=torch.float64, device=th_s.device))
            with torch.no_grad():
                ll = heldout_loglik(
                    th_s, sg_s, torch.cat(ys), torch.cat(Rs), N, o, method=score_method, n_samples=n_samples, seed=0
                )
            per_fold = ll.sum(-1).reshape(len(ks), B).cpu()
            for j, k in enumerate(ks):
                score[i, k] = per_fold[j]
    mean = score.mean(1)
    se = score.std(1, unbiased=True) / math.sqrt(folds)
    if not batched:
        score, mean, se = score[..., 0], mean[..., 0], se[..., 0]
    return CrossValidation(
        orders=orders, score=score, mean=mean, se=se, folds=folds, fold=fold.cpu(), method=score_method
    )
