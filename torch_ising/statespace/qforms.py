"""Forms of the state-noise covariance Q, one record each (MODEL.md 3.3).

A form says which entries of Q are free and which share one value:

* ``"scalar"``: Q = q I (one variance);
* ``"diag"``: Q = diag(q_1, ..., q_D);
* ``"full"``: any symmetric positive-definite Q;
* ``"two"``: Q = diag(q1 1_N, q2 1_{D-N}), one variance for the N first-order
  parameters and one for the interactions.

Each :class:`QForm` owns everything that depends on the form: its names (the one
``fit`` reports and the Hydra config's ``fit.Q_form`` alias), the parameter count,
the M-step for full and for diagonal covariances, the groups of diagonal entries
that share one variance (the unconstrained coordinates of the accelerated EM), and
how a config value becomes a ``state_cov`` argument. A new form is one new record in
:data:`Q_FORMS`. :func:`parse_state_cov` reads ``fit``'s ``state_cov`` argument.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._validation import as_tensor

__all__ = ["QForm", "Q_FORMS", "q_form", "in_form", "parse_state_cov", "no_state_noise"]


def _one_value(q: Sequence[float], name: str) -> float:
    if len(q) != 1:
        raise ValueError(f"fit.Q must be one number for fit.Q_form={name}; got {list(q)!r}")
    return float(q[0])


def _groups_scalar(D: int, N: int) -> list[slice]:
    return [slice(0, D)]


def _groups_diag(D: int, N: int) -> list[slice]:
    return [slice(d, d + 1) for d in range(D)]


def _groups_two(D: int, N: int) -> list[slice]:
    return [slice(0, N), slice(N, D)] if D > N else [slice(0, D)]


def _m_scalar(S: torch.Tensor, n: int, N: int) -> torch.Tensor:
    D = S.shape[-1]
    q = torch.diagonal(S, dim1=-2, dim2=-1).sum(-1) / (D * n)
    return q[:, None, None] * torch.eye(D, dtype=S.dtype, device=S.device)


def _m_diag(S: torch.Tensor, n: int, N: int) -> torch.Tensor:
    return torch.diag_embed(torch.diagonal(S, dim1=-2, dim2=-1) / n)


def _m_full(S: torch.Tensor, n: int, N: int) -> torch.Tensor:
    Q = S / n
    return 0.5 * (Q + Q.transpose(-1, -2))


def _m_two(S: torch.Tensor, n: int, N: int) -> torch.Tensor:
    d = torch.diagonal(S, dim1=-2, dim2=-1) / n
    q1 = d[:, :N].mean(-1, keepdim=True)
    q2 = d[:, N:].mean(-1, keepdim=True) if d.shape[-1] > N else q1
    return torch.diag_embed(torch.cat([q1.expand(-1, N), q2.expand(-1, d.shape[-1] - N)], dim=-1))


def _md_scalar(d: torch.Tensor, N: int) -> torch.Tensor:
    return d.mean(-1, keepdim=True).expand_as(d).clone()


def _md_diag(d: torch.Tensor, N: int) -> torch.Tensor:
    return d


def _md_two(d: torch.Tensor, N: int) -> torch.Tensor:
    q1 = d[:, :N].mean(-1, keepdim=True).expand(-1, N)
    q2 = d[:, N:].mean(-1, keepdim=True).expand(-1, d.shape[-1] - N)
    return torch.cat([q1, q2], dim=-1)


def _cov_two(q: Sequence[float], N: int, D: int) -> Any:
    if D == N:
        raise ValueError(
            "the two-block form of Q (fit.Q_form=two_block, q_form='two') needs order >= 2 (a second block); "
            "use the scalar form"
        )
    return [float(q[0]), float(q[-1])]


@dataclass(frozen=True)
class QForm:
    """One form of the state-noise covariance Q.

    Attributes:
        name: the form's name in ``fit`` and its result (``result.q_form``).
        config_name: its name as the Hydra config's ``fit.Q_form``.
        description: Q in this form, in one line.
        n_params: the number of free entries of Q, as a function of D.
        m_step: the M-step for full covariances, ``fn(S, n, N) -> Q (B, D, D)`` with
            S = sum_{t=2}^T E_t (B, D, D) and n = T - 1: Q <- S / n, restricted to the form
            (MODEL.md 3.3).
        m_step_diag: the M-step for diagonal covariances (approximate methods),
            ``fn(d, N) -> diag Q (B, D)`` with d = diag(S) / n; None when the form needs full ones.
        groups: ``fn(D, N)``: the diagonal entries of Q that share one variance, as slices;
            None for the full form (its coordinates are a Cholesky factor).
        state_cov: ``fn(values, N, D)``: ``fit``'s ``state_cov`` argument for the config's
            ``fit.Q`` values in this form.
        shape: ``fn(D)``: the shape of a ``state_cov`` array in this form, other than a scalar
            (checked by :func:`in_form`); None accepts what :func:`parse_state_cov` reads.
    """

    name: str
    config_name: str
    description: str
    n_params: Callable[[int], int]
    m_step: Callable[[torch.Tensor, int, int], torch.Tensor]
    m_step_diag: Callable[[torch.Tensor, int], torch.Tensor] | None
    groups: Callable[[int, int], list[slice]] | None
    state_cov: Callable[[Sequence[float], int, int], Any]
    shape: Callable[[int], tuple[int, ...]] | None = None


#: The forms of Q by name.
Q_FORMS: dict[str, QForm] = {
    f.name: f
    for f in (
        QForm(
            "scalar", "scalar", "Q = q I", lambda D: 1, _m_scalar, _md_scalar, _groups_scalar,
            lambda q, N, D: _one_value(q, "scalar"), lambda D: (),
        ),
        QForm(
            "diag", "diagonal", "Q = diag(q_1, ..., q_D)", lambda D: D, _m_diag, _md_diag, _groups_diag,
            lambda q, N, D: np.full(D, _one_value(q, "diagonal")), lambda D: (D,),
        ),
        QForm(
            "full", "full", "Q symmetric positive definite", lambda D: D * (D + 1) // 2, _m_full, None, None,
            lambda q, N, D: _one_value(q, "full") * np.eye(D), lambda D: (D, D),
        ),
        QForm(
            "two", "two_block", "Q = diag(q1 on the N fields, q2 on the interactions)", lambda D: 2, _m_two,
            _md_two, _groups_two, _cov_two, lambda D: (2,),
        ),
    )
}  # fmt: skip


def q_form(name: str) -> QForm:
    """The :class:`QForm` called ``name`` (its ``fit`` name or its config alias)."""
    if name in Q_FORMS:
        return Q_FORMS[name]
    for f in Q_FORMS.values():
        if f.config_name == name:
            return f
    names = sorted({*Q_FORMS, *(f.config_name for f in Q_FORMS.values())})
    raise ValueError(f"unknown Q form {name!r}; the forms are {', '.join(names)}")


def no_state_noise(state_cov: Any) -> bool:
    """Whether ``state_cov`` asks for no state noise (None or 0); refuses what is not numeric."""
    if state_cov is None:
        return True
    if isinstance(state_cov, (str, bytes)):
        raise ValueError(f"state_cov must be a number, a length-D vector or a (D, D) matrix; got {state_cov!r}")
    return np.ndim(state_cov) == 0 and float(state_cov) == 0.0


def in_form(state_cov: Any, form: str, N: int, D: int) -> Any:
    """``state_cov`` as the Q form ``form`` asks, so that its shape no longer has to say the form.

    A scalar q becomes the form's starting Q: q (scalar), (q, ..., q) (diag), q I (full) or
    [q, q] (two). A length-D vector is accepted by "full" as diag(q). Anything else must
    already have the form's own shape, else ValueError naming both.

    Args:
        state_cov: ``fit``'s ``state_cov``.
        form: a key of :data:`Q_FORMS` or a config alias ("diagonal", "two_block").
        N, D: neurons and parameters per bin.
    """
    f = q_form(form)
    if no_state_noise(state_cov):
        return state_cov
    shape = np.shape(state_cov)
    if shape == ():
        return f.state_cov([float(state_cov)], N, D)
    if f.name == "full" and shape == (D,):
        return np.diag(np.asarray(state_cov, dtype=np.float64))
    wanted = None if f.shape is None else f.shape(D)
    if wanted is not None and shape != wanted:
        raise ValueError(
            f"state_cov of shape {shape} does not fit q_form={form!r} ({f.description}); "
            + ("pass a scalar" if wanted == () else f"pass a scalar or an array of shape {wanted}")
        )
    if wanted == (2,):  # [q1, q2], checked by the form
        return f.state_cov(list(np.asarray(state_cov, dtype=np.float64)), N, D)
    return state_cov


def parse_state_cov(
    state_cov: Any,
    D: int,
    N: int,
    B: int,
    T: int,
    dtype: torch.dtype,
    device: torch.device,
    diagonal: bool = False,
    form: str | None = None,
) -> tuple[str, torch.Tensor, bool]:
    """Read ``fit``'s ``state_cov``: its form, the starting Q and whether Q is learned.

    With ``form`` (``fit``'s ``q_form``) the form is that record's, and ``state_cov`` is read
    through :func:`in_form`. Without it the shape says the form: a scalar q is ``"scalar"``
    (Q = q I), a length-D vector ``"diag"``, a (D, D) matrix ``"full"`` and a pair [q1, q2]
    (when D != 2) ``"two"``. None or 0 means no state noise, only with T = 1 (a stationary fit).

    Returns:
        (form name, Q0 (B, D, D), or its diagonal (B, D) when ``diagonal``, learn_Q).
    """
    if form is not None:
        name = q_form(form).name
        _, Q0, learn = parse_state_cov(in_form(state_cov, form, N, D), D, N, B, T, dtype, device, diagonal)
        return name, Q0, learn
    if diagonal:
        form, d, learn = _parse_diag(state_cov, D, N, T, dtype, device)
        return form, d.expand(B, D).clone(), learn
    eye = torch.eye(D, dtype=dtype, device=device)
    if no_state_noise(state_cov):
        if T > 1:
            raise ValueError("state_cov=None/0 (no state noise) is only allowed with T = 1 or stationary=True")
        return "scalar", (0.01 * eye).expand(B, D, D).clone(), False
    q = as_tensor(state_cov, dtype=dtype, device=device, name="state_cov")
    if not bool(torch.isfinite(q).all()):
        raise ValueError("state_cov contains NaN or infinite values")
    if q.ndim == 0:
        if q <= 0:
            raise ValueError(f"state_cov must be > 0, got {float(q)}")
        return "scalar", (q * eye).expand(B, D, D).clone(), T > 1
    if q.ndim == 1 and q.shape[0] == 2 and D != 2:
        if bool((q <= 0).any()):
            raise ValueError(f"state_cov [q1, q2] must be positive, got {q.tolist()}")
        d = torch.cat([q[0].expand(N), q[1].expand(D - N)])
        return "two", torch.diag_embed(d).expand(B, D, D).clone(), T > 1
    if q.ndim == 1:
        if q.shape[0] != D:
            raise ValueError(f"state_cov as a vector must have length D={D} (or 2 for [q1, q2]); got {q.shape[0]}")
        if bool((q <= 0).any()):
            raise ValueError("state_cov entries must all be > 0")
        return "diag", torch.diag_embed(q).expand(B, D, D).clone(), T > 1
    if q.ndim == 2:
        if q.shape != (D, D):
            raise ValueError(f"state_cov as a matrix must have shape (D, D) = ({D}, {D}); got {tuple(q.shape)}")
        if not torch.allclose(q, q.T, atol=1e-12, rtol=1e-10):
            raise ValueError("state_cov must be symmetric")
        if torch.linalg.cholesky_ex(q).info != 0:
            raise ValueError("state_cov must be positive definite")
        return "full", q.expand(B, D, D).clone(), T > 1
    raise ValueError(
        f"state_cov must be a scalar, a length-D vector, [q1, q2] or a (D, D) matrix; got {tuple(q.shape)}"
    )


def _parse_diag(
    state_cov: Any, D: int, N: int, T: int, dtype: torch.dtype, device: torch.device
) -> tuple[str, torch.Tensor, bool]:
    """The diagonal of Q0 (D,) for diagonal-covariance (approximate) fits; a full matrix is refused."""
    if no_state_noise(state_cov):
        if T > 1:
            raise ValueError("state_cov=None/0 (no state noise) is only allowed with T = 1 or stationary=True")
        return "scalar", torch.full((D,), 0.01, dtype=dtype, device=device), False
    q = as_tensor(state_cov, dtype=dtype, device=device, name="state_cov")
    if not bool(torch.isfinite(q).all()) or bool((q <= 0).any()):
        raise ValueError("state_cov must be positive and finite")
    if q.ndim == 0:
        return "scalar", q.expand(D).clone(), T > 1
    if q.ndim == 1 and q.shape[0] == 2 and D != 2:
        return "two", torch.cat([q[0].expand(N), q[1].expand(D - N)]), T > 1
    if q.ndim == 1 and q.shape[0] == D:
        return "diag", q.clone(), T > 1
    if q.ndim == 2:
        raise ValueError("a full state_cov matrix needs full covariances (method='exact'); pass a scalar or vector")
    raise ValueError(f"state_cov must be a scalar, [q1, q2] or a length-D vector (D={D}); got {tuple(q.shape)}")
