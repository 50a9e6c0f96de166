"""The observation models' base class (its hooks and their defaults) and the registry of ``fit(method=...)``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

import torch_ising as ti
from tests.common import MAX_ITER, fit_warns
from torch_ising import moments
from torch_ising.approx.pseudo import PseudoLikelihood
from torch_ising.basis import sufficient_stats
from torch_ising.statespace import (
    OBSERVATION_MODELS,
    ExactIsing,
    ObservationModel,
    StateSpaceParams,
    laplace_filter,
    log_marginal,
    register_observation_model,
    unregister_observation_model,
)
from torch_ising.statespace.direct import _value_hess_differentiable
from torch_ising.statespace.joint_diagonal import supports_joint_diagonal
from torch_ising.statespace.observation import observation_builder

N, ORDER, T, R = 3, 2, 5, 20

#: every optional hook of ObservationModel and its default (the generic behaviour)
HOOK_DEFAULTS: dict[str, Any] = {
    "diagonal": False,
    "separate_precision": False,
    "ascends_mll": True,
    "R_scale": None,
    "R_t": None,
    "mode": None,
    "score_scale": None,
    "bin_posterior": None,
    "value_grad_hess_differentiable": None,
    "marginal_log_lik": None,
    "joint_terms": None,
    "precision_all": None,
    "score_scale_all": None,
}


class LogLikOnly(ObservationModel):
    """The exact Ising likelihood R [y_t . theta - psi(theta)] through ``log_lik`` alone (everything by autograd)."""

    def __init__(self, y: torch.Tensor, R: int, N: int, order: int) -> None:
        self.y, self.N, self.order = y, N, order
        self.B, self.T, self.D = y.shape
        self.R = R

    def log_lik(self, theta: torch.Tensor, t: int) -> torch.Tensor:
        return self.R * ((self.y[:, t] * theta).sum(-1) - moments.log_partition(theta, self.N, self.order))


def _problem() -> tuple[torch.Tensor, torch.Tensor, StateSpaceParams]:
    """Spikes (T, R, N), their statistics y (1, T, D) and hyperparameters for a small exact case."""
    theta = ti.generate_thetas(N, ORDER, T, seed=3)
    spikes = ti.generate_spikes(theta, R, seed=4, N=N, order=ORDER)
    y = sufficient_stats(spikes, ORDER, dtype=torch.float64)[None]
    D = y.shape[-1]
    eye = torch.eye(D, dtype=torch.float64)[None]
    params = StateSpaceParams(torch.full((1, D), -0.5, dtype=torch.float64), 0.5 * eye, 0.05 * eye, eye)
    return spikes, y, params


def test_base_class_declares_every_hook_with_its_generic_default() -> None:
    for name, default in HOOK_DEFAULTS.items():
        assert name in vars(ObservationModel), f"ObservationModel does not declare {name}"
        assert getattr(ObservationModel, name) is default, name
    _, y, _ = _problem()
    minimal = LogLikOnly(y, R, N, ORDER)
    for name, default in HOOK_DEFAULTS.items():
        assert getattr(minimal, name) is default, name
    assert not supports_joint_diagonal(minimal)


def test_subclasses_override_their_hooks() -> None:
    spikes, y, _ = _problem()
    exact = ExactIsing(y, R, N, ORDER)
    assert exact.bin_posterior is not None and exact.value_grad_hess_differentiable is not None
    assert exact.R_t is not None and exact.R_scale is None and exact.mode is None and not exact.separate_precision
    assert exact.ascends_mll  # EM ascends the exact (Laplace) l: the accelerated rule's l safeguard applies
    pl = PseudoLikelihood(spikes, ORDER, eta_method="exact")
    for name in ("mode", "score_scale", "marginal_log_lik", "joint_terms", "precision_all", "score_scale_all"):
        assert callable(getattr(pl, name)), name
    assert pl.diagonal and pl.separate_precision and pl.bin_posterior is None
    assert not pl.ascends_mll  # the pseudo scheme's EM does not ascend its approximate l (issue 13)
    assert supports_joint_diagonal(pl)


def test_log_lik_only_subclass_filters_as_exact_ising() -> None:
    """Autograd through log_lik alone (the base class's defaults) against ExactIsing's closed forms."""
    _, y, params = _problem()
    minimal, exact = LogLikOnly(y, R, N, ORDER), ExactIsing(y, R, N, ORDER)
    f_min = laplace_filter(minimal, params)
    f_exact = laplace_filter(exact, params)
    assert f_min.converged and f_exact.converged
    torch.testing.assert_close(f_min.theta_f, f_exact.theta_f, rtol=0, atol=1e-10)
    torch.testing.assert_close(f_min.sigma_f, f_exact.sigma_f, rtol=0, atol=1e-10)
    torch.testing.assert_close(log_marginal(minimal, f_min), log_marginal(exact, f_exact), rtol=0, atol=1e-10)


def test_log_lik_only_subclass_differentiable_terms_match_closed_forms() -> None:
    """The direct maximisation's autograd default against ExactIsing.value_grad_hess_differentiable."""
    _, y, _ = _problem()
    minimal, exact = LogLikOnly(y, R, N, ORDER), ExactIsing(y, R, N, ORDER)
    theta = (0.3 * torch.randn(1, y.shape[-1], generator=torch.Generator().manual_seed(0))).requires_grad_(True)
    got = _value_hess_differentiable(minimal, theta, 2)
    want = _value_hess_differentiable(exact, theta, 2)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    # both stay in the graph of theta: the gradient of log det(-hess) agrees
    d_got = torch.autograd.grad(torch.logdet(-got[2][0]), theta, retain_graph=True)[0]
    d_want = torch.autograd.grad(torch.logdet(-want[2][0]), theta)[0]
    torch.testing.assert_close(d_got, d_want, rtol=0, atol=1e-10)


# --------------------------------------------------------------------------- the registry


@pytest.fixture
def register() -> Iterator[Callable[..., None]]:
    """register_observation_model, removing what the test registered afterwards."""
    names: list[str] = []

    def _register(name: str, builder: Callable[..., ObservationModel], **kw: Any) -> None:
        register_observation_model(name, builder, **kw)
        names.append(name)

    yield _register
    for name in dict.fromkeys(names):
        if name in OBSERVATION_MODELS:
            unregister_observation_model(name)


def test_builtin_models_are_registered() -> None:
    assert {"exact", "pseudo"} <= set(OBSERVATION_MODELS)
    spikes, y, _ = _problem()
    assert isinstance(observation_builder("exact")(y, R, N, ORDER, spikes[None]), ExactIsing)
    assert isinstance(observation_builder("pseudo")(y, R, N, ORDER, spikes[None]), PseudoLikelihood)


def test_fit_builds_a_registered_model(register) -> None:
    spikes, _, _ = _problem()
    calls: list[tuple] = []

    def recording(y, R, N, order, spikes, **opts):
        calls.append((tuple(y.shape), R, N, order, tuple(spikes.shape), opts))
        return observation_builder("exact")(y, R, N, order, spikes, **opts)

    register("recording_exact", recording)
    with fit_warns(MAX_ITER):
        got = ti.fit(spikes, ORDER, method="recording_exact", max_iter=3, progress=False)
    with fit_warns(MAX_ITER):
        want = ti.fit(spikes, ORDER, max_iter=3, progress=False)
    D = got.D
    assert calls == [((1, T, D), R, N, ORDER, (1, T, R, N), {})]
    assert torch.equal(got.theta_s, want.theta_s) and torch.equal(got.sigma_s, want.sigma_s)
    assert got.mll == want.mll


def test_register_refuses_a_duplicate_name_unless_replace(register) -> None:
    exact = observation_builder("exact")
    with pytest.raises(ValueError, match="'exact' is already registered; pass replace=True"):
        register_observation_model("exact", exact)
    assert OBSERVATION_MODELS["exact"] is exact
    register("temporary", exact)
    with pytest.raises(ValueError, match="'temporary' is already registered"):
        register_observation_model("temporary", OBSERVATION_MODELS["pseudo"])
    assert OBSERVATION_MODELS["temporary"] is exact
    register("temporary", OBSERVATION_MODELS["pseudo"], replace=True)
    assert OBSERVATION_MODELS["temporary"] is OBSERVATION_MODELS["pseudo"]


def test_register_refuses_a_bad_name_or_builder() -> None:
    with pytest.raises(TypeError, match="non-empty string"):
        register_observation_model("", observation_builder("exact"))
    with pytest.raises(TypeError, match="must be callable"):
        register_observation_model("not_callable", 3)  # type: ignore[arg-type]
    assert "" not in OBSERVATION_MODELS and "not_callable" not in OBSERVATION_MODELS


def test_unknown_names_are_refused(register) -> None:
    spikes, _, _ = _problem()
    with pytest.raises(ValueError, match=r"method must be one of \[.*'exact'.*'pseudo'.*\], got 'no_such_model'"):
        ti.fit(spikes, ORDER, method="no_such_model", progress=False)
    with pytest.raises(ValueError, match="no observation model named 'no_such_model' is registered"):
        unregister_observation_model("no_such_model")
    register("short_lived", observation_builder("exact"))
    assert unregister_observation_model("short_lived") is observation_builder("exact")
    with pytest.raises(ValueError, match="got 'short_lived'"):
        observation_builder("short_lived")
