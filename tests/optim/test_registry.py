"""The registry of mode searches (torch_ising.optim.MODE_SEARCHES): each entry finds the maximiser."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import torch_ising.optim as optim
from torch_ising.optim import MODE_SEARCHES


def _problem(seed: int = 0, B: int = 3, D: int = 5):
    """A strictly concave quadratic f(x) = -x^T A x / 2 - b . x per row (A SPD), and its maximiser.

    grad f = -(A x + b), hess f = -A, so the maximiser solves A x = -b; it is computed here by
    torch.linalg.solve, independently of every search. The maximiser is small (|x*| ~ 1e-3):
    BFGS's line search compares values of f, which resolve x only to about sqrt(eps) |x*|
    (f is flat to second order at x*), so at |x*| ~ 0.3 it would stop short of 1e-10.
    """
    g = torch.Generator().manual_seed(seed)
    M = torch.randn(B, D, D, generator=g, dtype=torch.float64)
    A = M @ M.transpose(-1, -2) + D * torch.eye(D, dtype=torch.float64)
    b = 0.01 * torch.randn(B, D, generator=g, dtype=torch.float64)
    x_star = torch.linalg.solve(A, -b)
    return A, b, x_star


def _value_grad(A: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    Ax = (A @ x.unsqueeze(-1)).squeeze(-1)
    return -0.5 * (x * Ax).sum(-1) - (b * x).sum(-1), -(Ax + b)


def _run(name: str, A: torch.Tensor, b: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """The maximiser that MODE_SEARCHES[name] finds, each called in its own form."""
    search = MODE_SEARCHES[name]
    if name in ("newton", "cg"):

        def objective(x):
            f, g = _value_grad(A, b, x)
            return f, g, -A

        res = search(objective, x0, tol=1e-12)
        assert res.converged
        return res.x
    if name == "newton_cg":
        res = search(
            lambda x: (_value_grad(A, b, x)[0], ()),
            lambda x, aux: (_value_grad(A, b, x)[1], -torch.diagonal(A, dim1=-2, dim2=-1)),
            lambda x, aux, v: (A @ v.unsqueeze(-1)).squeeze(-1),
            x0,
            tol=1e-12,
        )
        assert res.converged
        assert res.hess.shape == x0.shape
        return res.x
    if name == "bfgs":
        # max |g| < 1e-10 puts x within |g|_2 / lambda_min(A) < 1e-10 of x* (lambda_min(A) >= D)
        x, _, converged, n_eval = search(lambda x: _value_grad(A, b, x), x0, tol=1e-10, max_eval=500)
        assert bool(converged.all()) and n_eval < 500
        return x
    raise AssertionError(f"no test for the mode search {name!r}")


def test_registry_names_and_entries_are_callable():
    assert set(MODE_SEARCHES) == {"newton", "cg", "newton_cg", "bfgs"}
    assert all(callable(fn) for fn in MODE_SEARCHES.values())
    assert MODE_SEARCHES["newton"] is optim.newton_ascent
    assert MODE_SEARCHES["cg"] is optim.conjugate_gradient_ascent
    assert MODE_SEARCHES["newton_cg"] is optim.newton_cg_ascent
    assert MODE_SEARCHES["bfgs"] is optim.bfgs_maximise


@pytest.mark.parametrize("name", sorted(MODE_SEARCHES))
def test_every_search_finds_the_maximiser_of_a_concave_quadratic(name):
    A, b, x_star = _problem()
    x = _run(name, A, b, torch.zeros_like(b))
    torch.testing.assert_close(x, x_star, rtol=0, atol=1e-10)
    # from a start far off, too
    x = _run(name, A, b, torch.full_like(b, 3.0))
    torch.testing.assert_close(x, x_star, rtol=0, atol=1e-10)


def test_newton_cg_batches_rows_independently():
    # each row of a batch follows the same search as that row alone
    A, b, _ = _problem(seed=1, B=4, D=6)
    x0 = torch.zeros_like(b)

    def parts(A, b):
        return (
            lambda x: (_value_grad(A, b, x)[0], (x.clone(),)),
            lambda x, aux: (_value_grad(A, b, aux[0])[1], -torch.diagonal(A, dim1=-2, dim2=-1)),
            lambda x, aux, v: (A @ v.unsqueeze(-1)).squeeze(-1),
        )

    res = optim.newton_cg_ascent(*parts(A, b), x0, tol=1e-12)
    for r in range(4):
        alone = optim.newton_cg_ascent(*parts(A[r : r + 1], b[r : r + 1]), x0[r : r + 1], tol=1e-12)
        torch.testing.assert_close(alone.x[0], res.x[r], rtol=0, atol=1e-13)


def test_optim_imports_nothing_from_approx_or_statespace():
    # optim/ imports only its own modules (relatively, one dot) and libraries outside torch_ising
    root = Path(optim.__file__).parent
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level <= 1, (path.name, "." * node.level + (node.module or ""))
                assert node.level == 1 or not (node.module or "").startswith("torch_ising"), (path.name, node.module)
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("torch_ising") for a in node.names), (path.name, node.lineno)


def test_anderson_extrapolation_solves_a_linear_fixed_point_in_K_plus_one_steps():
    """For an affine map G(x) = M x + c, Anderson with full depth reaches x* = (I - M)^{-1} c exactly."""
    from torch_ising.optim import anderson_extrapolate

    K = 4
    g_ = torch.Generator().manual_seed(7)
    M = 0.5 * torch.randn(K, K, generator=g_) / K**0.5
    c = torch.randn(K, generator=g_)
    x_star = torch.linalg.solve(torch.eye(K) - M, c)  # the independent answer
    G = lambda x: x @ M.T + c  # noqa: E731
    xs = [torch.zeros(1, K)]
    for _ in range(K):  # K plain steps give K residual differences
        xs.append(G(xs[-1]))
    fs = [G(x) - x for x in xs]
    gs = [G(x) for x in xs]
    dF = [fs[j + 1] - fs[j] for j in range(K)]
    dG = [gs[j + 1] - gs[j] for j in range(K)]
    x_new, ok = anderson_extrapolate(dF, dG, fs[-1], gs[-1])
    assert bool(ok.all())
    torch.testing.assert_close(x_new[0], x_star, rtol=0, atol=1e-8)
    _, none = anderson_extrapolate([torch.zeros(1, K)], [torch.zeros(1, K)], fs[-1], gs[-1])
    assert not bool(none.any())  # nothing to extrapolate from
