"""Figures for fitted Ising models (matplotlib).

Every function returns ``(fig, ax)`` (``(fig, axes)`` for multi-panel
figures) and draws into the Axes given as ``ax=`` when there is one, so
figures compose. Vectors over patterns are in the seed order of
:func:`torch_ising.enumerate_patterns` (empty pattern, then one pattern per
subset of neurons), labelled with the binary words x_0 x_1 ... x_{N-1}.

matplotlib is imported lazily, so ``import torch_ising`` does not need it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ._validation import check_N_order
from .basis import enumerate_patterns, subsets

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "pattern_labels",
    "parameter_labels",
    "plot_pattern_probs",
    "plot_pattern_comparison",
    "plot_raster",
    "plot_trajectories",
    "plot_mll",
    "plot_thermodynamics",
    "plot_aic",
]


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _fig_ax(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    import matplotlib.pyplot as plt

    if ax is None:
        # constrained layout keeps axis labels inside the figure when it is saved
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
        return fig, ax
    return ax.figure, ax


def _n_from_patterns(n_patterns: int, N: int | None, name: str) -> int:
    if N is None:
        N = int(round(np.log2(max(n_patterns, 1))))
    N, _ = check_N_order(N, 1)
    if n_patterns != 2**N:
        raise ValueError(f"{name} must have 2^N = {2**N} entries (one per pattern) for N={N}; got {n_patterns}")
    return N


def pattern_labels(N: int) -> list[str]:
    """Binary labels ``x_0 x_1 ... x_{N-1}`` of the 2^N patterns in the seed order (N = 2: 00, 10, 01, 11)."""
    pats = enumerate_patterns(N)
    return ["".join(str(int(b)) for b in row) for row in pats.tolist()]


def parameter_labels(N: int, order: int, symbol: str = "theta") -> list[str]:
    """Mathtext labels of the D parameters, e.g. ``$\\theta_{0}$``, ``$\\theta_{01}$`` (commas for N > 10)."""
    N, order = check_N_order(N, order)
    sep = "," if N > 10 else ""
    return [f"$\\{symbol}_{{{sep.join(str(i) for i in s)}}}$" for s in subsets(N, order)]


def plot_pattern_probs(
    p: Any, N: int | None = None, *, ax: Axes | None = None, **bar_kwargs: Any
) -> tuple[Figure, Axes]:
    """Bar chart of the 2^N pattern probabilities in the seed order, with binary labels.

    Args:
        p: probabilities, shape (2^N,) in the seed order (e.g. ``torch_ising.probs(theta, N, order)``).
        N: number of neurons (default: log2 of the length of ``p``).
        ax: Axes to draw into (default: a new figure).
        **bar_kwargs: passed to ``Axes.bar``.

    Returns:
        (fig, ax): 2^N bars, x tick labels the binary words.
    """
    p_np = _np(p)
    if p_np.ndim != 1:
        raise ValueError(f"p must be a 1-D vector over the 2^N patterns; got shape {p_np.shape}")
    N = _n_from_patterns(p_np.shape[0], N, "p")
    fig, ax = _fig_ax(ax, (max(5.0, 2**N * 0.5), 3.0))
    bar_kwargs.setdefault("color", "steelblue")
    x = np.arange(2**N)
    ax.bar(x, p_np, **bar_kwargs)
    ax.set_xticks(x)
    ax.set_xticklabels(pattern_labels(N), rotation=90 if N > 4 else 0)
    ax.set_xlabel("Pattern")
    ax.set_ylabel("Probability")
    return fig, ax


def plot_pattern_comparison(
    p_list: Sequence[Any], labels: Sequence[str], N: int | None = None, *, ax: Axes | None = None
) -> tuple[Figure, Axes]:
    """Side-by-side bars of several pattern distributions (seed order, binary labels, legend).

    Args:
        p_list: K probability vectors, each of shape (2^N,) in the seed order.
        labels: K legend labels.
        N: number of neurons (default: from the vector length).
        ax: Axes to draw into.

    Returns:
        (fig, ax): K groups of 2^N bars and a legend with ``labels``.
    """
    ps = [_np(p) for p in p_list]
    if len(ps) == 0:
        raise ValueError("p_list must hold at least one probability vector")
    if len(labels) != len(ps):
        raise ValueError(f"labels must have one entry per distribution ({len(ps)}); got {len(labels)}")
    if any(p.ndim != 1 or p.shape != ps[0].shape for p in ps):
        raise ValueError(f"p_list entries must be 1-D vectors of equal length; got shapes {[p.shape for p in ps]}")
    N = _n_from_patterns(ps[0].shape[0], N, "p_list[0]")
    n = 2**N
    fig, ax = _fig_ax(ax, (max(5.0, n * 0.7), 3.0))
    x = np.arange(n)
    w = 0.8 / len(ps)
    offsets = (np.arange(len(ps)) - (len(ps) - 1) / 2) * w
    for p, label, off in zip(ps, labels, offsets, strict=True):
        ax.bar(x + off, p, w, label=label)
    ax.set_xticks(x)
    ax.set_xticklabels(pattern_labels(N), rotation=90 if N > 4 else 0)
    ax.set_xlabel("Pattern")
    ax.set_ylabel("Probability")
    ax.legend()
    return fig, ax


def plot_raster(spikes: Any, t: int = 0, *, ax: Axes | None = None, **event_kwargs: Any) -> tuple[Figure, Axes]:
    """Spike raster of one bin's trials: a tick at (trial r, neuron n) when neuron n fired in trial r of bin t.

    Args:
        spikes: binary array (T, R, N), or (R, N) for a single bin.
        t: the bin to show (ignored for (R, N) input).
        ax: Axes to draw into.
        **event_kwargs: passed to ``Axes.eventplot``.

    Returns:
        (fig, ax): one event collection per neuron, ticks at the trials where it fired.
    """
    x = _np(spikes)
    if x.ndim == 3:
        if not -x.shape[0] <= t < x.shape[0]:
            raise ValueError(f"t must index a bin of spikes (T={x.shape[0]}); got t={t}")
        x = x[t]
    elif x.ndim != 2:
        raise ValueError(f"spikes must have shape (T, R, N) or (R, N); got shape {x.shape}")
    R, N = x.shape
    fig, ax = _fig_ax(ax, (max(5.0, R * 0.05), max(2.0, N * 0.3)))
    positions = [np.flatnonzero(x[:, n]) for n in range(N)]
    event_kwargs.setdefault("colors", "black")
    event_kwargs.setdefault("linelengths", 0.8)
    ax.eventplot(positions, lineoffsets=np.arange(N), **event_kwargs)
    ax.set_xlim(-0.5, R - 0.5)
    ax.set_ylim(-0.5, N - 0.5)
    ax.set_yticks(np.arange(N))
    ax.set_xlabel("Trial")
    ax.set_ylabel("Neuron")
    if _np(spikes).ndim == 3:
        ax.set_title(f"bin {t}")
    return fig, ax


def plot_trajectories(
    values: Any,
    lower: Any = None,
    upper: Any = None,
    *,
    truth: Any = None,
    indices: Sequence[int] | None = None,
    labels: Sequence[str] | None = None,
    N: int | None = None,
    order: int | None = None,
    symbol: str = "theta",
    time: Any = None,
    ax: Axes | None = None,
) -> tuple[Figure, Axes]:
    """Trajectories of theta or eta over bins with credible bands, and the truth when given.

    Args:
        values: (T, D) point values, or a :class:`~torch_ising.intervals.CredibleInterval`
            (then ``lower``/``upper`` come from it).
        lower: (T, D) lower band, optional.
        upper: (T, D) upper band, optional.
        truth: (T, D) true values, drawn dashed in the same colours.
        indices: which of the D parameters to draw (default: all).
        labels: legend labels, one per drawn index (default: ``parameter_labels(N, order, symbol)``
            when N and order are given, else ``symbol[i]``).
        N: number of neurons (for the default labels).
        order: interaction order (for the default labels).
        symbol: ``"theta"`` or ``"eta"``; sets the y label and default labels.
        time: (T,) x values (default: bin index).
        ax: Axes to draw into.

    Returns:
        (fig, ax): one solid line per index (plus a dashed one per index for the
        truth) and one shaded band per index when bounds are given.
    """
    if hasattr(values, "lower") and hasattr(values, "map"):
        lower = values.lower if lower is None else lower
        upper = values.upper if upper is None else upper
        values = values.map
    v = _np(values)
    if v.ndim == 1:
        v = v[:, None]
    if v.ndim != 2:
        raise ValueError(f"values must have shape (T, D); got shape {v.shape}")
    T, D = v.shape
    if (lower is None) != (upper is None):
        raise ValueError("lower and upper must be given together")
    lo = hi = tr = None
    if lower is not None:
        lo, hi = _np(lower).reshape(T, -1), _np(upper).reshape(T, -1)
        if lo.shape != v.shape or hi.shape != v.shape:
            raise ValueError(f"lower and upper must have the shape of values {v.shape}")
    if truth is not None:
        tr = _np(truth).reshape(T, -1) if _np(truth).size == v.size else None
        if tr is None:
            raise ValueError(f"truth must have the shape of values {v.shape}; got {_np(truth).shape}")
    idx = list(range(D)) if indices is None else [int(i) for i in indices]
    if any(not 0 <= i < D for i in idx):
        raise ValueError(f"indices must lie in [0, {D}); got {idx}")
    if labels is None:
        if N is not None and order is not None:
            all_labels = parameter_labels(N, order, symbol)
            if len(all_labels) != D:
                raise ValueError(f"values have D={D} columns but N={N}, order={order} gives D={len(all_labels)}")
            labels = [all_labels[i] for i in idx]
        else:
            labels = [f"{symbol}[{i}]" for i in idx]
    elif len(labels) != len(idx):
        raise ValueError(f"labels must have one entry per drawn index ({len(idx)}); got {len(labels)}")
    x = np.arange(T) if time is None else _np(time)
    if x.shape != (T,):
        raise ValueError(f"time must have shape (T,) = ({T},); got {x.shape}")
    fig, ax = _fig_ax(ax, (7.0, 3.5))
    for i, lab in zip(idx, labels, strict=True):
        (line,) = ax.plot(x, v[:, i], label=lab)
        if lo is not None:
            ax.fill_between(x, lo[:, i], hi[:, i], color=line.get_color(), alpha=0.25, linewidth=0)
        if tr is not None:
            ax.plot(x, tr[:, i], linestyle="--", color=line.get_color(), label=f"{lab} (true)")
    ax.set_xlabel("Time bin")
    ax.set_ylabel(f"${{\\{symbol}}}$" if symbol in ("theta", "eta") else symbol)
    ax.legend(fontsize="small", ncol=max(1, len(idx) // 6))
    return fig, ax


def plot_mll(mll_list: Any, *, ax: Axes | None = None) -> tuple[Figure, Axes]:
    """Log marginal likelihood l per EM iteration (MODEL.md 3.4).

    Args:
        mll_list: the record of l per EM iteration (``StateSpaceResult.mll_list``), shape (n,).
        ax: Axes to draw into.

    Returns:
        (fig, ax): one line with n points.
    """
    m = _np(mll_list).astype(float)
    if m.ndim != 1 or m.size == 0:
        raise ValueError(f"mll_list must be a non-empty 1-D sequence; got shape {m.shape}")
    fig, ax = _fig_ax(ax, (5.0, 3.0))
    ax.plot(np.arange(m.size), m, marker="." if m.size <= 200 else None)
    ax.set_xlabel("EM iteration")
    ax.set_ylabel("log marginal likelihood")
    return fig, ax


#: Panels of :func:`plot_thermodynamics`: (title, quantities drawn in it).
_THERMO_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Entropy (nats)", ("S1", "S2")),
    ("S_ratio", ("S_ratio",)),
    ("Heat capacity", ("heat_capacity",)),
    ("P(silence)", ("p_silence",)),
)
_THERMO_LABELS = {
    "S1": "$S_1$ (independent)",
    "S2": "$S_2$ (fitted)",
    "S_ratio": "$S_{ratio}$",
    "heat_capacity": "$C$",
    "p_silence": "$p(x=0)$",
}


def plot_thermodynamics(
    record: Any, *, time: Any = None, ax: Sequence[Axes] | None = None
) -> tuple[Figure, np.ndarray]:
    """Traces of entropy (S1, S2), S_ratio, heat capacity and silence probability, with credible bands.

    Args:
        record: a :class:`~torch_ising.thermodynamics.Thermodynamics` record (no bands)
            or :class:`~torch_ising.intervals.CredibleIntervals` holding S1, S2, S_ratio,
            heat_capacity and p_silence (MAP lines with bands). Each quantity of shape (T,).
        time: (T,) x values (default: bin index).
        ax: a sequence of 4 Axes to draw into (default: a new 4-panel figure).

    Returns:
        (fig, axes): 4 panels; entropy has two lines, the others one each.
    """
    import matplotlib.pyplot as plt

    needed = [q for _, qs in _THERMO_PANELS for q in qs]
    series: dict[str, tuple[np.ndarray, np.ndarray | None, np.ndarray | None]] = {}
    for q in needed:
        if isinstance(record, Mapping):
            ci = record[q]
            series[q] = (_np(ci.map), _np(ci.lower), _np(ci.upper))
        else:
            series[q] = (_np(getattr(record, q)), None, None)
    T = series["S1"][0].shape
    if len(T) != 1:
        raise ValueError(f"plot_thermodynamics needs quantities of shape (T,); got shape {T}")
    x = np.arange(T[0]) if time is None else _np(time)
    created = ax is None
    if created:
        fig, axes = plt.subplots(2, 2, figsize=(9.0, 5.5), sharex=True, layout="constrained")
        axes = np.asarray(axes).reshape(-1)
    else:
        axes = np.asarray(ax, dtype=object).reshape(-1)
        if axes.size != len(_THERMO_PANELS):
            raise ValueError(f"ax must be a sequence of {len(_THERMO_PANELS)} Axes; got {axes.size}")
        fig = axes[0].figure
    for k, (a, (title, qs)) in enumerate(zip(axes, _THERMO_PANELS, strict=True)):
        for q in qs:
            val, lo, hi = series[q]
            (line,) = a.plot(x, val, label=_THERMO_LABELS[q])
            if lo is not None:
                a.fill_between(x, lo, hi, color=line.get_color(), alpha=0.25, linewidth=0)
        a.set_title(title)
        if not created or k >= 2:  # the top row of the 2 x 2 grid shares the bottom row's time axis
            a.set_xlabel("Time bin")
        if len(qs) > 1:
            a.legend(fontsize="small")
    return fig, axes


def plot_aic(
    comparison: Any, aic: Any = None, *, criterion: str = "aic", ax: Axes | None = None
) -> tuple[Figure, Axes]:
    """Information criterion by interaction order, the best (lowest) order highlighted.

    Args:
        comparison: an :class:`~torch_ising.comparison.OrderComparison`, or the orders (K,).
        aic: the criterion values (K,), when ``comparison`` is a list of orders.
        criterion: ``"aic"`` or ``"bic"`` (read from an OrderComparison).
        ax: Axes to draw into.

    Returns:
        (fig, ax): K bars, the lowest in a different colour, x ticks the orders.
    """
    if criterion not in ("aic", "bic"):
        raise ValueError(f"criterion must be 'aic' or 'bic'; got {criterion!r}")
    if aic is None:
        if not hasattr(comparison, criterion):
            raise ValueError("pass an OrderComparison, or the orders and the criterion values (aic=...)")
        orders, values = _np(comparison.orders), _np(getattr(comparison, criterion))
    else:
        orders, values = _np(comparison), _np(aic)
    if values.ndim != 1 or orders.shape != values.shape:
        raise ValueError(
            f"orders and {criterion} must be 1-D of equal length (one data set); got {orders.shape}, {values.shape}"
        )
    fig, ax = _fig_ax(ax, (4.0, 3.0))
    best = int(np.argmin(values))
    colors = ["tab:orange" if k == best else "steelblue" for k in range(values.size)]
    pos = np.arange(values.size)
    ax.bar(pos, values, color=colors)
    ax.set_xticks(pos)
    ax.set_xticklabels([str(int(o)) for o in orders])
    ax.set_xlabel("Interaction order")
    ax.set_ylabel(criterion.upper())
    lo, hi = float(values.min()), float(values.max())
    pad = max(1.0, 0.1 * (hi - lo))
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_title(f"lowest {criterion.upper()}: order {int(orders[best])}")
    return fig, ax
