"""The ``torch-ising`` command: one Hydra experiment = load data, fit, write results, figures and a summary.

Usage (see docs/experiments.md)::

    torch-ising                                   # built-in synthetic data, pairwise fit
    torch-ising data=array data.path=spikes.npy   # your own (T, R, N) recording
    torch-ising -m model.order=1,2,3              # an order sweep + comparison table
    torch-ising -m hydra/launcher=submitit_slurm ...   # the same sweep on a SLURM cluster
    python -m torch_ising --cfg job               # print the resolved config

Configs are read from the checkout's top-level ``configs/`` folder, or from
the copy packaged as ``torch_ising/conf`` in an installed wheel
(``TORCH_ISING_CONFIG_DIR`` overrides both). Errors are reported on one line
that names the problem and the fix; ``HYDRA_FULL_ERROR=1`` (or
``TORCH_ISING_DEBUG=1``) shows the full traceback instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import os
import re
import signal
import sys
import threading
import time
import types
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from .._device import resolve_device
from .schemas import DATA_SCHEMAS, ExperimentConfig, register_configs

__all__ = [
    "find_config_dir",
    "CONFIG_DIR",
    "fit_kwargs",
    "run_experiment",
    "ExperimentSummary",
    "SweepTableCallback",
    "one_line_error",
    "main",
]

_PROG = "torch-ising"
#: The automatic schema matching of our launcher presets (same names as the plugins' own) is intended.
_SCHEMA_MATCH_WARNING = r"(?s).*is validated against ConfigStore schema with the same name"


def _ignore_schema_matching() -> None:
    """Add a filter, to the current warning filters, that ignores Hydra's warning about our launcher presets."""
    warnings.filterwarnings("ignore", message=_SCHEMA_MATCH_WARNING, category=UserWarning)


# --------------------------------------------------------------------------------------------- configs


def find_config_dir() -> Path | None:
    """The folder holding ``config.yaml``.

    Looked up in order: ``$TORCH_ISING_CONFIG_DIR``; the top-level ``configs/``
    of a source checkout (next to ``pyproject.toml``); ``torch_ising/conf`` in an
    installed package.
    """
    env = os.environ.get("TORCH_ISING_CONFIG_DIR")
    if env:
        return Path(env).expanduser().resolve()
    package = Path(__file__).resolve().parents[1]
    checkout = package.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "configs" / "config.yaml").is_file():
        return checkout / "configs"
    if (package / "conf" / "config.yaml").is_file():
        return package / "conf"
    return None


#: The folder of the configs as found at import (for information: :func:`main` looks it up at each call).
CONFIG_DIR = find_config_dir()


# --------------------------------------------------------------------------------------------- fit settings


def _is_list(v: Any) -> bool:
    return isinstance(v, Sequence) and not isinstance(v, str)


def fit_kwargs(fit_cfg: Any, model_cfg: Any, N: int) -> dict[str, Any]:
    """Keyword arguments of :func:`torch_ising.fit` from the ``fit`` and ``model`` configs (order excluded)."""
    import torch

    from ..statespace.observation import OBSERVATION_MODELS
    from ..statespace.stopping import STOP_RULES

    if fit_cfg.method not in OBSERVATION_MODELS:
        raise ValueError(
            f"fit.method={fit_cfg.method!r} is not available; choose one of {', '.join(OBSERVATION_MODELS)}"
        )
    if fit_cfg.stop not in STOP_RULES:
        raise ValueError(f"fit.stop={fit_cfg.stop!r} is not a stopping rule; choose one of {', '.join(STOP_RULES)}")
    q = [float(v) for v in fit_cfg.Q] if _is_list(fit_cfg.Q) else [float(fit_cfg.Q)]
    return {
        "window": model_cfg.window,
        # one value q, or [q1, q2] for the two-block form; fit reads it in the named form of Q
        "state_cov": q[0] if len(q) == 1 else q,
        "q_form": fit_cfg.Q_form,
        "state_ar": fit_cfg.F,
        "theta_o": fit_cfg.theta_o,
        "sigma_o": fit_cfg.sigma_o,
        "max_iter": fit_cfg.max_iter,
        "tol": fit_cfg.tol,
        "stop": fit_cfg.stop,
        "stationary": fit_cfg.stationary,
        "device": resolve_device(fit_cfg.device, option="fit.device"),
        "dtype": {"float64": torch.float64, "float32": torch.float32}[fit_cfg.dtype],
        "progress": fit_cfg.progress,
        "method": fit_cfg.method,
        "eta_method": fit_cfg.eta_method,
    }


class _Checkpointer:
    """EM state callback: keeps l per iteration and writes a checkpoint every ``every`` iterations."""

    def __init__(self, path: Path, every: int, start: int, history: list[float], meta: dict) -> None:
        self.path, self.every, self.start = path, every, start
        self.history = list(history)
        self.meta = meta
        self.last_saved = start
        self.calls = 0
        self.written = 0

    def __call__(self, state: Any) -> None:
        from .outputs import save_checkpoint

        self.calls += 1
        done = int(state.iteration)
        self.history.append(float(state.mll.reshape(-1)[0]))
        if self.every and done - self.last_saved >= self.every:
            save_checkpoint(self.path, state, self.history, self.meta)
            self.last_saved = done
            self.written += 1


def _load_resume_state(path: Path, meta: Mapping[str, Any]) -> tuple[Any, int, list[float]]:
    import torch

    from ..statespace import EMState, StateSpaceParams
    from .outputs import PARAM_FIELDS, STATE_FIELDS, load_checkpoint

    arrays, iteration, history, saved = load_checkpoint(path)
    for key in ("N", "order", "D", "T_raw", "R", "method", "Q_form", "stop", "F"):
        if saved.get(key) != meta.get(key):
            raise ValueError(
                f"fit.resume: checkpoint {str(path)!r} was written for {key}={saved.get(key)!r} but this run has "
                f"{key}={meta.get(key)!r}; resume with the same data and model, or set fit.resume=false"
            )
    missing = [name for name in ("theta_s", "mll", "converged") if arrays.get(name) is None]
    if missing:
        raise ValueError(
            f"fit.resume: checkpoint {str(path)!r} lacks the EM state ({', '.join(missing)}); it was written by an "
            "older torch-ising. Set fit.resume=false to start afresh"
        )

    def tensor(name: str) -> Any:
        a = arrays.get(name)
        return None if a is None else torch.from_numpy(np.asarray(a))

    params = StateSpaceParams(*(tensor(n) for n in PARAM_FIELDS))
    fingerprint = arrays.get("fingerprint")
    state = EMState(iteration, params, *(tensor(n) for n in STATE_FIELDS), fingerprint=fingerprint)
    if saved.get("history_from") != "initial E-step":
        print(
            f"{_PROG}: note: checkpoint {path} was written by an older torch-ising; mll_list will lack the l of "
            "the initial E-step",
            flush=True,
        )
    return state, iteration, history


# --------------------------------------------------------------------------------------------- one run


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExperimentSummary:
    """What one run of :func:`run_experiment` found and wrote: the content of its ``summary.json``.

    :meth:`to_dict` gives the mapping written to ``summary.json`` (the fields of analyses that were
    not run left out); :meth:`from_dict` reads one back.
    """

    name: str
    """The experiment's name (the config's ``name``)."""
    data: str
    """One line naming the data source and its (T, R, N) mapping."""
    N: int
    """Neurons."""
    T: int
    """Bins of the fit (after re-binning by ``model.window``)."""
    R: int
    """Trials."""
    T_raw: int
    """Bins of the data as loaded."""
    order: int
    """Interaction order of the model."""
    window: int
    """Raw bins per fitted bin."""
    D: int
    """Natural parameters per bin."""
    mll: float
    """Log marginal likelihood l of the fit."""
    aic: float
    """Akaike information criterion of the fit."""
    bic: float
    """Bayesian information criterion of the fit (with ``n_obs`` observations)."""
    k: int
    """Hyperparameters counted by AIC and BIC."""
    n_obs: int
    """Observations: sum over bins of the observed trials (T R when nothing is missing)."""
    unobserved_entries: int
    """Entries (bin, trial) of the raw data without an observation."""
    iterations: int
    """EM iterations, those before a resume included."""
    converged: bool
    """Whether the fit met its stopping rule before ``fit.max_iter``."""
    wall_time: float
    """Seconds of the whole run up to the fit's end (loading and the fit)."""
    fit_time: float
    """Seconds of the fit alone."""
    device: str
    """The device the fit ran on."""
    dtype: str
    """The floating-point type of the fit."""
    method: str
    """The observation model (``fit.method``)."""
    stop: str
    """The stopping rule (``fit.stop``)."""
    resumed_from: int
    """The EM iteration of the checkpoint the run resumed from (0: not resumed)."""
    overrides: tuple[str, ...]
    """The command-line overrides of the run."""
    output_dir: str
    """The run's directory."""
    warnings: tuple[str, ...]
    """The fit's FitWarnings."""
    data_notes: tuple[str, ...]
    """What the data loader changed (its DataWarnings)."""
    time_unit: str
    """The unit of the bin times: "s" or "bin"."""
    unit_ids: tuple[int, ...]
    """The data's id of each neuron."""
    reliable_couplings: int | None = None
    """Pairwise couplings whose 90% band excludes 0 in at least ``reliable_min_bins`` bins (None: not computed)."""
    reliable_min_bins: int | None = None
    """The bins ``reliable_couplings`` asks for (None: not computed)."""
    surrogates: int | None = None
    """Trial-shuffle surrogates drawn (None: no surrogate test)."""
    surrogate_statistic: str | None = None
    """The statistic of the surrogate test."""
    surrogate_alpha: float | None = None
    """The per-bin significance level of the surrogate test."""
    surrogate_significant_bins: int | None = None
    """Bins where the surrogate test's p-value is below ``surrogate_alpha``."""
    cv_folds: int | None = None
    """Folds of the cross-validation over orders (None: not run)."""
    cv_best_order: int | None = None
    """The order with the highest mean held-out log-likelihood."""
    cv_heldout_ll: Mapping[str, float] | None = None
    """Mean held-out log-likelihood of each order (keys: the orders as text; a read-only mapping)."""
    results_file: str
    """The results file ("" when ``output.results`` is false)."""
    figures: tuple[str, ...]
    """The figure files written."""

    _OPTIONAL = (
        "reliable_couplings",
        "reliable_min_bins",
        "surrogates",
        "surrogate_statistic",
        "surrogate_alpha",
        "surrogate_significant_bins",
        "cv_folds",
        "cv_best_order",
        "cv_heldout_ll",
    )
    _SEQUENCES = ("overrides", "warnings", "data_notes", "unit_ids", "figures")

    def __post_init__(self) -> None:
        if self.cv_heldout_ll is not None:  # a frozen record holds no mutable dict
            object.__setattr__(self, "cv_heldout_ll", types.MappingProxyType(dict(self.cv_heldout_ll)))

    def to_dict(self) -> dict[str, Any]:
        """The summary as ``summary.json`` holds it: lists for the sequences, unset optional fields left out."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in self._OPTIONAL and value is None:
                continue
            if f.name in self._SEQUENCES:
                value = list(value)
            elif isinstance(value, types.MappingProxyType):
                value = dict(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, summary: Mapping[str, Any]) -> ExperimentSummary:
        """The record of a summary mapping (as :meth:`to_dict` gives and ``summary.json`` holds).

        Raises:
            TypeError: for a key that is not a field, or a missing required field.
        """
        return cls(**{k: tuple(v) if k in cls._SEQUENCES else v for k, v in summary.items()})


def _data_config(cfg: DictConfig) -> dict[str, Any]:
    data = OmegaConf.to_container(cfg.data, resolve=True)
    assert isinstance(data, dict)
    source = HydraConfig.get().runtime.choices.get("data", "") if HydraConfig.initialized() else ""
    for key, value in data.items():
        if value == "???":
            where = f" for data={source}" if source else ""
            raise ValueError(f"data.{key} is required{where}: add data.{key}=... to the command line")
    path = data.get("path")
    if isinstance(path, str) and path not in ("", "???"):
        from hydra.utils import to_absolute_path

        data["path"] = to_absolute_path(os.path.expanduser(path))
    return data


def run_experiment(cfg: DictConfig, output_dir: str | os.PathLike, overrides: Sequence[str] = ()) -> ExperimentSummary:
    """Run one experiment: load the data, fit, and write results, summary and figures into ``output_dir``.

    The run holds a lock file in ``output_dir`` (another run there is refused), removes the temporary
    files a killed run left, and writes ``summary.json`` last: a directory without it holds no
    complete result.

    Args:
        cfg: a composed config (:class:`~torch_ising.experiment.schemas.ExperimentConfig`).
        output_dir: the run's directory.
        overrides: the command-line overrides of this run (recorded in the summary).

    Returns:
        the summary (:class:`ExperimentSummary`: N, T, R, order, mll, aic, bic, k, iterations, wall_time,
        paths, ...), the content of ``summary.json``.

    Raises:
        RunDirectoryBusy: when another live run holds ``output_dir``.
    """
    from .outputs import FAILED_FILE, remove_stale_temporaries, run_lock

    output_dir = Path(output_dir).resolve()
    with run_lock(output_dir):
        remove_stale_temporaries(output_dir)
        (output_dir / FAILED_FILE).unlink(missing_ok=True)
        return _run_experiment(cfg, output_dir, overrides)


def _run_experiment(cfg: DictConfig, output_dir: Path, overrides: Sequence[str] = ()) -> ExperimentSummary:
    """The body of :func:`run_experiment`, run while holding the directory's lock.

    Args:
        cfg: a composed config (:class:`~torch_ising.experiment.schemas.ExperimentConfig`).
        output_dir: the run's directory.
        overrides: the command-line overrides of this run (recorded in the summary).

    Returns:
        the summary, the content of ``summary.json``.
    """
    t_start = time.perf_counter()
    from hydra.utils import instantiate

    from ..basis import compute_D
    from ..comparison import aic, bic
    from ..statespace import FitWarning, fit
    from .data import DataWarning
    from .outputs import (
        check_figure_names,
        fit_bin_times,
        format_summary,
        result_arrays,
        save_figures,
        save_results,
        write_json,
        write_reliable_couplings,
        write_text,
    )

    output_dir = Path(output_dir).resolve()
    model_cfg = instantiate(cfg.model, _convert_="all")
    fit_cfg = instantiate(cfg.fit, _convert_="all")
    out_cfg = instantiate(cfg.output, _convert_="all")
    figure_names = check_figure_names(out_cfg.figures)
    source = instantiate(_data_config(cfg), _convert_="all")
    with warnings.catch_warnings(record=True) as data_caught:
        warnings.simplefilter("always", DataWarning)
        spikes = source.load()
    data_notes = []
    for w in data_caught:  # what the loader changed goes into the summary as well as onto stderr
        if issubclass(w.category, DataWarning):
            data_notes.append(str(w.message))
            print(f"{_PROG}: data: {w.message}", file=sys.stderr, flush=True)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    T_raw, R, N = spikes.shape
    raw_bin_times = getattr(source, "bin_times", None)
    raw_bin_times = np.arange(T_raw, dtype=np.float64) if raw_bin_times is None else np.asarray(raw_bin_times)
    time_unit = getattr(source, "time_unit", "bin") or "bin"
    unit_ids = getattr(source, "unit_ids", None)
    unit_ids = np.arange(N) if unit_ids is None else np.asarray(unit_ids)
    if model_cfg.order > N:
        raise ValueError(
            f"model.order={model_cfg.order} is larger than the number of neurons N={N} in the data; "
            f"use model.order <= {N}"
        )
    if model_cfg.window > T_raw:
        raise ValueError(
            f"model.window={model_cfg.window} is larger than the T={T_raw} bins of the data; "
            f"use model.window <= {T_raw}"
        )
    kwargs = fit_kwargs(fit_cfg, model_cfg, N)
    # the loader's (T_raw, R) observation mask (unequal trials, invalid trials, NaN entries), None if all observed
    mask = getattr(source, "mask", None)
    if mask is not None:
        kwargs["mask"] = np.asarray(mask, dtype=bool)
    D = compute_D(N, model_cfg.order)
    meta = {
        "N": N,
        "order": model_cfg.order,
        "D": D,
        "T_raw": T_raw,
        "R": R,
        "method": fit_cfg.method,
        "Q_form": fit_cfg.Q_form,
        "stop": fit_cfg.stop,
        "F": fit_cfg.F,
    }

    ckpt_path = Path(fit_cfg.checkpoint)
    ckpt_path = ckpt_path if ckpt_path.is_absolute() else output_dir / ckpt_path
    resume, start, history = None, 0, []
    if fit_cfg.resume:
        if ckpt_path.is_file():
            resume, start, history = _load_resume_state(ckpt_path, meta)
            print(f"{_PROG}: resuming from {ckpt_path} (EM iteration {start})", flush=True)
        else:
            print(f"{_PROG}: fit.resume=true but there is no checkpoint at {ckpt_path}; starting afresh", flush=True)
    if fit_cfg.checkpoint_every and resume is None:
        # l of the initial E-step opens the l history (the fit's mll_list[0], under every stopping rule); one
        # E-step computes it, so that a resumed run's history is the uninterrupted run's
        history = [float(fit(spikes, model_cfg.order, **{**kwargs, "progress": False}, mstep=False).mll)]
    meta["history_from"] = "initial E-step"
    checkpointer = _Checkpointer(ckpt_path, fit_cfg.checkpoint_every, start, history, meta)
    # max_iter counts the iterations before the resume too; the fit takes the uninterrupted run's steps
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fit(spikes, model_cfg.order, **kwargs, resume=resume, on_state=checkpointer)
    fit_warnings = []
    for w in caught:  # FitWarnings go into the summary as well as onto stderr; others pass through
        if issubclass(w.category, FitWarning):
            fit_warnings.append(str(w.message))
            print(f"{_PROG}: warning: {w.message}", file=sys.stderr, flush=True)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    # l per iteration: the fit's record, or (resumed) the checkpoint's record continued by this run's iterations
    mll_list = [float(m) for m in (checkpointer.history if start else result.mll_list)]
    wall_time = time.perf_counter() - t_start

    k = result.n_hyperparameters
    mll = float(result.mll)
    n_obs = int(result.n_observations)  # sum_t R_t: T R unless the data had unobserved entries
    summary: dict[str, Any] = {
        "name": cfg.get("name", "default"),
        "data": source.describe(),
        "N": N,
        "T": int(result.T),
        "R": int(result.R),
        "T_raw": T_raw,
        "order": model_cfg.order,
        "window": model_cfg.window,
        "D": D,
        "mll": mll,
        "aic": float(aic(mll, k)),
        "bic": float(bic(mll, k, n_obs)),
        "k": k,
        "n_obs": n_obs,
        "unobserved_entries": 0 if mask is None else int((~np.asarray(mask, dtype=bool)).sum()),
        "iterations": int(result.iterations),  # EM iterations, those before a resume included
        "converged": bool(result.converged),
        "wall_time": wall_time,
        "fit_time": float(result.wall_time),
        "device": str(kwargs["device"]),
        "dtype": fit_cfg.dtype,
        "method": fit_cfg.method,
        "stop": fit_cfg.stop,
        "resumed_from": start,
        "overrides": list(overrides),
        "output_dir": str(output_dir),
        "warnings": fit_warnings,
        "data_notes": data_notes,
        "time_unit": time_unit,
        "unit_ids": unit_ids.tolist(),
    }
    bin_times = fit_bin_times(raw_bin_times, int(result.window), int(result.T))
    bin_width = getattr(source, "bin_width", None) if time_unit == "s" else None
    reliable_files: list[Any] = []
    if model_cfg.order >= 2 and out_cfg.results:
        reliable_files, rows = write_reliable_couplings(
            output_dir, result, out_cfg.reliable_min_bins, unit_ids=unit_ids.tolist()
        )
        summary["reliable_couplings"] = len(rows)
        summary["reliable_min_bins"] = out_cfg.reliable_min_bins

    analysis_cfg = instantiate(cfg.analysis, _convert_="all") if "analysis" in cfg else None
    analyses = _run_analyses(analysis_cfg, spikes, model_cfg, fit_cfg, kwargs, N, int(cfg.get("seed", 0)), summary)

    written: dict[str, Any] = {}
    # summary.json marks a complete run: it goes first and is written again last, so that the directory never
    # pairs one run's summary with another run's results
    (output_dir / "summary.json").unlink(missing_ok=True)
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    if out_cfg.results:
        arrays = result_arrays(result)
        arrays["mll_list"] = mll_list
        arrays["aic"], arrays["bic"], arrays["k"] = summary["aic"], summary["bic"], k
        theta_true = getattr(source, "theta", None)
        if theta_true is not None:
            arrays["theta_true"] = theta_true
        arrays["bin_times"], arrays["raw_bin_times"] = bin_times, raw_bin_times
        arrays["time_unit"], arrays["unit_ids"] = time_unit, unit_ids
        # the (T_raw, R) observation mask, True = observed (all True when the loader found nothing missing)
        arrays["mask"] = np.ones((T_raw, R), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        written["results"] = save_results(output_dir / out_cfg.results_file, arrays, config_yaml, summary)
    if out_cfg.config_file:
        written["config"] = write_text(output_dir / out_cfg.config_file, config_yaml)
    analysis_files = _write_analyses(output_dir, analyses, bin_times)
    ctx = {
        "result": result,
        "mll_list": mll_list,
        "spikes": spikes,
        "theta_true": getattr(source, "theta", None),
        "bin_times": bin_times,
        "raw_bin_times": raw_bin_times,
        "time_unit": time_unit,
        "bin_width": bin_width,
        # sources without unit ids (synthetic, arrays) keep "neuron n" labels
        "unit_ids": unit_ids if time_unit == "s" else None,
        **analyses,
    }
    figures = save_figures(figure_names, ctx, output_dir / "figures", dpi=out_cfg.dpi) if figure_names else []
    summary["results_file"] = str(written.get("results", ""))
    summary["figures"] = [str(p) for p in figures]
    text = format_summary(summary, title=f"{_PROG} summary (experiment: {summary['name']})")
    if out_cfg.summary:
        written["summary"] = write_text(output_dir / "summary.txt", text + "\n")
    write_json(output_dir / "summary.json", summary)
    lines = [text, f"  {'output dir':<14} {output_dir}"]
    if "results" in written:
        lines.append(f"  {'results':<14} {written['results']}")
    if figures:
        lines.append(f"  {'figures':<14} {output_dir / 'figures'} ({', '.join(p.name for p in figures)})")
    if reliable_files:
        lines.append(f"  {'couplings':<14} {reliable_files[1]}")
    for path in analysis_files:
        lines.append(f"  {'analysis':<14} {path}")
    print("\n".join(lines), flush=True)
    return ExperimentSummary.from_dict(summary)


def _run_analyses(
    analysis_cfg: Any,
    spikes: Any,
    model_cfg: Any,
    fit_cfg: Any,
    kwargs: dict[str, Any],
    N: int,
    seed: int,
    summary: dict[str, Any],
) -> dict[str, Any]:
    """The ``analysis`` group: trial-shuffle surrogates of S_ratio and K-fold cross-validation over orders.

    Fills ``summary`` and returns the records for the files and figures (``surrogate_test``, ``cv``).
    """
    import dataclasses

    import torch

    from ..crossval import CrossValidation, cross_validate
    from ..surrogates import surrogate_test

    out: dict[str, Any] = {}
    if analysis_cfg is None:
        return out
    quiet = {**kwargs, "progress": False}
    if analysis_cfg.surrogates:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the surrogates' FitWarnings are not the data's
            st = surrogate_test(spikes, model_cfg.order, n=analysis_cfg.surrogates, seed=seed, **quiet)
        p = st.p_value.cpu().numpy()
        summary["surrogates"] = analysis_cfg.surrogates
        summary["surrogate_statistic"] = "S_ratio"
        summary["surrogate_alpha"] = analysis_cfg.surrogate_alpha
        summary["surrogate_significant_bins"] = int((p < analysis_cfg.surrogate_alpha).sum())
        out["surrogate_test"] = st
        out["surrogate_alpha"] = analysis_cfg.surrogate_alpha
    if analysis_cfg.cv_folds:
        R = int(spikes.shape[1])
        if analysis_cfg.cv_folds > R:
            raise ValueError(
                f"analysis.cv_folds={analysis_cfg.cv_folds} is larger than the number of trials R={R}; "
                f"use analysis.cv_folds <= {R}"
            )
        orders = sorted({int(o) for o in analysis_cfg.cv_orders if int(o) <= N})
        if not orders:
            raise ValueError(f"analysis.cv_orders={analysis_cfg.cv_orders} holds no order <= N={N}")
        parts = []
        for o in orders:  # one call per order: the state-noise form's size depends on the order
            kw = {**quiet, **fit_kwargs(fit_cfg, dataclasses.replace(model_cfg, order=o), N)}
            kw["progress"] = False
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                parts.append(cross_validate(spikes, orders=(o,), folds=analysis_cfg.cv_folds, seed=seed, **kw))
        cv = CrossValidation(
            orders=tuple(orders),
            score=torch.cat([c.score for c in parts]),
            mean=torch.cat([c.mean for c in parts]),
            se=torch.cat([c.se for c in parts]),
            folds=parts[0].folds,
            fold=parts[0].fold,
            method=parts[0].method,
        )
        summary["cv_folds"] = cv.folds
        summary["cv_best_order"] = int(cv.best)
        summary["cv_heldout_ll"] = {str(o): float(m) for o, m in zip(orders, cv.mean.tolist(), strict=True)}
        out["cv"] = cv
    return out


def _write_analyses(output_dir: Path, analyses: Mapping[str, Any], bin_times: Any) -> list[Path]:
    """``surrogates.csv`` and ``cross_validation.csv`` / ``.txt``, atomically; returns the paths."""
    from .outputs import write_text

    written: list[Path] = []
    st = analyses.get("surrogate_test")
    if st is not None:
        lo, hi = st.band(0.95)
        med = st.surrogates.median(0).values
        rows = ["bin,bin_time,observed,surrogate_median,surrogate_lower_95,surrogate_upper_95,p_value"]
        for t in range(int(st.observed.shape[0])):
            rows.append(
                f"{t},{float(bin_times[t]):.6g},{float(st.observed[t]):.10g},{float(med[t]):.10g},"
                f"{float(lo[t]):.10g},{float(hi[t]):.10g},{float(st.p_value[t]):.6g}"
            )
        written.append(write_text(output_dir / "surrogates.csv", "\n".join(rows) + "\n"))
    cv = analyses.get("cv")
    if cv is not None:
        rows = ["order,heldout_ll_mean,heldout_ll_se," + ",".join(f"fold_{k}" for k in range(cv.folds))]
        for i, o in enumerate(cv.orders):
            folds = ",".join(f"{float(v):.10g}" for v in cv.score[i].tolist())
            rows.append(f"{o},{float(cv.mean[i]):.10g},{float(cv.se[i]):.10g},{folds}")
        written.append(write_text(output_dir / "cross_validation.csv", "\n".join(rows) + "\n"))
        text = f"{cv.folds}-fold cross-validation, held-out log-likelihood ({cv.method}); best order {cv.best}\n"
        written.append(write_text(output_dir / "cross_validation.txt", text + cv.table() + "\n"))
    return written


# --------------------------------------------------------------------------------------------- sweeps


#: the failed jobs of the last multirun (set by :class:`SweepTableCallback`; the command then exits 1)
_SWEEP_FAILURES: list[str] = []


class SweepTableCallback(Callback):
    """Hydra callback: after a multirun, tabulate every run's mll, AIC and BIC in the sweep directory."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from .outputs import write_sweep_table

        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_absolute():
            sweep_dir = Path(config.hydra.runtime.cwd) / sweep_dir
        from .outputs import collect_failures

        written = write_sweep_table(sweep_dir)
        failures = collect_failures(sweep_dir)
        if failures:
            _SWEEP_FAILURES[:] = [f"job {f['job']}: {f.get('error', '')}" for f in failures]
        if written:
            print(f"{_PROG}: sweep table {written[0]} ({', '.join(p.name for p in written)})", flush=True)
            print((sweep_dir / "comparison.txt").read_text(encoding="utf-8"), end="", flush=True)


# --------------------------------------------------------------------------------------------- errors


class _Terminated(SystemExit):
    """Raised by the SIGTERM handler so that files being written are cleaned up."""


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM into an exception while a run is in progress (when nothing else handles SIGTERM)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) not in (
        signal.SIG_DFL,
        None,
    ):
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Terminated(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _config_keys(node: Any, prefix: str) -> list[str]:
    if node is None:
        return []
    try:
        keys = list(OmegaConf.structured(node).keys()) if not isinstance(node, DictConfig) else list(node.keys())
    except Exception:  # noqa: BLE001 - only used for suggestions
        return []
    return [f"{prefix}{k}" for k in keys if not str(k).startswith("_")]


def _known_keys() -> list[str]:
    keys = [k for k in ExperimentConfig.__dataclass_fields__ if k != "data"]
    out = list(keys)
    for group in ("model", "fit", "output"):
        out += _config_keys(ExperimentConfig.__dataclass_fields__[group].default_factory(), f"{group}.")  # type: ignore[misc]
    for schema in DATA_SCHEMAS.values():
        out += _config_keys(schema, "data.")
    return sorted(set(out))


def one_line_error(exc: BaseException) -> str:
    """A one-line message for an error: what went wrong and how to fix it."""
    from hydra.errors import InstantiationException, MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue, ValidationError

    while isinstance(exc, InstantiationException) and exc.__cause__ is not None:
        exc = exc.__cause__
    cause = exc.__cause__
    chain = [exc] + ([cause] if cause is not None else [])
    for e in chain:
        full_key = getattr(e, "full_key", None)
        if isinstance(e, (ConfigAttributeError, ConfigKeyError)) and full_key:
            hint = difflib.get_close_matches(str(full_key), _known_keys(), n=1, cutoff=0.6)
            fix = f"did you mean {hint[0]}?" if hint else f"`{_PROG} --cfg job` lists every key"
            return f"unknown config key '{full_key}'; {fix}"
        if isinstance(e, MissingMandatoryValue) and full_key:
            return f"{full_key} is required: add {full_key}=... to the command line"
        if isinstance(e, ValidationError) and full_key:
            first = str(e).splitlines()[0]
            return f"{full_key}: {first}; give a value of the expected type"
    if isinstance(exc, MissingConfigException) or "Could not find" in str(exc) or "Could not load" in str(exc):
        text = " ".join(str(exc).split())
        match = re.search(r"Could not (?:find|load) '([^']+)'", text)
        what = match.group(1) if match else "a config"
        options = re.search(r"Available options in '[^']*':(.*?)(?:Config search path|$)", text)
        avail = f"; available: {' '.join(options.group(1).split())}" if options else ""
        return f"no config named '{what}'{avail}; check the group option on the command line"
    if isinstance(exc, OverrideParseException):
        return f"cannot parse the command-line override: {' '.join(str(exc).split())}; write key=value"
    if isinstance(exc, (ValueError, FileNotFoundError, ImportError)):
        return " ".join(str(exc).split())
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def _debug() -> bool:
    """Whether errors show their traceback: ``TORCH_ISING_DEBUG=1``, which :func:`main` sets when the user set
    ``HYDRA_FULL_ERROR=1`` (read at each call, so that a launcher's worker process, which inherits the
    environment, decides as the command does)."""
    return os.environ.get("TORCH_ISING_DEBUG") == "1"


# --------------------------------------------------------------------------------------------- entry points


def _task(cfg: DictConfig) -> float:
    """The Hydra task: one run of :func:`run_experiment` in Hydra's output directory."""
    hc = HydraConfig.get()
    output_dir = Path(hc.runtime.output_dir)
    overrides = list(hc.overrides.task)
    try:
        with _sigterm_as_exit():
            summary = run_experiment(cfg, output_dir, overrides)
    except (_Terminated, KeyboardInterrupt) as exc:
        how = "SIGTERM" if isinstance(exc, _Terminated) else "Ctrl-C (SIGINT)"
        sys.stderr.write(
            f"{_PROG}: stopped by {how}; no results were written. Checkpoints (fit.checkpoint_every > 0) are in "
            f"{output_dir}; resume with fit.resume=true hydra.run.dir={output_dir}\n"
        )
        if isinstance(exc, KeyboardInterrupt):
            raise SystemExit(128 + signal.SIGINT) from None
        raise
    except Exception as exc:
        if _debug():
            raise
        message = f"{_PROG}: error: {one_line_error(exc)} (HYDRA_FULL_ERROR=1 shows the traceback)"
        if hc.mode == RunMode.MULTIRUN:
            # the sweep goes on: the failure is recorded for the comparison table, which lists it
            from .outputs import FAILED_FILE, RunDirectoryBusy, write_json

            sys.stderr.write(message + "\n")
            if not isinstance(exc, RunDirectoryBusy):
                record = {"job": hc.job.num, "overrides": overrides, "error": one_line_error(exc)}
                write_json(output_dir / FAILED_FILE, record)
            return math.nan
        raise SystemExit(message) from None
    return float(summary.mll)


class _JobTask:
    """The task function :func:`main` hands to Hydra: calls :func:`_task`.

    A launcher that runs jobs in other processes (joblib, submitit) pickles it; unpickling it in the
    worker (:func:`_job_task_in_worker`) adds the filter of Hydra's schema-matching warning there, before
    the worker composes its job's config, since the worker does not run :func:`main`. Nothing else,
    and nothing at import, changes a warning filter.
    """

    def __call__(self, cfg: DictConfig) -> float:
        """Run one job."""
        return _task(cfg)

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (_job_task_in_worker, ())


def _job_task_in_worker() -> _JobTask:
    """Unpickle a :class:`_JobTask` in a launcher's worker process, quieting the schema-matching warning."""
    _ignore_schema_matching()
    return _JobTask()


@contextlib.contextmanager
def _command_state() -> Iterator[None]:
    """The process state of one run of the command, restored on exit.

    Inside: Hydra's warning about our launcher presets (same names as the plugins' own, matched to
    the plugins' schemas on purpose) is ignored; ``MPLBACKEND`` is ``Agg`` unless set (figures without
    a display); ``TORCH_ISING_DEBUG=1`` when the user set ``HYDRA_FULL_ERROR=1``; and
    ``HYDRA_FULL_ERROR=1``, so that Hydra re-raises errors and they are reported on one line. The
    warning filters and these three environment variables are as before on exit.
    """
    names = ("MPLBACKEND", "TORCH_ISING_DEBUG", "HYDRA_FULL_ERROR")
    saved = {name: os.environ.get(name) for name in names}
    try:
        os.environ.setdefault("MPLBACKEND", "Agg")
        if saved["HYDRA_FULL_ERROR"] == "1":
            os.environ["TORCH_ISING_DEBUG"] = "1"
        os.environ["HYDRA_FULL_ERROR"] = "1"
        with warnings.catch_warnings():
            _ignore_schema_matching()
            yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def main() -> None:
    """Console-script entry point of ``torch-ising`` (and ``python -m torch_ising``)."""
    config_dir = find_config_dir()
    if config_dir is None:
        sys.exit(
            f"{_PROG}: error: cannot find the configs (config.yaml); reinstall torch_ising, or set "
            "TORCH_ISING_CONFIG_DIR=/path/to/configs"
        )
    _SWEEP_FAILURES.clear()
    with _command_state():
        register_configs()
        debug = _debug()
        task = hydra.main(version_base="1.3", config_path=str(config_dir), config_name="config")(_JobTask())
        try:
            task()
            if _SWEEP_FAILURES:
                n, first = len(_SWEEP_FAILURES), _SWEEP_FAILURES[0]
                sys.stderr.write(f"{_PROG}: error: {n} sweep job(s) failed: {first}\n")
                sys.exit(1)
        except KeyboardInterrupt:
            sys.stderr.write(f"{_PROG}: stopped by Ctrl-C (SIGINT)\n")
            sys.exit(128 + signal.SIGINT)
        except Exception as exc:
            if debug:
                raise
            sys.stderr.write(f"{_PROG}: error: {one_line_error(exc)} (HYDRA_FULL_ERROR=1 shows the traceback)\n")
            sys.exit(1)


if __name__ == "__main__":
    main()
