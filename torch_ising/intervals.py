"""Credible intervals for theta, eta and every derived quantity (MODEL.md section 4).

The smoother's Laplace posterior of bin t is Gaussian,

    theta_t | all data ~ Normal(theta_s[t], sigma_s[t]),

so credible intervals of any function f(theta_t) come from the samples

    theta_t^(j) = theta_s[t] + L_t z^(j),   L_t L_t^T = sigma_s[t],   z^(j) ~ Normal(0, I),

drawn for all bins at once with one batched Cholesky factorisation. The
interval at level a is [q_{(1-a)/2}, q_{(1+a)/2}] of the sampled f(theta_t^(j)),
and the reported point value is f at the posterior mode (MAP), f(theta_s[t]).
theta also has the closed-form Gaussian interval

    theta_s[t, i] +/- z_{(1+a)/2} sqrt(sigma_s[t, i, i]),   z_p = Phi^{-1}(p).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import torch

from . import moments as _moments
from ._validation import as_tensor, check_covariance, check_finite, check_N_order, check_positive_int, check_theta
from .thermodynamics import QuantityError, _check_data, _derived, check_quantities

__all__ = [
    "CredibleInterval",
    "CredibleIntervals",
    "check_level",
    "sample_theta",
    "gaussian_intervals",
    "credible_intervals",
    "reliable_couplings",
]

#: Working-set budget (bytes) of one chunk of posterior samples.
_CHUNK_BYTES = 2**28


class CredibleInterval(NamedTuple):
    """A point value with the bounds of its equal-tailed credible interval.

    Attributes:
        map: the value at the posterior mode, f(theta_s), shape (...).
        lower: lower bound, the (1 - level)/2 quantile, shape (...).
        upper: upper bound, the (1 + level)/2 quantile, shape (...).
        level: the credible level a in (0, 1).
    """

    map: torch.Tensor
    lower: torch.Tensor
    upper: torch.Tensor
    level: float

    def contains(self, value: torch.Tensor) -> torch.Tensor:
        """Boolean mask of ``lower <= value <= upper`` (elementwise)."""
        value = torch.as_tensor(value, dtype=self.lower.dtype, device=self.lower.device)
        return (self.lower <= value) & (value <= self.upper)


class CredibleIntervals(Mapping[str, CredibleInterval]):
    """Credible intervals by name: ``"theta"``, ``"eta"`` and derived quantities.

    ``ci["S_ratio"].lower`` etc.; asking for a name that was not computed
    raises :class:`~torch_ising.thermodynamics.QuantityError` (a ValueError)
    that lists the available names.

    Attributes:
        level: the credible level.
        n_samples: number of posterior samples per bin.
    """

    def __init__(self, intervals: dict[str, CredibleInterval], level: float, n_samples: int) -> None:
        self._intervals = dict(intervals)
        self.level = level
        self.n_samples = n_samples

    def __getitem__(self, name: str) -> CredibleInterval:
        if name not in self._intervals:
            raise QuantityError(
                f"no credible interval for {name!r}; this result holds {', '.join(self._intervals)}. "
                "Pass quantities=... (and y=, R= for llk1, llk2, gain) to credible_intervals()."
            )
        return self._intervals[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._intervals)

    def __len__(self) -> int:
        return len(self._intervals)

    def __repr__(self) -> str:
        return f"CredibleIntervals(level={self.level}, n_samples={self.n_samples}, names={list(self._intervals)})"


def check_level(level: Any, name: str = "level") -> float:
    """Check a credible level is a number strictly between 0 and 1.

    Raises:
        ValueError: naming the argument, for anything outside (0, 1).
    """
    try:
        value = float(level)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a number in (0, 1), e.g. 0.9; got {level!r}") from err
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in the open interval (0, 1), e.g. 0.9 for 90%; got {level!r}")
    return value


def _check_posterior(theta_s: Any, sigma_s: Any) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Returns theta_s, sigma_s and whether sigma_s holds full matrices (else diagonal variances)."""
    m = check_finite(as_tensor(theta_s, name="theta_s"), "theta_s")
    if not m.is_floating_point():
        m = m.to(torch.get_default_dtype())
    if m.ndim < 1:
        raise ValueError(f"theta_s must have shape (..., D); got shape {tuple(m.shape)}")
    S = as_tensor(sigma_s, dtype=m.dtype, device=m.device, name="sigma_s")
    D = m.shape[-1]
    if S.shape == (*m.shape, D):
        full = True
    elif S.shape == m.shape:
        full = False
    else:
        raise ValueError(
            f"sigma_s must have shape (..., D, D) (covariances) or (..., D) (variances) matching theta_s of shape "
            f"{tuple(m.shape)}; got shape {tuple(S.shape)}"
        )
    if not bool(torch.isfinite(S).all()):
        raise ValueError("sigma_s contains NaN or infinite values")
    check_covariance(S, "sigma_s", diagonal=not full)
    return m, S, full


def _sqrt_cov(S: torch.Tensor) -> torch.Tensor:
    """Batched square root L with L L^T = S: Cholesky, with an eigen-decomposition for bins that are not PD."""
    L, info = torch.linalg.cholesky_ex(S)
    bad = info != 0
    if bool(bad.any()):
        Sb = 0.5 * (S[bad] + S[bad].mT)
        w, V = torch.linalg.eigh(Sb)
        L = L.clone()
        L[bad] = V * w.clamp(min=0).sqrt()[..., None, :]
    return L


def _generator(seed: int | None, generator: torch.Generator | None, device: torch.device) -> torch.Generator | None:
    if generator is not None:
        return generator
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer or None; got {seed!r}")
    return torch.Generator(device=device).manual_seed(seed)


def sample_theta(
    theta_s: Any,
    sigma_s: Any,
    n_samples: int,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw theta_t ~ Normal(theta_s[t], sigma_s[t]) for all bins in one batched call.

        theta^(j) = theta_s + L z^(j),  L = chol(sigma_s),  z^(j) ~ Normal(0, I)

    Args:
        theta_s: posterior means, shape (..., D).
        sigma_s: posterior covariances (..., D, D), or variances (..., D) for a
            diagonal posterior.
        n_samples: number of draws per bin.
        seed: seed of a fresh generator on the device of ``theta_s``.
        generator: a generator to use instead of ``seed``.

    Returns:
        Samples, shape (n_samples, ..., D).
    """
    n_samples = check_positive_int(n_samples, "n_samples")
    m, S, full = _check_posterior(theta_s, sigma_s)
    gen = _generator(seed, generator, m.device)
    z = torch.randn((n_samples, *m.shape), dtype=m.dtype, device=m.device, generator=gen)
    if full:
        # theta = m + L z for every bin: one batched matrix product over the bins
        return m + torch.einsum("...ij,n...j->n...i", _sqrt_cov(S), z)
    return m + S.clamp(min=0).sqrt() * z


def gaussian_intervals(theta_s: Any, sigma_s: Any, level: float = 0.9) -> CredibleInterval:
    """Closed-form Gaussian credible intervals of theta.

        theta_s[..., i] -/+ Phi^{-1}((1 + level) / 2) sqrt(sigma_s[..., i, i])

    Args:
        theta_s: posterior means (the MAP), shape (..., D).
        sigma_s: posterior covariances (..., D, D) or variances (..., D).
        level: credible level in (0, 1).

    Returns:
        :class:`CredibleInterval` with map = theta_s.
    """
    level = check_level(level)
    m, S, full = _check_posterior(theta_s, sigma_s)
    var = S.diagonal(dim1=-2, dim2=-1) if full else S
    z = torch.special.ndtri(torch.tensor((1.0 + level) / 2.0, dtype=m.dtype, device=m.device))
    half = z * var.clamp(min=0).sqrt()
    return CredibleInterval(map=m, lower=m - half, upper=m + half, level=level)


def _quantiles(x: torch.Tensor, probs: Sequence[float]) -> list[torch.Tensor]:
    """Quantiles over dim 0 with linear interpolation (numpy's default), one sort for all ``probs``.

    Works for any size of x (``torch.quantile`` refuses large inputs).
    """
    n = x.shape[0]
    xs = x.movedim(0, -1).contiguous().sort(dim=-1).values  # sorting along a contiguous dim is fastest
    out = []
    for p in probs:
        pos = p * (n - 1)
        lo = int(pos)
        hi = min(lo + 1, n - 1)
        frac = pos - lo
        out.append(xs[..., lo] + frac * (xs[..., hi] - xs[..., lo]))
    return out


def credible_intervals(
    theta_s: Any,
    sigma_s: Any,
    N: int,
    order: int = 2,
    *,
    level: float = 0.9,
    n_samples: int = 1000,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    quantities: str | Sequence[str] | None = None,
    y: Any = None,
    R: Any = None,
    beta: float | torch.Tensor = 1.0,
) -> CredibleIntervals:
    """Credible intervals of theta, eta and derived quantities by batched, seeded posterior sampling.

    Draws theta_t^(j) ~ Normal(theta_s[t], sigma_s[t]) (:func:`sample_theta`),
    evaluates eta and the :func:`~torch_ising.thermodynamics.thermodynamics`
    quantities on all samples of all bins in batched calls (in chunks of
    samples that bound the memory), and takes equal-tailed quantiles.

    Args:
        theta_s: smoothed means, shape (..., D) (e.g. (T, D)).
        sigma_s: smoothed covariances (..., D, D), or variances (..., D).
        N: number of neurons.
        order: interaction order of theta_s.
        level: credible level in (0, 1).
        n_samples: posterior samples per bin.
        seed: seed of the sampler (``None``: torch's global generator).
        generator: a generator to use instead of ``seed``.
        quantities: derived quantities to include besides theta and eta:
            a name or names from :data:`~torch_ising.thermodynamics.QUANTITIES`
            or ``"gain"``; ``None`` or ``"all"`` for all that the inputs allow.
        y: sufficient statistics (..., D), for llk1, llk2 and gain.
        R: number of trials, for llk1, llk2 and gain.
        beta: inverse temperature of the heat capacity.

    Returns:
        :class:`CredibleIntervals` mapping ``"theta"``, ``"eta"`` and each
        quantity to a :class:`CredibleInterval` (map, lower, upper, level).

    Raises:
        ValueError: for a level outside (0, 1), mis-shaped theta_s/sigma_s, or
            an unknown quantity or one that needs y and R when they are missing.
    """
    level = check_level(level)
    n_samples = check_positive_int(n_samples, "n_samples")
    N, order = check_N_order(N, order)
    m, S, full = _check_posterior(theta_s, sigma_s)
    check_theta(m, N, order, name="theta_s")
    names = check_quantities(quantities, have_data=y is not None and R is not None)

    y_t, R_t = _check_data(y, R, m)

    def evaluate(theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """theta, eta and the chosen quantities from one pass of exact moments."""
        if not names:
            return {"theta": theta, "eta": _moments.expectation(theta, N, order)}
        record, eta = _derived(theta, N, order, y_t, R_t, beta, with_heat_capacity="heat_capacity" in names)
        out = {"theta": theta, "eta": eta}
        out.update({q: record.get(q) for q in names})
        return out

    point = evaluate(m)
    # All draws at once (the theta samples are kept anyway), so the result does not depend on the chunking.
    samples = sample_theta(m, S, n_samples, seed=seed, generator=generator)
    # Samples per chunk: the Fisher matrices (D^2) and the 2^N work vectors dominate each sample of each bin.
    D = m.shape[-1]
    per_sample = max(1, m[..., 0].numel()) * (D * D + 3 * 2**N + 4 * D) * m.element_size()
    step = max(1, min(n_samples, _CHUNK_BYTES // per_sample))
    store: dict[str, torch.Tensor] = {"theta": samples}
    for s in range(0, n_samples, step):
        vals = evaluate(samples[s : s + step])
        for k, v in vals.items():
            if k == "theta":
                continue
            if k not in store:
                store[k] = v.new_empty((n_samples, *v.shape[1:]))
            store[k][s : s + step] = v
    lo_p, hi_p = (1.0 - level) / 2.0, (1.0 + level) / 2.0
    result = {}
    for k in ("theta", "eta", *names):
        lower, upper = _quantiles(store.pop(k), (lo_p, hi_p))
        result[k] = CredibleInterval(map=point[k], lower=lower, upper=upper, level=level)
    return CredibleIntervals(result, level=level, n_samples=n_samples)


def reliable_couplings(
    interval: Any,
    N: int,
    order: int = 2,
    *,
    min_bins: int = 1,
    unit_ids: Any = None,
) -> list[dict[str, Any]]:
    """The pairwise couplings theta_ij whose credible band excludes 0 in at least ``min_bins`` bins.

    Args:
        interval: a :class:`CredibleInterval` of theta, shape (T, D) or (D,)
            (e.g. ``result.theta_intervals(0.9)``).
        N: number of neurons.
        order: interaction order of theta (>= 2).
        min_bins: least number of bins in which the band must exclude 0.
        unit_ids: the unit id of each neuron (default 0..N-1).

    Returns:
        one row per reliable pair, most bins first (then the largest |theta_ij|):
        ``i``, ``j`` (neurons), ``unit_i``, ``unit_j``, ``column`` (index among the D),
        ``n_bins`` (bins whose band excludes 0), ``first_bin``, ``sign`` ("+", "-" or
        "+/-": the sign of theta_ij in those bins) and ``peak`` (theta_ij of largest
        magnitude among them).
    """
    from .basis import subsets

    N, order = check_N_order(N, order)
    if order < 2:
        raise ValueError(f"order must be >= 2 to have couplings; got order={order}")
    if isinstance(min_bins, bool) or not isinstance(min_bins, int) or min_bins < 1:
        raise ValueError(f"min_bins must be an integer >= 1; got {min_bins!r}")
    subs = subsets(N, order)
    lower = torch.as_tensor(interval.lower).detach().cpu().double()
    upper = torch.as_tensor(interval.upper).detach().cpu().double()
    value = torch.as_tensor(interval.map).detach().cpu().double()
    if lower.shape[-1] != len(subs):
        raise ValueError(f"interval has D={lower.shape[-1]} columns but N={N}, order={order} gives D={len(subs)}")
    lower, upper, value = (x.reshape(-1, len(subs)) for x in (lower, upper, value))
    ids = list(range(N)) if unit_ids is None else [u.item() if hasattr(u, "item") else u for u in unit_ids]
    if len(ids) != N:
        raise ValueError(f"unit_ids must have one entry per neuron ({N}); got {len(ids)}")
    excludes = (lower > 0) | (upper < 0)
    rows = []
    for k, s in enumerate(subs):
        if len(s) != 2:
            continue
        hit = excludes[:, k]
        n = int(hit.sum())
        if n < min_bins:
            continue
        vals = value[hit, k]
        signs = {"+" if float(v) > 0 else "-" for v in vals}
        peak = float(vals[vals.abs().argmax()])
        rows.append(
            {
                "i": s[0],
                "j": s[1],
                "unit_i": ids[s[0]],
                "unit_j": ids[s[1]],
                "column": k,
                "n_bins": n,
                "first_bin": int(torch.nonzero(hit)[0, 0]),
                "sign": "+/-" if len(signs) > 1 else signs.pop(),
                "peak": peak,
            }
        )
    rows.sort(key=lambda r: (-r["n_bins"], -abs(r["peak"])))
    return rows
