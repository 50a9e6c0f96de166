"""Unconstrained coordinates of the hyperparameters, for the accelerated EM and the direct maximisation of l."""

from __future__ import annotations

import torch

from .covariance import Covariance
from .qforms import Q_FORMS
from .records import EMOptions, StateSpaceParams
from .stable import free_from_stable, log_prior_free, stable_from_free

__all__ = ["Coords"]


class Coords:
    """Map hyperparameters to an unconstrained vector per data set and back.

    The vector is [mu, Q's coordinates, vec F (when learned), vec U (when there is an input)].
    Q's coordinates follow its form (:mod:`.qforms`): for a full Q with full covariances the
    Cholesky factor L (Q = L L^T) as log diag L and the entries below the diagonal; otherwise
    one log variance per group of diagonal entries that share a variance.

    With ``stable_F`` (a learned F under the prior ``opts.state_ar_prior`` of :mod:`.stable`)
    F's coordinates are the free matrix A of F = A L^{-T}, L L^T = I + A^T A,
    so every vector maps to an F with ||F||_2 < 1, and :meth:`log_prior` is log p(A).
    """

    def __init__(self, template: StateSpaceParams, opts: EMOptions, cov: Covariance, stable_F: bool = False) -> None:
        self.t = template
        self.opts = opts
        #: F's coordinates are the free matrix A of the stable parametrisation (:mod:`.stable`)
        self.stable_F = bool(stable_F and opts.learn_F and opts.state_ar_prior is not None)
        #: the structure of Q (that of the fit's covariances)
        self.cov = cov
        self.D = template.mu.shape[-1]
        groups = Q_FORMS[opts.q_form].groups
        #: Q's coordinates are a Cholesky factor (a full Q with full covariances)
        self.cholesky = groups is None
        #: the groups of diagonal entries of Q that share one variance (None with a Cholesky factor)
        self.groups = None if groups is None else groups(self.D, opts.N)
        #: every diagonal entry is its own variance (no group means to take)
        self.per_entry = self.groups is not None and len(self.groups) == self.D

    def logvar_scale(self, K: int, device: torch.device) -> torch.Tensor:
        """Per coordinate: 1 for a log variance, 2 for a log Cholesky diagonal (log sd), 0 otherwise."""
        scale = torch.zeros(K, device=device)
        if self.opts.learn_Q:
            D = self.D
            if self.cholesky:
                scale[D : 2 * D] = 2.0
            else:
                scale[D : D + len(self.groups)] = 1.0
        return scale

    def to_vec(self, p: StateSpaceParams) -> torch.Tensor:
        parts = [p.mu]
        if self.opts.learn_Q:
            Q = p.Q
            if self.cholesky:
                L = torch.linalg.cholesky(Q)
                il = torch.tril_indices(self.D, self.D, -1, device=Q.device)
                parts += [torch.diagonal(L, dim1=-2, dim2=-1).log(), L[:, il[0], il[1]]]
            else:
                d = self.cov.diag(Q)
                if self.per_entry:
                    parts.append(d.log())
                else:
                    parts.append(torch.stack([d[:, s].mean(-1).log() for s in self.groups], dim=-1))
        if self.opts.learn_F:
            F = free_from_stable(p.F) if self.stable_F else p.F
            parts.append(F.reshape(p.F.shape[0], -1))
        if p.U is not None:
            parts.append(p.U.reshape(p.U.shape[0], -1))
        return torch.cat(parts, dim=-1)

    def from_vec(self, x: torch.Tensor) -> StateSpaceParams:
        D, t = self.D, self.t
        B = x.shape[0]
        i = D
        mu = x[:, :D]
        Q = t.Q
        if self.opts.learn_Q:
            if self.cholesky:
                il = torch.tril_indices(D, D, -1, device=x.device)
                L = torch.diag_embed(x[:, i : i + D].exp())
                i += D
                n = il.shape[1]
                L[:, il[0], il[1]] = x[:, i : i + n]
                i += n
                Q = L @ L.transpose(-1, -2)
            else:
                if self.per_entry:
                    d = x[:, i : i + D].exp()
                    i += D
                else:
                    blocks = self.groups
                    logs = x[:, i : i + len(blocks)]
                    i += len(blocks)
                    d = torch.cat(
                        [logs[:, k : k + 1].exp().expand(B, s.stop - s.start) for k, s in enumerate(blocks)], -1
                    )
                Q = self.cov.from_diag(d)
        F = t.F
        if self.opts.learn_F:
            F = x[:, i : i + D * D].reshape(B, D, D)
            if self.stable_F:
                F = stable_from_free(F)
            i += D * D
        U = t.U
        if U is not None:
            n = U.shape[1] * U.shape[2]
            U = x[:, i : i + n].reshape(U.shape)
        return StateSpaceParams(mu, t.Sigma, Q, F, U)

    def _F_slice(self) -> slice:
        """Where vec F (or vec A) lies in the vector."""
        i = self.D
        if self.opts.learn_Q:
            if self.cholesky:
                i += self.D + self.D * (self.D - 1) // 2
            else:
                i += len(self.groups)
        return slice(i, i + self.D * self.D)

    def log_prior(self, x: torch.Tensor) -> torch.Tensor:
        """log p(F) (B,) at ``x``, up to a constant (:func:`.stable.log_prior_free`); 0 without a prior."""
        if not self.stable_F:
            return x.new_zeros(x.shape[0])
        A = x[:, self._F_slice()].reshape(x.shape[0], self.D, self.D)
        return log_prior_free(A, self.opts.state_ar_prior)

    def without_F_step(self, x_new: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``x_new`` with F's coordinates put back to those of ``x`` (for a step direction that leaves F alone)."""
        out = x_new.clone()
        s = self._F_slice()
        out[:, s] = x[:, s]
        return out
