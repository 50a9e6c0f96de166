"""Monte Carlo estimates of eta and psi from many Gibbs chains run in parallel.

Any order is supported. All chains of all parameter vectors (and all inverse
temperatures) advance together in one batched tensor, on the device of theta.

* eta: after ``burn_in`` sweeps, every sweep contributes Rao-Blackwellised
  estimates. Neuron i's local field h_i(x) = sum_{S containing i} theta_S
  prod_{j in S, j != i} x_j does not depend on x_i, so

      E[x_i] = E[sigmoid(h_i)],   E[x_i x_j] = E[x_j sigmoid(h_i)] = E[x_i sigmoid(h_j)]

  (pairwise: the average of both forms is used). Orders >= 3 use the plain
  average of F_S(x).
* psi: thermodynamic integration with Gauss-Legendre quadrature on ``n_beta``
  nodes in beta. The default path (``path="independent"``) switches on the
  interactions, theta(beta) = (theta_1, beta theta_int), from the independent
  model, whose psi is exact:

      psi(theta) = sum_i log(1 + exp(theta_i)) + int_0^1 E_{theta(beta)}[theta_int . F_int(x)] dbeta.

  ``path="uniform"`` scales everything, theta(beta) = beta theta, from the
  uniform distribution:

      psi(theta) = N log 2 + int_0^1 E_{beta theta}[theta . F(x)] dbeta.

  Both integrands are mean energies estimated by chains run at theta(beta). The
  independent path integrates only the interaction energy, whose variance is far
  smaller, so its psi is much more precise (the uniform path's integral nearly
  cancels N log 2 at low firing rates).
* Standard errors come from the spread of per-chain averages (chains are
  independent). ``converged`` is the split-R-hat test (Gelman et al.) on the
  per-chain traces of the energy and of the population count sum_i x_i:
  R-hat < ``rhat_max`` for every parameter vector.
  Chains start overdispersed (chain c fires with its own probability
  q_c ~ U(0, 1)), so chains trapped in different modes raise R-hat.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from .._validation import check_positive_int, n_params
from ..basis import features
from ..synthesis import _neighbour_index
from ._common import (
    ApproxMoments,
    check_inputs,
    check_options,
    fisher_diag_from_eta,
    report_convergence,
    split_pairwise,
)

__all__ = ["MonteCarloMoments", "gibbs_moments", "monte_carlo", "thermodynamic_integration"]


class MonteCarloMoments(NamedTuple):
    """Monte Carlo estimates with their standard errors.

    Attributes:
        eta: estimated E[F(x)], shape (..., D).
        eta_stderr: standard error of ``eta`` (from per-chain-group averages), shape (..., D).
        energy: estimated E[theta . F(x)], shape (...).
        energy_stderr: its standard error, shape (...).
        rhat: split-R-hat of the energy and population-count traces (the larger), shape (...).
    """

    eta: torch.Tensor
    eta_stderr: torch.Tensor
    energy: torch.Tensor
    energy_stderr: torch.Tensor
    rhat: torch.Tensor


def _generator(seed: int | None, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    if seed is None:
        g.seed()
    else:
        g.manual_seed(int(seed))
    return g


def _split_rhat(trace: torch.Tensor) -> torch.Tensor:
    """Split-R-hat of traces (S, B, n): each chain is cut in two halves."""
    S = trace.shape[0]
    half = S // 2
    if half < 2:
        return torch.ones(trace.shape[1], dtype=trace.dtype, device=trace.device)
    parts = torch.cat([trace[:half], trace[half : 2 * half]], dim=-1)  # (half, B, 2n)
    means = parts.mean(0)
    W = parts.var(0, unbiased=True).mean(-1)
    Bv = half * means.var(-1, unbiased=True)
    var_hat = (half - 1) / half * W + Bv / half
    tiny = torch.finfo(trace.dtype).tiny
    rhat = torch.sqrt(var_hat / W.clamp_min(tiny))
    # frozen chains (no within-chain variance) are fine only if they all agree
    frozen = torch.where(Bv > tiny, torch.full_like(rhat, float("inf")), torch.ones_like(rhat))
    return torch.where(W > tiny, rhat, frozen)


def _gibbs(
    theta: torch.Tensor,
    energy_theta: torch.Tensor,
    N: int,
    order: int,
    n_chains: int,
    n_sweeps: int,
    burn_in: int,
    n_groups: int,
    g: torch.Generator,
    want_eta: bool,
):
    """Run B x n_chains Gibbs chains for theta (B, D).

    The energy trace is theta' . F(x) with theta' = ``energy_theta`` (B, D)
    (for thermodynamic integration the chains sample beta theta but the
    integrand uses theta). Returns (eta_group_means (B, G, D) or None,
    energy trace (n_sweeps, B, n_chains)).
    """
    B, D = theta.shape
    dev, dt = theta.device, theta.dtype
    n = n_chains
    # overdispersed starts: chain c fires with its own probability q_c ~ U(0, 1), so that
    # chains trapped in different modes show up in the split-R-hat
    q = torch.rand(B, n, 1, generator=g, device=dev, dtype=dt)
    x = (torch.rand(B, n, N, generator=g, device=dev, dtype=dt) < q).to(dt)
    pairwise = order == 2
    G = n_groups
    eta_acc = torch.zeros(B, G, D, dtype=dt, device=dev) if want_eta else None
    trace = torch.empty(n_sweeps, B, n, dtype=dt, device=dev)
    count = torch.empty(n_sweeps, B, n, dtype=dt, device=dev)  # population count sum_i x_i
    if pairwise:
        h, J = split_pairwise(theta, N)
        he, Je = split_pairwise(energy_theta, N)
        field = h[:, None, :] + x @ J  # (B, n, N); J symmetric with zero diagonal
        iu = torch.triu_indices(N, N, 1, device=dev)
    else:
        params_np, others_np = _neighbour_index(N, order)
        params = torch.from_numpy(params_np).to(dev)
        others = torch.from_numpy(others_np).to(dev)
        th_i = torch.cat([theta, theta.new_zeros(B, 1)], -1)[:, params]  # (B, N, K)
        xp = torch.cat([x, torch.ones(B, n, 1, dtype=dt, device=dev)], dim=-1)  # a column of ones at index N
        x = xp[:, :, :N]
    for sweep in range(burn_in + n_sweeps):
        for i in range(N):
            u = torch.rand(B, n, generator=g, device=dev, dtype=dt)
            if pairwise:
                new = (u < torch.sigmoid(field[:, :, i])).to(dt)
                delta = new - x[:, :, i]
                x[:, :, i] = new
                field.addcmul_(delta[:, :, None], J[:, None, i, :])
            else:
                hi = (xp[:, :, others[i]].prod(-1) * th_i[:, None, i, :]).sum(-1)
                x[:, :, i] = (u < torch.sigmoid(hi)).to(dt)
        if sweep < burn_in:
            continue
        s = sweep - burn_in
        count[s] = x.sum(-1)
        if pairwise:
            trace[s] = (x * he[:, None, :]).sum(-1) + 0.5 * (x * (x @ Je)).sum(-1)
            if want_eta:
                sig = torch.sigmoid(field)  # E[x_i | x_-i] (field excludes x_i)
                sg = sig.reshape(B, G, n // G, N)
                xg = x.reshape(B, G, n // G, N)
                first = sg.mean(2)
                cross = sg.transpose(-1, -2) @ xg / (n // G)  # (B, G, N, N): mean sigmoid(h_i) x_j
                pair = 0.5 * (cross + cross.transpose(-1, -2))
                eta_acc[:, :, :N] += first
                eta_acc[:, :, N:] += pair[..., iu[0], iu[1]]
        else:
            Fx = features(x, N, order)
            trace[s] = (Fx * energy_theta[:, None, :]).sum(-1)
            if want_eta:
                eta_acc += Fx.reshape(B, G, n // G, D).mean(2)
    if want_eta:
        eta_acc /= n_sweeps
    rhat = torch.maximum(_split_rhat(trace), _split_rhat(count))
    return eta_acc, trace, rhat


def _check_mc(n_chains, n_sweeps, burn_in, n_groups):
    n_chains = check_positive_int(n_chains, "n_chains")
    n_sweeps = check_positive_int(n_sweeps, "n_sweeps")
    if isinstance(burn_in, bool) or not isinstance(burn_in, (int, np.integer)) or burn_in < 0:
        raise ValueError(f"burn_in must be an integer >= 0, got {burn_in!r}")
    n_groups = check_positive_int(n_groups, "n_groups")
    if n_chains % n_groups != 0 or n_chains // n_groups < 2:
        raise ValueError(
            f"n_chains must be a multiple of n_groups with at least 2 chains per group; "
            f"got n_chains={n_chains}, n_groups={n_groups}"
        )
    return n_chains, n_sweeps, int(burn_in), n_groups


def gibbs_moments(
    theta: torch.Tensor,
    N: int,
    order: int = 2,
    *,
    n_chains: int = 512,
    n_sweeps: int = 200,
    burn_in: int = 100,
    n_groups: int = 8,
    seed: int | None = None,
) -> MonteCarloMoments:
    """Estimate eta = E[F(x)] and the mean energy E[theta . F(x)] by parallel Gibbs chains.

    Args:
        theta: natural parameters, shape (..., D), any order.
        N: number of neurons.
        order: interaction order.
        n_chains: chains per parameter vector (a multiple of ``n_groups``).
        n_sweeps: recorded sweeps per chain (after burn-in).
        burn_in: discarded sweeps per chain.
        n_groups: chain groups for the standard errors of eta.
        seed: random seed (None: fresh entropy).

    Returns:
        :class:`MonteCarloMoments`.
    """
    theta, N, order = check_inputs(theta, N, order, None, "Monte Carlo")
    n_chains, n_sweeps, burn_in, n_groups = _check_mc(n_chains, n_sweeps, burn_in, n_groups)
    batch = theta.shape[:-1]
    flat = theta.reshape(-1, theta.shape[-1])
    g = _generator(seed, theta.device)
    with torch.no_grad():
        eta_g, trace, rhat = _gibbs(flat, flat, N, order, n_chains, n_sweeps, burn_in, n_groups, g, True)
    eta = eta_g.mean(1)
    eta_se = eta_g.std(1, unbiased=True) / math.sqrt(n_groups) if n_groups > 1 else torch.full_like(eta, float("nan"))
    chain_means = trace.mean(0)  # (B, n)
    energy = chain_means.mean(-1)
    energy_se = chain_means.std(-1, unbiased=True) / math.sqrt(n_chains)
    D = n_params(N, order)
    return MonteCarloMoments(
        eta.reshape(*batch, D),
        eta_se.reshape(*batch, D),
        energy.reshape(batch),
        energy_se.reshape(batch),
        rhat.reshape(batch),
    )


def thermodynamic_integration(
    theta: torch.Tensor,
    N: int,
    order: int = 2,
    *,
    path: str = "independent",
    n_beta: int = 16,
    n_chains: int = 256,
    n_sweeps: int = 200,
    burn_in: int = 100,
    seed: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """psi(theta) by thermodynamic integration (Gauss-Legendre in beta; see the module docstring).

        "independent": psi = sum_i log(1 + exp(theta_i)) + sum_k w_k E_{(theta_1, beta_k theta_int)}[theta_int . F_int]
        "uniform":     psi = N log 2 + sum_k w_k E_{beta_k theta}[theta . F]

    Args:
        theta: natural parameters, shape (..., D), any order.
        N: number of neurons.
        order: interaction order.
        path: "independent" (default) or "uniform".
        n_beta: Gauss-Legendre nodes on [0, 1].
        n_chains, n_sweeps, burn_in: Gibbs settings per node and parameter vector.
        seed: random seed.

    Returns:
        (psi (...), its standard error (...), the largest split-R-hat over nodes (...)).
    """
    theta, N, order = check_inputs(theta, N, order, None, "Monte Carlo")
    if path not in ("independent", "uniform"):
        raise ValueError(f"path must be 'independent' or 'uniform', got {path!r}")
    n_beta = check_positive_int(n_beta, "n_beta")
    n_chains, n_sweeps, burn_in, _ = _check_mc(n_chains, n_sweeps, burn_in, 1)
    batch = theta.shape[:-1]
    flat = theta.reshape(-1, theta.shape[-1])
    B = flat.shape[0]
    nodes, weights = np.polynomial.legendre.leggauss(n_beta)
    beta = torch.as_tensor(0.5 * (nodes + 1.0), dtype=flat.dtype, device=flat.device)
    w = torch.as_tensor(0.5 * weights, dtype=flat.dtype, device=flat.device)
    if path == "uniform":
        scale_vec = torch.ones_like(flat[0])
        energy = flat
        psi_0 = torch.full((B,), N * math.log(2.0), dtype=flat.dtype, device=flat.device)
    else:
        scale_vec = torch.ones_like(flat[0])
        scale_vec[:N] = 0.0  # the fields stay fixed; only interactions are scaled
        energy = flat * scale_vec  # theta_int . F_int
        psi_0 = torch.nn.functional.softplus(flat[:, :N]).sum(-1)
    factor = 1.0 - scale_vec + beta[:, None] * scale_vec  # (n_beta, D): 1 on fixed entries, beta elsewhere
    scaled = (factor[:, None, :] * flat[None]).reshape(n_beta * B, -1)
    target = energy[None].expand(n_beta, B, -1).reshape(n_beta * B, -1)
    g = _generator(seed, flat.device)
    with torch.no_grad():
        _, trace, rhat = _gibbs(scaled, target, N, order, n_chains, n_sweeps, burn_in, 1, g, False)
    chain_means = trace.mean(0).reshape(n_beta, B, n_chains)
    mean = chain_means.mean(-1)  # (n_beta, B)
    se = chain_means.std(-1, unbiased=True) / math.sqrt(n_chains)
    psi = psi_0 + (w[:, None] * mean).sum(0)
    psi_se = torch.sqrt(((w[:, None] * se) ** 2).sum(0))
    rhat = rhat.reshape(n_beta, B).amax(0)
    return psi.reshape(batch), psi_se.reshape(batch), rhat.reshape(batch)


def monte_carlo(
    theta: torch.Tensor,
    N: int,
    order: int = 2,
    *,
    n_chains: int = 512,
    n_sweeps: int = 200,
    burn_in: int = 100,
    n_beta: int = 16,
    ti_chains: int = 256,
    ti_path: str = "independent",
    with_psi: bool = True,
    rhat_max: float = 1.05,
    seed: int | None = 0,
    on_fail: str = "warn",
) -> ApproxMoments:
    """Monte Carlo eta (parallel Gibbs chains) and psi (thermodynamic integration).

    Any order is supported.

    Args:
        theta: natural parameters, shape (..., D).
        N: number of neurons.
        order: interaction order.
        n_chains, n_sweeps, burn_in: Gibbs settings for eta (per parameter vector).
        n_beta: quadrature nodes for psi; ``ti_chains`` chains per node.
        ti_path: the integration path, "independent" (default) or "uniform"
            (see :func:`thermodynamic_integration`).
        with_psi: False skips thermodynamic integration; ``psi`` is then None
            (for callers that need only eta, e.g. the filter's covariance).
        rhat_max: convergence threshold on the split-R-hat (energy and population count).
        seed: random seed (default 0, so repeated calls agree; None for fresh entropy).
        on_fail: "warn", "raise" or "ignore" when R-hat >= rhat_max.

    Returns:
        :class:`ApproxMoments`; ``converged`` is R-hat < ``rhat_max``.
    """
    theta, N, order = check_inputs(theta, N, order, None, "Monte Carlo")
    check_options(1.0, 1, 0.0, on_fail)
    if not (isinstance(rhat_max, (int, float)) and rhat_max > 1.0):
        raise ValueError(f"rhat_max must be a number > 1, got {rhat_max!r}")
    mc = gibbs_moments(theta, N, order, n_chains=n_chains, n_sweeps=n_sweeps, burn_in=burn_in, seed=seed)
    rhat = mc.rhat
    if with_psi:
        ti_seed = None if seed is None else seed + 1
        psi, _, rhat_ti = thermodynamic_integration(
            theta,
            N,
            order,
            path=ti_path,
            n_beta=n_beta,
            n_chains=ti_chains,
            n_sweeps=n_sweeps,
            burn_in=burn_in,
            seed=ti_seed,
        )
        rhat = torch.maximum(rhat, rhat_ti)
    else:
        psi = None
    conv = rhat < rhat_max
    report_convergence(
        conv.reshape(-1),
        rhat.reshape(-1),
        "Monte Carlo (Gibbs)",
        rhat_max,
        burn_in + n_sweeps,
        on_fail,
        "the chains mix slowly (strong coupling); raise burn_in and n_sweeps",
    )
    eta = mc.eta.clamp(0.0, 1.0)
    return ApproxMoments(psi, eta, fisher_diag_from_eta(eta), conv)
