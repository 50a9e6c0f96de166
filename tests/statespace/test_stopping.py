"""The stopping-rule records (torch_ising/statespace/stopping.py): defaults owned by the rule, a new rule plugs in."""

from __future__ import annotations

import pytest
import torch

import torch_ising as ti
from torch_ising.statespace.covariance import DENSE, DIAGONAL
from torch_ising.statespace.stopping import STOP_RULES, RuleOutcome, StopRule, stop_rule

from ..common import MAX_ITER, fit_warns


@pytest.fixture(scope="module")
def spikes():
    return ti.generate_spikes(ti.generate_thetas(3, 2, 20, seed=5), 30, seed=6)


def test_fit_takes_max_iter_and_the_mode_search_from_the_rule(spikes, device):
    rule = stop_rule("ssll")
    assert rule.max_iter == 100
    assert rule.default_map_method(DENSE) == "cg" and rule.default_map_method(DIAGONAL) == "newton"
    a = ti.fit(spikes, 2, stop="ssll", progress=False, device=device)
    b = ti.fit(spikes, 2, stop="ssll", progress=False, device=device, max_iter=100, map_method="cg")
    assert a.iterations == b.iterations
    torch.testing.assert_close(torch.as_tensor(a.theta_s), torch.as_tensor(b.theta_s), rtol=0, atol=0)


def _three_plain_em_steps(loop, params, es, converged):
    """A rule written outside the package: exactly three E-step/M-step rounds."""
    for k in range(1, 4):
        params = loop.M(es, params)
        es = loop.E(params, es.smooth.theta_s)
        loop.report(k, params, es.mll, lambda: None)
    return RuleOutcome(params, es, torch.ones_like(converged), 3)  # its rule is met after three


def test_a_new_rule_is_one_record(spikes, device, monkeypatch):
    monkeypatch.setitem(STOP_RULES, "three", StopRule("three", "three plain EM steps", _three_plain_em_steps))
    r = ti.fit(spikes, 2, stop="three", estep="filter", progress=False, device=device)
    assert r.iterations == 3 and len(r.mll_list) == 4 and r.e_steps == 4
    # plain EM by the registered rule "em", three iterations: the same hyperparameters and posterior
    with fit_warns(MAX_ITER):
        e = ti.fit(spikes, 2, stop="em", max_iter=3, progress=False, device=device)
    torch.testing.assert_close(torch.as_tensor(r.theta_s), torch.as_tensor(e.theta_s), rtol=0, atol=1e-10)
    torch.testing.assert_close(torch.as_tensor(r.Q), torch.as_tensor(e.Q), rtol=0, atol=1e-12)


def test_unknown_rule_names_the_rules(spikes):
    with pytest.raises(ValueError, match=r"stop must be one of \('converged', 'em', 'ssll', 'mll'\), got 'fast'"):
        ti.fit(spikes, 2, stop="fast", progress=False)


@pytest.mark.parametrize("stop", ["ssll", "mll"])
def test_rules_defined_through_the_filter_refuse_the_joint_e_step(spikes, stop):
    assert STOP_RULES[stop].needs_filter(False) == f"stop={stop!r}"
    with pytest.raises(ValueError, match=f"stop='{stop}' is defined through the filter's marginal likelihood"):
        ti.fit(spikes, 2, stop=stop, estep="joint", progress=False)
