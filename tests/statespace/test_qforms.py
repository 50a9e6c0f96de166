"""The Q-form records (torch_ising/statespace/qforms.py), against autograd and the forms' definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torch_ising.statespace.qforms import Q_FORMS, parse_state_cov, q_form

D, N, n = 6, 3, 9


def _sum_E(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(1, D, 2 * D, generator=g)
    return A @ A.transpose(-1, -2)  # sum_t E_t, symmetric positive definite


def _free(form: str, p: torch.Tensor) -> torch.Tensor:
    """Q of the form from its free parameters p (log variances, or a Cholesky factor for the full form)."""
    if form == "full":
        L = torch.zeros(D, D, dtype=p.dtype)
        il = torch.tril_indices(D, D)
        L = L.index_put((il[0], il[1]), p)
        return L @ L.T
    groups = Q_FORMS[form].groups(D, N)
    d = torch.cat([p[k].exp().expand(s.stop - s.start) for k, s in enumerate(groups)])
    return torch.diag(d)


def _objective(Q: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
    """The M-step's objective in Q: -n/2 log det Q - 1/2 tr(Q^{-1} S) (MODEL.md 3.3)."""
    return -0.5 * n * torch.logdet(Q) - 0.5 * torch.trace(torch.linalg.solve(Q, S))


@pytest.mark.parametrize("form", list(Q_FORMS))
def test_m_step_maximises_the_expected_log_likelihood_within_its_form(form):
    S = _sum_E(1)[0]
    Q = Q_FORMS[form].m_step(S[None], n, N)[0]
    if form == "full":
        p0 = torch.linalg.cholesky(Q)[tuple(torch.tril_indices(D, D))]
    else:
        groups = Q_FORMS[form].groups(D, N)
        d = torch.diagonal(Q)
        for s in groups:  # the entries of a group share one variance
            assert torch.allclose(d[s], d[s][:1].expand(s.stop - s.start), rtol=0, atol=0)
        p0 = torch.stack([d[s][0].log() for s in groups])
    p = p0.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(_objective(_free(form, p), S), p)
    assert grad.abs().max() < 1e-10  # a stationary point within the form ...
    best = _objective(_free(form, p0), S)
    g = torch.Generator().manual_seed(2)
    for _ in range(20):  # ... and a maximum: every nearby Q of the form scores lower
        assert _objective(_free(form, p0 + 0.05 * torch.randn(p0.shape, generator=g)), S) < best


@pytest.mark.parametrize("form", [f for f, r in Q_FORMS.items() if r.m_step_diag is not None])
def test_diagonal_m_step_is_the_diagonal_of_the_full_one_on_a_diagonal_sum(form):
    d = torch.diagonal(_sum_E(3), dim1=-2, dim2=-1)
    full = Q_FORMS[form].m_step(torch.diag_embed(d), n, N)
    torch.testing.assert_close(Q_FORMS[form].m_step_diag(d / n, N), torch.diagonal(full, dim1=-2, dim2=-1))


@pytest.mark.parametrize("form", list(Q_FORMS))
def test_parameter_count_is_the_dimension_of_the_form(form):
    record = Q_FORMS[form]
    count = D * (D + 1) // 2 if record.groups is None else len(record.groups(D, N))
    assert record.n_params(D) == count


@pytest.mark.parametrize("form", list(Q_FORMS))
def test_config_value_parses_back_to_its_form(form):
    record = Q_FORMS[form]
    assert q_form(record.config_name) is record and q_form(record.name) is record
    value = [0.01, 0.02] if form == "two" else [0.01]
    state_cov = record.state_cov(value, N, D)
    name, Q0, learn = parse_state_cov(state_cov, D, N, 2, 10, torch.float64, torch.device("cpu"))
    assert name == form and learn and Q0.shape == (2, D, D)
    expected = np.diag([0.01] * N + [0.02] * (D - N)) if form == "two" else 0.01 * np.eye(D)
    np.testing.assert_allclose(Q0[0].numpy(), expected, rtol=0, atol=0)


def test_unknown_form_names_the_forms():
    with pytest.raises(ValueError, match="unknown Q form 'banded'.*diagonal.*two_block"):
        q_form("banded")


def test_a_new_q_form_is_one_record(device, monkeypatch):
    """A toy form, Q held at 0.01 I, added as one record: fit(q_form=...) runs it, and plain EM with it
    equals three rounds of the functional core's E-step and M-step with Q not learned."""
    import torch_ising as ti
    from torch_ising.statespace.criteria import n_hyperparameters
    from torch_ising.statespace.estep import e_step
    from torch_ising.statespace.inputs import prepare_data
    from torch_ising.statespace.mstep import m_step
    from torch_ising.statespace.observation import observation_builder
    from torch_ising.statespace.qforms import QForm
    from torch_ising.statespace.records import StateSpaceParams

    from ..common import MAX_ITER, fit_warns

    def held(S: torch.Tensor, n: int, N: int) -> torch.Tensor:
        return 0.01 * torch.eye(S.shape[-1], dtype=S.dtype, device=S.device).expand_as(S).clone()

    toy = QForm(
        "fixed", "fixed", "Q = 0.01 I", lambda D: 0, held, lambda d, N: torch.full_like(d, 0.01),
        Q_FORMS["scalar"].groups, lambda q, N, D: float(q[0]), lambda D: (),
    )  # fmt: skip
    monkeypatch.setitem(Q_FORMS, "fixed", toy)
    Nn, order, T = 3, 2, 15
    spikes = torch.as_tensor(ti.generate_spikes(ti.generate_thetas(Nn, order, T, seed=8), 25, seed=9)).to(device)
    Dd = Nn + Nn * (Nn - 1) // 2
    eye = torch.eye(Dd, dtype=torch.float64, device=device)[None]
    p0 = StateSpaceParams(
        torch.full((1, Dd), -0.5, dtype=torch.float64, device=device), 0.5 * eye, 0.02 * eye, eye.clone(), None
    )
    with fit_warns(MAX_ITER):
        r = ti.fit(spikes, order, state_cov=0.01, q_form="fixed", stop="em", max_iter=3, estep="filter",
                   init=p0, progress=False, device=device)  # fmt: skip
    assert r.q_form == "fixed"
    torch.testing.assert_close(torch.as_tensor(r.Q).cpu(), 0.01 * eye[0].cpu(), rtol=0, atol=1e-17)  # to rounding
    # the reference: the functional core, Q held after the first M-step
    data = prepare_data(spikes, order, window=1, mask=None, stationary=False, u=None, device=device,
                        dtype=torch.float64)  # fmt: skip
    obs = observation_builder("exact")(data.y, data.R, Nn, order, data.x)
    params, es = p0, e_step(obs, p0, estep="filter")
    for _ in range(3):  # each E-step's Newton search starts from the last path, as in the EM loop
        params = m_step(es.smooth, params, q_form="scalar", N=Nn, learn_Q=False)._replace(Q=0.01 * eye)
        es = e_step(obs, params, estep="filter", theta_init=es.smooth.theta_s)
    torch.testing.assert_close(torch.as_tensor(r.mu).cpu(), params.mu[0].cpu(), rtol=0, atol=1e-10)
    torch.testing.assert_close(torch.as_tensor(r.theta_s).cpu(), es.smooth.theta_s[0].cpu(), rtol=0, atol=1e-10)
    # the count of hyperparameters: mu (D) and the toy form's none
    assert n_hyperparameters(Dd, "fixed") == r.n_hyperparameters == Dd
