"""The structure of the posterior covariances: dense (..., D, D) or diagonal (..., D).

The exact method keeps full covariance matrices; the approximate methods (large D) keep only their
diagonals, every coordinate of theta then being its own scalar state-space model. Which one a fit
uses is chosen once, from the observation model (:func:`covariance_of`, ``obs.diagonal``), and the
structure object travels with the filter's and the smoother's records
(:attr:`.records.FilterResult.cov`, :attr:`.records.SmootherResult.cov`), so that the smoother, the
M-step, the marginal likelihood and the stopping rules never guess it from a tensor's shape.

:class:`Dense` and :class:`Diagonal` hold no state; :data:`DENSE` and :data:`DIAGONAL` are their
instances. Each operation takes the covariances (and gains, F, Q) in its structure's layout: a
matrix (..., D, D) for :class:`Dense`, the diagonal (..., D) for :class:`Diagonal`, and a vector
(..., D) for vectors in both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

__all__ = ["Covariance", "Dense", "Diagonal", "DENSE", "DIAGONAL", "covariance_of"]


def _sym(W: torch.Tensor) -> torch.Tensor:
    """(W + W^T) / 2 of a batch of matrices."""
    return 0.5 * (W + W.transpose(-1, -2))


class Covariance(ABC):
    """The operations the filter, the smoother, the M-step and l need on covariances of one structure.

    Attributes:
        name: "dense" or "diagonal".
        diagonal: whether the covariances are kept as their diagonals (the approximate methods).
    """

    name: ClassVar[str]
    diagonal: ClassVar[bool]

    def __repr__(self) -> str:
        return self.name.upper()

    def __reduce__(self) -> str:
        # pickled by reference: the module-level instance, so DENSE stays the one dense structure
        return self.name.upper()

    def predict(
        self, theta: torch.Tensor, W: torch.Tensor, F: torch.Tensor, Q: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The prediction step without input: (F theta, F W F^T + Q).

        Args:
            theta: the previous mean (..., D).
            W: the previous covariance.
            F: the autoregressive matrix, in this structure's layout.
            Q: the state-noise covariance.

        Returns:
            (F theta (..., D), F W F^T + Q).
        """
        return self.matvec(F, theta), self.propagate(F, W, Q)

    @abstractmethod
    def matvec(self, A: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """A v for a matrix A of this structure and vectors v (..., D)."""

    @abstractmethod
    def propagate(self, A: torch.Tensor, W: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
        """A W A^T + add (symmetrised when dense): the covariance after a linear map A plus ``add``."""

    @abstractmethod
    def matmul_t(self, X: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
        """X A^T for two matrices of this structure (e.g. the lag-one covariance W_{t+1|T} A_t^T)."""

    @abstractmethod
    def inverse(self, W: torch.Tensor) -> torch.Tensor:
        """W^{-1} of symmetric positive-definite W (by Cholesky when dense; 1 / w when diagonal)."""

    @abstractmethod
    def solve(self, W: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """W^{-1} v for symmetric positive-definite W and vectors v (..., D)."""

    @abstractmethod
    def logdet(self, W: torch.Tensor) -> torch.Tensor:
        """log det W (...,) of symmetric positive-definite W."""

    @abstractmethod
    def quad_logdet(self, W: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(v^T W^{-1} v, log det W), both (...,), from one factorisation of W."""

    @abstractmethod
    def smoother_gain(self, W_f: torch.Tensor, F: torch.Tensor, W_p: torch.Tensor) -> torch.Tensor:
        """The smoother gain A = W_f F^T W_p^{-1} (W_f = W_{t|t}, W_p = W_{t+1|t}, both symmetric)."""

    @abstractmethod
    def diag(self, W: torch.Tensor) -> torch.Tensor:
        """The variances: the diagonal (..., D) of W."""

    @abstractmethod
    def from_diag(self, d: torch.Tensor) -> torch.Tensor:
        """The covariance of this structure with diagonal d (..., D) and zero off-diagonal entries."""


class Dense(Covariance):
    """Full covariance matrices (..., D, D): the exact method."""

    name = "dense"
    diagonal = False

    def matvec(self, A: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """A v = (A @ v[..., None])[..., 0]."""
        return (A @ v.unsqueeze(-1)).squeeze(-1)

    def propagate(self, A: torch.Tensor, W: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
        """sym(A W A^T + add), sym(X) = (X + X^T) / 2."""
        return _sym(A @ W @ A.transpose(-1, -2) + add)

    def matmul_t(self, X: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
        """X A^T."""
        return X @ A.transpose(-1, -2)

    def inverse(self, W: torch.Tensor) -> torch.Tensor:
        """W^{-1} = sym(L^{-T} L^{-1}) with W = L L^T (Cholesky)."""
        return _sym(torch.cholesky_inverse(torch.linalg.cholesky(W)))

    def solve(self, W: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """W^{-1} v = L^{-T} (L^{-1} v) with W = L L^T (Cholesky)."""
        return torch.cholesky_solve(v.unsqueeze(-1), torch.linalg.cholesky(W)).squeeze(-1)

    def logdet(self, W: torch.Tensor) -> torch.Tensor:
        """log det W = 2 sum_i log L_ii with W = L L^T (Cholesky)."""
        return 2.0 * torch.diagonal(torch.linalg.cholesky(W), dim1=-2, dim2=-1).log().sum(-1)

    def quad_logdet(self, W: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(|z|^2, 2 sum_i log L_ii) with W = L L^T (Cholesky) and L z = v."""
        L = torch.linalg.cholesky(W)
        z = torch.linalg.solve_triangular(L, v.unsqueeze(-1), upper=False).squeeze(-1)
        return (z * z).sum(-1), 2.0 * torch.diagonal(L, dim1=-2, dim2=-1).log().sum(-1)

    def smoother_gain(self, W_f: torch.Tensor, F: torch.Tensor, W_p: torch.Tensor) -> torch.Tensor:
        """A = (W_p^{-1} F W_f)^T, solved by Cholesky of W_p (all three matrices symmetric but F)."""
        L = torch.linalg.cholesky(W_p)
        rhs = F @ W_f
        return torch.cholesky_solve(rhs, L).transpose(-1, -2)

    def diag(self, W: torch.Tensor) -> torch.Tensor:
        """(W_11, ..., W_DD)."""
        return torch.diagonal(W, dim1=-2, dim2=-1)

    def from_diag(self, d: torch.Tensor) -> torch.Tensor:
        """diag(d) (..., D, D)."""
        return torch.diag_embed(d)


class Diagonal(Covariance):
    """Diagonal covariances kept as their diagonals (..., D): the approximate methods.

    F, Q, Sigma and the smoother gains are diagonal too, so every operation is elementwise.
    """

    name = "diagonal"
    diagonal = True

    def matvec(self, A: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(A v)_i = a_i v_i."""
        return A * v

    def propagate(self, A: torch.Tensor, W: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
        """a_i w_i a_i + add_i."""
        return A * W * A + add

    def matmul_t(self, X: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
        """x_i a_i."""
        return X * A

    def inverse(self, W: torch.Tensor) -> torch.Tensor:
        """1 / w_i."""
        return 1.0 / W

    def solve(self, W: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """v_i / w_i."""
        return v / W

    def logdet(self, W: torch.Tensor) -> torch.Tensor:
        """sum_i log w_i."""
        return W.log().sum(-1)

    def quad_logdet(self, W: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sum_i v_i^2 / w_i, sum_i log w_i)."""
        return (v * v / W).sum(-1), W.log().sum(-1)

    def smoother_gain(self, W_f: torch.Tensor, F: torch.Tensor, W_p: torch.Tensor) -> torch.Tensor:
        """a_i = w_f,i f_i / w_p,i."""
        return W_f * F / W_p

    def diag(self, W: torch.Tensor) -> torch.Tensor:
        """W itself (already the variances)."""
        return W

    def from_diag(self, d: torch.Tensor) -> torch.Tensor:
        """d itself."""
        return d


#: the dense structure (full covariance matrices; the exact method)
DENSE = Dense()
#: the diagonal structure (the approximate methods)
DIAGONAL = Diagonal()


def covariance_of(obs: Any) -> Covariance:
    """The covariance structure of a fit with observation model ``obs``: :data:`DIAGONAL` when
    ``obs.diagonal`` (the approximate methods), else :data:`DENSE`.
    """
    return DIAGONAL if obs.diagonal else DENSE
