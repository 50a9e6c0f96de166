"""The CLI's analysis group: analysis.surrogates=N and analysis.cv_folds=K against the library's own calls."""

from __future__ import annotations

import csv

import numpy as np
import pytest

pytest.importorskip("hydra")

import torch_ising as ti  # noqa: E402
from tests.test_experiment_cli import _compose  # noqa: E402
from torch_ising.experiment import cli, schemas  # noqa: E402

SMALL = ["data.N=3", "data.T=8", "data.R=20", "fit.max_iter=30", "seed=3"]


def test_surrogates_and_cv_match_direct_calls(tmp_path):
    cfg = _compose([*SMALL, "analysis.surrogates=3", "analysis.cv_folds=2", "output.figures=[surrogates,cv]"])
    summary = cli.run_experiment(cfg, tmp_path)
    theta = ti.generate_thetas(3, 2, 8, seed=3)
    spikes = ti.generate_spikes(theta, 20, seed=4, N=3, order=2)
    kw = dict(state_cov=0.01, sigma_o=0.1, max_iter=30)
    with pytest.warns(ti.FitWarning):
        st = ti.surrogate_test(spikes, 2, n=3, seed=3, **kw)
    rows = list(csv.DictReader((tmp_path / "surrogates.csv").open()))
    assert len(rows) == 8
    np.testing.assert_allclose([float(r["observed"]) for r in rows], st.observed.numpy(), rtol=1e-8)
    np.testing.assert_allclose([float(r["p_value"]) for r in rows], st.p_value.numpy(), rtol=1e-6)
    assert summary.surrogate_significant_bins == int((st.p_value < 0.01).sum())
    with pytest.warns(ti.FitWarning):
        cv = ti.cross_validate(spikes, orders=(1, 2, 3), folds=2, seed=3, **kw)
    rows = list(csv.DictReader((tmp_path / "cross_validation.csv").open()))
    np.testing.assert_allclose([float(r["heldout_ll_mean"]) for r in rows], cv.mean.numpy(), rtol=1e-8)
    assert summary.cv_best_order == cv.best
    for name in ("surrogates.png", "cv.png"):
        assert (tmp_path / "figures" / name).is_file()
    text = (tmp_path / "summary.txt").read_text()
    assert "3 trial shuffles of S_ratio" in text and "2-fold held-out" in text


def test_bad_analysis_options_give_one_line_errors(tmp_path):
    for kwargs, needle in [
        (dict(surrogates=-1), "analysis.surrogates must be an integer >= 0"),
        (dict(cv_folds=1), "analysis.cv_folds must be 0 (off) or >= 2"),
        (dict(surrogate_alpha=1.5), "analysis.surrogate_alpha must be in (0, 1)"),
    ]:
        with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace(")", r"\)")):
            schemas.AnalysisConfig(**kwargs)
    cfg = _compose([*SMALL, "analysis.cv_folds=50", "output.figures=[]"])
    with pytest.raises(ValueError, match="analysis.cv_folds=50 is larger than the number of trials R=20") as e:
        cli.run_experiment(cfg, tmp_path)
    assert "\n" not in str(e.value)
