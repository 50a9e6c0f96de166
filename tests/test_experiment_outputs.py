"""Outputs: atomic writes, results and checkpoints readable with numpy alone, figures, sweep tables."""

from __future__ import annotations

import csv
import json
import math
import os

import numpy as np
import pytest
import torch

from tests.common import NEVER_FIRE, fit_warns
from torch_ising.experiment import outputs


def _no_temp_files(directory) -> bool:
    return not [p for p in os.listdir(directory) if p.endswith(".tmp")]


def test_atomic_write_replaces_whole_files_and_cleans_up(tmp_path):
    target = tmp_path / "sub" / "f.txt"
    outputs.write_text(target, "first")
    assert target.read_text() == "first"

    def half_then_fail(fh):
        fh.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        outputs.atomic_write(target, half_then_fail)
    assert target.read_text() == "first"  # the old file survives intact
    assert _no_temp_files(target.parent)

    with pytest.raises(KeyboardInterrupt):  # also for BaseException (SIGTERM is turned into SystemExit)
        outputs.atomic_write(tmp_path / "new.txt", lambda fh: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert not (tmp_path / "new.txt").exists() and _no_temp_files(tmp_path)


def test_files_get_ordinary_permissions(tmp_path):
    path = outputs.write_text(tmp_path / "p.txt", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_results_roundtrip_with_numpy_alone(tmp_path):
    theta_s = np.random.default_rng(0).normal(size=(4, 6))
    arrays = {"theta_s": torch.from_numpy(theta_s), "mll": -12.5, "converged": True, "method": "exact", "U": None}
    summary = {"N": 3, "mll": -12.5, "aic": float("nan")}
    path = outputs.save_results(tmp_path / "results.npz", arrays, "model:\n  order: 2\n", summary)
    with np.load(path, allow_pickle=False) as z:  # numpy alone, never unpickling
        assert "U" not in z.files
        np.testing.assert_array_equal(z["theta_s"], theta_s)
        assert str(z["config_yaml"]) == "model:\n  order: 2\n"
        assert json.loads(str(z["summary_json"])) == {"N": 3, "mll": -12.5, "aic": None}
        assert z["method"].dtype.kind == "U" and bool(z["converged"]) is True
    loaded = outputs.load_results(path)
    assert loaded["mll"] == -12.5 and loaded["method"] == "exact" and loaded["summary"]["N"] == 3
    with pytest.raises(ValueError, match="object array without pickling"):
        outputs.save_npz(tmp_path / "bad.npz", {"x": [object()]})


def test_checkpoint_roundtrip(tmp_path):
    from torch_ising.statespace import EMState, StateSpaceParams

    D, T = 3, 4
    p = StateSpaceParams(
        torch.arange(D, dtype=torch.float64)[None],
        0.1 * torch.eye(D)[None],
        0.01 * torch.eye(D)[None],
        torch.eye(D)[None],
        None,
    )
    theta_s = torch.randn(1, T, D, dtype=torch.float64)
    x, g = torch.randn(1, 2 * D), torch.randn(1, 2 * D)
    dF = torch.randn(1, 2 * D, 2)
    state = EMState(
        7, p, theta_s, torch.tensor([-2.5]), torch.tensor([False]), torch.tensor([0.3]), x, g, None, None, dF, -dF
    )
    path = outputs.save_checkpoint(tmp_path / "ckpt.npz", state, [-3.0, -2.5], {"N": 2, "order": 2})
    arrays, iteration, mll_list, meta = outputs.load_checkpoint(path)
    assert iteration == 7 and mll_list == [-3.0, -2.5] and meta == {"N": 2, "order": 2}
    for name in ("mu", "Sigma", "Q", "F"):
        np.testing.assert_array_equal(arrays[name], getattr(p, name).numpy())
    for name, value in (("theta_s", theta_s), ("x", x), ("g", g), ("dF", dF), ("dG", -dF)):
        np.testing.assert_array_equal(arrays[name], value.numpy())
    assert arrays["U"] is None and arrays["f_prev"] is None and arrays["g_prev"] is None
    assert arrays["converged"].dtype == bool and arrays["mll"].tolist() == [-2.5]


def test_format_summary_lists_the_required_fields():
    text = outputs.format_summary(
        {"N": 5, "T": 50, "R": 100, "order": 2, "mll": -1.25, "aic": 34.5, "iterations": 12, "wall_time": 3.25}
    )
    for needle in ("N ", "T ", "R ", "order", "mll", "-1.250000", "AIC", "34.500000", "iterations", "12", "3.250"):
        assert needle in text


def test_figures_are_png_files(tmp_path):
    import torch_ising as ti

    spikes = ti.generate_spikes(ti.generate_thetas(3, 2, 6, seed=1), 20, seed=2, N=3, order=2)
    with fit_warns("max_iter=3", NEVER_FIRE):  # no pair of neurons fires together in any bin
        result = ti.fit(spikes, 2, max_iter=3, progress=False)
    ctx = {"result": result, "mll_list": result.mll_list, "spikes": spikes.numpy(), "theta_true": None}
    paths = outputs.save_figures(["all"], ctx, tmp_path / "figures", dpi=40)
    # the surrogate and cross-validation figures need their analyses (analysis.surrogates, analysis.cv_folds)
    assert sorted(p.stem for p in paths) == sorted(set(outputs.FIGURES) - {"surrogates", "cv"})
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _no_temp_files(tmp_path / "figures")
    with pytest.raises(ValueError, match="unknown figure"):
        outputs.save_figures(["theta", "nope"], ctx, tmp_path)


def test_sweep_table_from_run_summaries(tmp_path):
    runs = [
        {"order": 1, "N": 3, "T": 10, "R": 20, "k": 4, "mll": -100.0},
        {"order": 2, "N": 3, "T": 10, "R": 20, "k": 7, "mll": -90.0},
        {"order": 3, "N": 3, "T": 10, "R": 20, "k": 8, "mll": -89.5},
    ]
    for job, run in enumerate(runs):
        n = run["T"] * run["R"]
        run |= {"aic": -2 * run["mll"] + 2 * run["k"], "bic": -2 * run["mll"] + run["k"] * math.log(n)}
        run |= {"overrides": [f"model.order={run['order']}"], "job": str(job)}
        outputs.write_json(tmp_path / str(job) / "summary.json", run)
    (tmp_path / ".submitit").mkdir()  # launcher folders are ignored
    written = outputs.write_sweep_table(tmp_path, dpi=40)
    assert [p.name for p in written] == ["comparison.csv", "comparison.txt", "comparison_aic.png"]
    with open(tmp_path / "comparison.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["order"]) for r in rows] == [1, 2, 3]
    for row, run in zip(rows, runs, strict=True):
        for key in ("mll", "aic", "bic"):
            assert float(row[key]) == pytest.approx(run[key], rel=1e-12)
    text = (tmp_path / "comparison.txt").read_text()
    best_aic = min(runs, key=lambda r: r["aic"])["order"]
    best_bic = min(runs, key=lambda r: r["bic"])["order"]
    assert "lowest" in text.splitlines()[0]
    marked_aic = [line for line in text.splitlines() if "model.order=" in line and "AIC" in line]
    marked_bic = [line for line in text.splitlines() if "model.order=" in line and "BIC" in line]
    assert len(marked_aic) == 1 and marked_aic[0].endswith(f"model.order={best_aic}")
    assert len(marked_bic) == 1 and marked_bic[0].endswith(f"model.order={best_bic}")
    assert outputs.write_sweep_table(tmp_path / "empty") == []


def test_figures_of_fifty_neurons_keep_legends_small_and_label_units(tmp_path):
    from types import SimpleNamespace

    import matplotlib.pyplot as plt

    N, T, R = 50, 4, 6
    D = N + N * (N - 1) // 2
    g = torch.Generator().manual_seed(3)
    theta = torch.randn(T, D, generator=g, dtype=torch.float64) * 0.2
    theta[:, :N] -= 2.0
    result = SimpleNamespace(
        N=N, D=D, T=T, R=R, order=2, window=1, theta_s=theta, sigma_s=torch.full((T, D), 0.01, dtype=torch.float64),
        eta_s=torch.sigmoid(theta),
    )  # fmt: skip
    spikes = (torch.rand(T, R, N, generator=g) < 0.2).to(torch.uint8).numpy()
    times = -0.01 + 0.005 * (np.arange(T) + 0.5)
    ctx = {
        "result": result,
        "mll_list": [-1.0, -0.5],
        "spikes": spikes,
        "bin_times": times,
        "raw_bin_times": times,
        "time_unit": "s",
        "bin_width": 0.005,
        "unit_ids": np.arange(100, 100 + N),
    }
    for name in ("theta", "eta", "couplings", "raster"):
        fig = outputs.FIGURES[name](ctx)
        for ax in fig.axes:
            legend = ax.get_legend()
            assert legend is None or len(legend.get_texts()) <= 12, name
        xlabels = {ax.get_xlabel() for ax in fig.axes if ax.get_xlabel()}
        if name != "couplings":
            assert xlabels == {"Time from event (s)"}, name
        else:
            assert xlabels == {"Unit"} and fig.axes[0].get_title() == f"t = {times[0]:g} s"
        if name == "theta":
            assert "top 8 of 1225" in fig.axes[1].get_title()
            assert all(t.get_text().startswith("$\\theta_{1") for t in fig.axes[0].get_legend().get_texts())
        plt.close(fig)


def _spike_time_session(path):
    """Spike times of units 4, 9 and 17 around 6 events; one spike per bin (no counts)."""
    rng = np.random.default_rng(11)
    events = 2.0 + 3.0 * np.arange(6)
    times, units = [], []
    for u in (4, 9, 17):
        for e in events:
            bins = rng.choice(40, size=8, replace=False)
            times.append(e - 0.1 + 0.01 * bins + 0.005)
            units.append(np.full(bins.size, u))
    np.savez(path, spike_times=np.concatenate(times), spike_units=np.concatenate(units), event_times=events)


def test_bin_times_and_unit_ids_round_trip_through_results(tmp_path):
    pytest.importorskip("hydra")
    from hydra import compose, initialize_config_dir

    from torch_ising.experiment import cli, schemas

    _spike_time_session(tmp_path / "st.npz")
    overrides = [
        "data=spike_times",
        f"data.path={tmp_path / 'st.npz'}",
        "data.bin_width=0.01",
        "data.window=[-0.1,0.3]",
        "fit.max_iter=3",
        "model.window=2",
        "output.figures=[theta,raster]",
    ]
    schemas.register_configs()
    with initialize_config_dir(config_dir=str(cli.CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    summary = cli.run_experiment(cfg, tmp_path / "run")
    assert "max_iter=3" in summary.warnings[0]  # the CLI keeps the fit's FitWarning in the summary
    res = outputs.load_results(tmp_path / "run" / "results.npz")
    raw = -0.1 + 0.01 * (np.arange(40) + 0.5)  # bin centres, seconds from the event
    np.testing.assert_allclose(res["raw_bin_times"], raw)
    np.testing.assert_allclose(res["bin_times"], (raw[0::2] + raw[1::2]) / 2)  # model.window=2 pairs of bins
    np.testing.assert_array_equal(res["unit_ids"], [4, 9, 17])
    assert res["time_unit"] == "s" and summary.unit_ids == (4, 9, 17)
    assert summary.data_notes == ()  # every spike lies in a window, one per bin: nothing changed
    assert (tmp_path / "run" / "reliable_couplings.csv").is_file()
