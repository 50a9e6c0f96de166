"""The record a state-space fit returns."""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._files import atomic_write
from .criteria import _count_for, aic, bic
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
        mask: the observation mask the fit was given, (T_raw, R) bool (True =
            observed), or None (every trial of every bin observed).
        R_t: with a mask, the observed trials of each bin (T,) (after
            re-binning; (1,) pooled for a stationary fit), used by l,
            :meth:`thermodynamics`, :meth:`credible_intervals` and :meth:`bic`;
            y_t is 0 where R_t = 0. None without a mask (R in every bin).
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
    mask: torch.Tensor | None = None
    R_t: torch.Tensor | None = None

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

        return thermodynamics(self.theta_s, self.N, self.order, y=self.y, R=self.trials, beta=beta, **kwargs)

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
            R=self.trials,
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
    def trials(self) -> int | torch.Tensor:
        """The trials of each bin: R, or with a mask the tensor R_t (T,) ((B, T) batched)."""
        return self.R if self.R_t is None else self.R_t

    @property
    def n_observations(self) -> int | torch.Tensor:
        """n = sum_t R_t, the number of observed patterns (T R without a mask; (B,) batched with one)."""
        if self.R_t is None:
            return self.T * self.R
        n = self.R_t.sum(-1).round().to(torch.int64)
        return n if self.batched else int(n)

    @property
    def n_hyperparameters(self) -> int:
        """k, the number of free hyperparameters (for AIC/BIC)."""
        return _count_for(self)

    def aic(self) -> float | torch.Tensor:
        """AIC = -2 mll + 2 k: a float, or a (B,) tensor for a batched result."""
        value = aic(self.mll, self.n_hyperparameters)
        return value if self.batched else float(value)

    def bic(self) -> float | torch.Tensor:
        """BIC = -2 mll + k log(n), n = sum_t R_t (T R without a mask): a float, or a (B,) tensor if batched."""
        n = self.n_observations
        if isinstance(n, int):
            value = bic(self.mll, self.n_hyperparameters, n)
        else:  # a batch with a mask: n per data set
            mll = torch.as_tensor(self.mll, dtype=torch.float64)
            value = -2.0 * mll + self.n_hyperparameters * torch.log(n.to(mll))
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
        """Write an ``.npz`` (no pickled objects), atomically (temporary file, then rename).

        The file's mode follows the umask (as any new file). A path without a suffix gains ``.npz``.

        Raises:
            ValueError: for a suffix other than ``.npz``.
        """
        path = Path(path)
        if path.suffix == "":
            path = path.with_suffix(".npz")
        elif path.suffix != ".npz":
            raise ValueError(f"path must end in .npz (a numpy archive); got {str(path)!r}")
        arrays: dict[str, np.ndarray] = {}
        meta: dict[str, Any] = {"format": FILE_FORMAT, "format_version": FILE_VERSION}
        for k, v in self.to_numpy().items():
            if isinstance(v, np.ndarray):
                arrays[k] = v
            elif isinstance(v, (bool, int, float, str, np.generic)):
                meta[k] = v.item() if isinstance(v, np.generic) else v
        arrays["meta_json"] = np.array(json.dumps(meta))
        atomic_write(path, lambda fh: np.savez(fh, **arrays))
        return path

    @classmethod
    def load(
        cls, path: str | os.PathLike, device: torch.device | str | None = None, max_bytes: int | None = None
    ) -> StateSpaceResult:
        """Read a result written by :meth:`save` or the CLI's ``results.npz`` (never unpickles).

        Args:
            path: the ``.npz`` file.
            device: where the tensors go (default cpu).
            max_bytes: the most bytes the arrays may take once read; by default the larger of
                256 MiB and 50 times the file's size (a guard against a zip bomb).

        Raises:
            ValueError: one line naming the file, for a truncated or foreign file, another format
                version, missing keys, wrong dtypes or shapes, non-finite values, or arrays too large.
        """
        kwargs = _read_result_file(Path(path), {f.name for f in dataclasses.fields(cls)}, device, max_bytes)
        return cls(**kwargs)


#: the ``format`` and ``format_version`` recorded in a saved result
FILE_FORMAT = "torch_ising.StateSpaceResult"
FILE_VERSION = 1

_REQUIRED = ("theta_s", "sigma_s", "eta_s", "theta_f", "sigma_f", "mll", "mll_list", "Q", "F", "mu", "Sigma", "y")
_INT_FIELDS = ("N", "D", "T", "R", "order", "iterations", "e_steps", "window")
_STR_FIELDS = ("method", "stop", "q_form")
_BOOL_FIELDS = ("learn_Q", "learn_F", "mstep")


def _read_result_file(path: Path, names: set[str], device: Any, max_bytes: int | None) -> dict[str, Any]:
    """Checked fields of a result file, as :class:`StateSpaceResult` keyword arguments."""
    from .._validation import n_params

    def fail(what: str) -> ValueError:
        return ValueError(f"{path}: {what}")

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such result file")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as err:
        raise fail(f"not a readable .npz result file (truncated or not a numpy archive: {err})") from None
    total = sum(i.file_size for i in infos)
    limit = max_bytes if max_bytes is not None else max(2**28, 50 * path.stat().st_size)
    if total > limit:
        raise fail(
            f"its arrays would take {total / 2**20:.1f} MiB once read, over the limit of {limit / 2**20:.1f} MiB "
            "(a zip bomb or a foreign file); pass max_bytes= to read a genuine large result"
        )
    raw: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as d:
            for k in d.files:
                raw[k] = d[k]
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise fail(f"not a readable .npz result file (truncated or corrupt: {str(err).splitlines()[0]})") from None
    meta: dict[str, Any] = {}
    if "meta_json" in raw:
        try:
            meta = json.loads(str(raw.pop("meta_json")))
        except json.JSONDecodeError:
            raise fail("meta_json is not valid JSON") from None
        if not isinstance(meta, dict):
            raise fail("meta_json must hold a JSON object")
    fmt, version = meta.pop("format", FILE_FORMAT), meta.pop("format_version", FILE_VERSION)
    if fmt != FILE_FORMAT or version != FILE_VERSION:
        raise fail(
            f"written as {fmt!r} version {version!r}; this torch_ising reads {FILE_FORMAT!r} version {FILE_VERSION}"
        )
    for k, a in raw.items():  # the CLI stores the scalars as 0-d arrays
        if k in names and k not in meta and a.ndim == 0 and k not in ("mll", "converged"):
            meta[k] = a.item()
    missing = [
        k
        for k in (*_REQUIRED, "N", "order", "D", "T", "R", "iterations", "e_steps", "converged")
        if k not in raw and k not in meta
    ]
    if missing:
        raise fail(f"missing {', '.join(missing)}; not a complete StateSpaceResult file")
    kwargs: dict[str, Any] = {}
    for k in _INT_FIELDS:
        if k in meta:
            v = meta[k]
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if k in ("iterations", "e_steps") else 1):
                raise fail(f"{k} must be a positive integer, got {v!r}")
            kwargs[k] = v
    for k in _STR_FIELDS:
        if k in meta:
            if not isinstance(meta[k], str):
                raise fail(f"{k} must be a string, got {meta[k]!r}")
            kwargs[k] = meta[k]
    for k in _BOOL_FIELDS:
        if k in meta:
            if not isinstance(meta[k], bool):
                raise fail(f"{k} must be true or false, got {meta[k]!r}")
            kwargs[k] = meta[k]
    if "wall_time" in meta:
        kwargs["wall_time"] = float(meta["wall_time"])
    N, order, D, T = kwargs["N"], kwargs["order"], kwargs["D"], kwargs["T"]
    if order > N or D != n_params(N, order):
        raise fail(f"D = {D} does not match N = {N}, order = {order}")
    for k, a in raw.items():
        if k not in names or k in kwargs:
            continue
        if k == "mask":
            if a.dtype != np.bool_ or a.ndim not in (2, 3):
                raise fail(f"mask must be a boolean (T_raw, R) array, got dtype {a.dtype} shape {a.shape}")
            kwargs[k] = torch.from_numpy(a).to(device)
            continue
        if k == "converged":
            if a.dtype != np.bool_:
                raise fail(f"converged must be boolean, got dtype {a.dtype}")
            kwargs[k] = bool(a) if a.ndim == 0 else torch.from_numpy(a).to(device)
            continue
        if a.dtype.kind != "f":
            raise fail(f"{k} must hold floating-point numbers, got dtype {a.dtype}")
        if not np.isfinite(a).all():
            raise fail(f"{k} contains NaN or infinite values")
        if k == "mll_list":
            kwargs[k] = a.tolist()
        elif k == "mll" and a.ndim == 0:
            kwargs[k] = float(a)
        else:
            kwargs[k] = torch.from_numpy(a).to(device)
    if "converged" not in kwargs:
        if not isinstance(meta.get("converged"), bool):
            raise fail(f"converged must be true or false, got {meta.get('converged')!r}")
        kwargs["converged"] = meta["converged"]
    if "mll" not in kwargs:
        if isinstance(meta.get("mll"), bool) or not isinstance(meta.get("mll"), (int, float)):
            raise fail(f"mll must be a number, got {meta.get('mll')!r}")
        if not np.isfinite(meta["mll"]):
            raise fail("mll is NaN or infinite")
        kwargs["mll"] = float(meta["mll"])
    ts = kwargs["theta_s"]
    if ts.ndim not in (2, 3) or tuple(ts.shape[-2:]) != (T, D):
        raise fail(f"theta_s must have shape (T, D) = ({T}, {D}) (or (B, T, D)); got {tuple(ts.shape)}")
    lead = tuple(ts.shape[:-2])
    want = {
        "eta_s": [(*lead, T, D)],
        "theta_f": [(*lead, T, D)],
        "y": [(*lead, T, D)],
        "sigma_s": [(*lead, T, D, D), (*lead, T, D)],
        "sigma_f": [(*lead, T, D, D), (*lead, T, D)],
        "Q": [(*lead, D, D), (*lead, D)],
        "F": [(*lead, D, D), (*lead, D)],
        "mu": [(*lead, D)],
        "Sigma": [(*lead, D, D), (*lead, D)],
    }
    for k, shapes in want.items():
        got = tuple(kwargs[k].shape)
        if got not in shapes:
            raise fail(f"{k} must have shape {' or '.join(str(s) for s in shapes)}; got {got}")
    if kwargs.get("U") is not None and (kwargs["U"].ndim != len(lead) + 2 or kwargs["U"].shape[-2] != D):
        raise fail(f"U must have shape (D, n_u) with D = {D}; got {tuple(kwargs['U'].shape)}")
    kwargs.setdefault("U", None)
    if kwargs.get("R_t") is not None and tuple(kwargs["R_t"].shape) not in ((*lead, T),):
        raise fail(f"R_t must have shape {(*lead, T)}; got {tuple(kwargs['R_t'].shape)}")
    return kwargs
