"""Private helpers on :class:`~torch_ising.StateSpaceResult` records shared by the analysis modules."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

__all__ = ["select_result", "batch_size"]


def batch_size(result: Any) -> int | None:
    """B of a batched result (theta_s of shape (B, T, D)); None for a single fit."""
    return int(result.theta_s.shape[0]) if result.theta_s.ndim == 3 else None


def select_result(result: Any, b: int) -> Any:
    """Data set ``b`` of a batched result, as the result of a single fit (no leading B dimension).

    Every tensor field with a leading dimension B is indexed at ``b``; ``mll`` becomes a float,
    ``converged`` a bool and ``mll_list`` data set ``b``'s list.
    """
    B = batch_size(result)
    if B is None:
        raise ValueError("result is not batched (theta_s has no leading data-set dimension)")
    if not -B <= b < B:
        raise ValueError(f"b must be in 0..{B - 1}; got {b}")
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(result):
        v = getattr(result, f.name)
        if f.name == "mll":
            changes[f.name] = float(torch.as_tensor(v)[b])
        elif f.name == "converged":
            changes[f.name] = bool(torch.as_tensor(v)[b])
        elif f.name == "mll_list":
            changes[f.name] = list(v[b])
        elif isinstance(v, torch.Tensor) and v.ndim >= 1 and v.shape[0] == B:
            changes[f.name] = v[b]
    return dataclasses.replace(result, **changes)
