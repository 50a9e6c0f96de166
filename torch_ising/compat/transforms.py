"""The published ``transforms`` module on torch_ising: pattern probabilities and expectation parameters.

Like the published module, it keeps the model size in module-level state:
:func:`initialise` sets (N, O), and :func:`compute_p`, :func:`compute_eta` and
:func:`compute_psi` then work on vectors of that model. :func:`torch_ising.compat.ssll.run`
re-initialises this state to the fitted (N, order), as the published library does.
Everything takes and returns numpy arrays; the work is done by
:mod:`torch_ising.moments` and :mod:`torch_ising.basis` (O(N 2^N), no 2^N x D matrix).

Vectors over patterns are in the seed order of :func:`enumerate_patterns`:
the empty pattern, then one pattern per subset of neurons (N = 2: 00, 10, 01, 11).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import basis as _basis
from .. import moments as _moments
from .._validation import check_N_order, n_params

__all__ = [
    "initialise",
    "get_state",
    "compute_D",
    "compute_p",
    "compute_eta",
    "compute_psi",
    "compute_y",
    "enumerate_patterns",
    "enumerate_subsets",
]

#: The model set by :func:`initialise`: {"N": int, "O": int}; empty before the first call.
_STATE: dict[str, int] = {}


def initialise(N: int, O: int) -> None:  # noqa: E741 - the seed's name for the order
    """Set the model size (N neurons, interaction order O) used by the ``compute_*`` functions.

    Raises:
        ValueError: if N < 1, O < 1 or O > N.
    """
    N, O = check_N_order(N, O)  # noqa: E741
    _STATE.clear()
    _STATE.update(N=N, O=O)


def get_state() -> tuple[int, int]:
    """The (N, O) set by the last :func:`initialise`.

    Raises:
        ValueError: if :func:`initialise` has not been called.
    """
    if not _STATE:
        raise ValueError("transforms.initialise(N, O) must be called before computing probabilities")
    return _STATE["N"], _STATE["O"]


def compute_D(N: int, O: int) -> int:  # noqa: E741
    """Number of natural parameters, D = sum_{k=1..O} C(N, k)."""
    return _basis.compute_D(N, O)


def _theta_tensor(theta: Any) -> tuple[torch.Tensor, int, int]:
    N, O = get_state()  # noqa: E741
    th = torch.as_tensor(np.asarray(theta, dtype=np.float64))
    D = n_params(N, O)
    if th.ndim < 1 or th.shape[-1] != D:
        raise ValueError(
            f"theta must have length D={D} for the model set by transforms.initialise(N={N}, O={O}); "
            f"got shape {tuple(th.shape)}"
        )
    return th, N, O


def compute_p(theta: Any) -> np.ndarray:
    """Pattern probabilities p(x | theta) = exp(theta . F(x) - psi(theta)) for all 2^N patterns.

    Args:
        theta: natural parameters, shape (D,) (or (..., D)), for the model set
            by :func:`initialise`.

    Returns:
        p, shape (2^N,) (or (..., 2^N)), in the order of :func:`enumerate_patterns`.
    """
    th, N, O = _theta_tensor(theta)  # noqa: E741
    return _moments.probs(th, N, O).numpy()


def compute_psi(theta: Any) -> float | np.ndarray:
    """Log-partition psi(theta) = log sum_x exp(theta . F(x)) (a float for one theta vector)."""
    th, N, O = _theta_tensor(theta)  # noqa: E741
    psi = _moments.log_partition(th, N, O).numpy()
    return float(psi) if psi.ndim == 0 else psi


def compute_eta(p: Any) -> np.ndarray:
    """Expectation parameters eta_S = sum_x p(x) F_S(x) = P(all neurons of S fire) of a pattern distribution.

    eta[:N] are the firing probabilities and eta[N:] the joint firing
    probabilities of the subsets of the model set by :func:`initialise`.
    The sum is the superset-sum transform of p (FAST_MOMENTS.md step 3),
    read off at the subsets' bit masks.

    Args:
        p: probabilities over the 2^N patterns, shape (2^N,) (or (..., 2^N)),
            in the order of :func:`enumerate_patterns` (as :func:`compute_p` returns).

    Returns:
        eta, shape (D,) (or (..., D)).
    """
    N, O = get_state()  # noqa: E741
    pt = torch.as_tensor(np.asarray(p, dtype=np.float64))
    if pt.ndim < 1 or pt.shape[-1] != 2**N:
        raise ValueError(
            f"p must have 2^N = {2**N} entries (one per pattern) for the model set by "
            f"transforms.initialise(N={N}, O={O}); got shape {tuple(pt.shape)}"
        )
    return _moments.expectation_from_probs(pt, N, O).numpy()


def compute_y(spikes: Any, O: int, window: int = 1) -> np.ndarray:  # noqa: E741
    """Empirical statistics y_t = (1/R) sum_r F(x_{t,r}) of spikes (T_raw, R, N), shape (T, D)."""
    return _basis.sufficient_stats(spikes, O, window).numpy()


def enumerate_patterns(N: int) -> np.ndarray:
    """All 2^N binary patterns in the seed order, shape (2^N, N), integers (N = 2: 00, 10, 01, 11)."""
    return _basis.enumerate_patterns(N).numpy()


def enumerate_subsets(N: int, O: int) -> list[tuple[int, ...]]:  # noqa: E741
    """The interaction subsets in the order of the parameter vector (size, then lexicographic)."""
    return list(_basis.subsets(N, O))
