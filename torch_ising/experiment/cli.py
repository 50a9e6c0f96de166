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
import difflib
import math
import os
import re
import signal
import sys
import threading
import time
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

from ..statespace.qforms import Q_FORMS
from .schemas import DATA_SCHEMAS, ExperimentConfig, register_configs

__all__ = [
    "find_config_dir",
    "CONFIG_DIR",
    "resolve_device",
    "fit_kwargs",
    "run_experiment",
    "SweepTableCallback",
    "one_line_error",
    "main",
]

_PROG = "torch-ising"
#: The automatic schema matching of our launcher presets (same names as the plugins' own) is intended.
_SCHEMA_MATCH_WARNING = r"(?s).*is validated against ConfigStore schema with the same name"
# At import, so that the launchers' worker processes (which import this module to run a job) are quiet too.
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


CONFIG_DIR = find_config_dir()


# --------------------------------------------------------------------------------------------- fit settings


def resolve_device(device: str) -> Any:
    """``fit.device`` -> torch.device: "auto" is CUDA when available, else CPU.

    Raises:
        ValueError: for "cuda" on a machine without a usable CUDA GPU.
    """
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "fit.device=cuda but no CUDA GPU is available to torch (torch.cuda.is_available() is False); "
            "use fit.device=auto or fit.device=cpu"
        )
    if device not in ("cpu", "cuda"):
        raise ValueError(f"fit.device must be auto, cpu or cuda; got {device!r}")
    return torch.device(device)


def _state_cov(Q: Any, Q_form: str, N: int, D: int) -> Any:
    """The ``state_cov`` argument of :func:`torch_ising.fit` for ``fit.Q`` in the form ``fit.Q_form``.

    scalar: q (Q = q I); diagonal: (q, ..., q) of length D; full: q I as a (D, D)
    matrix; two_block: [q1, q2] (q1 on the N first-order entries, q2 on the others).
    The translation is the Q form's own (:data:`torch_ising.statespace.Q_FORMS`).
    """
    q = list(Q) if isinstance(Q, Sequence) and not isinstance(Q, str) else [Q]
    forms = {f.config_name: f for f in Q_FORMS.values()}
    if Q_form not in forms:
        names = list(forms)
        raise ValueError(f"fit.Q_form must be {', '.join(names[:-1])} or {names[-1]}; got {Q_form!r}")
    return forms[Q_form].state_cov(q, N, D)


def fit_kwargs(fit_cfg: Any, model_cfg: Any, N: int) -> dict[str, Any]:
    """Keyword arguments of :func:`torch_ising.fit` from the ``fit`` and ``model`` configs (order excluded)."""
    import torch

    from ..basis import compute_D
    from ..statespace.observation import OBSERVATION_MODELS
    from ..statespace.stopping import STOP_RULES

    if fit_cfg.method not in OBSERVATION_MODELS:
        raise ValueError(
            f"fit.method={fit_cfg.method!r} is not available; choose one of {', '.join(OBSERVATION_MODELS)}"
        )
    if fit_cfg.stop not in STOP_RULES:
        raise ValueError(f"fit.stop={fit_cfg.stop!r} is not a stopping rule; choose one of {', '.join(STOP_RULES)}")
    D = compute_D(N, model_cfg.order)
    return {
        "window": model_cfg.window,
        "state_cov": _state_cov(fit_cfg.Q, fit_cfg.Q_form, N, D),
        "state_ar": fit_cfg.F,
        "theta_o": fit_cfg.theta_o,
        "sigma_o": fit_cfg.sigma_o,
        "max_iter": fit_cfg.max_iter,
        "tol": fit_cfg.tol,
        "stop": fit_cfg.stop,
        "stationary": fit_cfg.stationary,
        "device": resolve_device(fit_cfg.device),
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


def _load_resume_state(path: Path, meta: Mapping[str, Any], fit_stop: str = "") -> tuple[Any, int, list[float]]:
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
    if saved.get("history_from") != "initial E-step" and fit_stop != "ssll":
        print(
            f"{_PROG}: note: checkpoint {path} was written by an older torch-ising; mll_list will lack the l of "
            "the initial E-step",
            flush=True,
        )
    return state, iteration, history


# --------------------------------------------------------------------------------------------- one run


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


def run_experiment(cfg: DictConfig, output_dir: str | os.PathLike, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Run one experiment: load the data, fit, and write results, summary and figures into ``output_dir``.

    The run holds a lock file in ``output_dir`` (another run there is refused), removes the temporary
    files a killed run left, and writes ``summary.json`` last: a directory without it holds no
    complete result.

    Args:
        cfg: a composed config (:class:`~torch_ising.experiment.schemas.ExperimentConfig`).
        output_dir: the run's directory.
        overrides: the command-line overrides of this run (recorded in the summary).

    Returns:
        the summary: N, T, R, order, mll, aic, bic, k, iterations, wall_time, paths, ...

    Raises:
        RunDirectoryBusy: when another live run holds ``output_dir``.
    """
    from .outputs import FAILED_FILE, remove_stale_temporaries, run_lock

    output_dir = Path(output_dir).resolve()
    with run_lock(output_dir):
        remove_stale_temporaries(output_dir)
        (output_dir / FAILED_FILE).unlink(missing_ok=True)
        return _run_experiment(cfg, output_dir, overrides)


def _run_experiment(cfg: DictConfig, output_dir: Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The body of :func:`run_experiment`, run while holding the directory's lock.

    Args:
        cfg: a composed config (:class:`~torch_ising.experiment.schemas.ExperimentConfig`).
        output_dir: the run's directory.
        overrides: the command-line overrides of this run (recorded in the summary).

    Returns:
        the summary: N, T, R, order, mll, aic, bic, k, iterations, wall_time, paths, ...
    """
    t_start = time.perf_counter()
    from hydra.utils import instantiate

    from ..basis import compute_D
    from ..comparison import aic, bic, count_hyperparameters
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
            resume, start, history = _load_resume_state(ckpt_path, meta, fit_cfg.stop)
            print(f"{_PROG}: resuming from {ckpt_path} (EM iteration {start})", flush=True)
        else:
            print(f"{_PROG}: fit.resume=true but there is no checkpoint at {ckpt_path}; starting afresh", flush=True)
    if fit_cfg.checkpoint_every and resume is None and fit_cfg.stop != "ssll":
        # l of the initial E-step opens the l history (the fit's mll_list[0]); one E-step computes it, so that a
        # resumed run's history is the uninterrupted run's (the published rule records no initial entry)
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

    k = count_hyperparameters(result)
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
    return summary


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
    return os.environ.get("TORCH_ISING_DEBUG") == "1" or _USER_FULL_ERROR


_USER_FULL_ERROR = os.environ.get("HYDRA_FULL_ERROR") == "1"


# --------------------------------------------------------------------------------------------- entry points


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR) if CONFIG_DIR else None, config_name="config")
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
    return float(summary["mll"])


def main() -> None:
    """Console-script entry point of ``torch-ising`` (and ``python -m torch_ising``)."""
    global _USER_FULL_ERROR
    os.environ.setdefault("MPLBACKEND", "Agg")
    if CONFIG_DIR is None:
        sys.exit(
            f"{_PROG}: error: cannot find the configs (config.yaml); reinstall torch_ising, or set "
            "TORCH_ISING_CONFIG_DIR=/path/to/configs"
        )
    register_configs()
    _USER_FULL_ERROR = os.environ.get("HYDRA_FULL_ERROR") == "1"
    debug = _debug()
    # Let Hydra re-raise errors so that they are reported here on one line.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        _task()
        if _SWEEP_FAILURES:
            sys.stderr.write(f"{_PROG}: error: {len(_SWEEP_FAILURES)} sweep job(s) failed: {_SWEEP_FAILURES[0]}\n")
            sys.exit(1)
    except KeyboardInterrupt:
        sys.stderr.write(f"{_PROG}: stopped by Ctrl-C (SIGINT)\n")
        sys.exit(128 + signal.SIGINT)
    except Exception as exc:
        if debug:
            raise
        sys.stderr.write(f"{_PROG}: error: {one_line_error(exc)} (HYDRA_FULL_ERROR=1 shows the traceback)\n")
        sys.exit(1)
    finally:
        if not _USER_FULL_ERROR:
            os.environ.pop("HYDRA_FULL_ERROR", None)


if __name__ == "__main__":
    main()
