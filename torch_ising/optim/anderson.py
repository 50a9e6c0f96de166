"""Anderson extrapolation of a fixed-point iteration x = G(x) (type II), batched over the first dimension."""

from __future__ import annotations

import torch

__all__ = ["anderson_extrapolate"]


def anderson_extrapolate(
    dF: list[torch.Tensor], dG: list[torch.Tensor], f: torch.Tensor, g: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Anderson (type II) step from the last residual and image differences.

    With residuals f_k = G(x_k) - x_k, images g_k = G(x_k), and the m last differences
    dF = [f_{j+1} - f_j], dG = [g_{j+1} - g_j] as columns of F (B, K, m) and G (B, K, m),

        gamma = argmin |f_k - F gamma|  = (F^T F + eps I)^{-1} F^T f_k,   eps = 1e-10 max diag(F^T F),
        x_{k+1} = g_k - G gamma.

    Args:
        dF: the m residual differences, each (B, K).
        dG: the m image differences, each (B, K).
        f: the current residual f_k (B, K).
        g: the current image g_k (B, K).

    Returns:
        (x_{k+1} (B, K), usable (B,)): usable is False where the step is not finite or every
        residual difference is 0 (then there is nothing to extrapolate from).
    """
    Fm = torch.stack(dF, dim=-1)  # (B, K, m)
    Gm = torch.stack(dG, dim=-1)
    A = Fm.transpose(-1, -2) @ Fm
    reg = 1e-10 * torch.diagonal(A, dim1=-2, dim2=-1).amax(-1).clamp_min(1e-300)
    A = A + reg[:, None, None] * torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    gamma = torch.linalg.solve(A, (Fm.transpose(-1, -2) @ f.unsqueeze(-1))).squeeze(-1)
    x_aa = g - (Gm @ gamma.unsqueeze(-1)).squeeze(-1)
    return x_aa, torch.isfinite(x_aa).all(-1) & (Fm.abs().sum((-1, -2)) > 0)
