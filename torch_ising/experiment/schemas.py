"""Dataclass schemas of a torch_ising experiment (one per config group).

These dataclasses are plain Python: this module imports neither Hydra nor
OmegaConf, so research code can build and pass them around without Hydra.
:func:`register_configs` (which imports Hydra lazily) stores them in Hydra's
``ConfigStore`` so that the YAML files under ``configs/`` are validated against
them: a misspelt key or a value of the wrong type is refused when the config
is composed.

Groups and their schemas:

* ``data``: :class:`SyntheticDataConfig`, :class:`ArrayDataConfig`,
  :class:`SpikeTimesDataConfig`, :class:`NWBDataConfig`. Each has a
  ``_target_`` naming the loader class in :mod:`torch_ising.experiment.data`;
  every loader returns spikes of shape (T, R, N).
* ``model``: :class:`ModelConfig` (interaction order O and bin window w).
* ``fit``: :class:`FitConfig` (EM method, Q form, F, stopping, device, dtype,
  checkpoints).
* ``output``: :class:`OutputConfig` (what to save and plot).
* the primary config: :class:`ExperimentConfig`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..statespace.qforms import Q_FORMS as _STATE_Q_FORMS

__all__ = [
    "COUNTS_MODES",
    "NAN_MODES",
    "Q_FORMS",
    "DEVICES",
    "DTYPES",
    "SyntheticDataConfig",
    "ArrayDataConfig",
    "SpikeTimesDataConfig",
    "NWBDataConfig",
    "ModelConfig",
    "FitConfig",
    "OutputConfig",
    "AnalysisConfig",
    "ExperimentConfig",
    "DATA_SCHEMAS",
    "register_configs",
]

#: How a data source treats a bin holding more than one spike.
COUNTS_MODES = ("refuse", "binarise")
#: how the array loader treats NaN: refuse it, or mark the (bin, trial) entries holding one unobserved (fit's mask)
NAN_MODES = ("refuse", "mask")
#: Forms of the state-noise covariance Q (MODEL.md 3) by their config names: q I, diag(q), full, or two
#: blocks (:data:`torch_ising.statespace.Q_FORMS`, whose records give these names).
Q_FORMS = tuple(form.config_name for form in _STATE_Q_FORMS.values())
#: Values of ``fit.device``.
DEVICES = ("auto", "cpu", "cuda")
#: Values of ``fit.dtype``.
DTYPES = ("float64", "float32")


def _choice(value: Any, allowed: tuple[str, ...], name: str) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _positive(value: Any, name: str, *, integer: bool = False, allow_zero: bool = False) -> None:
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or value < 0 or (value == 0 and not allow_zero):
        kind = "an integer" if integer else "a number"
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {kind} {bound}; got {value!r}")


def _window(value: Any, name: str) -> None:
    if value is None or len(value) != 2 or not float(value[0]) < float(value[1]):
        raise ValueError(f"{name} must be [start, stop] with start < stop (seconds from the event); got {value!r}")


# --------------------------------------------------------------------------------------------- data


@dataclass
class SyntheticDataConfig:
    """Built-in synthetic data (MODEL.md 6; the seed's Sections 1-3).

    theta_t is drawn as Gaussian-process paths (``generate_thetas``) and R
    patterns per bin from p(x | theta_t). Mapping to (T, R, N): T bins of the
    generated path, R independent draws per bin (trials), N neurons.

    Attributes:
        N: number of neurons.
        order: interaction order of the ground-truth theta (the fitted order is ``model.order``).
        T: number of time bins.
        R: number of trials (draws per bin).
        mu1: GP mean of the first-order parameters.
        sigma1: GP length scale (bins) of the first-order parameters.
        mu2: GP mean of the higher-order parameters.
        sigma2: GP length scale (bins) of the higher-order parameters.
        alpha: GP precision (the kernel is K(i, j) = exp(-(i - j)^2 / (2 sigma^2)) / alpha).
        ratio_modulated: fraction of higher-order parameters left non-zero.
        seed: random seed (defaults to the experiment's ``seed``).
    """

    _target_: str = "torch_ising.experiment.data.SyntheticData"
    N: int = 5
    order: int = 2
    T: int = 50
    R: int = 100
    mu1: float = -2.0
    sigma1: float = 50.0
    mu2: float = 0.0
    sigma2: float = 50.0
    alpha: float = 12.0
    ratio_modulated: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("N", "order", "T", "R"):
            _positive(getattr(self, name), f"data.{name}", integer=True)
        if self.order > self.N:
            raise ValueError(f"data.order must be <= data.N; got order={self.order} with N={self.N}")


@dataclass
class ArrayDataConfig:
    """Binned spikes stored as a numpy array in .npy or .npz (never unpickled).

    Mapping to (T, R, N): the array's axes are named by ``axes``, a string of
    the letters T (time bins), R (trials) and N (neurons) in the array's axis
    order; the default "TRN" means the file already holds (T, R, N). Omitted
    letters become axes of length 1, so "TN" is one trial and "RN" one bin.

    Attributes:
        path: the .npy or .npz file (required).
        key: the array's name inside an .npz (default: "spikes", or its only array).
        axes: the array's axis order, a permutation of "TRN" or of a subset containing N.
        counts: "refuse" values > 1, or "binarise" them (any spike -> 1).
        nan: "refuse" (default) NaN, or "mask": an entry (t, r) with a NaN is unobserved
            (passed to fit as ``mask``, written to results.npz) and its spikes are set to 0.
    """

    _target_: str = "torch_ising.experiment.data.ArrayData"
    path: str = "???"
    key: str | None = None
    axes: str = "TRN"
    counts: str = "refuse"
    nan: str = "refuse"

    def __post_init__(self) -> None:
        _choice(self.counts, COUNTS_MODES, "data.counts")
        _choice(self.nan, NAN_MODES, "data.nan")


@dataclass
class SpikeTimesDataConfig:
    """Spike times and trial event times in an .npz, binned with numpy.

    The .npz holds three 1-D arrays: spike times in seconds (``times_key``),
    the unit of each spike (``units_key``, same length) and one event time per
    trial (``events_key``). Mapping to (T, R, N): bin t of trial r covers
    [e_r + start + t w, e_r + start + (t + 1) w) with w = ``bin_width`` and
    [start, stop] = ``window``, so T = (stop - start) / w; R = number of
    events; N = number of units (sorted unit ids, or the order of ``units``).

    Attributes:
        path: the .npz file (required).
        bin_width: bin width w in seconds.
        window: [start, stop] in seconds relative to each event.
        times_key: name of the spike-time array.
        units_key: name of the spike-unit array.
        events_key: name of the event-time array.
        units: unit ids to keep, in this order (default: all, sorted).
        counts: "refuse" (default) bins with two or more spikes (the error gives their number), or
            "binarise" them (any spike in a bin -> 1; the summary states the spikes dropped).
    """

    _target_: str = "torch_ising.experiment.data.SpikeTimesData"
    path: str = "???"
    bin_width: float = 0.005
    window: list[float] = field(default_factory=lambda: [0.0, 0.5])
    times_key: str = "spike_times"
    units_key: str = "spike_units"
    events_key: str = "event_times"
    units: list[int] | None = None
    counts: str = "refuse"

    def __post_init__(self) -> None:
        _positive(self.bin_width, "data.bin_width")
        _window(self.window, "data.window")
        _choice(self.counts, COUNTS_MODES, "data.counts")


@dataclass
class NWBDataConfig:
    """An NWB file read with pynwb (optional extra ``torch_ising[nwb]``).

    Spike times come from the units table (column ``spike_times``), trials from
    the trials table. Mapping to (T, R, N): as for spike times, with the event
    of trial r taken from the trials-table column ``align_to`` (default
    ``start_time``); R = rows of the trials table, N = rows of the units table
    (or the unit ids listed in ``units``).

    Attributes:
        path: the .nwb file (required).
        bin_width: bin width in seconds.
        window: [start, stop] in seconds relative to each trial's ``align_to`` time.
        align_to: trials-table column holding the event time of each trial.
        units: unit ids (the units table's ``id`` column) to keep, in this order (default: all).
        counts: "refuse" (default) or "binarise" (as for spike times).
    """

    _target_: str = "torch_ising.experiment.data.NWBData"
    path: str = "???"
    bin_width: float = 0.005
    window: list[float] = field(default_factory=lambda: [0.0, 0.5])
    align_to: str = "start_time"
    units: list[int] | None = None
    counts: str = "refuse"

    def __post_init__(self) -> None:
        _positive(self.bin_width, "data.bin_width")
        _window(self.window, "data.window")
        _choice(self.counts, COUNTS_MODES, "data.counts")


#: The data sources, by the name of their config file in ``configs/data/``.
DATA_SCHEMAS: dict[str, type] = {
    "synthetic": SyntheticDataConfig,
    "array": ArrayDataConfig,
    "spike_times": SpikeTimesDataConfig,
    "nwb": NWBDataConfig,
}


# --------------------------------------------------------------------------------------------- model, fit, output


@dataclass
class ModelConfig:
    """The Ising model fitted in every bin (MODEL.md 1-2).

    Attributes:
        order: interaction order O (1 = independent, 2 = pairwise, ...), 1 <= O <= N.
        window: bin width w >= 1 in data bins; T = floor(T_raw / w), a new bin is 1 when any of its w bins is 1.
    """

    _target_: str = "torch_ising.experiment.schemas.ModelConfig"
    order: int = 2
    window: int = 1

    def __post_init__(self) -> None:
        _positive(self.order, "model.order", integer=True)
        _positive(self.window, "model.window", integer=True)


@dataclass
class FitConfig:
    """The state-space EM fit (MODEL.md 3) and where it runs.

    The state noise starts at ``Q`` in the form ``Q_form``:
    "scalar" Q = q I (one scalar re-estimated), "diagonal" Q = diag(q, ..., q)
    (re-estimated element-wise), "full" Q = q I re-estimated as a full matrix,
    "two_block" Q = diag(q1 on the N first-order entries, q2 on the others),
    with ``Q`` = [q1, q2] (or one q used for both).

    Attributes:
        method: the observation model: "exact" likelihood, or an approximation registered in
            ``torch_ising.statespace.OBSERVATION_MODELS`` such as "pseudo" (large N, MODEL.md 5).
        eta_method: approximation of eta and psi with ``method=pseudo`` ("tap", "bethe", ...); None = default.
        Q: initial state-noise variance q, or [q1, q2] for ``Q_form=two_block``.
        Q_form: "scalar", "diagonal", "full" or "two_block".
        F: None keeps F = I fixed; a number starts the learned autoregressive F at F I.
        theta_o: prior mean of theta_1.
        sigma_o: prior variance of theta_1 (Sigma = sigma_o I); None: fit's default (1 with a fixed
            prior for a stationary fit, else 0.1 with mu learned).
        stationary: pool all bins into one and fit a single MAP theta (MODEL.md 3.6).
        max_iter: maximum number of EM iterations.
        tol: convergence tolerance of the EM loop.
        stop: the stopping rule of :func:`torch_ising.fit`: "converged" (the default: accelerated EM
            to its fixed point), "mll" (maximise the Laplace l over the hyperparameters directly),
            "em" (plain EM), "ssll" (the published rule).
        device: "auto" (CUDA when available), "cpu" or "cuda".
        dtype: "float64" or "float32".
        checkpoint_every: write a checkpoint every K EM iterations (0 = never).
        checkpoint: checkpoint file, relative to the run's output directory.
        resume: start from ``checkpoint`` when it exists.
        progress: print per-iteration progress.
    """

    _target_: str = "torch_ising.experiment.schemas.FitConfig"
    method: str = "exact"
    eta_method: str | None = None
    Q: Any = 0.01
    Q_form: str = "scalar"
    F: float | None = None
    theta_o: float = 0.0
    sigma_o: float | None = None
    stationary: bool = False
    max_iter: int = 1000
    tol: float = 1e-5
    stop: str = "converged"
    device: str = "auto"
    dtype: str = "float64"
    checkpoint_every: int = 0
    checkpoint: str = "checkpoint.npz"
    resume: bool = False
    progress: bool = False

    def __post_init__(self) -> None:
        _choice(self.Q_form, Q_FORMS, "fit.Q_form")
        _choice(self.device, DEVICES, "fit.device")
        _choice(self.dtype, DTYPES, "fit.dtype")
        _positive(self.max_iter, "fit.max_iter", integer=True)
        _positive(self.tol, "fit.tol", allow_zero=True)
        if self.sigma_o is not None:
            _positive(self.sigma_o, "fit.sigma_o")
        _positive(self.checkpoint_every, "fit.checkpoint_every", integer=True, allow_zero=True)
        q = list(self.Q) if isinstance(self.Q, Sequence) and not isinstance(self.Q, str) else [self.Q]
        if self.Q_form == "two_block" and len(q) not in (1, 2):
            raise ValueError(f"fit.Q must be q or [q1, q2] for Q_form=two_block; got {self.Q!r}")
        if self.Q_form != "two_block" and len(q) != 1:
            raise ValueError(f"fit.Q must be one number for Q_form={self.Q_form}; got {self.Q!r}")
        for value in q:
            _positive(value, "fit.Q", allow_zero=True)


@dataclass
class OutputConfig:
    """What a run writes into its output directory (every file atomically).

    Attributes:
        results: write ``results_file`` (npz: the fit's arrays and the resolved config YAML).
        results_file: name of the results file.
        config_file: name of the resolved config YAML written next to it (None: only inside the npz).
        summary: write ``summary.txt`` and ``summary.json`` (the summary is always printed).
        figures: names of the figures to draw as PNG; ["all"] draws every available one, [] none.
        dpi: resolution of the PNG figures.
        reliable_min_bins: a coupling theta_ij is listed in ``reliable_couplings.csv`` when its 90%
            credible band excludes 0 in at least this many bins.
    """

    _target_: str = "torch_ising.experiment.schemas.OutputConfig"
    results: bool = True
    results_file: str = "results.npz"
    config_file: str | None = "config_resolved.yaml"
    summary: bool = True
    figures: list[str] = field(default_factory=lambda: ["all"])
    dpi: int = 100
    reliable_min_bins: int = 1

    def __post_init__(self) -> None:
        _positive(self.dpi, "output.dpi", integer=True)
        _positive(self.reliable_min_bins, "output.reliable_min_bins", integer=True)


@dataclass
class AnalysisConfig:
    """Analyses run after the fit (0 switches each off).

    Attributes:
        surrogates: n trial-shuffle surrogates (``ti.surrogate_test``) of S_ratio, fitted with the data
            as one batch; writes ``surrogates.csv`` (observed S_ratio, surrogate band, p-value per bin)
            and ``figures/surrogates.png``.
        surrogate_alpha: the p-value below which a bin is counted (and marked) as significant.
        cv_folds: K of a K-fold cross-validation over trials (``ti.cross_validate``) of the orders
            ``cv_orders``; writes ``cross_validation.csv`` / ``.txt`` and ``figures/cv.png``.
        cv_orders: the orders compared (those above N are dropped).
    """

    _target_: str = "torch_ising.experiment.schemas.AnalysisConfig"
    surrogates: int = 0
    surrogate_alpha: float = 0.01
    cv_folds: int = 0
    cv_orders: list[int] = field(default_factory=lambda: [1, 2, 3])

    def __post_init__(self) -> None:
        _positive(self.surrogates, "analysis.surrogates", integer=True, allow_zero=True)
        _positive(self.cv_folds, "analysis.cv_folds", integer=True, allow_zero=True)
        if self.cv_folds == 1:
            raise ValueError("analysis.cv_folds must be 0 (off) or >= 2 folds; got 1")
        if not 0.0 < float(self.surrogate_alpha) < 1.0:
            raise ValueError(f"analysis.surrogate_alpha must be in (0, 1); got {self.surrogate_alpha!r}")
        orders = list(self.cv_orders)
        if not orders:
            raise ValueError("analysis.cv_orders must hold at least one order")
        for o in orders:
            _positive(o, "analysis.cv_orders", integer=True)


@dataclass
class ExperimentConfig:
    """The primary config: one experiment = data + model + fit + output.

    Attributes:
        data: the data source (one of :data:`DATA_SCHEMAS`).
        model: the fitted model.
        fit: the EM fit.
        output: what to write.
        analysis: surrogates and cross-validation after the fit.
        seed: random seed (synthetic data, surrogates and folds).
        name: the experiment's name (written into the summary).
    """

    data: Any = "???"
    model: ModelConfig = field(default_factory=ModelConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    seed: int = 0
    name: str = "default"


def register_configs() -> None:
    """Store the schemas in Hydra's ConfigStore (imports Hydra; call before composing).

    Registered names: the primary schema ``torch_ising_schema``, and one schema
    per group option under ``schema/<group>/<name>``, which the YAML files
    extend through their defaults lists (``- /schema/data/array@_here_``).
    """
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="torch_ising_schema", node=ExperimentConfig)
    for name, schema in DATA_SCHEMAS.items():
        cs.store(group="schema/data", name=name, node=schema)
    cs.store(group="schema/model", name="model", node=ModelConfig)
    cs.store(group="schema/fit", name="fit", node=FitConfig)
    cs.store(group="schema/output", name="output", node=OutputConfig)
    cs.store(group="schema/analysis", name="analysis", node=AnalysisConfig)
