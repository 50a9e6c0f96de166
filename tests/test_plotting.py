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
    plot_mll,
    plot_pattern_comparison,
    plot_pattern_probs,
    plot_raster,
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
