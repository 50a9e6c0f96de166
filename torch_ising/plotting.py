"""Figures for fitted Ising models (matplotlib).

Every function returns ``(fig, ax)`` (``(fig, axes)`` for multi-panel
figures) and draws into the Axes given as ``ax=`` when there is one, so
figures compose. Vectors over patterns are in the seed order of
:func:`torch_ising.basis.enumerate_patterns` (empty pattern, then one pattern per
subset of neurons), labelled with the binary words x_0 x_1 ... x_{N-1}.

Figures scale to large populations: line plots draw at most
:data:`MAX_LINES` parameters (the top ones by a rule stated in the title) with
legends of at most :data:`MAX_LINES` entries, :func:`plot_couplings` shows all
N (N - 1) / 2 couplings as heat maps, and a single bin (T = 1) is drawn as
points with intervals. Time axes are bin indices ("Time bin") unless
``time=`` gives the bin times (then "Time from event (s)").

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
    "plot_couplings",
    "plot_raster_psth",
    "top_indices",
    "plot_surrogates",
    "plot_cv",
    "plot_distance",
    "MAX_LINES",
]

#: Most lines (and legend entries) a line plot draws by default.
MAX_LINES = 12


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


def _time_axis(T: int, time: Any, time_label: str | None) -> tuple[np.ndarray, str]:
    """x values and x label of a time axis: bin indices, or the given bin times (seconds from the event)."""
    if time is None:
        return np.arange(T), time_label or "Time bin"
    x = _np(time).astype(float).reshape(-1)
    if x.shape != (T,):
        raise ValueError(f"time must have shape (T,) = ({T},); got {_np(time).shape}")
    return x, time_label or "Time from event (s)"


def _series(
    ax: Axes, x: np.ndarray, v: np.ndarray, lo: np.ndarray | None = None, hi: np.ndarray | None = None, **kwargs: Any
) -> str:
    """Draw one series with its band; a single point gets a marker and an error bar. Returns its colour."""
    if v.shape[0] == 1:
        kwargs.setdefault("marker", "o")
    (line,) = ax.plot(x, v, **kwargs)
    color = line.get_color()
    if lo is not None and hi is not None:
        if v.shape[0] == 1:
            ax.errorbar(x, v, yerr=[v - lo, hi - v], fmt="none", ecolor=color, capsize=4)
        else:
            ax.fill_between(x, lo, hi, color=color, alpha=0.25, linewidth=0)
    return color


def top_indices(values: Any, k: int = MAX_LINES, among: Sequence[int] | None = None) -> list[int]:
    """The k columns of ``values`` (T, D) with the largest max |value| over time, in column order.

    Args:
        values: (T, D) (or (D,)) values.
        k: how many to keep.
        among: the candidate columns (default: all D).

    Returns:
        the chosen column indices, ascending.
    """
    v = np.abs(_np(values).reshape(-1, _np(values).shape[-1]))
    cand = list(range(v.shape[1])) if among is None else [int(i) for i in among]
    if len(cand) <= k:
        return cand
    peak = v[:, cand].max(axis=0)
    chosen = np.argsort(-peak, kind="stable")[:k]
    return sorted(cand[i] for i in chosen)


def pattern_labels(N: int) -> list[str]:
    """Binary labels ``x_0 x_1 ... x_{N-1}`` of the 2^N patterns in the seed order (N = 2: 00, 10, 01, 11)."""
    pats = enumerate_patterns(N)
    return ["".join(str(int(b)) for b in row) for row in pats.tolist()]


def parameter_labels(N: int, order: int, symbol: str = "theta", unit_ids: Sequence[Any] | None = None) -> list[str]:
    """Mathtext labels of the D parameters, e.g. ``$\\theta_{0}$``, ``$\\theta_{01}$`` (commas for N > 10).

    With ``unit_ids`` the subscripts are the units' ids (always comma-separated), e.g. ``$\\theta_{12,31}$``.
    """
    N, order = check_N_order(N, order)
    if unit_ids is not None:
        ids = [str(u) for u in unit_ids]
        if len(ids) != N:
            raise ValueError(f"unit_ids must have one entry per neuron ({N}); got {len(ids)}")
        return [f"$\\{symbol}_{{{','.join(ids[i] for i in s)}}}$" for s in subsets(N, order)]
    sep = "," if N > 10 else ""
    return [f"$\\{symbol}_{{{sep.join(str(i) for i in s)}}}$" for s in subsets(N, order)]


def plot_pattern_probs(
    p: Any, N: int | None = None, *, ax: Axes | None = None, **bar_kwargs: Any
) -> tuple[Figure, Axes]:
    """Bar chart of the 2^N pattern probabilities in the seed order, with binary labels.

    Args:
        p: probabilities, shape (2^N,) in the seed order (e.g. ``torch_ising.moments.probs(theta, N, order)``).
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

    For trials against time aligned to the event, see :func:`plot_raster_psth`.

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
    time_label: str | None = None,
    max_lines: int | None = MAX_LINES,
    ax: Axes | None = None,
) -> tuple[Figure, Axes]:
    """Trajectories of theta or eta over bins with credible bands, and the truth when given.

    With more than ``max_lines`` parameters and no ``indices``, only the ``max_lines``
    with the largest max |value| over time are drawn (:func:`top_indices`), and the
    title says so. The legend has at most :data:`MAX_LINES` entries: the truth gets
    one entry per parameter when that fits, else the title says "dashed: truth".
    A single bin (T = 1) is drawn as a point-and-interval plot: one point per
    parameter (x: the parameter), its band as an error bar, the truth as a cross.

    Args:
        values: (T, D) point values, or a :class:`~torch_ising.intervals.CredibleInterval`
            (then ``lower``/``upper`` come from it).
        lower: (T, D) lower band, optional.
        upper: (T, D) upper band, optional.
        truth: (T, D) true values, drawn dashed in the same colours.
        indices: which of the D parameters to draw (default: all, or the top ``max_lines``).
        labels: legend labels, one per drawn index (default: ``parameter_labels(N, order, symbol)``
            when N and order are given, else ``symbol[i]``).
        N: number of neurons (for the default labels).
        order: interaction order (for the default labels).
        symbol: ``"theta"`` or ``"eta"``; sets the y label and default labels.
        time: (T,) bin times in seconds from the alignment event (default: bin index).
        time_label: the x label (default: "Time bin", or "Time from event (s)" with ``time``).
        max_lines: most parameters drawn when ``indices`` is None (None: all).
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
    title = ""
    if indices is None:
        idx = list(range(D))
        if max_lines is not None and D > max_lines:
            idx = top_indices(v, max_lines)
            title = f"top {len(idx)} of {D} by max |{symbol}| over time"
    else:
        idx = [int(i) for i in indices]
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
    x, xlabel = _time_axis(T, time, time_label)
    fig, ax = _fig_ax(ax, (7.0, 3.5))
    ylabel = f"${{\\{symbol}}}$" if symbol in ("theta", "eta") else symbol
    if T == 1:
        pos = np.arange(len(idx))
        yerr = None if lo is None else [v[0, idx] - lo[0, idx], hi[0, idx] - v[0, idx]]
        ax.errorbar(pos, v[0, idx], yerr=yerr, fmt="o", color="tab:blue", capsize=4, label="estimate")
        if tr is not None:
            ax.plot(pos, tr[0, idx], "x", color="black", markersize=8, label="truth")
        ax.axhline(0.0, color="grey", linewidth=0.5)
        ax.set_xticks(pos)
        ax.set_xticklabels(labels, rotation=90 if len(idx) > 8 else 0)
        ax.set_xlabel("Parameter" + (f" ({xlabel.lower()} {x[0]:g})" if time is not None else ""))
        ax.set_ylabel(ylabel)
        ax.legend(fontsize="small")
        if title:
            ax.set_title(title)
        return fig, ax
    truth_entries = tr is not None and 2 * len(idx) <= MAX_LINES
    for i, lab in zip(idx, labels, strict=True):
        color = _series(ax, x, v[:, i], None if lo is None else lo[:, i], None if hi is None else hi[:, i], label=lab)
        if tr is not None:
            ax.plot(x, tr[:, i], linestyle="--", color=color, label=f"{lab} (true)" if truth_entries else None)
    if tr is not None and not truth_entries:
        title = f"{title}; dashed: truth" if title else "dashed: truth"
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if len(idx) <= MAX_LINES:
        ax.legend(fontsize="small", ncol=max(1, len(idx) // 6))
    else:
        title = f"{title}; {len(idx)} lines, no legend" if title else f"{len(idx)} lines, no legend"
    if title:
        ax.set_title(title, fontsize="medium")
    return fig, ax


def plot_mll(mll_list: Any, *, ax: Axes | None = None) -> tuple[Figure, Axes]:
    """Log marginal likelihood l per EM iteration (MODEL.md 3.4).

    Args:
        mll_list: the record of l per EM iteration (``StateSpaceResult.mll_list``), shape (n,).
        ax: Axes to draw into.

    The first iterations usually gain far more than the later ones, which then look flat; an
    inset shows max_k l_k - l_k on a log scale, where the convergence of the later
    iterations is visible (drawn when at least three values are below the largest).

    Returns:
        (fig, ax): one line with n points in ``ax`` (the inset is a child of ``ax``).
    """
    m = _np(mll_list).astype(float)
    if m.ndim != 1 or m.size == 0:
        raise ValueError(f"mll_list must be a non-empty 1-D sequence; got shape {m.shape}")
    fig, ax = _fig_ax(ax, (5.0, 3.0))
    it = np.arange(m.size)
    ax.plot(it, m, marker="." if m.size <= 200 else None)
    ax.set_xlabel("EM iteration")
    ax.set_ylabel("log marginal likelihood")
    gap = m.max() - m
    keep = gap > 0
    if keep.sum() >= 3:
        inset = ax.inset_axes((0.45, 0.12, 0.5, 0.45))
        inset.semilogy(it[keep], gap[keep], marker="." if m.size <= 200 else None, color="C1")
        inset.set_title("$\\max\\, l - l$", fontsize="small")
        inset.tick_params(labelsize="x-small")
    return fig, ax


#: Panels of :func:`plot_thermodynamics`: (title, quantities drawn in it).
_THERMO_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Entropy (nats)", ("S1", "S2")),
    ("S_ratio", ("S_ratio",)),
    ("Heat capacity", ("heat_capacity",)),
    ("P(silence)", ("p_silence",)),
)
_THERMO_YLABELS = {
    "Entropy (nats)": "entropy (nats)",
    "S_ratio": "$(S_1 - S_2) / S_1$",
    "Heat capacity": "$C$",
    "P(silence)": "$p(x = 0)$",
}
_THERMO_LABELS = {
    "S1": "$S_1$ (independent)",
    "S2": "$S_2$ (fitted)",
    "S_ratio": "$S_{ratio}$",
    "heat_capacity": "$C$",
    "p_silence": "$p(x=0)$",
}


def plot_thermodynamics(
    record: Any,
    *,
    truth: Any = None,
    time: Any = None,
    time_label: str | None = None,
    ax: Sequence[Axes] | None = None,
) -> tuple[Figure, np.ndarray]:
    """Traces of entropy (S1, S2), S_ratio, heat capacity and silence probability, with credible bands.

    Args:
        record: a :class:`~torch_ising.thermodynamics.Thermodynamics` record (no bands)
            or :class:`~torch_ising.intervals.CredibleIntervals` holding S1, S2, S_ratio,
            heat_capacity and p_silence (MAP lines with bands). Each quantity of shape (T,).
        truth: a Thermodynamics record of the true theta, drawn dashed (optional).
        time: (T,) bin times in seconds from the alignment event (default: bin index).
        time_label: the x label (default: "Time bin", or "Time from event (s)" with ``time``).
        ax: a sequence of 4 Axes to draw into (default: a new 4-panel figure).

    Returns:
        (fig, axes): 4 panels, each with a y label; entropy has two lines, the
        others one each (plus one dashed line per quantity for the truth). A
        single bin (T = 1) is drawn as points with error bars.
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
    x, xlabel = _time_axis(T[0], time, time_label)
    true_series = {}
    if truth is not None:
        true_series = {q: _np(getattr(truth, q)).reshape(-1) for q in needed}
        if any(a.shape != T for a in true_series.values()):
            raise ValueError(f"truth must hold quantities of shape {T}; got S1 of shape {true_series['S1'].shape}")
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
        for j, q in enumerate(qs):
            val, lo, hi = series[q]
            # one bin: the panel's quantities side by side, so that S1 and S2 do not hide each other
            xq = x + 0.15 * (j - (len(qs) - 1) / 2) if T[0] == 1 else x
            color = _series(a, xq, val, lo, hi, label=_THERMO_LABELS[q])
            if q in true_series:
                a.plot(xq, true_series[q], linestyle="--", color=color, marker="x" if T[0] == 1 else None)
        a.set_title(title)
        a.set_ylabel(_THERMO_YLABELS[title])
        if not created or k >= 2:  # the top row of the 2 x 2 grid shares the bottom row's time axis
            a.set_xlabel(xlabel)
        if len(qs) > 1:
            a.legend(fontsize="small")
        if T[0] == 1:  # one bin: a point with its interval, centred
            a.set_xticks([x[0]])
            a.set_xlim(x[0] - 1.0, x[0] + 1.0)
    if truth is not None and created:
        fig.suptitle("crosses: truth" if T[0] == 1 else "dashed: truth", fontsize="small")
    return fig, axes


def plot_aic(
    comparison: Any,
    aic: Any = None,
    *,
    criterion: str = "aic",
    delta: bool = False,
    ax: Axes | None = None,
) -> tuple[Figure, Axes]:
    """Information criterion by interaction order, the best (lowest) order highlighted.

    Args:
        comparison: an :class:`~torch_ising.comparison.OrderComparison`, or the orders (K,).
        aic: the criterion values (K,), when ``comparison`` is a list of orders.
        criterion: ``"aic"`` or ``"bic"`` (read from an OrderComparison).
        delta: draw the difference to the lowest value (bars from 0; the lowest has height 0
            and is marked), instead of the values themselves.
        ax: Axes to draw into.

    Returns:
        (fig, ax): K bars, the lowest in a different colour, x ticks the orders; the
        y axis is never offset.
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
    values = values.astype(float)
    fig, ax = _fig_ax(ax, (4.0, 3.0))
    best = int(np.argmin(values))
    colors = ["tab:orange" if k == best else "steelblue" for k in range(values.size)]
    pos = np.arange(values.size)
    name = criterion.upper()
    if delta:
        heights = values - values[best]
        ax.bar(pos, heights, color=colors)
        ax.plot([pos[best]], [0.0], marker="v", color="tab:orange", markersize=8, clip_on=False)
        top = float(heights.max())
        ax.set_ylim(0.0, top * 1.1 if top > 0 else 1.0)
        ax.set_ylabel(f"$\\Delta${name} (vs lowest)")
    else:
        ax.bar(pos, values, color=colors)
        lo, hi = float(values.min()), float(values.max())
        pad = max(1.0, 0.1 * (hi - lo))
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_ylabel(name)
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    ax.set_xticks(pos)
    ax.set_xticklabels([str(int(o)) for o in orders])
    ax.set_xlabel("Interaction order")
    ax.set_title(f"lowest {name}: order {int(orders[best])}")
    return fig, ax


def _pairs(N: int, order: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Columns of the pairwise parameters theta_ij among the D, and their (i, j)."""
    subs = subsets(N, order)
    cols = [k for k, s in enumerate(subs) if len(s) == 2]
    return np.array(cols, dtype=int), np.array([subs[k][0] for k in cols]), np.array([subs[k][1] for k in cols])


def plot_couplings(
    values: Any,
    N: int,
    order: int = 2,
    *,
    lower: Any = None,
    upper: Any = None,
    bins: Sequence[int] | None = None,
    max_panels: int = 6,
    time: Any = None,
    unit_ids: Sequence[Any] | None = None,
    ax: Sequence[Axes] | Axes | None = None,
) -> tuple[Figure, np.ndarray]:
    """Heat maps of the couplings theta_ij (i, j neurons) at chosen bins, a small multiple over time.

    Cell (i, j) of panel t is theta_ij at bin t (symmetric; the diagonal is blank).
    A dot marks the couplings whose credible band [lower, upper] excludes 0. All
    panels share one diverging colour scale, centred at 0, with a colour bar.

    Args:
        values: (T, D) (or (D,)) values, or a :class:`~torch_ising.intervals.CredibleInterval`.
        N: number of neurons.
        order: interaction order of ``values`` (>= 2).
        lower: (T, D) lower band (optional; with ``upper``).
        upper: (T, D) upper band.
        bins: the bins to show (default: all when T <= ``max_panels``, else ``max_panels``
            evenly spaced bins from the first to the last).
        max_panels: most panels for the default ``bins``.
        time: (T,) bin times in seconds from the event, used in the panel titles.
        unit_ids: the unit id of each neuron, used as tick labels (default 0..N-1).
        ax: Axes to draw into, one per bin (default: a new figure).

    Returns:
        (fig, axes): one image per bin (``axes[k].images[0]`` holds the (N, N) matrix).
    """
    import matplotlib.pyplot as plt

    if hasattr(values, "lower") and hasattr(values, "map"):
        lower = values.lower if lower is None else lower
        upper = values.upper if upper is None else upper
        values = values.map
    N, order = check_N_order(N, order)
    if order < 2:
        raise ValueError(f"order must be >= 2 for a coupling matrix; got order={order}")
    v = _np(values)
    v = v[None] if v.ndim == 1 else v
    T, D = v.shape
    cols, ii, jj = _pairs(N, order)
    if D != len(subsets(N, order)):
        raise ValueError(f"values have D={D} columns but N={N}, order={order} gives D={len(subsets(N, order))}")
    if (lower is None) != (upper is None):
        raise ValueError("lower and upper must be given together")
    excl = None
    if lower is not None:
        lo, hi = _np(lower).reshape(T, D), _np(upper).reshape(T, D)
        excl = (lo > 0) | (hi < 0)
    if bins is None:
        bins = list(range(T)) if T <= max_panels else sorted(set(np.linspace(0, T - 1, max_panels).round().astype(int)))
    bins = [int(b) for b in bins]
    if not bins or any(not 0 <= b < T for b in bins):
        raise ValueError(f"bins must index bins of values (T={T}); got {bins}")
    x, _ = _time_axis(T, time, None)
    labels = [str(u) for u in (range(N) if unit_ids is None else unit_ids)]
    if len(labels) != N:
        raise ValueError(f"unit_ids must have one entry per neuron ({N}); got {len(labels)}")
    if ax is None:
        ncol = min(len(bins), 3)
        nrow = -(-len(bins) // ncol)
        fig, axes = plt.subplots(
            nrow, ncol, figsize=(3.2 * ncol + 0.8, 3.0 * nrow), layout="constrained", squeeze=False
        )
        axes = axes.reshape(-1)
        for a in axes[len(bins) :]:
            a.set_visible(False)
        axes = axes[: len(bins)]
    else:
        axes = np.asarray(ax, dtype=object).reshape(-1)
        if axes.size != len(bins):
            raise ValueError(f"ax must hold one Axes per bin ({len(bins)}); got {axes.size}")
        fig = axes[0].figure
    vmax = float(np.nanmax(np.abs(v[bins][:, cols]))) if cols.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    step = max(1, N // 10)
    ticks = np.arange(0, N, step)
    image = None
    for a, b in zip(axes, bins, strict=True):
        m = np.full((N, N), np.nan)
        m[ii, jj] = m[jj, ii] = v[b, cols]
        image = a.imshow(m, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
        if excl is not None:
            sel = excl[b, cols]
            a.plot(
                np.concatenate([jj[sel], ii[sel]]),
                np.concatenate([ii[sel], jj[sel]]),
                "k.",
                markersize=max(1.0, 6.0 - N / 20),
                linestyle="none",
            )
        a.set_xticks(ticks)
        a.set_yticks(ticks)
        a.set_xticklabels([labels[t] for t in ticks], rotation=90 if N > 10 else 0, fontsize="small")
        a.set_yticklabels([labels[t] for t in ticks], fontsize="small")
        a.set_xlabel("Neuron" if unit_ids is None else "Unit")
        a.set_ylabel("Neuron" if unit_ids is None else "Unit")
        a.set_title(f"bin {b}" if time is None else f"t = {x[b]:g} s", fontsize="medium")
    fig.colorbar(image, ax=list(axes), shrink=0.8, label="$\\theta_{ij}$")
    if excl is not None:
        fig.suptitle("couplings $\\theta_{ij}$; dots: credible band excludes 0", fontsize="medium")
    return fig, axes


def plot_raster_psth(
    spikes: Any,
    *,
    rates: Any = None,
    neurons: Sequence[int] | None = None,
    max_neurons: int = 4,
    time: Any = None,
    time_label: str | None = None,
    bin_width: float | None = None,
    unit_ids: Sequence[Any] | None = None,
) -> tuple[Figure, np.ndarray]:
    """Trials against time for a few neurons, and the population PSTH with the fit's rates.

    One raster panel per chosen neuron (a black cell at (bin t, trial r) when it fired
    in that bin of trial r), then the population PSTH: the fraction of trials and
    neurons that fired in each bin, with the fit's mean first-order eta (the model's
    spike probability per bin, averaged over neurons) overlaid. With ``bin_width``
    the PSTH is in Hz (probability / bin width). A vertical line marks the event
    (time 0) when the bin times include it.

    Args:
        spikes: binary spikes (T, R, N).
        rates: (T, >= N) the fit's eta_s (its first N columns are used), optional.
        neurons: the neurons to show (default: the ``max_neurons`` that fire most).
        max_neurons: most raster panels for the default ``neurons``.
        time: (T,) bin centres in seconds from the alignment event (default: bin index).
        time_label: the x label (default: "Time bin", or "Time from event (s)" with ``time``).
        bin_width: bin width in seconds (default: the spacing of ``time``, when given).
        unit_ids: the unit id of each neuron, used in the panel labels.

    Returns:
        (fig, axes): the raster panels, then the PSTH panel.
    """
    import matplotlib.pyplot as plt

    x_sp = _np(spikes)
    if x_sp.ndim != 3:
        raise ValueError(f"spikes must have shape (T, R, N); got shape {x_sp.shape}")
    T, R, N = x_sp.shape
    x, xlabel = _time_axis(T, time, time_label)
    if bin_width is None and time is not None and T > 1:
        bin_width = float(np.median(np.diff(x)))
    if neurons is None:
        counts = x_sp.sum(axis=(0, 1))
        neurons = sorted(np.argsort(-counts, kind="stable")[: min(max_neurons, N)].tolist())
    neurons = [int(n) for n in neurons]
    if any(not 0 <= n < N for n in neurons):
        raise ValueError(f"neurons must lie in [0, {N}); got {neurons}")
    ids = list(range(N)) if unit_ids is None else list(unit_ids)
    if len(ids) != N:
        raise ValueError(f"unit_ids must have one entry per neuron ({N}); got {len(ids)}")
    rate_np = None
    if rates is not None:
        rate_np = _np(rates)
        if rate_np.ndim != 2 or rate_np.shape[0] != T or rate_np.shape[1] < N:
            raise ValueError(f"rates must have shape (T, >= N) = ({T}, >= {N}); got {rate_np.shape}")
    scale = 1.0 / bin_width if bin_width else 1.0
    ylabel = "Rate (Hz)" if bin_width else "P(spike) per bin"
    n_rows = len(neurons) + 1
    fig, axes = plt.subplots(
        n_rows,
        1,
        figsize=(7.0, 1.4 * len(neurons) + 2.4),
        sharex=True,
        layout="constrained",
        gridspec_kw={"height_ratios": [1.0] * len(neurons) + [1.6]},
    )
    axes = np.atleast_1d(axes)
    width = bin_width if bin_width else (float(np.median(np.diff(x))) if T > 1 else 1.0)
    edges = np.concatenate([x - width / 2, [x[-1] + width / 2]])
    for a, n in zip(axes[:-1], neurons, strict=True):
        # one black cell per (bin, trial) in which the neuron fired
        a.pcolormesh(edges, np.arange(R + 1) - 0.5, x_sp[:, :, n].T, cmap="Greys", vmin=0, vmax=1, shading="flat")
        a.set_ylim(-0.5, R - 0.5)
        a.set_ylabel(f"{'unit' if unit_ids is not None else 'neuron'} {ids[n]}\ntrial", fontsize="small")
    pa = axes[-1]
    psth = x_sp.mean(axis=(1, 2)) * scale
    pa.plot(
        x,
        psth,
        color="black",
        drawstyle="steps-mid" if T > 1 else "default",
        marker="o" if T == 1 else None,
        markersize=11,
        fillstyle="none",
        label="data (all neurons)",
    )
    if rate_np is not None:
        model = rate_np[:, :N].mean(axis=1) * scale
        pa.plot(x, model, color="tab:red", marker="o" if T == 1 else None, label="fit: mean $\\eta_i$")
    pa.set_ylabel(ylabel)
    pa.set_xlabel(xlabel)
    pa.legend(fontsize="small")
    pa.set_title("population PSTH", fontsize="medium")
    pa.set_xlim(edges[0], edges[-1])
    pa.set_ylim(bottom=0.0, top=max(pa.get_ylim()[1], 1e-12) * (1.3 if T == 1 else 1.0))
    pa.ticklabel_format(axis="y", useOffset=False)
    if T == 1:
        pa.set_xticks([x[0]])
    if time is not None and x.min() <= 0.0 <= x.max():
        for a in axes:
            a.axvline(0.0, color="tab:blue", linewidth=0.8, linestyle=":")
    axes[0].set_title(
        f"{len(neurons)} of {N} {'units' if unit_ids is not None else 'neurons'} (most spikes), {R} trials",
        fontsize="medium",
    )
    return fig, axes


def plot_surrogates(
    test: Any,
    *,
    level: float = 0.95,
    alpha: float = 0.01,
    time: Any = None,
    time_label: str | None = None,
    label: str = "statistic",
    ax: Axes | None = None,
) -> tuple[Figure, Axes]:
    """The observed trace of a surrogate test inside its surrogate band, bins with p < ``alpha`` marked.

    Args:
        test: a :class:`~torch_ising.surrogates.SurrogateTest` with a per-bin statistic (T,).
        level: the level of the surrogate band (equal-tailed quantiles of the surrogate distribution).
        alpha: bins with p < alpha get a marker.
        time: bin times (T,) for the x axis (default: bin indices).
        time_label: x label (default "Time bin", or "Time from event (s)" with ``time``).
        label: the statistic's name on the y axis.
        ax: Axes to draw into.

    Returns:
        (fig, ax): the observed line, the surrogate band (shaded) and its median (dashed), markers.
    """
    obs = _np(test.observed).astype(float)
    if obs.ndim != 1:
        raise ValueError(f"test.observed must be one trace (T,) to plot; got shape {obs.shape}")
    lo, hi = (_np(v).astype(float) for v in test.band(level))
    med = np.median(_np(test.surrogates).astype(float), axis=0)
    p = _np(test.p_value).astype(float)
    x, xlabel = _time_axis(obs.shape[0], time, time_label)
    fig, ax = _fig_ax(ax, (6.0, 3.2))
    ax.fill_between(x, lo, hi, color="0.6", alpha=0.4, linewidth=0, label=f"surrogates {100 * level:g}% band")
    ax.plot(x, med, color="0.4", linestyle="--", linewidth=1, label="surrogate median")
    ax.plot(x, obs, color="tab:red", label="data")
    sig = p < alpha
    if sig.any():
        ax.plot(x[sig], obs[sig], linestyle="none", marker="o", markersize=3, color="k", label=f"p < {alpha:g}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(label)
    ax.set_title(f"{test.n} trial-shuffle surrogates; p < {alpha:g} in {int(sig.sum())}/{sig.size} bins")
    ax.legend(fontsize="small")
    return fig, ax


def plot_cv(cv: Any, *, ax: Axes | None = None) -> tuple[Figure, Axes]:
    """Held-out log-likelihood by interaction order (mean over folds +- one standard error), the best marked.

    Args:
        cv: a :class:`~torch_ising.crossval.CrossValidation` (one data set: mean of shape (K,)).
        ax: Axes to draw into.

    Returns:
        (fig, ax): one point with an error bar per order, the highest in a different colour.
    """
    mean, se = _np(cv.mean).astype(float), _np(cv.se).astype(float)
    orders = np.asarray(cv.orders)
    if mean.ndim != 1:
        raise ValueError(f"cv must hold one data set (mean of shape (K,)); got {mean.shape}")
    fig, ax = _fig_ax(ax, (4.0, 3.0))
    best = int(np.argmax(mean))
    ax.errorbar(orders, mean, yerr=se, marker="o", color="steelblue", capsize=4)
    ax.plot([orders[best]], [mean[best]], marker="o", markersize=9, color="tab:orange", linestyle="none")
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    ax.set_xticks(orders)
    ax.set_xlabel("Interaction order")
    ax.set_ylabel(f"held-out log-likelihood per fold ({cv.method})")
    ax.set_title(f"{cv.folds}-fold CV: best order {int(orders[best])}")
    return fig, ax


def plot_distance(
    distance: Any,
    *,
    truth: Any = None,
    time: Any = None,
    time_label: str | None = None,
    ax: Axes | None = None,
) -> tuple[Figure, Axes]:
    """A per-bin distance between two fits with its credible band and the null band's upper bound.

    Args:
        distance: a :class:`~torch_ising.distance.PatternDistance`.
        truth: the distance between the true thetas (T,), drawn dashed.
        time: bin times (T,) (default: bin indices).
        time_label: x label.
        ax: Axes to draw into.

    Returns:
        (fig, ax): the distance, its band, the null band's upper bound (dotted) and markers where
        ``differs`` (the distance lies above the null band).
    """
    v = _np(distance.value).astype(float)
    if v.ndim != 1:
        raise ValueError(f"distance.value must be one trace (T,) to plot; got shape {v.shape}")
    x, xlabel = _time_axis(v.shape[0], time, time_label)
    fig, ax = _fig_ax(ax, (6.0, 3.2))
    lo, hi = _np(distance.lower).astype(float), _np(distance.upper).astype(float)
    _series(ax, x, v, lo, hi, color="tab:blue", label=f"{distance.kind} ({100 * distance.level:g}% band)")
    ax.plot(x, _np(distance.null_upper).astype(float), color="0.4", linestyle=":", label="null band (upper)")
    if truth is not None:
        ax.plot(x, _np(truth).astype(float).reshape(-1), color="k", linestyle="--", linewidth=1, label="truth")
    d = _np(distance.differs).astype(bool)
    if d.any():
        ax.plot(x[d], v[d], linestyle="none", marker="o", markersize=3, color="tab:red", label="above the null band")
    names = {"kl": "KL divergence", "js": "Jensen-Shannon divergence", "bhattacharyya": "Bhattacharyya distance"}
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{names.get(distance.kind, distance.kind)} (nats)")
    ax.set_title(f"conditions differ in {int(d.sum())}/{d.size} bins")
    ax.legend(fontsize="small")
    return fig, ax
