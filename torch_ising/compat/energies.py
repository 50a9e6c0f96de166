"""The published ``energies`` module on torch_ising: thermodynamic quantities of a fit.

:func:`get_energies` computes, for every time bin of the smoothed means
``emd.theta_s``, the quantities of MODEL.md section 4 with
:func:`torch_ising.thermodynamics.thermodynamics` (one batched call, exact
moments) and attaches them to the container as numpy arrays of shape (T,).
"""

from __future__ import annotations

from typing import Any

import torch

from ..moments import expectation
from ..thermodynamics import thermodynamics

__all__ = ["get_energies", "ENERGY_NAMES"]

#: Attributes that :func:`get_energies` attaches, each of shape (T,).
ENERGY_NAMES = ("S1", "S2", "S_ratio", "dkl", "llk1", "llk2", "U1", "U2", "psi")


def get_energies(emd: Any) -> None:
    """Attach S1, S2, S_ratio, dkl, llk1, llk2, U1, U2, psi (each (T,)) and eta ((T, D)) to ``emd``.

    With the fitted model "2" (theta = emd.theta_s[t]) and the independent
    model "1" matched to its firing rates, eta1 = eta[:N], theta1 = logit(eta1),
    psi1 = sum log(1 + exp(theta1)):

        S1 = -sum [eta1 log eta1 + (1 - eta1) log(1 - eta1)],   S2 = psi - theta . eta
        S_ratio = (S1 - S2) / S1,   U1 = -theta1 . eta1,   U2 = -theta . eta
        dkl = eta . dtheta - (psi - psi1),  dtheta = theta - (theta1, 0, ..., 0)
        llk1 = R (y[:N] . theta1 - psi1),   llk2 = R (y . theta - psi)

    Args:
        emd: a fitted container from :func:`torch_ising.compat.ssll.run` (or any
            object with theta_s (T, D), y (T, D), R, N and order).

    Raises:
        ValueError: when ``emd`` lacks those attributes or they do not match.
    """
    missing = [a for a in ("theta_s", "y", "R", "N", "order") if not hasattr(emd, a)]
    if missing:
        raise ValueError(f"emd must be a fitted container with theta_s, y, R, N and order; missing {missing}")
    th = thermodynamics(emd.theta_s, int(emd.N), int(emd.order), y=emd.y, R=emd.R)
    for name in ENERGY_NAMES:
        setattr(emd, name, getattr(th, name).detach().cpu().numpy())
    emd.eta = expectation(torch.as_tensor(emd.theta_s), int(emd.N), int(emd.order)).detach().cpu().numpy()
