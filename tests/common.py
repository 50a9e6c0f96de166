"""Shared test helpers: an independent dense brute-force Ising implementation (numpy)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import torch

PARITY_DIR = Path(__file__).parent / "data" / "parity"


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
