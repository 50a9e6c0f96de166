"""Exact moments of the Ising (log-linear) distribution in O(N 2^N).

The distribution over binary patterns x in {0,1}^N is (MODEL.md section 2)

    p(x | theta) = exp(theta . F(x) - psi(theta)),   psi = log sum_x exp(theta . F(x)),
    eta = E[F(x)] = grad psi,                         G = Cov[F(x)] = hess psi.

Nothing here builds a 2^N x D matrix (FAST_MOMENTS.md):

1. energies E(x) = theta . F(x) are the subset-sum (zeta) transform of the
   vector g with g[mask(S)] = theta_S;
2. psi = logsumexp(E) and p = softmax(E);
3. joint firing probabilities q[S] = P(all of S fire) are the superset-sum
   transform of p;
4. eta_S = q[mask(S)] and G[S, T] = q[mask(S) | mask(T)] - eta_S eta_T.

Every function takes ``theta`` of shape (..., D) and broadcasts over the
leading batch dimensions. Vectors over patterns are returned in the seed
order (see :mod:`torch_ising.basis`) unless ``seed_order=False``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple

import torch

from ._validation import (
    ArrayLike,
    as_tensor,
    as_theta,
    check_binary,
    check_N_order,
    check_positive_int,
    check_probabilities,
    check_theta,
)
from .basis import features, mask_to_seed, or_index, seed_to_mask, subset_masks

__all__ = [
    "Moments",
    "ExactMemoryError",
    "memory_estimate",
    "check_memory",
    "energies",
    "log_partition",
    "log_probs",
    "probs",
    "expectation",
    "expectation_from_probs",
    "fisher",
    "moments",
    "log_prob",
    "sample",
    "entropy",
    "heat_capacity",
]

#: Largest working set (bytes) used for one chunk of a batched computation.
DEFAULT_CHUNK_BYTES = 2**30


class Moments(NamedTuple):
    """Exact moments of p(x | theta).

    Attributes:
        psi: log-partition psi(theta), shape (...).
        eta: expectation parameters eta = E[F(x)], shape (..., D).
        fisher: Fisher information G = Cov[F(x)], shape (..., D, D), or None.
    """

    psi: torch.Tensor
    eta: torch.Tensor
    fisher: torch.Tensor | None


class ExactMemoryError(MemoryError):
    """Exact enumeration over 2^N patterns does not fit in the device's memory."""


# --------------------------------------------------------------------------- memory


def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + cached)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 2**34


#: int64 vectors of length 2^N alive while the seed pattern order is built (masks, popcounts, bit-reversed
#: masks and their negation, the sort's index and workspace; measured 5.5 at N = 20 to 24), with headroom
SEED_ORDER_INDEX_BUFFERS = 7


def memory_estimate(
    N: int, batch: int = 1, dtype: torch.dtype = torch.float64, grad: bool = False, seed_order: bool = False
) -> int:
    """Bytes that exact enumeration needs for ``batch`` parameter vectors.

    About 3 vectors of length 2^N per batch element (energies, probabilities,
    transform workspace); about 6 when autograd keeps intermediates. With
    ``seed_order`` (pattern vectors returned in the seed's order) add the int64
    index arrays that build that order, :data:`SEED_ORDER_INDEX_BUFFERS`
    vectors of 2^N int64 (one of them is then kept, cached, for later calls).
    """
    itemsize = torch.finfo(dtype).bits // 8
    buffers = 6 if grad else 3
    index = SEED_ORDER_INDEX_BUFFERS * 8 * 2**N if seed_order else 0
    return int(buffers * batch * (2**N) * itemsize + index)


def check_memory(
    N: int,
    batch: int = 1,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    grad: bool = False,
    seed_order: bool = False,
) -> int:
    """Refuse an exact computation whose single-item working set exceeds memory.

    ``seed_order`` counts the index arrays of the seed pattern order too (see :func:`memory_estimate`).

    Returns:
        The estimate in bytes for one batch element.

    Raises:
        ExactMemoryError: with the estimate and the suggestion to use
            ``method="pseudo"`` when even one parameter vector does not fit.
    """
    device = torch.device(device)
    need = memory_estimate(N, 1, dtype, grad, seed_order)
    if need < 2**28:  # a few hundred MB at most: no need to ask the system
        return need
    avail = _available_bytes(device)
    if need > 0.8 * avail:
        raise ExactMemoryError(
            f"exact enumeration for N={N} needs about {need / 2**30:.3g} GiB per parameter vector "
            f"(2^{N} = {2**N:.3g} patterns, {dtype}) but only {avail / 2**30:.2f} GiB is available on {device}. "
            "Use an approximation (fit(..., method='pseudo')), fewer neurons, or a larger device."
        )
    return need


def _chunk_size(N: int, batch: int, dtype: torch.dtype, device: torch.device, grad: bool) -> int:
    per_item = check_memory(N, 1, dtype, device, grad)
    if per_item * batch <= 2**26:
        return batch
    budget = min(DEFAULT_CHUNK_BYTES, int(0.5 * _available_bytes(device)))
    return max(1, min(batch, budget // max(per_item, 1)))


# --------------------------------------------------------------------------- transforms


def _tracks_grad(t: torch.Tensor) -> bool:
    """True when ``t`` takes part in autograd or a torch.func transform."""
    if t.requires_grad:
        return True
    wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)
    return bool(wrapped(t)) if wrapped is not None else False


#: Up to this N the transforms are two small matrix products (see :func:`_transform`) on a GPU, where
#: each of the N passes of the loop is a kernel launch.
KRONECKER_MAX_N = 14
#: The same on a CPU: there the 2 (2^(N/2))^3 multiply-adds of the products overtake the loop's
#: N 2^N adds above N = 12 (single-threaded: 40 us against 60 us at N = 12, 210 against 93 at N = 14).
KRONECKER_MAX_N_CPU = 12
#: Up to this N :func:`transform_operator` is one product with the 2^N x 2^N zeta matrix (at most 256 x 256),
#: for the filter's line searches. (The moments keep the Kronecker form: their rounding, and with it the
#: trajectories of long EM runs, stays as it was.)
DENSE_ZETA_MAX_N = 8


@lru_cache(maxsize=64)
def _zeta_matrix(k: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Z[a, b] = 1 when the bit set a is a subset of b, for a, b < 2^k.

    Built outside inference mode even when first asked for inside it, so the cached
    matrix can later take part in autograd.
    """
    with torch.inference_mode(False):
        m = torch.arange(2**k, device=device)
        return ((m[:, None] & m[None, :]) == m[:, None]).to(dtype)


@lru_cache(maxsize=64)
def _zeta_factors(N: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """The Kronecker factors of the transforms over N bits, transposes included (built once per N, dtype, device).

    (Z_h, Z_h^T, Z_l, Z_l^T), or () where the transforms are the N-pass loop.
    """
    if N <= 1 or N > (KRONECKER_MAX_N_CPU if device.type == "cpu" else KRONECKER_MAX_N):
        return ()
    k = N // 2
    with torch.inference_mode(False):  # cached: usable by autograd later (see :func:`_zeta_matrix`)
        Zl = _zeta_matrix(k, dtype, device)
        Zh = _zeta_matrix(N - k, dtype, device)
        return Zh, Zh.T.contiguous(), Zl, Zl.T.contiguous()


def _transform(v: torch.Tensor, N: int, superset: bool, inplace: bool) -> torch.Tensor:
    """Subset-sum (superset=False) or superset-sum transform over the last dim (2^N).

    Pass i adds the entries without bit i into those with bit i (subset sum),
    or the other way round (superset sum); N passes, N 2^N adds.

    Up to KRONECKER_MAX_N (KRONECKER_MAX_N_CPU on a CPU) it is two small matrix products: the transform
    over N bits is the Kronecker product of the transforms over the high and
    the low bits, so with V[h, l] = v[h 2^k + l], subset sums are
    Z_h^T V Z_l and superset sums Z_h V Z_l^T.
    """
    factors = _zeta_factors(N, v.dtype, v.device)
    batch = v.shape[:-1]
    if factors:
        Zh, ZhT, Zl, ZlT = factors
        k = N // 2
        V = v.reshape(*batch, 2 ** (N - k), 2**k)
        W = Zh @ V @ ZlT if superset else ZhT @ V @ Zl
        return W.reshape(*batch, 2**N)
    src, dst = (1, 0) if superset else (0, 1)
    for i in range(N):
        w = v.reshape(*batch, 2 ** (N - 1 - i), 2, 2**i)
        if inplace:
            w.select(-2, dst).add_(w.select(-2, src))
        else:
            lo, hi = w.unbind(-2)
            w = torch.stack((lo + hi, hi) if superset else (lo, hi + lo), dim=-2)
            v = w.reshape(*batch, 2**N)
    return v


@lru_cache(maxsize=64)
def _indices(N: int, order: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(subset masks (D,), or-index (D, D)) on ``device``, built once per N, order, device.

    Built outside inference mode, so that autograd can later save them (index_add's backward).
    """
    with torch.inference_mode(False):
        return subset_masks(N, order, device), or_index(N, order, device)


def _energies_mask(theta: torch.Tensor, N: int, order: int, inplace: bool) -> torch.Tensor:
    masks = _indices(N, order, theta.device)[0]
    g = theta.new_zeros(*theta.shape[:-1], 2**N)
    if inplace:
        g.index_copy_(-1, masks, theta)
    else:
        g = g.index_add(-1, masks, theta)
    return _transform(g, N, superset=False, inplace=inplace)


def _flatten(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Size]:
    batch = theta.shape[:-1]
    return theta.reshape(-1, theta.shape[-1]), batch


def _prepare(theta: ArrayLike, N: int, order: int) -> tuple[torch.Tensor, int, int]:
    """theta as a tensor (numpy arrays and lists converted), checked against N and order."""
    theta = as_theta(theta)
    N, order = check_N_order(N, order)
    check_theta(theta, N, order, check_finite=not _tracks_grad(theta))
    return theta, N, order


# --------------------------------------------------------------------------- public


def energies(theta: ArrayLike, N: int, order: int = 2, seed_order: bool = True) -> torch.Tensor:
    """Energies E(x) = theta . F(x) of all 2^N patterns, shape (..., 2^N)."""
    theta, N, order = _prepare(theta, N, order)
    check_memory(N, 1, theta.dtype, theta.device, _tracks_grad(theta))
    E = _energies_mask(theta, N, order, inplace=not _tracks_grad(theta))
    return mask_to_seed(E, N) if seed_order else E


def log_partition(theta: ArrayLike, N: int, order: int = 2) -> torch.Tensor:
    """psi(theta) = log sum_x exp(theta . F(x)), shape (...). Differentiable.

    Autograd of psi gives eta, and its Hessian is the Fisher matrix.
    """
    return _batched(theta, N, order, "psi")


def log_probs(theta: ArrayLike, N: int, order: int = 2, seed_order: bool = True) -> torch.Tensor:
    """log p(x | theta) = theta . F(x) - psi for all patterns, shape (..., 2^N)."""
    if seed_order:  # refuse before allocating anything when the reordering's index arrays do not fit
        t = as_theta(theta)
        check_memory(check_N_order(N, order)[0], 1, t.dtype if t.is_floating_point() else torch.float64, t.device,
                     _tracks_grad(t), seed_order=True)  # fmt: skip
    out = _batched(theta, N, order, "logp")
    return mask_to_seed(out, N) if seed_order else out


def probs(theta: ArrayLike, N: int, order: int = 2, seed_order: bool = True) -> torch.Tensor:
    """Pattern probabilities p(x | theta) = exp(theta . F(x) - psi(theta)) of all 2^N patterns.

    Args:
        theta: natural parameters (..., D): the N biases, then the C(N, 2) pairwise
            couplings, and so on up to ``order``. A tensor keeps its dtype and device; a
            numpy array or list becomes a float64 tensor.
        N: number of neurons.
        order: interaction order O (D = sum_{k<=O} C(N, k)).
        seed_order: order the patterns as the seed's ``enumerate_patterns`` (by the number
            of active neurons); False gives bit-mask order.

    Returns:
        Probabilities, shape (..., 2^N), summing to 1 over the last dimension.
    """
    return log_probs(theta, N, order, seed_order).exp()


def expectation(theta: ArrayLike, N: int, order: int = 2) -> torch.Tensor:
    """eta = E[F(x)] = grad psi(theta): firing and joint firing probabilities.

    eta_i = P(x_i = 1) are the firing rates, eta_ij = P(x_i = x_j = 1) the pairwise
    joint rates, and so on.

    Args:
        theta: natural parameters (..., D), a tensor, numpy array or list (see :func:`probs`).
        N: number of neurons.
        order: interaction order O.

    Returns:
        eta, shape (..., D), in theta's order.
    """
    return moments(theta, N, order, with_fisher=False).eta


def fisher(theta: ArrayLike, N: int, order: int = 2) -> torch.Tensor:
    """G(theta) = Cov[F(x)] = hess psi, shape (..., D, D).

    G[S, T] = P(S and T all fire) - eta_S eta_T = q[mask(S) | mask(T)] - eta_S eta_T.
    """
    return moments(theta, N, order, with_fisher=True).fisher


def moments(theta: ArrayLike, N: int, order: int = 2, with_fisher: bool = True) -> Moments:
    """psi, eta and (optionally) the Fisher matrix in one pass of 3 transforms.

    Args:
        theta: natural parameters, shape (..., D).
        N: number of neurons.
        order: interaction order O.
        with_fisher: also return G = Cov[F(x)], shape (..., D, D).

    Returns:
        :class:`Moments` (psi, eta, fisher).
    """
    return _batched(theta, N, order, "fisher" if with_fisher else "eta")


def _batched(theta: torch.Tensor, N: int, order: int, what: str):
    theta, N, order = _prepare(theta, N, order)
    flat, batch = _flatten(theta)
    grad = _tracks_grad(theta)
    B = flat.shape[0]
    chunk = _chunk_size(N, max(B, 1), theta.dtype, theta.device, grad)
    if B <= chunk:
        parts = [_core(flat, N, order, what, grad)]
    else:
        parts = [_core(flat[s : s + chunk], N, order, what, grad) for s in range(0, B, chunk)]

    def join(xs: list[torch.Tensor], tail: tuple[int, ...]) -> torch.Tensor:
        x = xs[0] if len(xs) == 1 else torch.cat(xs, dim=0)
        return x.reshape((*batch, *tail))

    D = theta.shape[-1]
    if what == "psi":
        return join(parts, ())
    if what == "logp":
        return join(parts, (2**N,))
    psi = join([p.psi for p in parts], ())
    eta = join([p.eta for p in parts], (D,))
    fis = join([p.fisher for p in parts], (D, D)) if what == "fisher" else None
    return Moments(psi, eta, fis)


def moments_trusted(theta: torch.Tensor, N: int, order: int) -> Moments:
    """:func:`moments` (with Fisher) for a flat batch (B, D) already validated by the caller.

    The filter's mode searches call this hundreds of times per E-step with
    arguments checked once up front; it skips the per-call validation and
    batch bookkeeping. Large batches still go through :func:`moments` (chunked).
    """
    if theta.ndim != 2 or theta.shape[0] * 2**N > 2**22 or _tracks_grad(theta):
        return moments(theta, N, order)
    return _core(theta, N, order, "fisher", False)


def log_partition_trusted(theta: torch.Tensor, N: int, order: int) -> torch.Tensor:
    """:func:`log_partition` for a flat batch (B, D) already validated by the caller (see :func:`moments_trusted`)."""
    if theta.ndim != 2 or theta.shape[0] * 2**N > 2**22 or _tracks_grad(theta):
        return log_partition(theta, N, order)
    return _core(theta, N, order, "psi", False)


#: Up to this many entries (batch x 2^N) :func:`_core` uses logsumexp and softmax rather than in-place steps.
SMALL_FUSED = 2**16


def _core(theta: torch.Tensor, N: int, order: int, what: str, grad: bool):
    """Moments of a flat batch theta (B, D).

    Without autograd everything happens in place in one 2^N buffer per batch
    element (fresh large allocations cost more than the arithmetic on a CPU).
    """
    inplace = not grad
    E = _energies_mask(theta, N, order, inplace)
    if inplace and E.numel() <= SMALL_FUSED:
        # small: two fused calls instead of eight in-place ones (per-call overhead dominates)
        psi = torch.logsumexp(E, dim=-1)
        if what == "psi":
            return psi
        if what == "logp":
            return E.sub_(psi[:, None])
        p = torch.softmax(E, dim=-1)
    elif inplace:
        Emax = E.amax(dim=-1, keepdim=True)
        p = E.sub_(Emax).exp_()
        Z = p.sum(dim=-1, keepdim=True)
        psi = (Emax + Z.log()).squeeze(-1)
        if what == "psi":
            return psi
        if what == "logp":
            return p.log_().sub_(Z.log())
        p.div_(Z)
    else:
        psi = torch.logsumexp(E, dim=-1)
        if what == "psi":
            return psi
        logp = E - psi[:, None]
        if what == "logp":
            return logp
        p = logp.exp()
    eta, fis = _from_probs(p, N, order, what == "fisher", inplace)
    return Moments(psi, eta, fis)


def _from_probs(
    p: torch.Tensor, N: int, order: int, with_fisher: bool, inplace: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """eta_S = q[mask(S)] and G[S, T] = q[mask(S) | mask(T)] - eta_S eta_T from p (B, 2^N) in mask order.

    q is the superset-sum transform of p; ``inplace`` lets it overwrite p (where the transform is the loop).
    """
    q = _transform(p, N, superset=True, inplace=inplace)
    masks, idx = _indices(N, order, p.device)
    eta = q.index_select(-1, masks)
    return eta, (_gather_fisher(q, eta, idx) if with_fisher else None)


def _gather_fisher(q: torch.Tensor, eta: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """G[S, T] = q[mask(S) | mask(T)] - eta_S eta_T (B, D, D) from q (B, 2^N) and eta (B, D)."""
    B, D = eta.shape
    q_or = q.index_select(-1, idx.view(-1)).view(B, D, D)
    return torch.addcmul(q_or, eta.view(B, D, 1), eta.view(B, 1, D), value=-1)


def subset_masks_cached(N: int, order: int, device: torch.device) -> torch.Tensor:
    """The subset masks (D,) on ``device`` (built once); where theta_S goes in the vector g of step 1."""
    return _indices(N, order, device)[0]


@lru_cache(maxsize=64)
def transform_operator(
    N: int, superset: bool, dtype: torch.dtype, device: torch.device
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The subset-sum (or superset-sum) transform over the last dim, out of place, as a callable.

    For code that applies it many times to small batches: the matrices are looked up once, and up to
    DENSE_ZETA_MAX_N the transform is a single product with the zeta matrix
    Z[a, b] = [a subset of b] (subset sums v Z, superset sums v Z^T).
    """
    if 2 <= N <= DENSE_ZETA_MAX_N:  # one product with the zeta matrix Z[a, b] = [a subset of b]
        with torch.inference_mode(False):  # cached: usable by autograd later
            Z = _zeta_matrix(N, dtype, device)
            Z = Z.T.contiguous() if superset else Z
        return lambda v: torch.matmul(v, Z)
    if _zeta_factors(N, dtype, device):
        return lambda v: _transform(v, N, superset=superset, inplace=False)
    return lambda v: _transform(v.clone(), N, superset=superset, inplace=True)  # in place on a copy: faster


def fisher_from_joint_trusted(q: torch.Tensor, N: int, order: int) -> torch.Tensor:
    """G[S, T] = q[mask(S) | mask(T)] - q[S] q[T] from the joint firing probabilities q (B, 2^N), mask order."""
    masks, idx = _indices(N, order, q.device)
    return _gather_fisher(q, q.index_select(-1, masks), idx)


def expectation_from_probs(p: ArrayLike, N: int, order: int = 2) -> torch.Tensor:
    """eta_S = P(all neurons of S fire) = sum_{x containing S} p(x), for p (..., 2^N) in seed order.

    The superset-sum transform of p read at the subset masks; no 2^N x D matrix.
    """
    N, order = check_N_order(N, order)
    p = as_theta(p, name="p")
    if p.ndim < 1 or p.shape[-1] != 2**N:
        raise ValueError(f"p must have shape (..., 2^N) = (..., {2**N}); got {tuple(p.shape)}")
    if not _tracks_grad(p):
        check_probabilities(p, "p", atol=max(1e-6, 2**N * torch.finfo(p.dtype).eps))
    q = _transform(seed_to_mask(p, N), N, superset=True, inplace=not _tracks_grad(p))
    return q[..., subset_masks(N, order, p.device)]


def log_prob(theta: ArrayLike, x: ArrayLike, N: int, order: int = 2) -> torch.Tensor:
    """log p(x | theta) = theta . F(x) - psi(theta) for binary patterns x (..., N).

    The argument order is that of every other function here (theta first, then N
    and order), as in :func:`log_probs`, which gives the same values for all 2^N patterns.

    Args:
        theta: natural parameters, shape (..., D).
        x: binary patterns, shape (..., N); its batch dimensions broadcast against theta's.
        N: number of neurons.
        order: interaction order.

    Returns:
        log p(x | theta), shape the broadcast batch shape.

    Raises:
        ValueError: when x is not (..., N) or not binary, or theta does not match N and order.
    """
    x = as_tensor(x, name="x")
    theta, N, order = _prepare(theta, N, order)
    if x.ndim < 1 or x.shape[-1] != N:
        raise ValueError(f"x must have shape (..., N) with N={N}; got {tuple(x.shape)}")
    check_binary(x, "x")
    Fx = features(x, N, order, dtype=theta.dtype)
    return (Fx * theta).sum(-1) - log_partition(theta, N, order)


def entropy(theta: ArrayLike, N: int, order: int = 2) -> torch.Tensor:
    """Entropy H = psi - theta . eta (nats), shape (...)."""
    theta = as_theta(theta)
    m = moments(theta, N, order, with_fisher=False)
    return m.psi - (theta * m.eta).sum(-1)


def heat_capacity(theta: ArrayLike, N: int, order: int = 2, beta: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Exact heat capacity C(beta) = d^2/dbeta^2 psi(beta theta) = beta^2 theta^T G(beta theta) theta.

    Equivalently beta^2 Var_{p_beta}[theta . F(x)]. ``beta`` may be a tensor;
    it broadcasts against the batch shape of ``theta``.
    """
    theta = as_theta(theta)
    beta_t = torch.as_tensor(beta, dtype=theta.dtype, device=theta.device)
    bt = beta_t[..., None] * theta
    G = fisher(bt, N, order)
    theta_b = theta.expand_as(bt)
    return beta_t**2 * torch.einsum("...i,...ij,...j->...", theta_b, G, theta_b)


def sample(
    theta: ArrayLike,
    n: int,
    N: int,
    order: int = 2,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Exact samples from p(x | theta) by inverse-CDF over the 2^N patterns.

    Args:
        theta: natural parameters, shape (..., D).
        n: number of samples per parameter vector.
        N: number of neurons.
        order: interaction order.
        generator: optional torch generator for reproducibility.

    Returns:
        Binary patterns, shape (..., n, N), dtype uint8.
    """
    n = check_positive_int(n, "n")
    theta, N, order = _prepare(theta, N, order)
    with torch.no_grad():
        flat, batch = _flatten(theta.detach())
        out = torch.empty(flat.shape[0], n, N, dtype=torch.uint8, device=theta.device)
        bits = torch.arange(N, device=theta.device)
        chunk = _chunk_size(N, max(flat.shape[0], 1), theta.dtype, theta.device, False)
        for s in range(0, flat.shape[0], chunk):
            logp = _core(flat[s : s + chunk], N, order, "logp", grad=False)
            cdf = logp.exp_().cumsum_(dim=-1)
            cdf = cdf / cdf[:, -1:]
            u = torch.rand(cdf.shape[0], n, dtype=cdf.dtype, device=cdf.device, generator=generator)
            idx = torch.searchsorted(cdf, u).clamp_(max=2**N - 1)
            out[s : s + chunk] = ((idx[..., None] >> bits) & 1).to(torch.uint8)
    return out.reshape(*batch, n, N)
