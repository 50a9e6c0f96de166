"""Trial-shuffle surrogates and the surrogate test of a fitted statistic.

A trial-shuffle surrogate permutes, independently for every neuron n and every bin t, the
trials of that neuron in that bin:

    x~_{t, r, n} = x_{t, pi_{t,n}(r), n},   pi_{t,n} a uniform random permutation of the (observed) trials.

It keeps every neuron's PSTH (its spike count per bin) exactly and destroys the synchrony
within a trial: under the null hypothesis that the neurons fire independently given the bin
(and trials are exchangeable), the data and its surrogates are exchangeable, so the rank of
the data's statistic among the surrogates' gives a valid p-value per bin,

    p_t = (1 + #{j : s_t^(j) >= s_t}) / (n + 1)       (alternative="greater"),

with s_t the statistic of the data's fit and s_t^(j) that of surrogate j. The data and its n
surrogates are fitted as one batch of n + 1 data sets, so every data set gets the same
treatment (the same EM settings and stopping rule).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from ._results import select_result
from ._validation import as_tensor, check_positive_int, check_spikes
from .statespace import fit

__all__ = ["trial_shuffle", "surrogate_test", "SurrogateTest", "ALTERNATIVES", "check_mask"]

#: The alternatives of :func:`surrogate_test`, by name.
ALTERNATIVES = ("greater", "less", "two-sided")


def check_mask(mask: Any, T: int, R: int, device: torch.device, name: str = "mask") -> torch.Tensor:
    """A boolean (T, R) mask of observed (bin, trial) entries; refuses any other shape or non-boolean values."""
    m = as_tensor(mask, name=name).to(device)
    if m.dtype != torch.bool:
        if m.is_floating_point() or not bool(((m == 0) | (m == 1)).all()):
            raise ValueError(
                f"{name} must be boolean (True = observed), shape (T, R) = ({T}, {R}); got dtype {m.dtype}"
            )
        m = m.bool()
    if tuple(m.shape) != (T, R):
        raise ValueError(
            f"{name} must have shape (T, R) = ({T}, {R}) like spikes' first two axes; got {tuple(m.shape)}"
        )
    return m


def _generator(seed: int | None, device: torch.device) -> torch.Generator:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be an integer or None; got {seed!r}")
    g = torch.Generator(device=device)
    if seed is None:
        g.seed()
    else:
        g.manual_seed(seed)
    return g


def trial_shuffle(spikes: Any, n: int, seed: int | None = None, mask: Any = None) -> torch.Tensor:
    """n trial-shuffle surrogates of ``spikes``: each neuron's trials permuted independently within each bin.

        x~^(j)_{t, r, n} = x_{t, pi^(j)_{t,n}(r), n}

    All n x T x N permutations are drawn at once (an argsort of uniform keys over the trial axis).

    Args:
        spikes: binary spikes (T, R, N).
        n: number of surrogates (>= 1).
        seed: seed of the permutations (None: a fresh random seed).
        mask: optional boolean (T, R), True where trial r of bin t was observed. The observed
            trials of each bin are permuted among themselves; unobserved entries are left as
            they are (whatever they hold is not data).

    Returns:
        surrogates (n, T, R, N), the dtype and device of ``spikes``: a batch to fit in one call,
        ``ti.fit(trial_shuffle(spikes, n), order)``.

    Raises:
        ValueError: for malformed spikes, n < 1, a bad seed or a mask of the wrong shape.
    """
    x = check_spikes(spikes, 3)
    n = check_positive_int(n, "n")
    T, R, N = x.shape
    g = _generator(seed, x.device)
    keys = torch.rand(n, T, N, R, generator=g, device=x.device, dtype=torch.float64)
    xt = x.permute(0, 2, 1).unsqueeze(0).expand(n, T, N, R)  # trials last
    if mask is None:
        src = keys.argsort(dim=-1)
        out = xt.gather(-1, src)
    else:
        m = check_mask(mask, T, R, x.device)
        # unobserved trials sort after every observed one (keys > 1), in their own order
        pos = torch.arange(R, device=x.device, dtype=torch.float64)
        blocked = (~m)[None, :, None, :]
        keys = torch.where(blocked, 2.0 + pos, keys)
        src = keys.argsort(dim=-1)  # observed trials in random order, then the unobserved ones
        dst = torch.where(~m, 2.0 + pos, pos / R).argsort(dim=-1)  # (T, R): observed positions first, in order
        dst = dst[None, :, None, :].expand(n, T, N, R)
        out = torch.empty(xt.shape, dtype=x.dtype, device=x.device).scatter_(-1, dst, xt.gather(-1, src))
    return out.permute(0, 1, 3, 2).contiguous()


class SurrogateTest(NamedTuple):
    """The result of :func:`surrogate_test`.

    Attributes:
        observed: the statistic of the data's fit, s_t, shape (T, ...).
        surrogates: the statistic of each surrogate's fit, s_t^(j), shape (n, T, ...).
        p_value: the per-bin p-value (1 + #{j: s^(j) at least as extreme as s}) / (n + 1), (T, ...).
        n: number of surrogates.
        alternative: "greater", "less" or "two-sided".
        result: the data's :class:`~torch_ising.StateSpaceResult` (data set 0 of the batch).
        batch: the batched result of all n + 1 fits (data set 0 is the data, 1..n the surrogates).
    """

    observed: torch.Tensor
    surrogates: torch.Tensor
    p_value: torch.Tensor
    n: int
    alternative: str
    result: Any
    batch: Any

    def band(self, level: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
        """The equal-tailed ``level`` band of the surrogate distribution per bin, (lower, upper)."""
        from .intervals import _quantiles, check_level

        level = check_level(level)
        lo, hi = _quantiles(self.surrogates, ((1 - level) / 2, (1 + level) / 2))
        return lo, hi


def _p_values(obs: torch.Tensor, surr: torch.Tensor, alternative: str) -> torch.Tensor:
    n = surr.shape[0]
    greater = (1.0 + (surr >= obs).sum(0).to(torch.float64)) / (n + 1)
    less = (1.0 + (surr <= obs).sum(0).to(torch.float64)) / (n + 1)
    if alternative == "greater":
        return greater
    if alternative == "less":
        return less
    return torch.minimum(torch.ones_like(greater), 2.0 * torch.minimum(greater, less))


def _s_ratio(result: Any) -> torch.Tensor:
    return result.thermodynamics().S_ratio


def surrogate_test(
    spikes: Any,
    order: int = 2,
    *,
    statistic: Callable[[Any], Any] | None = None,
    n: int = 100,
    seed: int | None = None,
    alternative: str = "greater",
    mask: Any = None,
    vectorized: bool = False,
    **fit_kwargs: Any,
) -> SurrogateTest:
    """Fit the data and n trial-shuffle surrogates (one batched fit) and test a statistic per bin.

    The p-value of bin t is the rank of the data's statistic among the surrogates' (see the module
    docstring); with n surrogates the smallest attainable p-value is 1 / (n + 1) one-sided and
    2 / (n + 1) two-sided.

    Args:
        spikes: binary spikes (T_raw, R, N).
        order: interaction order of the fits.
        statistic: a function of a :class:`~torch_ising.StateSpaceResult` returning a per-bin
            trace (T,) (or (T, ...)), e.g. ``lambda r: r.thermodynamics().S_ratio`` or a coupling
            ``lambda r: r.theta_s[:, 5]``. None (default): S_ratio, evaluated on the batch at once.
        n: number of surrogates (>= 1).
        seed: seed of the shuffles.
        alternative: "greater" (default: the data's statistic is larger than chance, e.g. S_ratio
            with synchrony), "less" or "two-sided".
        mask: optional boolean (T_raw, R) of observed entries: the shuffles permute only observed
            trials. It is also passed on to :func:`~torch_ising.fit` (``fit_kwargs["mask"]``), so
            use it only with a ``fit`` that accepts ``mask``.
        vectorized: call ``statistic`` once on the batched result (leading dimension n + 1, data
            set 0 being the data) instead of once per data set.
        **fit_kwargs: passed to :func:`~torch_ising.fit` (``progress`` defaults to False).

    Returns:
        :class:`SurrogateTest`.

    Raises:
        ValueError: for n < 1, an unknown alternative, a statistic that returns the wrong shape.
    """

    x = check_spikes(spikes, 3)
    n = check_positive_int(n, "n")
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}; got {alternative!r}")
    if statistic is None:  # S_ratio: batched thermodynamics of all n + 1 fits at once
        statistic, vectorized = _s_ratio, True
    elif not callable(statistic):
        raise ValueError(
            f"statistic must be a function of a fit result (e.g. lambda r: r.theta_s[:, 5]); got {statistic!r}"
        )
    surr = trial_shuffle(x, n, seed=seed, mask=mask)
    batch = torch.cat([x.unsqueeze(0), surr], dim=0)
    fit_kwargs.setdefault("progress", False)
    if mask is not None:
        import inspect

        if "mask" not in inspect.signature(fit).parameters:
            raise ValueError(
                "mask: this version of ti.fit takes no mask, so a masked surrogate test cannot fit the data; "
                "use ti.trial_shuffle(spikes, n, mask=mask) and fit the complete trials"
            )
        m = check_mask(mask, x.shape[0], x.shape[1], x.device)
        fit_kwargs["mask"] = m.unsqueeze(0).expand(n + 1, *m.shape)
    res = fit(batch, order, **fit_kwargs)
    if vectorized:
        values = torch.as_tensor(statistic(res))
        if values.ndim < 1 or values.shape[0] != n + 1:
            raise ValueError(
                f"statistic with vectorized=True must return (n + 1, T, ...) = ({n + 1}, ...) values, one per data "
                f"set; got shape {tuple(values.shape)}"
            )
        first = select_result(res, 0)
    else:
        singles = [select_result(res, b) for b in range(n + 1)]
        first = singles[0]
        outs = [torch.as_tensor(statistic(r)) for r in singles]
        shapes = {tuple(v.shape) for v in outs}
        if len(shapes) != 1:
            raise ValueError(f"statistic must return the same shape for every data set; got {sorted(shapes)}")
        values = torch.stack(outs)
    values = values.detach().to(torch.float64)
    if values.ndim < 2:
        raise ValueError(
            f"statistic must return a per-bin trace of shape (T, ...); got shape {tuple(values.shape[1:])}"
        )
    obs, sv = values[0], values[1:]
    return SurrogateTest(
        observed=obs,
        surrogates=sv,
        p_value=_p_values(obs, sv, alternative),
        n=n,
        alternative=alternative,
        result=first,
        batch=res,
    )
