"""Plots render under Agg (set in conftest.py) and hold the expected content: bars, lines, bands and labels."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.collections import PolyCollection

from tests.common import bf_patterns
from torch_ising.intervals import credible_intervals, gaussian_intervals
from torch_ising.moments import probs
from torch_ising.plotting import (
    parameter_labels,
    pattern_labels,
    plot_aic,
    plot_couplings,
    plot_mll,
    plot_pattern_comparison,
    plot_pattern_probs,
    plot_raster,
    plot_raster_psth,
    plot_thermodynamics,
    plot_trajectories,
)
from torch_ising.thermodynamics import thermodynamics


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _ticklabels(ax) -> list[str]:
    return [t.get_text() for t in ax.get_xticklabels()]


def _bands(ax) -> list[PolyCollection]:
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def test_pattern_labels_follow_the_seed_order():
    # independent construction of the seed order: empty pattern, then subsets by size, lexicographic
    expected = ["".join(map(str, row)) for row in bf_patterns(3)]
    assert pattern_labels(3) == expected == ["000", "100", "010", "001", "110", "101", "011", "111"]
    assert parameter_labels(3, 2) == [
        "$\\theta_{0}$",
        "$\\theta_{1}$",
        "$\\theta_{2}$",
        "$\\theta_{01}$",
        "$\\theta_{02}$",
        "$\\theta_{12}$",
    ]
    assert parameter_labels(11, 2, "eta")[-1] == "$\\eta_{9,10}$"


def test_plot_pattern_probs():
    theta = torch.tensor([-1.0, -1.0, -1.0, 2.0, 0.0, 0.0])
    p = probs(theta, 3, 2)
    fig, ax = plot_pattern_probs(p)
    assert fig is ax.figure
    bars = ax.patches
    assert len(bars) == 8
    np.testing.assert_allclose([b.get_height() for b in bars], p.numpy())
    assert _ticklabels(ax) == pattern_labels(3)
    assert ax.get_xlabel() == "Pattern" and ax.get_ylabel() == "Probability"
    # into a given Axes
    fig2, ax2 = plt.subplots()
    out_fig, out_ax = plot_pattern_probs(p.numpy(), 3, ax=ax2)
    assert out_ax is ax2 and out_fig is fig2 and len(ax2.patches) == 8
    with pytest.raises(ValueError, match="2\\^N"):
        plot_pattern_probs(np.ones(6) / 6)


def test_plot_pattern_comparison():
    p_list = [probs(torch.tensor([-1.0, -1.0, c]), 2, 2) for c in (-2.0, 0.0, 2.0)]
    fig, ax = plot_pattern_comparison(p_list, ["negative", "zero", "positive"])
    assert len(ax.patches) == 3 * 4
    heights = np.array([b.get_height() for b in ax.patches]).reshape(3, 4)
    np.testing.assert_allclose(heights, torch.stack(p_list).numpy())
    assert _ticklabels(ax) == ["00", "10", "01", "11"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["negative", "zero", "positive"]
    with pytest.raises(ValueError, match="labels"):
        plot_pattern_comparison(p_list, ["a"])


def test_plot_raster():
    g = torch.Generator().manual_seed(0)
    spikes = (torch.rand(4, 30, 5, generator=g) < 0.2).to(torch.uint8)
    fig, ax = plot_raster(spikes, t=2)
    assert len(ax.collections) == 5  # one event collection per neuron
    for n, coll in enumerate(ax.collections):
        np.testing.assert_array_equal(np.sort(coll.get_positions()), np.flatnonzero(spikes[2, :, n].numpy()))
    assert ax.get_xlabel() == "Trial" and ax.get_ylabel() == "Neuron" and ax.get_title() == "bin 2"
    _, ax2 = plt.subplots()
    assert plot_raster(spikes[0], ax=ax2)[1] is ax2
    with pytest.raises(ValueError, match="t must index"):
        plot_raster(spikes, t=9)


def test_plot_trajectories_with_bands_and_truth():
    T, D = 12, 6
    g = torch.Generator().manual_seed(1)
    theta_s = torch.randn(T, D, generator=g)
    sigma_s = 0.04 * torch.eye(D).expand(T, D, D)
    ci = gaussian_intervals(theta_s, sigma_s, 0.9)
    truth = theta_s + 0.1
    fig, ax = plot_trajectories(ci, truth=truth, indices=[0, 3], N=3, order=2)
    lines = ax.get_lines()
    assert len(lines) == 4  # 2 estimates + 2 truths
    np.testing.assert_allclose(lines[0].get_ydata(), theta_s[:, 0].numpy())
    np.testing.assert_allclose(lines[1].get_ydata(), truth[:, 0].numpy())
    assert lines[1].get_linestyle() == "--"
    assert len(_bands(ax)) == 2
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["$\\theta_{0}$", "$\\theta_{0}$ (true)", "$\\theta_{01}$", "$\\theta_{01}$ (true)"]
    assert ax.get_xlabel() == "Time bin"
    # eta trajectories from sampled intervals, all indices, into a given Axes
    eta_ci = credible_intervals(theta_s, sigma_s, 3, 2, n_samples=50, seed=0, quantities=[])["eta"]
    _, ax2 = plt.subplots()
    _, out = plot_trajectories(eta_ci, symbol="eta", N=3, order=2, ax=ax2)
    assert out is ax2 and len(ax2.get_lines()) == D and len(_bands(ax2)) == D
    assert ax2.get_ylabel() == "${\\eta}$"
    # plain values without bands
    _, ax3 = plot_trajectories(theta_s.numpy())
    assert len(ax3.get_lines()) == D and len(_bands(ax3)) == 0
    with pytest.raises(ValueError, match="indices"):
        plot_trajectories(theta_s, indices=[7])


def test_plot_mll():
    mll = [-600.0, -580.0, -575.5, -575.2]
    fig, ax = plot_mll(mll)
    (line,) = ax.get_lines()
    np.testing.assert_allclose(line.get_ydata(), mll)
    np.testing.assert_allclose(line.get_xdata(), np.arange(4))
    assert ax.get_xlabel() == "EM iteration" and ax.get_ylabel() == "log marginal likelihood"
    (inset,) = ax.child_axes  # the distance to the best l, on a log scale
    (gap,) = inset.get_lines()
    np.testing.assert_allclose(gap.get_ydata(), [24.8, 4.8, 0.3], rtol=1e-12)
    np.testing.assert_allclose(gap.get_xdata(), [0, 1, 2])
    assert inset.get_yscale() == "log"
    assert not plot_mll([-600.0, -575.2])[1].child_axes  # too few points for an inset
    with pytest.raises(ValueError, match="mll_list"):
        plot_mll([])


def test_plot_thermodynamics_with_and_without_bands():
    T, D = 10, 6
    g = torch.Generator().manual_seed(2)
    theta_s = torch.randn(T, D, generator=g) * 0.5
    theta_s[:, :3] -= 1.0
    sigma_s = 0.01 * torch.eye(D).expand(T, D, D)
    ci = credible_intervals(theta_s, sigma_s, 3, 2, n_samples=100, seed=0)
    fig, axes = plot_thermodynamics(ci)
    assert len(axes) == 4
    assert [a.get_title() for a in axes] == ["Entropy (nats)", "S_ratio", "Heat capacity", "P(silence)"]
    assert [len(a.get_lines()) for a in axes] == [2, 1, 1, 1]
    assert [len(_bands(a)) for a in axes] == [2, 1, 1, 1]
    th = thermodynamics(theta_s, 3, 2)
    np.testing.assert_allclose(axes[1].get_lines()[0].get_ydata(), th.S_ratio.numpy())
    np.testing.assert_allclose(axes[3].get_lines()[0].get_ydata(), th.p_silence.numpy())
    assert [t.get_text() for t in axes[0].get_legend().get_texts()] == ["$S_1$ (independent)", "$S_2$ (fitted)"]
    # a plain record: lines only, into given Axes
    fig2, given = plt.subplots(1, 4)
    _, axes2 = plot_thermodynamics(th, ax=given)
    assert all(a is b for a, b in zip(axes2, given, strict=True))
    assert [len(_bands(a)) for a in axes2] == [0, 0, 0, 0]
    np.testing.assert_allclose(axes2[2].get_lines()[0].get_ydata(), th.heat_capacity.numpy())
    with pytest.raises(ValueError, match="4 Axes"):
        plot_thermodynamics(th, ax=given[:2])


def test_plot_aic():
    from torch_ising.comparison import OrderComparison

    aic = torch.tensor([110.0, 102.0, 104.0])
    cmp = OrderComparison(
        orders=(1, 2, 3), mll=-aic / 2, k=(0, 0, 0), aic=aic, bic=aic + 5, n_obs=10, results=(None, None, None)
    )
    fig, ax = plot_aic(cmp)
    assert len(ax.patches) == 3
    np.testing.assert_allclose([b.get_height() for b in ax.patches], aic.numpy())
    assert _ticklabels(ax) == ["1", "2", "3"]
    assert ax.get_ylabel() == "AIC" and ax.get_title() == "lowest AIC: order 2"
    colors = [b.get_facecolor() for b in ax.patches]
    assert colors[1] != colors[0] and colors[0] == colors[2]
    _, ax2 = plt.subplots()
    _, out = plot_aic([1, 2, 3], [5.0, 3.0, 1.0], ax=ax2)
    assert out is ax2 and ax2.get_title() == "lowest AIC: order 3"
    _, ax3 = plot_aic(cmp, criterion="bic")
    assert ax3.get_ylabel() == "BIC"
    with pytest.raises(ValueError, match="criterion"):
        plot_aic(cmp, criterion="waic")


# --------------------------------------------------------------------------------------------- scaling, T = 1, time


def _visible(ax) -> bool:
    """Whether an Axes shows data: a line of >= 2 points, a single point with a marker, filled patches,
    non-empty collections or an image."""
    for line in ax.get_lines():
        n = np.size(line.get_xdata())
        if n >= 2 and line.get_linestyle() not in ("None", "", " "):
            return True
        if n >= 1 and line.get_marker() not in (None, "None", "", " "):
            return True
    if any(p.get_height() != 0 for p in ax.patches if hasattr(p, "get_height")):
        return True
    if ax.images:
        return True
    for coll in ax.collections:
        if len(coll.get_paths()) or len(getattr(coll, "get_offsets", lambda: [])()):
            if not isinstance(coll, PolyCollection) or any(len(p.vertices) > 2 for p in coll.get_paths()):
                return True
    return False


def _legend_size(ax) -> int:
    legend = ax.get_legend()
    return 0 if legend is None else len(legend.get_texts())


def _one_bin_fit_like(N: int, order: int):
    D = len(parameter_labels(N, order))
    g = torch.Generator().manual_seed(4)
    theta = torch.randn(1, D, generator=g, dtype=torch.float64) * 0.5
    theta[:, :N] -= 1.5
    sigma = 0.05 * torch.eye(D, dtype=torch.float64).expand(1, D, D)
    return theta, sigma


def test_every_plot_draws_visible_artists_for_a_single_bin():
    N, order = 3, 2
    theta, sigma = _one_bin_fit_like(N, order)
    ci = gaussian_intervals(theta, sigma, 0.9)
    _, ax = plot_trajectories(ci, truth=theta, N=N, order=order)
    assert _visible(ax)
    # point-and-interval: one marker per parameter at the estimate
    (points,) = [line for line in ax.get_lines() if line.get_marker() == "o"]
    np.testing.assert_allclose(points.get_ydata(), theta[0].numpy())
    _, axes = plot_thermodynamics(credible_intervals(theta, sigma, N, order, n_samples=50, seed=0))
    assert all(_visible(a) for a in axes)
    _, axes = plot_thermodynamics(thermodynamics(theta, N, order))
    assert all(_visible(a) for a in axes)
    _, axes = plot_couplings(ci, N, order)
    assert all(_visible(a) for a in axes)
    spikes = (torch.rand(1, 40, N, generator=torch.Generator().manual_seed(5)) < 0.3).to(torch.uint8)
    _, axes = plot_raster_psth(spikes, rates=torch.full((1, theta.shape[1]), 0.3))
    assert all(_visible(a) for a in axes)
    _, ax = plot_raster(spikes, t=0)
    assert _visible(ax)
    _, ax = plot_mll([-12.0])
    assert _visible(ax)
    _, ax = plot_aic([2], [10.0])
    assert _visible(ax)
    _, ax = plot_pattern_probs(probs(theta[0], N, order))
    assert _visible(ax)


def test_fifty_neurons_draw_legends_of_at_most_twelve_entries():
    N, order, T = 50, 2, 6
    D = len(parameter_labels(N, order))
    g = torch.Generator().manual_seed(6)
    theta = torch.randn(T, D, generator=g)
    sigma = 0.01 * torch.ones(T, D)
    ci = gaussian_intervals(theta, sigma.diag_embed(), 0.9)
    _, ax = plot_trajectories(ci, truth=theta + 0.1, N=N, order=order)
    assert 0 < _legend_size(ax) <= 12
    # the drawn lines are the 12 with the largest max |theta| (an independent ranking)
    peak = theta.abs().max(dim=0).values.numpy()
    expected = set(np.argsort(-peak)[:12].tolist())
    solid = [line for line in ax.get_lines() if line.get_linestyle() == "-"]
    drawn = {int(np.flatnonzero(np.isclose(theta.numpy().T, line.get_ydata()).all(axis=1))[0]) for line in solid}
    assert drawn == expected
    assert "top 12 of 1275" in ax.get_title() and "truth" in ax.get_title()
    _, ax2 = plot_trajectories(theta, indices=list(range(40)))
    assert _legend_size(ax2) == 0 and "no legend" in ax2.get_title()
    _, axes = plot_couplings(ci, N, order)
    assert len(axes) == T and all(_legend_size(a) == 0 for a in axes)


def test_time_axes_carry_seconds_when_bin_times_are_given():
    T, N = 8, 3
    times = -0.1 + 0.02 * (np.arange(T) + 0.5)
    theta = torch.randn(T, 6, generator=torch.Generator().manual_seed(7)) * 0.3
    theta[:, :N] -= 1.0
    _, ax = plot_trajectories(theta, time=times)
    assert ax.get_xlabel() == "Time from event (s)"
    np.testing.assert_allclose(ax.get_lines()[0].get_xdata(), times)
    _, axes = plot_thermodynamics(thermodynamics(theta, N, 2), time=times)
    assert axes[-1].get_xlabel() == "Time from event (s)"
    assert all(a.get_ylabel() for a in axes)  # a y label on every panel
    spikes = (torch.rand(T, 10, N, generator=torch.Generator().manual_seed(8)) < 0.3).to(torch.uint8)
    _, axes = plot_raster_psth(spikes, time=times, unit_ids=[12, 3, 7])
    assert axes[-1].get_xlabel() == "Time from event (s)" and axes[-1].get_ylabel() == "Rate (Hz)"
    # the PSTH in Hz: fraction of trials and neurons that fired, divided by the 20 ms bin width
    psth = axes[-1].get_lines()[0].get_ydata()
    np.testing.assert_allclose(psth, spikes.numpy().mean(axis=(1, 2)) / 0.02)
    assert any("unit" in a.get_ylabel() for a in axes[:-1])
    _, axes = plot_couplings(theta, N, 2, time=times)
    assert axes[0].get_title() == f"t = {times[0]:g} s"
    _, ax = plot_trajectories(theta)
    assert ax.get_xlabel() == "Time bin"


def test_plot_couplings_shows_theta_ij_and_marks_bands_that_exclude_zero():
    N, T = 4, 3
    D = len(parameter_labels(N, 2))
    theta = torch.linspace(-1.0, 1.0, T * D).reshape(T, D)
    lower, upper = theta - 0.3, theta + 0.3
    ci = gaussian_intervals(theta, torch.zeros(T, D, D), 0.9)._replace(lower=lower, upper=upper)
    _, axes = plot_couplings(ci, N, 2, unit_ids=[10, 11, 12, 13])
    pairs = [(i, j) for i in range(N) for j in range(i + 1, N)]  # seed order of the pairwise columns
    for t, ax in enumerate(axes):
        m = ax.images[0].get_array()
        for k, (i, j) in enumerate(pairs):
            assert m[i, j] == m[j, i] == pytest.approx(float(theta[t, N + k]))
        dots = [line for line in ax.get_lines() if line.get_marker() == "."]
        excl = sum(float(lower[t, N + k]) > 0 or float(upper[t, N + k]) < 0 for k in range(len(pairs)))
        assert sum(np.size(d.get_xdata()) for d in dots) == 2 * excl  # both triangles
        assert [x.get_text() for x in ax.get_xticklabels()] == ["10", "11", "12", "13"]
    with pytest.raises(ValueError, match="order must be >= 2"):
        plot_couplings(theta[:, :N], N, 1)


def test_reliable_couplings_counted_by_hand():
    from torch_ising.intervals import reliable_couplings

    N, T = 4, 5
    D = len(parameter_labels(N, 2))
    g = torch.Generator().manual_seed(9)
    theta = torch.randn(T, D, generator=g)
    half = torch.rand(T, D, generator=g)
    ci = gaussian_intervals(theta, torch.zeros(T, D, D), 0.9)._replace(lower=theta - half, upper=theta + half)
    pairs = [(i, j) for i in range(N) for j in range(i + 1, N)]
    expected = {}
    for k, (i, j) in enumerate(pairs):
        col = N + k
        n = sum(
            1 for t in range(T) if float(theta[t, col] - half[t, col]) > 0 or float(theta[t, col] + half[t, col]) < 0
        )
        if n >= 2:
            expected[(i, j)] = n
    rows = reliable_couplings(ci, N, 2, min_bins=2, unit_ids=["a", "b", "c", "d"])
    assert {(r["i"], r["j"]): r["n_bins"] for r in rows} == expected
    assert [r["n_bins"] for r in rows] == sorted(expected.values(), reverse=True)
    assert all(r["unit_i"] == "abcd"[r["i"]] and r["column"] == N + pairs.index((r["i"], r["j"])) for r in rows)


def test_plot_aic_delta_starts_at_zero_without_offset():
    values = np.array([20610.5, 20601.0, 20604.0])
    _, ax = plot_aic([1, 2, 3], values, delta=True)
    np.testing.assert_allclose([b.get_height() for b in ax.patches], values - values.min())
    assert ax.get_ylim()[0] == 0.0 and "Delta" in ax.get_ylabel()
    ax.figure.canvas.draw()
    assert ax.yaxis.get_major_formatter().get_offset() == ""
    assert ax.get_title() == "lowest AIC: order 2"


def test_parameter_labels_with_unit_ids():
    assert parameter_labels(3, 2, unit_ids=[12, 3, 40]) == [
        "$\\theta_{12}$",
        "$\\theta_{3}$",
        "$\\theta_{40}$",
        "$\\theta_{12,3}$",
        "$\\theta_{12,40}$",
        "$\\theta_{3,40}$",
    ]
