"""Shared pieces of the large-N approximations: the result record, errors and pairwise packing.

Every approximation maps natural parameters theta (..., D) to an
:class:`ApproxMoments` record (psi, eta, fisher_diag, converged). For a
pairwise model the parameters are split into fields and couplings,

    E(x) = theta . F(x) = sum_i h_i x_i + sum_{i<j} J_ij x_i x_j,
    h_i = theta_i,   J_ij = J_ji = theta_{ij},   J_ii = 0,

which is the form TAP, Bethe and the pairwise Gibbs sampler work with.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import torch

from .._validation import check_N_order, check_theta

__all__ = [
    "ApproxMoments",
    "ApproximationWarning",
    "ConvergenceError",
    "ON_FAIL",
    "fisher_diag_from_eta",
    "split_pairwise",
    "pack_pairwise",
    "independent_moments",
    "check_inputs",
    "report_convergence",
    "binary_entropy",
]

#: Allowed values of ``on_fail``.
ON_FAIL = ("warn", "raise", "ignore")


class ApproxMoments(NamedTuple):
    """Approximate moments of p(x | theta) for a batch of parameter vectors.

    Attributes:
        psi: approximate log-partition psi(theta), shape (...) (None only when a
            Monte Carlo call was asked not to compute it, ``with_psi=False``).
        eta: approximate expectation parameters eta = E[F(x)], shape (..., D).
        fisher_diag: diagonal of the Fisher information, G_SS = Var[F_S(x)] =
            eta_S (1 - eta_S) (exact for binary features given eta), shape (..., D).
        converged: whether the iteration met its tolerance, bool tensor of shape (...).
    """

    psi: torch.Tensor | None
    eta: torch.Tensor
    fisher_diag: torch.Tensor
    converged: torch.Tensor


class ApproximationWarning(RuntimeWarning):
    """An approximation did not converge; the values returned are its last (finite) iterate."""


class ConvergenceError(RuntimeError):
    """An approximation did not converge and ``on_fail="raise"`` was asked for."""


def fisher_diag_from_eta(eta: torch.Tensor) -> torch.Tensor:
    """Diagonal of the Fisher matrix, G_SS = Var[F_S(x)] = eta_S (1 - eta_S).

    F_S(x) = prod_{i in S} x_i is a 0/1 variable, so its variance is fixed by its
    mean: the diagonal follows from any (approximate) eta without further sums.
    """
    return eta * (1.0 - eta)


def check_inputs(
    theta: torch.Tensor, N: int, order: int, max_order: int | None, method: str
) -> tuple[torch.Tensor, int, int]:
    """Validate theta (..., D), N and order; refuse orders a method does not support."""
    if not isinstance(theta, torch.Tensor):
        raise ValueError(f"theta must be a torch.Tensor of shape (..., D); got {type(theta).__name__}")
    if not theta.is_floating_point():
        raise ValueError(f"theta must be a floating-point tensor; got dtype {theta.dtype}")
    N, order = check_N_order(N, order)
    check_theta(theta, N, order)
    if max_order is not None and order > max_order:
        raise ValueError(
            f"order={order} is not supported by {method} (it supports order <= {max_order}); "
            "use eta_method='mc' for higher-order models"
        )
    return theta, N, order


def check_options(tol: float, max_iter: int, damping: float, on_fail: str) -> None:
    """Validate the convergence controls shared by the iterative methods."""
    if not (isinstance(tol, (int, float)) and tol > 0 and math.isfinite(tol)):
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if not (isinstance(damping, (int, float)) and 0.0 <= damping < 1.0):
        raise ValueError(f"damping must lie in [0, 1), got {damping!r}")
    if on_fail not in ON_FAIL:
        raise ValueError(f"on_fail must be one of {ON_FAIL}, got {on_fail!r}")


def split_pairwise(theta: torch.Tensor, N: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fields h (..., N) and the symmetric coupling matrix J (..., N, N) with zero diagonal.

    theta = (theta_0..theta_{N-1}, theta_01, theta_02, ..., theta_{N-2,N-1}); the pairs
    follow ``torch.triu_indices(N, N, 1)``, which is the ``itertools.combinations`` order.
    """
    h = theta[..., :N]
    batch = theta.shape[:-1]
    flat = theta.new_zeros(*batch, N * N)
    if theta.shape[-1] > N:
        iu = torch.triu_indices(N, N, 1, device=theta.device)
        flat = flat.index_add(-1, iu[0] * N + iu[1], theta[..., N:])
    J = flat.reshape(*batch, N, N)
    J = J + J.transpose(-1, -2)
    return h, J


def pack_pairwise(eta1: torch.Tensor, eta2: torch.Tensor) -> torch.Tensor:
    """Join marginals (..., N) and the upper triangle of a pair matrix (..., N, N) into (..., D)."""
    N = eta1.shape[-1]
    if N == 1:
        return eta1
    iu = torch.triu_indices(N, N, 1, device=eta1.device)
    return torch.cat([eta1, eta2[..., iu[0], iu[1]]], dim=-1)


def binary_entropy(m: torch.Tensor) -> torch.Tensor:
    """H(m) = -m log m - (1 - m) log(1 - m) (nats), elementwise, 0 log 0 = 0."""
    return -(torch.special.xlogy(m, m) + torch.special.xlogy(1.0 - m, 1.0 - m))


def independent_moments(theta: torch.Tensor, N: int) -> ApproxMoments:
    """The exact moments of the independent (order 1) model.

    eta_i = sigmoid(theta_i),  psi = sum_i log(1 + exp(theta_i)).
    """
    eta = torch.sigmoid(theta)
    psi = torch.nn.functional.softplus(theta).sum(-1)
    conv = torch.ones(theta.shape[:-1], dtype=torch.bool, device=theta.device)
    return ApproxMoments(psi, eta, fisher_diag_from_eta(eta), conv)


def report_convergence(
    converged: torch.Tensor,
    residual: torch.Tensor,
    method: str,
    tol: float,
    iterations: int,
    on_fail: str,
    advice: str,
) -> None:
    """Warn or raise when some batch elements did not converge.

    Args:
        converged: bool tensor, one entry per parameter vector.
        residual: the final residual per parameter vector.
        method: the method's name for the message.
        tol: the tolerance that was asked for.
        iterations: iterations taken.
        on_fail: "warn" (an :class:`ApproximationWarning`), "raise" (a
            :class:`ConvergenceError`) or "ignore".
        advice: what to try instead.
    """
    if bool(converged.all()) or on_fail == "ignore":
        return
    n_bad = int((~converged).sum())
    worst = float(residual[~converged].max()) if n_bad else float("nan")
    msg = (
        f"{method} did not converge for {n_bad} of {converged.numel()} parameter vectors after "
        f"{iterations} iterations (largest residual {worst:.3g} > tol {tol:g}); {advice}"
    )
    if on_fail == "raise":
        raise ConvergenceError(msg)
    warnings.warn(msg, ApproximationWarning, stacklevel=3)


def check_finite(*tensors: torch.Tensor, method: str) -> None:
    """Never return a silent NaN: raise when a result is not finite."""
    for t in tensors:
        if not bool(torch.isfinite(t).all()):
            raise ConvergenceError(
                f"{method} produced non-finite values (the iteration diverged); "
                "try eta_method='bethe_cccp' or 'mc', or stronger damping"
            )
