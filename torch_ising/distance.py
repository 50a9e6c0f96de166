"""Distances between the pattern distributions of two fits (e.g. two stimulus conditions), bin by bin.

For two parameter vectors theta_a, theta_b of the same N (a lower order is padded with zeros,
since the parameters of a lower order are the leading entries), p_a = p(x | theta_a) and
p_b = p(x | theta_b):

    KL(p_a || p_b)  = sum_x p_a log(p_a / p_b) = psi(theta_b) - psi(theta_a) + (theta_a - theta_b) . eta(theta_a)
    Bhattacharyya   = -log sum_x sqrt(p_a p_b)  = (psi(theta_a) + psi(theta_b)) / 2 - psi((theta_a + theta_b) / 2)
    JS(p_a, p_b)    = 1/2 KL(p_a || m) + 1/2 KL(p_b || m),   m = (p_a + p_b) / 2

KL and Bhattacharyya need only psi and eta (exact, O(N 2^N) per bin, no 2^N x D matrix; beyond
``exact_max_n`` an approximation of :data:`torch_ising.approx.ETA_METHODS`); JS needs the 2^N
probabilities of every bin and is exact only (N <= ``exact_max_n``).

Credible bands come from sampling both posteriors, theta_{a,t}^(j) ~ Normal(theta_s^a[t], sigma_s^a[t])
and theta_{b,t}^(j) likewise (independent fits), and taking equal-tailed quantiles of the
distance of every pair. A distance is >= 0 and so is every sample, so its band never contains 0
in the strict sense, even for two identical conditions: posterior noise alone moves the samples
apart. Whether two conditions differ is therefore judged against the null distances

    d_null^(j) = d(theta_bar + e_a^(j), theta_bar + e_b^(j)),   theta_bar = (theta_s^a + theta_s^b) / 2,

with e^(j) = theta^(j) - theta_s the posterior deviations: the distance that posterior
uncertainty alone produces when both conditions share theta. When they do, the difference of the
two smoothed means is distributed like e_a - e_b (to the order of the Laplace approximation), so
d(theta_s^a, theta_s^b) is a draw from the null distribution, and

    p_null = (1 + #{j : d_null^(j) >= d(theta_s^a, theta_s^b)}) / (n + 1)

is a per-bin p-value. ``differs`` marks the bins whose distance exceeds the null band's upper
bound, the (1 + level) / 2 quantile (a one-sided test at (1 - level) / 2 per bin).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

from . import moments as _moments
from ._validation import check_positive_int

__all__ = ["PatternDistance", "pattern_distance", "distance", "KINDS", "EXACT_MAX_N"]

#: The distances, by name.
KINDS = ("kl", "js", "bhattacharyya")

#: Largest N for which the distances are computed exactly by default (2^N probabilities per bin).
EXACT_MAX_N = 20

#: Working-set budget (bytes) of one chunk of JS evaluations.
_CHUNK_BYTES = 2**27


class PatternDistance(NamedTuple):
    """Per-bin distances between two fitted pattern distributions, with credible and null bands.

    Attributes:
        kind: "kl", "js" or "bhattacharyya" (nats).
        value: the distance between the smoothed means, d(theta_s^a[t], theta_s^b[t]), (T,).
        lower, upper: the equal-tailed credible band at ``level``, (T,).
        null_upper: the upper ``(1 + level) / 2`` quantile of the null distances (equal thetas), (T,).
        p_null: the rank of ``value`` among the null distances, (1 + #{d_null >= value}) / (n + 1), (T,).
        level: the credible level.
        n_samples: posterior samples per bin.
        exact: whether psi and eta were exact (else approximate, N > exact_max_n).
    """

    kind: str
    value: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor
    null_upper: torch.Tensor
    p_null: torch.Tensor
    level: float
    n_samples: int
    exact: bool

    @property
    def differs(self) -> torch.Tensor:
        """Bins whose distance exceeds the null band (differs beyond posterior noise): value > null_upper, (T,)."""
        return self.value > self.null_upper


def _pad(theta: torch.Tensor, D: int) -> torch.Tensor:
    return theta if theta.shape[-1] == D else torch.nn.functional.pad(theta, (0, D - theta.shape[-1]))


def _psi_eta(
    theta: torch.Tensor, N: int, order: int, exact: bool, eta_method: str
) -> tuple[torch.Tensor, torch.Tensor]:
    if exact:
        mo = _moments.moments(theta, N, order, with_fisher=False)
        return mo.psi, mo.eta
    from .approx import approx_moments

    am = approx_moments(theta, N, order, method=eta_method)
    return am.psi, am.eta


def distance(
    theta_a: torch.Tensor,
    theta_b: torch.Tensor,
    N: int,
    order: int,
    kind: str = "kl",
    *,
    exact: bool = True,
    eta_method: str = "bethe_hybrid",
) -> torch.Tensor:
    """The distance ``kind`` between p(x | theta_a) and p(x | theta_b), both (..., D); shape (...).

    See the module docstring for the formulas. ``exact=False`` takes psi and eta from
    ``eta_method`` (KL and Bhattacharyya only).
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    if kind == "kl":
        psi_a, eta_a = _psi_eta(theta_a, N, order, exact, eta_method)
        psi_b = _psi_eta(theta_b, N, order, exact, eta_method)[0]
        return psi_b - psi_a + ((theta_a - theta_b) * eta_a).sum(-1)
    if kind == "bhattacharyya":
        both = torch.stack(torch.broadcast_tensors(theta_a, theta_b, 0.5 * (theta_a + theta_b)))
        psi = _moments.log_partition(both, N, order) if exact else _psi_eta(both, N, order, False, eta_method)[0]
        return 0.5 * (psi[0] + psi[1]) - psi[2]
    if not exact:
        raise ValueError(
            f"kind='js' needs exact enumeration (N <= exact_max_n); N={N} is beyond it: use 'kl' or 'bhattacharyya'"
        )
    # JS: log-probabilities of all 2^N patterns (mask order), in chunks over the batch
    batch = torch.broadcast_shapes(theta_a.shape, theta_b.shape)[:-1]
    ta = theta_a.expand(*batch, theta_a.shape[-1]).reshape(-1, theta_a.shape[-1])
    tb = theta_b.expand(*batch, theta_b.shape[-1]).reshape(-1, theta_b.shape[-1])
    step = max(1, _CHUNK_BYTES // (4 * 2**N * ta.element_size()))
    out = []
    for s in range(0, ta.shape[0], step):
        la = _moments.log_probs(ta[s : s + step], N, order, seed_order=False)
        lb = _moments.log_probs(tb[s : s + step], N, order, seed_order=False)
        lm = torch.logaddexp(la, lb) - math.log(2.0)
        kl_am = (la.exp() * (la - lm)).sum(-1)
        kl_bm = (lb.exp() * (lb - lm)).sum(-1)
        out.append(0.5 * (kl_am + kl_bm))
    return torch.cat(out).reshape(batch)


def pattern_distance(
    result_a: Any,
    result_b: Any,
    kind: str = "kl",
    *,
    level: float = 0.9,
    n_samples: int = 500,
    seed: int | None = 0,
    exact_max_n: int = EXACT_MAX_N,
    eta_method: str = "bethe_hybrid",
) -> PatternDistance:
    """Per-bin distance between the pattern distributions of two fits, with posterior credible bands.

    Args:
        result_a: a :class:`~torch_ising.StateSpaceResult` (e.g. condition A).
        result_b: another fit of the same N and T (its order may differ).
        kind: "kl" (KL(p_a || p_b)), "js" (Jensen-Shannon) or "bhattacharyya".
        level: credible level in (0, 1).
        n_samples: posterior samples per bin (>= 1).
        seed: seed of the posterior samples.
        exact_max_n: largest N computed exactly; beyond it psi and eta come from ``eta_method``.
        eta_method: the approximation used beyond ``exact_max_n`` (a key of ``ti.approx.ETA_METHODS``).

    Returns:
        :class:`PatternDistance` (value, lower, upper, null_upper, p_null, ``differs``).

    Raises:
        ValueError: for an unknown kind, fits of different N or T, bad level or n_samples.
    """
    from .intervals import _quantiles, check_level, sample_theta

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    level = check_level(level)
    n_samples = check_positive_int(n_samples, "n_samples")
    for name, r in (("result_a", result_a), ("result_b", result_b)):
        if not hasattr(r, "theta_s") or not hasattr(r, "sigma_s"):
            raise ValueError(f"{name} must be a fit result (with theta_s and sigma_s); got {type(r).__name__}")
    if result_a.N != result_b.N:
        raise ValueError(f"result_b has N={result_b.N} neurons but result_a has N={result_a.N}; fit the same neurons")
    if tuple(result_a.theta_s.shape[:-1]) != tuple(result_b.theta_s.shape[:-1]):
        raise ValueError(
            f"result_b has bins {tuple(result_b.theta_s.shape[:-1])} but result_a "
            f"{tuple(result_a.theta_s.shape[:-1])}; "
            "fit both on the same bins (same T and window)"
        )
    N = int(result_a.N)
    order = max(int(result_a.order), int(result_b.order))
    exact = N <= exact_max_n
    if kind == "js" and not exact:
        raise ValueError(f"kind='js' needs exact enumeration, N <= exact_max_n={exact_max_n}; got N={N}")
    D = max(result_a.theta_s.shape[-1], result_b.theta_s.shape[-1])
    gen_seed = None if seed is None else int(seed)
    with torch.no_grad():
        ma, mb = result_a.theta_s, result_b.theta_s.to(result_a.theta_s)
        sa = sample_theta(ma, result_a.sigma_s, n_samples, seed=gen_seed)
        sb = sample_theta(mb, result_b.sigma_s.to(mb), n_samples, seed=None if gen_seed is None else gen_seed + 1)
        ma, mb, sa, sb = (_pad(v, D) for v in (ma, mb, sa, sb))
        value = distance(ma, mb, N, order, kind, exact=exact, eta_method=eta_method)
        draws = distance(sa, sb, N, order, kind, exact=exact, eta_method=eta_method)
        mid = 0.5 * (ma + mb)
        null = distance(mid + (sa - ma), mid + (sb - mb), N, order, kind, exact=exact, eta_method=eta_method)
        lower, upper = _quantiles(draws, ((1 - level) / 2, (1 + level) / 2))
        (null_upper,) = _quantiles(null, ((1 + level) / 2,))
        p_null = (1.0 + (null >= value).sum(0).to(value.dtype)) / (n_samples + 1)
    return PatternDistance(
        kind=kind,
        value=value,
        lower=lower,
        upper=upper,
        null_upper=null_upper,
        p_null=p_null,
        level=level,
        n_samples=n_samples,
        exact=exact,
    )
