"""Shared test helpers: an independent dense brute-force Ising implementation (numpy)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from torch_ising import FitWarning

PARITY_DIR = Path(__file__).parent / "data" / "parity"

# fragments of the FitWarning messages (regular expressions searched in the message)
MAX_ITER = "stopped after max_iter"  # EM ran out of iterations before its stopping rule was met
NEVER_FIRE = "never fire"  # a statistic is 0 in every bin (a silent neuron, a pair that never fires together)
ALWAYS_FIRE = "in every trial of every bin"  # a statistic is 1 in every bin
EXPLOSIVE_F = "spectral radius"  # a learned F with spectral radius > 1


@contextlib.contextmanager
def fit_warns(*patterns: str) -> Iterator[None]:
    """Expect one FitWarning per pattern (a regex searched in its message), e.g. ``fit_warns(MAX_ITER, NEVER_FIRE)``.

    The ``pytest.warns`` checks nest, so each pattern must be met by a warning of its own (a pattern met by
    no warning fails the test); a warning that no pattern matches is re-emitted (pytest >= 8) and still
    shows. With no patterns nothing is expected (for a call whose warnings depend on a parameter).
    """
    with contextlib.ExitStack() as stack:
        for pattern in patterns:
            stack.enter_context(pytest.warns(FitWarning, match=pattern))
        yield


def bf_subsets(N: int, O: int) -> list[tuple[int, ...]]:
    return [s for k in range(1, O + 1) for s in itertools.combinations(range(N), k)]


def bf_patterns(N: int) -> np.ndarray:
    """Patterns in the seed order, built from the definition (empty, then subsets)."""
    rows = [np.zeros(N, dtype=int)]
    for k in range(1, N + 1):
        for s in itertools.combinations(range(N), k):
            x = np.zeros(N, dtype=int)
            x[list(s)] = 1
            rows.append(x)
    return np.array(rows)


def bf_features(X: np.ndarray, N: int, O: int) -> np.ndarray:
    return np.array([[np.prod(x[list(s)]) for s in bf_subsets(N, O)] for x in X], dtype=float)


def brute_force(theta: np.ndarray, N: int, O: int) -> dict[str, np.ndarray]:
    """psi, probs (seed order), eta, Fisher from the dense 2^N x D feature matrix."""
    X = bf_patterns(N)
    F = bf_features(X, N, O)
    E = F @ theta
    m = E.max()
    psi = m + np.log(np.exp(E - m).sum())
    p = np.exp(E - psi)
    eta = F.T @ p
    G = F.T @ (p[:, None] * F) - np.outer(eta, eta)
    return {"psi": psi, "probs": p, "eta": eta, "fisher": G, "patterns": X, "F": F}


def to_np(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


def parity_fit_kwargs(settings: dict, D: int) -> dict:
    """fit()/run() keyword arguments for a parity case's settings (tests/data/parity/README.md)."""
    kw: dict = {}
    sc = settings.get("state_cov")
    if sc == "diag":
        kw["state_cov"] = 0.01 * np.ones(D)
    elif sc == "full":
        kw["state_cov"] = 0.01 * np.eye(D)
    elif sc is not None:
        kw["state_cov"] = sc
    if settings.get("state_ar") == "identity":
        kw["state_ar"] = np.eye(D)
    return kw
