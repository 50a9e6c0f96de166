"""What a fit reports: the progress bar only on a terminal, AIC/BIC as floats, the iteration count."""

from __future__ import annotations

import io
import math
import sys

import pytest
import torch

import torch_ising as ti
from tests.common import MAX_ITER, NEVER_FIRE, fit_warns


@pytest.fixture(scope="module")
def spikes() -> torch.Tensor:
    # neurons 0 and 2 never fire together in any bin, so every fit of these spikes warns of theta(0,2)
    return ti.generate_spikes(ti.generate_thetas(3, 2, 8, seed=1), 30, seed=2, N=3, order=2)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_by_default_only_on_an_interactive_terminal(spikes, monkeypatch, device):
    log = io.StringIO()  # a log file or a notebook's stream: not a terminal
    monkeypatch.setattr(sys, "stderr", log)
    with fit_warns(NEVER_FIRE):
        ti.fit(spikes, 2, max_iter=50, device=device)
    assert log.getvalue() == ""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with fit_warns(NEVER_FIRE):
        ti.fit(spikes, 2, max_iter=50, device=device)
    assert terminal.getvalue().startswith("\rEM [") and terminal.getvalue().endswith("\n")
    quiet = _Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    with fit_warns(NEVER_FIRE):
        ti.fit(spikes, 2, max_iter=50, progress=False, device=device)
    assert quiet.getvalue() == ""


def test_aic_and_bic_are_floats_for_one_data_set(spikes, device):
    with fit_warns(NEVER_FIRE):
        result = ti.fit(spikes, 2, max_iter=50, progress=False, device=device)
    k = result.D + 1  # mu (D) and the scalar q
    assert isinstance(result.aic(), float) and isinstance(result.bic(), float)
    assert result.aic() == pytest.approx(-2 * result.mll + 2 * k, rel=1e-12)
    assert result.bic() == pytest.approx(-2 * result.mll + k * math.log(result.T * result.R), rel=1e-12)
    with fit_warns(NEVER_FIRE):
        batch = ti.fit(torch.stack([spikes, spikes]), 2, max_iter=50, progress=False, device=device)
    assert isinstance(batch.aic(), torch.Tensor) and batch.aic().shape == (2,)


def test_max_iter_counts_em_iterations(spikes, device):
    with fit_warns("max_iter=5", NEVER_FIRE):
        result = ti.fit(spikes, 2, max_iter=5, tol=1e-14, progress=False, device=device)
    assert result.iterations == 5 and len(result.mll_list) == result.iterations + 1


@pytest.mark.parametrize("stop", ["converged", "em", "ssll", "mll"])
def test_every_stopping_rule_counts_iterations_alike(spikes, stop, device):
    """max_iter=3 runs three iterations under every rule; mll_list opens with the first E-step's l."""
    first = None
    if stop != "mll":
        with fit_warns(MAX_ITER, NEVER_FIRE):
            first = ti.fit(spikes, 2, max_iter=1, tol=1e-14, stop=stop, progress=False, device=device)
    with fit_warns("max_iter=3", NEVER_FIRE):
        result = ti.fit(spikes, 2, max_iter=3, tol=1e-14, stop=stop, progress=False, device=device)
    assert result.iterations == 3 and len(result.mll_list) == 4
    with fit_warns(NEVER_FIRE):
        zero = ti.fit(
            spikes, 2, mstep=False, stop=stop, progress=False, device=device
        )  # l at the starting hyperparameters
    assert result.mll_list[0] == pytest.approx(zero.mll, rel=1e-10)
    if first is not None:  # the first iteration is the same whatever max_iter is
        assert result.mll_list[:2] == pytest.approx(first.mll_list, rel=1e-10)
