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
