"""E-step by the joint Laplace posterior over all bins, batched in time.

The log posterior of the whole path (MODEL.md 3) is

    log p(theta_{1:T} | y) = sum_t R [ y_t . theta_t - psi(theta_t) ]
                             - 1/2 (theta_1 - mu)^T Sigma^{-1} (theta_1 - mu)
                             - 1/2 sum_{t>=2} r_t^T Q^{-1} r_t + const,   r_t = theta_t - F theta_{t-1} - U u_t.

Its negative Hessian H = J + blockdiag(R G(theta_t)) is block tridiagonal: the
prior precision J has the diagonal blocks Sigma^{-1} + F^T Q^{-1} F (t = 1),
Q^{-1} + F^T Q^{-1} F (1 < t < T) and Q^{-1} (t = T), and the off-diagonal
blocks J_{t+1,t} = -Q^{-1} F. Damped Newton on all bins at once,

    theta <- theta + a H^{-1} grad,   grad_t = R (y_t - eta(theta_t)) + (h - J theta)_t,

with h_1 = Sigma^{-1} mu - F^T Q^{-1} U u_2, h_t = Q^{-1} U u_t - F^T Q^{-1} U u_{t+1}, finds the mode
theta_hat. Each iteration evaluates psi, eta and G of all T bins in one batched
call and solves the block-tridiagonal system by block cyclic reduction
(:func:`solve_tridiagonal`, O(log T) sequential depth; :func:`solve_tridiagonal_sequential`
is the plain forward-backward reference). At the mode, H^{-1} gives the smoothed
covariances sigma_s[t] = (H^{-1})_{tt} and the lag-one covariances
Cov(theta_{t+1}, theta_t) = (H^{-1})_{t+1,t} (Paninski et al., J Comput Neurosci 2010;
an iterated posterior-linearisation smoother, Sarkka & Garcia-Fernandez 2021), and
the Laplace log marginal likelihood

    l = sum_t R [ y_t . theta_hat_t - psi(theta_hat_t) ] + log p(theta_hat_{1:T})
        + (T D / 2) log 2 pi - 1/2 log det H.

How it differs from the Laplace filter and smoother (:mod:`.filter`, :mod:`.smoother`):
the filter linearises each bin's likelihood at its *filtered* mode, the joint
E-step at the *smoothed* mode, where the posterior mass is. Both are exact for a
Gaussian likelihood; for the Ising likelihood they are two Laplace approximations
of the same posterior, and their l differ by the linearisation error. A singular
G_t (a silent neuron) is fine: only H, which contains J, is factorised.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .covariance import DENSE, _sym
from .observation import ObservationModel
from .records import FilterResult, SmootherResult, StateSpaceParams

__all__ = [
    "TridiagonalSolution",
    "joint_e_step",
    "prior_precision",
    "solve_tridiagonal",
    "solve_tridiagonal_sequential",
    "filtered_from_joint",
]


class TridiagonalSolution(NamedTuple):
    """Solution of H x = h for a symmetric positive-definite block-tridiagonal H.

    Attributes:
        x: H^{-1} h, shape (B, T, D).
        logdet: log det H, shape (B,), or None.
        cov: the diagonal blocks (H^{-1})_{tt}, shape (B, T, D, D), or None.
        lag_one: the blocks (H^{-1})_{t+1,t}, shape (B, T-1, D, D), or None.
    """

    x: torch.Tensor
    logdet: torch.Tensor
    cov: torch.Tensor | None = None
    lag_one: torch.Tensor | None = None


def _spd_inverse(H: torch.Tensor, infos: list[torch.Tensor], logdet: bool = True):
    """(H^{-1}, log det H or None) of a batch of SPD blocks: H = L L^T, H^{-1} = L^{-T} L^{-1}.

    Batched triangular inversion and a product are much faster on a CPU than
    ``cholesky_solve`` over many small blocks. The Cholesky status goes into ``infos``
    (checked once per solve by :func:`_check`).
    """
    L, info = torch.linalg.cholesky_ex(H)
    infos.append(info)
    eye = torch.eye(H.shape[-1], dtype=H.dtype, device=H.device).expand_as(H)
    Li = torch.linalg.solve_triangular(L, eye, upper=False)
    return Li.transpose(-1, -2) @ Li, (_logdet_chol(L) if logdet else None)


def _check(infos: list[torch.Tensor]) -> None:
    if bool(torch.cat([i.flatten() for i in infos]).any()):
        raise torch.linalg.LinAlgError(
            "the posterior precision of the joint E-step is not positive definite (a state-noise covariance "
            "Q or sigma_o too close to singular for float64)"
        )


def _mv(A: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (A @ x.unsqueeze(-1)).squeeze(-1)


def _logdet_chol(L: torch.Tensor) -> torch.Tensor:
    return 2.0 * torch.diagonal(L, dim1=-2, dim2=-1).log().sum(-1)


def solve_tridiagonal(
    diag: torch.Tensor,
    lower: torch.Tensor,
    rhs: torch.Tensor,
    *,
    want_cov: bool = False,
    dense_size: int | None = None,
    diagonal_lower: bool = False,
) -> TridiagonalSolution:
    """Solve H x = rhs by odd-even block cyclic reduction, batched over data sets and blocks.

    See :func:`_odd_even`. ``logdet``, ``cov`` and ``lag_one`` are computed only with
    ``want_cov`` (else None). ``dense_size`` (default :data:`DENSE_SIZE`) is the T D at
    which the reduction stops and solves the rest as one dense matrix; every value gives the
    same solution.

    Args:
        diag: the diagonal blocks H_tt, (B, T, D, D).
        lower: the sub-diagonal blocks H_{t+1,t}, (B, T-1, D, D); with ``diagonal_lower``
            their diagonals (B, T-1, D) (H_{t+1,t} = diag(lower[:, t]), as J_{t+1,t} = -Q^{-1} F
            is for a diagonal Q and F, the default). The first level of the reduction then
            needs no block products (:func:`_odd_even_diagonal`).
        rhs: (B, T, D).
        want_cov: also return log det H and the blocks of H^{-1}.
        dense_size: see above.
        diagonal_lower: ``lower`` holds diagonals.

    Raises:
        torch.linalg.LinAlgError: when H is not positive definite to float64 precision.
    """
    infos: list[torch.Tensor] = []
    # blocks first: every split is then a strided view of the leading dimension
    x, logdet, cov, lag = (_odd_even_diagonal if diagonal_lower else _odd_even)(
        diag.transpose(0, 1),
        lower.transpose(0, 1),
        rhs.transpose(0, 1).unsqueeze(-1),
        want_cov,
        infos,
        DENSE_SIZE if dense_size is None else int(dense_size),
    )
    _check(infos)
    x = x.squeeze(-1).transpose(0, 1)
    if not want_cov:
        return TridiagonalSolution(x, None)
    return TridiagonalSolution(x, logdet, cov.transpose(0, 1), lag.transpose(0, 1))


def _assemble(diag: torch.Tensor, lower: torch.Tensor) -> torch.Tensor:
    """The dense (B, T D, T D) matrix of blocks ``diag`` (T, B, D, D) and ``lower`` (T-1, B, D, D)."""
    T, B, D = diag.shape[:3]
    M = diag.new_zeros(B, T, D, T, D)
    M.diagonal(dim1=1, dim2=3).copy_(diag.permute(1, 2, 3, 0))
    if T > 1:
        M.diagonal(offset=-1, dim1=1, dim2=3).copy_(lower.permute(1, 2, 3, 0))
        M.diagonal(offset=1, dim1=1, dim2=3).copy_(lower.permute(1, 3, 2, 0))
    return M.view(B, T * D, T * D)


def _extract(S: torch.Tensor, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The diagonal (T, B, D, D) and sub-diagonal (T-1, B, D, D) blocks of (B, T D, T D) matrices."""
    B, TD = S.shape[:2]
    D = TD // T
    S5 = S.view(B, T, D, T, D)
    diag = S5.diagonal(dim1=1, dim2=3).permute(3, 0, 1, 2)
    sub = S5.diagonal(offset=-1, dim1=1, dim2=3).permute(3, 0, 1, 2)
    return diag, sub


#: the reduction stops, and solves the rest as one dense Cholesky, once T D is at most this
DENSE_SIZE = 128


def _dense_base(diag, lower, rhs, want_cov, infos):
    """The last level: one dense Cholesky of the whole (T D x T D) system, blocks first."""
    T, B, D = diag.shape[:3]
    M = _assemble(diag, lower)
    L, info = torch.linalg.cholesky_ex(M)
    infos.append(info)
    x = torch.cholesky_solve(rhs.squeeze(-1).transpose(0, 1).reshape(B, T * D, 1), L)
    x = x.view(B, T, D, 1).transpose(0, 1)
    if not want_cov:
        return x, None, None, None
    cov, lag = _extract(torch.cholesky_inverse(L), T)
    return x, _logdet_chol(L), _sym(cov), lag


def _odd_length(diag: torch.Tensor, lower: torch.Tensor, rhs: torch.Tensor):
    """Pad an even number of blocks to an odd one with an identity block that couples to nothing.

    ``lower`` may hold blocks (T-1, B, D, D) or their diagonals (T-1, B, D).
    """
    T, B, D = diag.shape[:3]
    if T % 2 == 1:
        return diag, lower, rhs
    eye = torch.eye(D, dtype=diag.dtype, device=diag.device).expand(1, B, D, D)
    return (
        torch.cat([diag, eye]),
        torch.cat([lower, lower.new_zeros(1, *lower.shape[1:])]),
        torch.cat([rhs, rhs.new_zeros(1, B, D, 1)]),
    )


def _interleave(Ss: torch.Tensor, cov_i: torch.Tensor, cross: torch.Tensor, T: int):
    """The blocks (H^{-1})_{tt} (T, B, D, D) and (H^{-1})_{t+1,t} (T-1, B, D, D) of a reduction level.

    From the separators' covariances ``Ss`` (even t), the eliminated blocks' ``cov_i`` (odd t) and
    their cross-covariances with the neighbouring separators ``cross`` = [Cov(x_i, x_{s_c}), Cov(x_i, x_{s_{c+1}})].
    """
    n, B, D = cov_i.shape[:3]
    Tp = 2 * n + 1
    cov = Ss.new_empty(Tp, B, D, D)
    cov[0::2] = Ss
    cov[1::2] = cov_i
    lag = Ss.new_empty(Tp - 1, B, D, D)
    lag[0::2] = cross[..., :D]
    lag[1::2] = cross[..., D:].transpose(-1, -2)
    return cov[:T], lag[: T - 1]


def _odd_even(
    diag: torch.Tensor,
    lower: torch.Tensor,
    rhs: torch.Tensor,
    want_cov: bool,
    infos: list[torch.Tensor],
    dense_size: int,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Odd-even block cyclic reduction, blocks first, on strided views (no chunk assembly).

    H has diagonal blocks ``diag`` (T, B, D, D) and sub-diagonal blocks ``lower[t] = H_{t+1,t}``
    (T-1, B, D, D); ``rhs`` is (T, B, D, 1). O(log T) levels, each a handful of batched operations. The even blocks
    s_c = 2c are the separators and each odd block i = 2c + 1 is eliminated alone
    (T is padded to odd length with an identity block that couples to nothing): with
    M_i = H_ii^{-1} (:func:`_spd_inverse`), Kl = H_{i,i-1}, Kr = H_{i+1,i},

        [A, C, a] = M_i [Kl, Kr^T, h_i],
        H'_{s_c} = H_{s_c} - Kl_c^T A_c - Kr_{c-1} C_{c-1},   H'_{s_{c+1}, s_c} = -Kr_c A_c,
        h'_{s_c} = h_{s_c} - Kl_c^T a_c - Kr_{c-1} a_{c-1},

    then x_i = a - A x_{s_c} - C x_{s_{c+1}} and, with S_pair the separators' pair covariance,
    Cov(x_i, (x_{s_c}, x_{s_{c+1}})) = -[A, C] S_pair and Cov(x_i) = M_i + [A, C] S_pair [A, C]^T.
    The recursion stops once T D <= ``dense_size`` (or T <= 2); log det H is the sum of the
    log det H_ii of every level plus the last dense block's.

    Returns:
        (x (T, B, D, 1), log det H (B,), the blocks (H^{-1})_{tt} (T, B, D, D),
        the blocks (H^{-1})_{t+1,t} (T-1, B, D, D)); the last three None without ``want_cov``.
    """
    T, B, D = diag.shape[:3]
    if T <= 2 or T * D <= dense_size:
        return _dense_base(diag, lower, rhs, want_cov, infos)
    diag, lower, rhs = _odd_length(diag, lower, rhs)
    Tp = diag.shape[0]
    n = Tp // 2  # interiors; n + 1 separators
    Kl, Kr = lower[0::2], lower[1::2]  # H_{2c+1,2c}, H_{2c+2,2c+1}
    Mi, logdet_i = _spd_inverse(diag[1::2], infos, logdet=want_cov)
    X = Mi @ torch.cat([Kl, Kr.transpose(-1, -2), rhs[1::2]], -1)  # [A, C, a], (n, B, D, 2D+1)
    KlX = Kl.transpose(-1, -2) @ X
    KrX = Kr @ X
    Hh = torch.cat([diag[0::2], rhs[0::2]], -1)  # (n+1, B, D, D+1)
    Hh[:n, ..., :D] -= KlX[..., :D]
    Hh[:n, ..., D:] -= KlX[..., 2 * D :]
    Hh[1:, ..., :D] -= KrX[..., D : 2 * D]
    Hh[1:, ..., D:] -= KrX[..., 2 * D :]
    xs, logdet_s, Ss, Cs = _odd_even(Hh[..., :D], -KrX[..., :D], Hh[..., D:], want_cov, infos, dense_size)
    AC = X[..., : 2 * D]
    x = diag.new_empty(Tp, B, D, 1)
    x[0::2] = xs
    x[1::2] = X[..., 2 * D :] - AC @ torch.cat([xs[:n], xs[1:]], -2)
    if not want_cov:
        return x[:T], None, None, None
    logdet = logdet_s + logdet_i.sum(0)
    S_pair = torch.cat([torch.cat([Ss[:n], Cs.transpose(-1, -2)], -1), torch.cat([Cs, Ss[1:]], -1)], -2)
    cross = -(AC @ S_pair)  # [Cov(x_i, x_{s_c}), Cov(x_i, x_{s_{c+1}})], (n, B, D, 2D)
    cov, lag = _interleave(Ss, _sym(Mi - cross @ AC.transpose(-1, -2)), cross, T)
    return x[:T], logdet, cov, lag


def _odd_even_diagonal(
    diag: torch.Tensor,
    lower: torch.Tensor,
    rhs: torch.Tensor,
    want_cov: bool,
    infos: list[torch.Tensor],
    dense_size: int,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """:func:`_odd_even` when every sub-diagonal block is diagonal, H_{t+1,t} = diag(k_t) (``lower`` (T-1, B, D)).

    The first level's products with Kl = diag(kl), Kr = diag(kr) are scalings: with M = H_ii^{-1},

        A = M diag(kl),  C = M diag(kr),  a = M h_i,
        H'_{s_c} = H_{s_c} - kl_c kl_c^T * M_c - kr_{c-1} kr_{c-1}^T * M_{c-1},
        H'_{s_{c+1}, s_c} = -kr_c kl_c^T * M_c   (* the elementwise product),
        x_i = a - M (kl * x_{s_c} + kr * x_{s_{c+1}}),
        Cov(x_i, (x_{s_c}, x_{s_{c+1}})) = -M W,  W = kl * S_pair[:D] + kr * S_pair[D:]  (rows scaled),
        Cov(x_i) = M + M (W_l * kl^T + W_r * kr^T) M  (W = [W_l, W_r]; * scales columns),

    which leaves one inverse, one product for the covariances and one for the cross terms per
    eliminated block, against about ten products of dense couplings. The reduced system has
    dense couplings and goes on by :func:`_odd_even`.
    """
    T, B, D = diag.shape[:3]
    if T <= 2 or T * D <= dense_size:
        return _dense_base(diag, torch.diag_embed(lower), rhs, want_cov, infos)
    diag, lower, rhs = _odd_length(diag, lower, rhs)
    Tp = diag.shape[0]
    n = Tp // 2
    kl, kr = lower[0::2], lower[1::2]  # diagonals of H_{2c+1,2c}, H_{2c+2,2c+1}, (n, B, D)
    Mi, logdet_i = _spd_inverse(diag[1::2], infos, logdet=want_cov)
    a = Mi @ rhs[1::2]  # (n, B, D, 1)
    kl_c, kr_c = kl.unsqueeze(-1), kr.unsqueeze(-1)  # (n, B, D, 1): row scalings
    Hs = diag[0::2].clone()
    hs = rhs[0::2].clone()
    Hs[:n] -= kl_c * Mi * kl.unsqueeze(-2)
    hs[:n] -= kl_c * a
    Hs[1:] -= kr_c * Mi * kr.unsqueeze(-2)
    hs[1:] -= kr_c * a
    xs, logdet_s, Ss, Cs = _odd_even(Hs, -(kr_c * Mi * kl.unsqueeze(-2)), hs, want_cov, infos, dense_size)
    x = diag.new_empty(Tp, B, D, 1)
    x[0::2] = xs
    x[1::2] = a - Mi @ (kl_c * xs[:n] + kr_c * xs[1:])
    if not want_cov:
        return x[:T], None, None, None
    logdet = logdet_s + logdet_i.sum(0)
    # W = [diag(kl), diag(kr)] S_pair, S_pair = [[S_c, C_c^T], [C_c, S_{c+1}]]
    W = torch.cat([kl_c * Ss[:n] + kr_c * Cs, kl_c * Cs.transpose(-1, -2) + kr_c * Ss[1:]], -1)
    cross = -(Mi @ W)  # [Cov(x_i, x_{s_c}), Cov(x_i, x_{s_{c+1}})], (n, B, D, 2D)
    cov_i = _sym(Mi - (cross[..., :D] * kl.unsqueeze(-2) + cross[..., D:] * kr.unsqueeze(-2)) @ Mi)
    cov, lag = _interleave(Ss, cov_i, cross, T)
    return x[:T], logdet, cov, lag


def solve_tridiagonal_sequential(
    diag: torch.Tensor, lower: torch.Tensor, rhs: torch.Tensor, *, want_cov: bool = False, diagonal_lower: bool = False
) -> TridiagonalSolution:
    """The reference solver: block forward elimination and back substitution, one block at a time.

        P_1 = H_1,  P_t = H_t - H_{t,t-1} P_{t-1}^{-1} H_{t,t-1}^T,  z_t = h_t - H_{t,t-1} P_{t-1}^{-1} z_{t-1},
        x_T = P_T^{-1} z_T,  x_t = P_t^{-1} (z_t - H_{t+1,t}^T x_{t+1}),
        S_T = P_T^{-1},  G_t = P_t^{-1} H_{t+1,t}^T,  S_t = P_t^{-1} + G_t S_{t+1} G_t^T,  S_{t+1,t} = -S_{t+1} G_t^T.

    Same arguments and result as :func:`solve_tridiagonal`; it loops over the T blocks. Diagonal
    couplings K_t = diag(k_t) turn the products with K into scalings (:func:`_sequential_diagonal`).
    """
    if diagonal_lower:
        return _sequential_diagonal(diag, lower, rhs, want_cov)
    B, T, D = rhs.shape
    Ls, Pi, z = [], [], []
    logdet = rhs.new_zeros(B)
    for t in range(T):
        P = diag[:, t]
        zt = rhs[:, t]
        if t > 0:
            K = lower[:, t - 1]
            P = _sym(P - K @ Pi[-1] @ K.transpose(-1, -2))
            zt = zt - _mv(K @ Pi[-1], z[-1])
        L = torch.linalg.cholesky(P)
        logdet = logdet + _logdet_chol(L)
        Ls.append(L)
        Pi.append(_sym(torch.cholesky_inverse(L)))
        z.append(zt)
    xs = [None] * T
    xs[T - 1] = _mv(Pi[T - 1], z[T - 1])
    for t in range(T - 2, -1, -1):
        xs[t] = _mv(Pi[t], z[t] - _mv(lower[:, t].transpose(-1, -2), xs[t + 1]))
    x = torch.stack(xs, 1)
    if not want_cov:
        return TridiagonalSolution(x, logdet)
    S = [None] * T
    lag = [None] * (T - 1)
    S[T - 1] = Pi[T - 1]
    for t in range(T - 2, -1, -1):
        G = Pi[t] @ lower[:, t].transpose(-1, -2)
        S[t] = _sym(Pi[t] + G @ S[t + 1] @ G.transpose(-1, -2))
        lag[t] = -(S[t + 1] @ G.transpose(-1, -2))
    lag_t = torch.stack(lag, 1) if T > 1 else diag.new_zeros(B, 0, D, D)
    return TridiagonalSolution(x, logdet, torch.stack(S, 1), lag_t)


def _sequential_diagonal(diag: torch.Tensor, k: torch.Tensor, rhs: torch.Tensor, want_cov: bool) -> TridiagonalSolution:
    """:func:`solve_tridiagonal_sequential` for couplings H_{t+1,t} = diag(k_t), k (B, T-1, D):

        P_t = H_t - (k_{t-1} k_{t-1}^T) * P_{t-1}^{-1},  z_t = h_t - k_{t-1} * (P_{t-1}^{-1} z_{t-1}),
        x_t = P_t^{-1} (z_t - k_t * x_{t+1}),
        S_{t+1,t} = -S_{t+1} (k_t * P_t^{-1}),  S_t = P_t^{-1} - (P_t^{-1} * k_t^T) S_{t+1,t}

    (* the elementwise product, k_t a column or k_t^T a row): one Cholesky factor and inverse per
    block, and for the covariances two products.
    """
    B, T, D = rhs.shape
    Ls, Pi, z = [], [], []
    kk = k.unsqueeze(-1) * k.unsqueeze(-2)  # (B, T-1, D, D)
    for t in range(T):
        P = diag[:, t]
        zt = rhs[:, t]
        if t > 0:
            P = P - kk[:, t - 1] * Pi[-1]
            zt = zt - k[:, t - 1] * _mv(Pi[-1], z[-1])
        L = torch.linalg.cholesky(P)
        Ls.append(L)
        Pi.append(_sym(torch.cholesky_inverse(L)))
        z.append(zt)
    logdet = _logdet_chol(torch.stack(Ls, 1)).sum(-1)
    xs = [None] * T
    xs[T - 1] = _mv(Pi[T - 1], z[T - 1])
    for t in range(T - 2, -1, -1):
        xs[t] = _mv(Pi[t], z[t] - k[:, t] * xs[t + 1])
    x = torch.stack(xs, 1)
    if not want_cov:
        return TridiagonalSolution(x, logdet)
    S = [None] * T
    lag = [None] * (T - 1)
    S[T - 1] = Pi[T - 1]
    for t in range(T - 2, -1, -1):
        lag[t] = -(S[t + 1] @ (k[:, t].unsqueeze(-1) * Pi[t]))
        S[t] = _sym(Pi[t] - (Pi[t] * k[:, t].unsqueeze(-2)) @ lag[t])
    lag_t = torch.stack(lag, 1) if T > 1 else diag.new_zeros(B, 0, D, D)
    return TridiagonalSolution(x, logdet, torch.stack(S, 1), lag_t)


#: Block-tridiagonal solvers by name: "parallel" (cyclic reduction) and "sequential" (reference).
SOLVERS = {"parallel": solve_tridiagonal, "sequential": solve_tridiagonal_sequential}

#: on a CPU, blocks of at least this size are solved sequentially (see :func:`choose_solver`)
SEQUENTIAL_MIN_D = 105


def choose_solver(D: int, device: torch.device) -> str:
    """The block-tridiagonal solver for blocks of size D on ``device``.

    Cyclic reduction does about twice the arithmetic of forward elimination but in
    O(log T) sequential steps. On a GPU, and on a CPU for small blocks (where each step
    costs its dispatch, not its arithmetic), that wins; on a CPU the two meet at about
    D = 105 (measured on a 2-core CPU, T = 50, solve / solve with covariances: 3.0x / 3.0x
    faster at D = 21, 1.7x / 2.0x at D = 36, 1.3x / 1.5x at D = 55, 1.4x / 1.0x at D = 78,
    1.0x / 1.0x at D = 105). Both give the same solution to rounding.
    """
    return "sequential" if device.type == "cpu" and D >= SEQUENTIAL_MIN_D else "parallel"


class _Prior(NamedTuple):
    """The Gaussian prior of the path in information form, and what its log density needs."""

    diag: torch.Tensor  # (B, T, D, D)
    lower: torch.Tensor  # (B, T-1, D, D)
    coupling: torch.Tensor | None  # the diagonal of -Q^{-1} F (B, D) where that matrix is diagonal, else None
    h: torch.Tensor  # (B, T, D)
    Sigma_inv: torch.Tensor  # (B, D, D)
    Q_inv: torch.Tensor  # (B, D, D)
    drift: torch.Tensor | None  # U u_t for t >= 2, (B, T-1, D)
    const: torch.Tensor  # -1/2 log det Sigma - (T-1)/2 log det Q - T D/2 log 2 pi, (B,)

    def couplings(self) -> tuple[torch.Tensor, bool]:
        """(the sub-diagonal blocks as the solvers take them, whether they are diagonals (B, T-1, D))."""
        if self.coupling is None:
            return self.lower, False
        B, T1 = self.lower.shape[:2]
        return self.coupling[:, None].expand(B, T1, self.coupling.shape[-1]), True


def _spd_inv_logdet(M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(M^{-1}, log det M) of SPD blocks, by :func:`_spd_inverse`; raises when M is not positive definite."""
    infos: list[torch.Tensor] = []
    Mi, logdet = _spd_inverse(M, infos)
    _check(infos)
    return Mi, logdet


def prior_precision(params: StateSpaceParams, T: int, u: torch.Tensor | None = None) -> _Prior:
    """The prior N(mu, Sigma), theta_t = F theta_{t-1} + U u_t + N(0, Q) as a block-tridiagonal precision J and h."""
    mu, Sigma, Q, F = params.mu, params.Sigma, params.Q, params.F
    B, D = mu.shape
    Si, logdet_S = _spd_inv_logdet(Sigma)
    Qi, logdet_Q = _spd_inv_logdet(Q)
    FtQi = F.transpose(-1, -2) @ Qi
    FtQiF = _sym(FtQi @ F)
    diag = (Qi + FtQiF)[:, None].expand(B, T, D, D).clone()
    diag[:, 0] = Si + (FtQiF if T > 1 else 0.0)
    if T > 1:
        diag[:, T - 1] = Qi
    K = -(Qi @ F)
    lower = K[:, None].expand(B, max(T - 1, 0), D, D)
    # a diagonal Q and F (the default: F = I, Q = lambda I) give diagonal couplings, which the solvers use
    k = torch.diagonal(K, dim1=-2, dim2=-1)
    coupling = k if not bool((K - torch.diag_embed(k)).any()) else None
    h = mu.new_zeros(B, T, D)
    h[:, 0] = _mv(Si, mu)
    drift = None
    if params.U is not None and u is not None and T > 1:
        drift = u[:, 1:] @ params.U.transpose(-1, -2)  # (B, T-1, D): U u_t, t = 2..T
        h[:, 1:] += drift @ Qi  # Qi symmetric
        h[:, :-1] -= drift @ FtQi.transpose(-1, -2)
    const = -0.5 * logdet_S - 0.5 * (T - 1) * logdet_Q - 0.5 * T * D * math.log(2 * math.pi)
    return _Prior(diag, lower, coupling, h, Si, Qi, drift, const)


def _prior_offset(prior: _Prior, params: StateSpaceParams) -> torch.Tensor:
    """c = 1/2 (mu^T Sigma^{-1} mu + sum_t (U u_t)^T Q^{-1} U u_t).

    log p(theta) = -1/2 theta^T J theta + h^T theta - c + const.
    """
    val = 0.5 * (params.mu * _mv(prior.Sigma_inv, params.mu)).sum(-1)
    if prior.drift is not None:
        val = val + 0.5 * ((prior.drift @ prior.Q_inv) * prior.drift).sum((-1, -2))
    return val


def _prior_matvec(prior: _Prior, theta: torch.Tensor) -> torch.Tensor:
    """J theta for the block-tridiagonal J, (B, T, D)."""
    out = (prior.diag @ theta.unsqueeze(-1)).squeeze(-1)
    if theta.shape[1] > 1:
        if prior.coupling is not None:
            k = prior.coupling[:, None]
            out[:, 1:] += k * theta[:, :-1]
            out[:, :-1] += k * theta[:, 1:]
        else:
            out[:, 1:] += (prior.lower @ theta[:, :-1].unsqueeze(-1)).squeeze(-1)
            out[:, :-1] += (prior.lower.transpose(-1, -2) @ theta[:, 1:].unsqueeze(-1)).squeeze(-1)
    return out


def backtrack(
    value,
    x: torch.Tensor,
    d: torch.Tensor,
    cand: torch.Tensor,
    f: torch.Tensor,
    slope: torch.Tensor,
    accepted: torch.Tensor,
    ok: torch.Tensor,
    max_halvings: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Armijo backtracking per data set after a full step ``cand = x + d`` was tried.

    Data sets where the full step was ``ok`` take it; the others halve the step a until
    value(x + a d) >= f + 1e-4 a slope (or ``max_halvings`` are spent).

    Returns:
        (the new x (B, T, D), accepted (B,): whether each data set found an ascent step or
        was already done).
    """
    step = torch.ones_like(f)
    x = torch.where(ok[:, None, None], cand, x)
    for _ in range(max_halvings):
        step = torch.where(accepted, step, 0.5 * step)
        cand = x + step[:, None, None] * d
        fc = value(cand)
        ok = (~accepted) & torch.isfinite(fc) & (fc >= f + 1e-4 * step * slope)
        x = torch.where(ok[:, None, None], cand, x)
        accepted = accepted | ok
        if bool(accepted.all()):
            break
    return x, accepted


def joint_e_step(
    obs: ObservationModel,
    params: StateSpaceParams,
    *,
    u: torch.Tensor | None = None,
    theta_init: torch.Tensor | None = None,
    tol: float = 1e-8,
    max_newton: int = 100,
    max_halvings: int = 40,
    solver: str = "auto",
) -> tuple[FilterResult, SmootherResult, torch.Tensor]:
    """Joint-mode E-step: the mode of log p(theta_{1:T} | y), its Laplace covariances and l.

    Args:
        obs: observation model with full covariances (``obs.diagonal`` False).
        params: hyperparameters (B leading).
        u: exogenous input (B, T, n_u) or None.
        theta_init: starting path (B, T, D), e.g. the previous EM iteration's smoothed
            means; by default mu in every bin.
        tol: Newton stops when max_t max |grad_t| / R < tol for a data set.
        max_newton: most Newton iterations.
        max_halvings: most step halvings (Armijo backtracking) per iteration.
        solver: "parallel" (block cyclic reduction), "sequential" (block forward
            elimination and back substitution) or "auto" (:func:`choose_solver`).

    Returns:
        (filt, smooth, mll). ``filt`` carries only the Newton bookkeeping (its tensors are
        None; see :func:`filtered_from_joint`); ``smooth`` holds theta_s, sigma_s and the
        lag-one covariances (its ``gain`` is None: the M-step needs none); mll is (B,).
    """
    if obs.diagonal:
        raise ValueError("estep='joint' needs full covariances (method='exact')")
    if solver == "auto":
        solver = choose_solver(obs.D, params.mu.device)
    solve = SOLVERS[solver]
    B, T, D = obs.B, obs.T, obs.D
    prior = prior_precision(params, T, u)
    R = float(obs.R) if obs.R_scale is None else obs.R_scale[:, None, None]
    x = params.mu[:, None].expand(B, T, D).clone() if theta_init is None else theta_init.clone()

    def prior_part(th: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(-1/2 th^T J th + h^T th (B,), h - J th (B, T, D))."""
        r = prior.h - _prior_matvec(prior, th)
        return (th * (r + prior.h)).sum((-1, -2)) * 0.5, r

    def evaluate(th: torch.Tensor):
        v, g, Hobs = obs.value_grad_hess_all(th)
        fp, gp = prior_part(th)
        return v.sum(-1) + fp, g + gp, Hobs

    def value(th: torch.Tensor) -> torch.Tensor:
        return obs.log_lik_all(th).sum(-1) + prior_part(th)[0]

    # The gradient's rounding floor: h - J theta is computed to about eps (|J| |theta| + |h|),
    # which exceeds tol R when a state-noise variance has collapsed (Q^{-1} ~ 1e10). Below
    # it no Newton step can make progress, so it counts as converged.
    J_max = prior.diag.abs().flatten(1).amax(-1)
    h_max = prior.h.abs().flatten(1).amax(-1)
    R_b = R.flatten() if isinstance(R, torch.Tensor) else torch.full_like(J_max, R)

    def small(g: torch.Tensor, th: torch.Tensor) -> torch.Tensor:
        floor = 64 * torch.finfo(g.dtype).eps * (J_max * (1 + th.abs().flatten(1).amax(-1)) + h_max)
        return g.abs().flatten(1).amax(-1) <= torch.maximum(tol * R_b, floor)

    lower, diagonal_lower = prior.couplings()

    f, g, Hobs = evaluate(x)
    done = small(g, x)
    it = 0
    while it < max_newton and not bool(done.all()):
        it += 1
        d = solve(prior.diag - Hobs, lower, g, diagonal_lower=diagonal_lower).x
        if bool(done.any()):
            d = torch.where(done[:, None, None], torch.zeros_like(d), d)
        slope = (g * d).sum((-1, -2))
        # the full Newton step, with the derivatives there (accepted almost always)
        cand = x + d
        fc, gc, Hc = evaluate(cand)
        ok = torch.isfinite(fc) & (fc >= f + 1e-4 * slope)
        if bool((ok | done).all()):
            keep = ok[:, None, None]
            x = torch.where(keep, cand, x)
            f, g, Hobs = torch.where(ok, fc, f), torch.where(keep, gc, g), torch.where(keep[..., None], Hc, Hobs)
            done = small(g, x)
            continue
        x, accepted = backtrack(value, x, d, cand, f, slope, done | ok, ok, max_halvings)
        f, g, Hobs = evaluate(x)
        done = small(g, x) | ~accepted  # a data set with no ascent left at round-off level is done
    converged = bool(small(g, x).all())
    sol = solve(prior.diag - Hobs, lower, g, want_cov=True, diagonal_lower=diagonal_lower)
    mll = f - 0.5 * sol.logdet + (prior.const + 0.5 * T * D * math.log(2 * math.pi)) - _prior_offset(prior, params)
    filt = FilterResult(None, None, None, None, it, converged, DENSE)
    return filt, SmootherResult(x, sol.cov, None, sol.lag_one, DENSE), mll


def filtered_from_joint(
    obs: ObservationModel, params: StateSpaceParams, theta_s: torch.Tensor, u: torch.Tensor | None = None
) -> FilterResult:
    """Filtered marginals of the Gaussian approximation at the joint mode.

    The likelihood of bin t is replaced by its quadratic expansion at theta_s[t]
    (precision G_t = R G(theta_s[t])), and the Kalman filter of that linear-Gaussian
    model runs one bin at a time:

        W_{t|t-1} = F W_{t-1|t-1} F^T + Q,   W_{t|t} = (W_{t|t-1}^{-1} + G_t)^{-1} = (I + W_{t|t-1} G_t)^{-1} W_{t|t-1},
        theta_{t|t} = theta_{t|t-1} + W_{t|t} [ grad_t + G_t (theta_s[t] - theta_{t|t-1}) ],

    where grad_t = R (y_t - eta(theta_s[t])). The second form of W_{t|t} needs no inverse
    of G_t (singular for a silent neuron) nor of W_{t|t-1}: I + W G has eigenvalues >= 1.
    At the last bin theta_{T|T} = theta_s[T] up to the mode's tolerance. Sequential in t
    (once per fit, for the reported theta_f and sigma_f).
    """
    B, T, D = theta_s.shape
    _, g, Hobs = obs.value_grad_hess_all(theta_s)
    Gobs = -Hobs
    # the bins' expansion points in the filter's form: b_t = grad_t + G_t theta_s[t]
    b = g + _mv(Gobs, theta_s)
    theta_f = theta_s.new_empty(B, T, D)
    sigma_f = theta_s.new_empty(B, T, D, D)
    theta_p = theta_s.new_empty(B, T, D)
    sigma_p = theta_s.new_empty(B, T, D, D)
    drift = None
    if params.U is not None and u is not None:
        drift = u @ params.U.transpose(-1, -2)
    eye = torch.eye(D, dtype=theta_s.dtype, device=theta_s.device)
    F, Ft, Q = params.F, params.F.transpose(-1, -2), params.Q
    random_walk = bool((F == eye).all())  # F = I (the default): the prediction needs no products
    tp, Wp = params.mu, params.Sigma
    for t in range(T):
        if t > 0:
            if random_walk:
                tp, Wp = theta_f[:, t - 1], sigma_f[:, t - 1] + Q
            else:
                tp, Wp = _mv(F, theta_f[:, t - 1]), _sym(F @ sigma_f[:, t - 1] @ Ft + Q)
            if drift is not None:
                tp = tp + drift[:, t]
        Wf = torch.linalg.solve(eye + Wp @ Gobs[:, t], Wp)
        Wf = 0.5 * (Wf + Wf.transpose(-1, -2))
        theta_f[:, t] = tp + _mv(Wf, b[:, t] - _mv(Gobs[:, t], tp))
        theta_p[:, t], sigma_p[:, t], sigma_f[:, t] = tp, Wp, Wf
    return FilterResult(theta_f, sigma_f, theta_p, sigma_p, 0, True, DENSE)
