"""The diagonal joint E-step's scalar tridiagonal solver against dense linear algebra."""

import pytest
import torch

from torch_ising.statespace.joint_diagonal import tri_factor, tri_inverse, tri_matvec, tri_solve


def _system(B: int, T: int, D: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(B, T - 1, D, generator=g, dtype=torch.float64)
    z = torch.zeros(B, 1, D, dtype=torch.float64)
    d = (
        torch.cat([e.abs(), z], 1)
        + torch.cat([z, e.abs()], 1)
        + 0.1
        + torch.rand(B, T, D, generator=g, dtype=torch.float64)
    )
    dense = torch.zeros(B, D, T, T, dtype=torch.float64)
    idx = torch.arange(T)
    dense[..., idx, idx] = d.transpose(1, 2)
    dense[..., idx[1:], idx[:-1]] = e.transpose(1, 2)
    dense[..., idx[:-1], idx[1:]] = e.transpose(1, 2)
    return d, e, dense


@pytest.mark.parametrize("T", [1, 2, 3, 4, 5, 8, 17, 100])
def test_tridiagonal_against_dense(T):
    d, e, dense = _system(2, T, 3)
    r = torch.randn(2, T, 3, dtype=torch.float64)
    fac = tri_factor(d, e)
    x_ref = torch.linalg.solve(dense, r.transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2)
    torch.testing.assert_close(tri_solve(fac, r), x_ref, rtol=0, atol=1e-12)
    inv = torch.linalg.inv(dense)
    var, lag = tri_inverse(fac)
    torch.testing.assert_close(var, torch.diagonal(inv, dim1=-2, dim2=-1).transpose(1, 2), rtol=0, atol=1e-12)
    sub = torch.diagonal(inv, offset=-1, dim1=-2, dim2=-1).transpose(1, 2)
    torch.testing.assert_close(lag, sub, rtol=0, atol=1e-12)
    torch.testing.assert_close(fac.logdet, torch.linalg.slogdet(dense)[1], rtol=0, atol=1e-10)
    mv = (dense @ r.transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2)
    torch.testing.assert_close(tri_matvec(d, e, r), mv, rtol=0, atol=1e-12)
