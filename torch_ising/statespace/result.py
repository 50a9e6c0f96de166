"""The record a state-space fit returns."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .records import StateSpaceParams

__all__ = ["StateSpaceResult"]

_TENSOR_FIELDS = ("theta_s", "sigma_s", "eta_s", "theta_f", "sigma_f", "y", "Q", "F", "U", "mu", "Sigma", "mll")


@dataclasses.dataclass
class StateSpaceResult:
    """Result of :func:`torch_ising.fit`.

    With a batch of B data sets every per-data-set array gains a leading B
    dimension and ``mll`` is a tensor of shape (B,).

    Attributes:
        theta_s: smoothed means theta_{t|T}, (T, D).
        sigma_s: smoothed covariances W_{t|T}, (T, D, D) ((T, D) for diagonal fits).
        eta_s: expectation parameters eta(theta_{t|T}), (T, D).
        theta_f: filtered means theta_{t|t}, (T, D).
        sigma_f: filtered covariances W_{t|t}, (T, D, D) ((T, D) for diagonal fits).
        mll: Laplace log marginal likelihood l at the final hyperparameters.
        mll_list: l after every EM iteration; the first entry is the initial
            E-step, so ``len(mll_list) == iterations + 1``. The Laplace l is an
            approximation and not a Lyapunov function of EM: it rises to a
            plateau but may dip by ~1e-4 on the way.
        N, D, T, R, order: sizes (T after re-binning; R trials per bin).
        Q: state-noise covariance (D, D). F: autoregressive matrix (D, D).
        U: input gain (D, n_u) or None. mu: learned initial mean theta_o (D,).
        Sigma: initial covariance (fixed).
        y: empirical statistics per bin (T, D).
        iterations: EM iterations; e_steps: E-steps evaluated.
        converged: whether the stopping rule was met.
        window, method, stop, q_form: the settings used.
    """

    theta_s: torch.Tensor
    sigma_s: torch.Tensor
    eta_s: torch.Tensor
    theta_f: torch.Tensor
    sigma_f: torch.Tensor
    mll: float | torch.Tensor
    mll_list: list
    N: int
    D: int
    T: int
    R: int
    order: int
    Q: torch.Tensor
    F: torch.Tensor
    U: torch.Tensor | None
    mu: torch.Tensor
    Sigma: torch.Tensor
    y: torch.Tensor
    iterations: int
    e_steps: int
    converged: bool | torch.Tensor
    window: int = 1
    method: str = "exact"
    stop: str = "converged"
    q_form: str = "scalar"
    wall_time: float = 0.0
    learn_Q: bool = True
    learn_F: bool = False
    mstep: bool = True

    def __repr__(self) -> str:
        """A one-line summary (sizes, l, iterations) instead of every tensor."""
        if self.batched:
            mll = f"mll=<{self.theta_s.shape[0]} data sets>"
            conv = f"converged={int(torch.as_tensor(self.converged).sum())}/{self.theta_s.shape[0]}"
        else:
            mll = f"mll={float(self.mll):.4f}"
            conv = f"converged={bool(self.converged)}"
        return (
            f"StateSpaceResult(N={self.N}, order={self.order}, D={self.D}, T={self.T}, R={self.R}, "
            f"{mll}, iterations={self.iterations}, {conv}, method={self.method!r}, stop={self.stop!r}, "
            f"q_form={self.q_form!r})"
        )

    # ------------------------------------------------------------------ views
    @property
    def params(self) -> StateSpaceParams:
        """The fitted hyperparameters as a :class:`StateSpaceParams` (batched, B first)."""
        batched = torch.as_tensor(self.theta_s).ndim == 3

        def b(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else (x if batched else x.unsqueeze(0))

        return StateSpaceParams(b(self.mu), b(self.Sigma), b(self.Q), b(self.F), b(self.U))

    @property
    def batched(self) -> bool:
        return self.theta_s.ndim == 3

    def thermodynamics(self, beta: float = 1.0, **kwargs: Any):
        """Derived quantities of every bin (see :func:`torch_ising.thermodynamics`)."""
        from ..thermodynamics import thermodynamics

        return thermodynamics(self.theta_s, self.N, self.order, y=self.y, R=self.R, beta=beta, **kwargs)

    def credible_intervals(
        self,
        level: float = 0.9,
        n_samples: int = 1000,
        seed: int | None = 0,
        quantities: Any = None,
        beta: float = 1.0,
    ):
        """Credible intervals of theta, eta and derived quantities (see :func:`torch_ising.credible_intervals`)."""
        from ..intervals import credible_intervals

        return credible_intervals(
            self.theta_s,
            self.sigma_s,
            self.N,
            self.order,
            level=level,
            n_samples=n_samples,
            seed=seed,
            quantities=quantities,
            y=self.y,
            R=self.R,
            beta=beta,
        )

    def theta_intervals(self, level: float = 0.9):
        """Closed-form Gaussian intervals theta_s +- z sqrt(diag sigma_s)."""
        from ..intervals import gaussian_intervals

        return gaussian_intervals(self.theta_s, self.sigma_s, level)

    def heat_capacity_curve(self, betas: Any = None) -> torch.Tensor:
        """Exact heat capacity of every bin over a grid of beta values."""
        from ..thermodynamics import heat_capacity_curve

        return heat_capacity_curve(self.theta_s, self.N, self.order, betas)

    @property
    def n_hyperparameters(self) -> int:
        """k, the number of free hyperparameters (for AIC/BIC)."""
        from ..comparison import count_hyperparameters

        return count_hyperparameters(self)

    def aic(self) -> float | torch.Tensor:
        """AIC = -2 mll + 2 k: a float, or a (B,) tensor for a batched result."""
        from ..comparison import aic

        value = aic(self.mll, self.n_hyperparameters)
        return value if self.batched else float(value)

    def bic(self) -> float | torch.Tensor:
        """BIC = -2 mll + k log(T R): a float, or a (B,) tensor for a batched result."""
        from ..comparison import bic

        value = bic(self.mll, self.n_hyperparameters, self.T * self.R)
        return value if self.batched else float(value)

    # ------------------------------------------------------------------ io
    def to_numpy(self) -> dict[str, Any]:
        """All fields as numpy arrays and Python scalars (None fields are dropped)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is None:
                continue
            if isinstance(v, torch.Tensor):
                v = v.detach().cpu().numpy()
            elif f.name == "mll_list":
                v = np.asarray(v, dtype=np.float64)
            out[f.name] = v
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Write an ``.npz`` (no pickled objects), atomically (temporary file, then rename)."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        arrays: dict[str, np.ndarray] = {}
        meta: dict[str, Any] = {}
        for k, v in self.to_numpy().items():
            if isinstance(v, np.ndarray):
                arrays[k] = v
            elif isinstance(v, (bool, int, float, str, np.generic)):
                meta[k] = v.item() if isinstance(v, np.generic) else v
        arrays["meta_json"] = np.array(json.dumps(meta))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str | None = None) -> StateSpaceResult:
        """Read a result written by :meth:`save` (never unpickles)."""
        names = {f.name for f in dataclasses.fields(cls)}
        with np.load(path, allow_pickle=False) as d:
            meta = json.loads(str(d["meta_json"])) if "meta_json" in d.files else {}
            kwargs: dict[str, Any] = dict(meta)
            for k in d.files:
                if k not in names:
                    continue
                a = d[k]
                if k == "mll_list":
                    kwargs[k] = a.tolist()
                elif k == "mll" and a.ndim == 0:
                    kwargs[k] = float(a)
                elif k == "converged" and a.ndim == 0:
                    kwargs[k] = bool(a)
                else:
                    kwargs[k] = torch.from_numpy(a).to(device)
        kwargs.setdefault("U", None)
        return cls(**{k: v for k, v in kwargs.items() if k in names})
