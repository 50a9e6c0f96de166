"""The public surface: a short ``torch_ising.__all__``, the rest in the submodules the README names."""

from __future__ import annotations

import importlib
import re
import types
from pathlib import Path

import pytest
import torch

import torch_ising as ti
from tests.common import MAX_ITER, fit_warns
from torch_ising.basis import compute_D, enumerate_patterns
from torch_ising.comparison import n_hyperparameters
from torch_ising.moments import log_prob, log_probs

README = Path(__file__).resolve().parents[1] / "README.md"

#: The names that left the top level, each with the submodule that holds it (the README's table).
MOVED = [
    ("Moments", "torch_ising.moments"),
    ("log_partition", "torch_ising.moments"),
    ("log_probs", "torch_ising.moments"),
    ("log_prob", "torch_ising.moments"),
    ("probs", "torch_ising.moments"),
    ("expectation", "torch_ising.moments"),
    ("expectation_from_probs", "torch_ising.moments"),
    ("fisher", "torch_ising.moments"),
    ("entropy", "torch_ising.moments"),
    ("heat_capacity", "torch_ising.moments"),
    ("sample", "torch_ising.moments"),
    ("memory_estimate", "torch_ising.moments"),
    ("compute_D", "torch_ising.basis"),
    ("subsets", "torch_ising.basis"),
    ("enumerate_patterns", "torch_ising.basis"),
    ("rebin", "torch_ising.basis"),
    ("sufficient_stats", "torch_ising.basis"),
    ("EMState", "torch_ising.statespace"),
    ("ObservationModel", "torch_ising.statespace"),
    ("ExactIsing", "torch_ising.statespace"),
    ("laplace_filter", "torch_ising.statespace"),
    ("smoother", "torch_ising.statespace"),
    ("m_step", "torch_ising.statespace"),
    ("log_marginal", "torch_ising.statespace"),
    ("gibbs_sample", "torch_ising.synthesis"),
    ("ETA_METHODS", "torch_ising.approx"),
    ("PseudoLikelihood", "torch_ising.approx"),
    ("approx_moments", "torch_ising.approx"),
    ("OrderComparison", "torch_ising.comparison"),
    ("aic", "torch_ising.comparison"),
    ("bic", "torch_ising.comparison"),
    ("likelihood_gain", "torch_ising.comparison"),
    ("SurrogateTest", "torch_ising.surrogates"),
    ("CrossValidation", "torch_ising.crossval"),
    ("PatternDistance", "torch_ising.distance"),
    ("CredibleInterval", "torch_ising.intervals"),
    ("CredibleIntervals", "torch_ising.intervals"),
    ("gaussian_intervals", "torch_ising.intervals"),
    ("sample_theta", "torch_ising.intervals"),
    ("QuantityError", "torch_ising.thermodynamics"),
    ("Thermodynamics", "torch_ising.thermodynamics"),
]

#: Submodules reachable as attributes of the package (``ti.moments.log_partition``).
SUBMODULES = [
    "approx",
    "basis",
    "comparison",
    "crossval",
    "distance",
    "experiment",
    "intervals",
    "io",
    "moments",
    "optim",
    "plotting",
    "statespace",
    "surrogates",
    "synthesis",
]


def _readme_rows() -> dict[str, str]:
    """The README's submodule table: module path -> the text of its row."""
    rows = re.findall(r"^\| `(torch_ising\.[a-z_.]+)` \| (.*) \|$", README.read_text(encoding="utf-8"), flags=re.M)
    return dict(rows)


def test_all_is_short_and_true():
    assert len(ti.__all__) <= 30
    assert len(set(ti.__all__)) == len(ti.__all__)
    for name in ti.__all__:
        assert hasattr(ti, name), name
        assert not isinstance(getattr(ti, name), types.ModuleType), f"{name} is a submodule, not an API name"


def test_the_namespace_holds_only_all_and_submodules():
    public = {k for k, v in vars(ti).items() if not k.startswith("_") and not isinstance(v, types.ModuleType)}
    assert public == set(ti.__all__)


def test_star_import_gives_all():
    namespace: dict = {}
    exec("from torch_ising import *", namespace)
    assert {k for k in namespace if k != "__builtins__"} == set(ti.__all__)


def test_the_readme_lists_the_top_level():
    text = README.read_text(encoding="utf-8")
    assert f"`ti.__all__`, {len(ti.__all__)} names" in text
    table = text.split("| top level | names |\n| --- | --- |\n", 1)[1].split("\n\n", 1)[0]
    listed = re.findall(r"`([A-Za-z_]+)`", table)
    assert sorted(listed) == sorted(ti.__all__)


@pytest.mark.parametrize("name", SUBMODULES)
def test_submodules_are_attributes(name):
    assert getattr(ti, name) is importlib.import_module(f"torch_ising.{name}")


@pytest.mark.parametrize("name,module", MOVED)
def test_a_moved_name_lives_in_its_submodule_and_not_at_the_top(name, module):
    assert name not in ti.__all__
    assert not hasattr(ti, name), f"torch_ising.{name} should be reached as {module}.{name}"
    assert hasattr(importlib.import_module(module), name)
    rows = _readme_rows()
    assert module in rows, f"the README's submodule table has no row for {module}"
    assert f"`{name}`" in rows[module] or f"`{name}(" in rows[module], f"the README's {module} row omits {name}"


def test_the_result_reading_count_is_private():
    from torch_ising import comparison

    assert not hasattr(comparison, "count_hyperparameters")
    assert "n_hyperparameters" in comparison.__all__


def test_result_n_hyperparameters_is_the_explicit_count():
    theta = ti.generate_thetas(3, 2, 6, seed=0)
    spikes = ti.generate_spikes(theta, 10, seed=1)
    with fit_warns(MAX_ITER):
        r = ti.fit(spikes, 2, max_iter=1, progress=False)
    assert r.n_hyperparameters == n_hyperparameters(compute_D(3, 2), "scalar") == 6 + 1


@pytest.mark.parametrize("N,order", [(3, 1), (4, 2), (5, 3)])
def test_log_prob_takes_theta_first_and_matches_enumeration(N, order, device):
    g = torch.Generator().manual_seed(N * 10 + order)
    D = compute_D(N, order)
    theta = torch.randn(4, D, generator=g, dtype=torch.float64).to(device)
    x = (torch.rand(4, N, generator=g) < 0.5).to(torch.uint8).to(device)
    # the index of each pattern among the 2^N enumerated ones, found by comparing rows
    patterns = enumerate_patterns(N, device)
    hits = (x[:, None, :] == patterns[None, :, :].to(x.dtype)).all(-1)  # (4, 2^N)
    assert bool((hits.sum(-1) == 1).all())
    index = hits.to(torch.int64).argmax(-1)
    expected = log_probs(theta, N, order).gather(-1, index[:, None])[:, 0]
    torch.testing.assert_close(log_prob(theta, x, N, order), expected, rtol=0, atol=1e-12)
    # the Ising module's method passes its theta first too
    for b in range(4):
        m = ti.Ising.from_theta(theta[b], N=N, order=order)
        torch.testing.assert_close(m.log_prob(x[b]), expected[b], rtol=0, atol=1e-12)
