"""The covariance structures (torch_ising/statespace/covariance.py) against torch.linalg on explicit matrices.

Every operation of :class:`Dense` is checked on random symmetric positive-definite matrices, and every
operation of :class:`Diagonal` on the dense matrix diag(d) it stands for; then the structure is
followed through the filter, the smoother and fits, and the core's sources are checked for
structure decisions taken from a tensor's rank.
"""

from __future__ import annotations

import copy
import pickle
import re
from pathlib import Path

import pytest
import torch

import torch_ising as ti
from torch_ising.approx.pseudo import PseudoLikelihood
from torch_ising.basis import sufficient_stats
from torch_ising.statespace import ExactIsing, StateSpaceParams, e_step, laplace_filter, smoother
from torch_ising.statespace.covariance import DENSE, DIAGONAL, Covariance, Dense, Diagonal, covariance_of

B, D = 3, 4
STATESPACE = Path(__file__).resolve().parents[2] / "torch_ising" / "statespace"


def _spd(g: torch.Generator, device: torch.device) -> torch.Tensor:
    A = torch.randn(B, D, D, generator=g, dtype=torch.float64)
    return (A @ A.transpose(-1, -2) + D * torch.eye(D, dtype=torch.float64)).to(device)


def _positive(g: torch.Generator, device: torch.device) -> torch.Tensor:
    return (0.5 + torch.rand(B, D, generator=g, dtype=torch.float64)).to(device)


def _vec(g: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randn(B, D, generator=g, dtype=torch.float64).to(device)


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(15)


def _cases(gen: torch.Generator, device: torch.device):
    """(structure, its layout of W, the dense matrix it stands for) for both structures."""
    W = _spd(gen, device)
    d = _positive(gen, device)
    return [(DENSE, W, W), (DIAGONAL, d, torch.diag_embed(d))]


def _dense(cov: Covariance, M: torch.Tensor) -> torch.Tensor:
    """The explicit matrix of M in the layout of ``cov``."""
    return torch.diag_embed(M) if cov is DIAGONAL else M


def test_the_instances_are_stateless_singletons():
    assert isinstance(DENSE, Dense) and isinstance(DIAGONAL, Diagonal)
    assert not DENSE.diagonal and DIAGONAL.diagonal
    assert (DENSE.name, DIAGONAL.name) == ("dense", "diagonal")
    assert DENSE.__dict__ == {} and DIAGONAL.__dict__ == {}
    for cov in (DENSE, DIAGONAL):
        assert copy.deepcopy(cov) is cov and pickle.loads(pickle.dumps(cov)) is cov
    with pytest.raises(TypeError):
        Covariance()


def test_inverse_against_linalg_inv(gen, device):
    for cov, W, M in _cases(gen, device):
        got = _dense(cov, cov.inverse(W))
        torch.testing.assert_close(got, torch.linalg.inv(M), rtol=1e-12, atol=1e-13)
        if cov is DENSE:
            assert torch.equal(got, got.transpose(-1, -2))


def test_logdet_against_slogdet(gen, device):
    for cov, W, M in _cases(gen, device):
        sign, logabs = torch.linalg.slogdet(M)
        assert bool((sign > 0).all())
        torch.testing.assert_close(cov.logdet(W), logabs, rtol=1e-12, atol=1e-12)


def test_solve_and_quadratic_form_against_linalg_solve(gen, device):
    for cov, W, M in _cases(gen, device):
        v = _vec(gen, device)
        want = torch.linalg.solve(M, v.unsqueeze(-1)).squeeze(-1)
        torch.testing.assert_close(cov.solve(W, v), want, rtol=1e-12, atol=1e-13)
        quad, logdet = cov.quad_logdet(W, v)
        torch.testing.assert_close(quad, (v * want).sum(-1), rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(logdet, torch.linalg.slogdet(M)[1], rtol=1e-12, atol=1e-12)


def test_predict_against_F_P_Ft_plus_Q(gen, device):
    # dense: a general F, SPD P and Q; diagonal: diagonal F, P, Q as explicit diagonal matrices
    F_dense = torch.randn(B, D, D, generator=gen, dtype=torch.float64).to(device)
    P, Q = _spd(gen, device), _spd(gen, device)
    f, p, q = _vec(gen, device), _positive(gen, device), _positive(gen, device)
    for cov, F, W, Qc in ((DENSE, F_dense, P, Q), (DIAGONAL, f, p, q)):
        theta = _vec(gen, device)
        Fm, Wm, Qm = _dense(cov, F), _dense(cov, W), _dense(cov, Qc)
        mean, Wp = cov.predict(theta, W, F, Qc)
        torch.testing.assert_close(mean, (Fm @ theta.unsqueeze(-1)).squeeze(-1), rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(_dense(cov, Wp), Fm @ Wm @ Fm.transpose(-1, -2) + Qm, rtol=1e-13, atol=1e-12)
        if cov is DENSE:
            assert torch.equal(Wp, Wp.transpose(-1, -2))


def test_products_and_the_smoother_gain_against_explicit_matrices(gen, device):
    A_dense = torch.randn(B, D, D, generator=gen, dtype=torch.float64).to(device)
    for cov, W, M in _cases(gen, device):
        A = A_dense if cov is DENSE else _vec(gen, device)
        Am = _dense(cov, A)
        v = _vec(gen, device)
        torch.testing.assert_close(cov.matvec(A, v), (Am @ v.unsqueeze(-1)).squeeze(-1), rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(_dense(cov, cov.matmul_t(W, A)), M @ Am.transpose(-1, -2), rtol=1e-13, atol=1e-13)
        add = W
        torch.testing.assert_close(
            _dense(cov, cov.propagate(A, W, add)), Am @ M @ Am.transpose(-1, -2) + M, rtol=1e-13, atol=1e-12
        )
        # A = W_f F^T W_p^{-1}
        W_p = W + (_spd(gen, device) if cov is DENSE else _positive(gen, device))
        gain = _dense(cov, cov.smoother_gain(W, A, W_p))
        want = M @ Am.transpose(-1, -2) @ torch.linalg.inv(_dense(cov, W_p))
        torch.testing.assert_close(gain, want, rtol=1e-11, atol=1e-12)


def test_diag_and_from_diag(gen, device):
    for cov, W, M in _cases(gen, device):
        torch.testing.assert_close(cov.diag(W), torch.diagonal(M, dim1=-2, dim2=-1), rtol=0, atol=0)
        d = _positive(gen, device)
        torch.testing.assert_close(_dense(cov, cov.from_diag(d)), torch.diag_embed(d), rtol=0, atol=0)
        assert torch.equal(cov.diag(cov.from_diag(d)), d)


def test_the_structure_is_chosen_from_the_observation_model_and_travels_in_the_records(device):
    N, O, T, R = 3, 2, 6, 40
    spikes = ti.generate_spikes(ti.generate_thetas(N, O, T, seed=1), R, seed=2)
    x = torch.as_tensor(spikes).to(device)  # (T, R, N)
    y = sufficient_stats(x, O, dtype=torch.float64)[None]  # (1, T, D)
    x = x[None]
    exact = ExactIsing(y, R, N, O)
    pseudo = PseudoLikelihood(x, O, eta_method="exact")
    Dp = exact.D
    for obs, cov in ((exact, DENSE), (pseudo, DIAGONAL)):
        assert covariance_of(obs) is cov
        mu = torch.full((1, Dp), -0.5, dtype=torch.float64, device=device)
        eye = torch.eye(Dp, dtype=torch.float64, device=device)[None]
        var = torch.full_like(mu, 0.1)
        if cov is DENSE:
            p = StateSpaceParams(mu, 0.1 * eye, 1e-2 * eye, eye.clone(), None)
        else:
            p = StateSpaceParams(mu, var, 0.1 * var, torch.ones_like(mu), None)
        filt = laplace_filter(obs, p)
        smooth = smoother(filt, p)
        assert filt.cov is cov and smooth.cov is cov
        shape = (1, T, Dp, Dp) if cov is DENSE else (1, T, Dp)
        assert filt.sigma_f.shape == shape and smooth.sigma_s.shape == shape
        assert smooth.lag_one.shape == (1, T - 1, *shape[2:])
        for estep in ("filter", "joint"):
            es = e_step(obs, p, estep=estep)
            assert es.filt.cov is cov and es.smooth.cov is cov


def test_a_diagonal_fit_and_a_dense_fit_keep_their_structure(device):
    N, O, T, R = 3, 2, 8, 40
    spikes = ti.generate_spikes(ti.generate_thetas(N, O, T, seed=3), R, seed=4)
    Dp = 6
    kw = dict(progress=False, device=device, max_iter=5)
    with pytest.warns(ti.FitWarning):
        dense = ti.fit(spikes, O, **kw)
    with pytest.warns(ti.FitWarning):
        diag = ti.fit(spikes, O, method="pseudo", eta_method="exact", **kw)
    assert tuple(dense.sigma_s.shape) == (T, Dp, Dp) and tuple(dense.sigma_f.shape) == (T, Dp, Dp)
    assert tuple(diag.sigma_s.shape) == (T, Dp) and tuple(diag.sigma_f.shape) == (T, Dp)
    assert bool((diag.sigma_s > 0).all())


#: the modules of the core that handle posterior covariances
CORE = (
    "filter",
    "smoother",
    "mstep",
    "marginal",
    "stopping",
    "estep",
    "joint",
    "joint_diagonal",
    "posterior",
    "coords",
    "direct",
    "em",
)

#: a covariance structure guessed from a tensor's rank, or passed around as a boolean
GUESSES = [
    r"\b(sigma|W|Q|Sigma|F|M|P|cov)\w*(\[[^\]]*\])?\.ndim\b",  # sigma_f.ndim, W.ndim, W[:, 0].ndim
    r"\b(sigma|W|Q|Sigma|F|M|P|cov)\w*(\[[^\]]*\])?\.dim\(\)",
    r"\.ndim\s*[=!<>]=\s*[34]\b",  # x.ndim == 3: (B, T, D) diagonal vs (B, T, D, D) dense
    r"\.dim\(\)\s*[=!<>]=\s*[34]\b",
    r"\bdiagonal\s*:\s*bool\b",  # a diagonal flag as a parameter instead of the structure object
]


def structure_guesses(source: str) -> list[str]:
    """The lines of ``source`` that decide the covariance structure from a rank or a boolean parameter."""
    return [line.strip() for line in source.splitlines() if any(re.search(p, line) for p in GUESSES)]


def test_the_guess_detector_finds_the_old_forms():
    old = [
        "    diagonal = sigma_f.ndim == 3",
        "    diagonal = W.ndim == 3",
        "        if filt.sigma_f.ndim == 3:",
        "        return (W if W.ndim == 3 else torch.diagonal(W, dim1=-2, dim2=-1)).mean((-1, -2))",
        "def _predictor(params: StateSpaceParams, diagonal: bool):",
        "    if sigma_s.dim() == 4:",
    ]
    for line in old:
        assert structure_guesses(line), line
    fine = ["        return torch.where(mask.view(-1, *([1] * (x.ndim - 1))), x, y)", "    if cov.diagonal:"]
    assert structure_guesses("\n".join(fine)) == []


@pytest.mark.parametrize("module", CORE)
def test_no_core_module_guesses_the_covariance_structure(module):
    found = structure_guesses((STATESPACE / f"{module}.py").read_text(encoding="utf-8"))
    assert found == [], f"{module}.py decides the covariance structure without the Covariance object: {found}"
