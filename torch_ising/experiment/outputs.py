"""What an experiment writes: results, summary, figures, checkpoints and the sweep table.

Every file is written atomically: the bytes go to a temporary file in the
destination's directory, which is flushed, synced and then renamed over the
destination with :func:`os.replace`. A run killed at any moment therefore
leaves either the complete previous file or none, never a truncated one; the
temporary file is removed when the write fails or the process is stopped by
an exception (SIGTERM is turned into one by the CLI).

Everything is readable with numpy alone and nothing is ever unpickled:
``np.load(path, allow_pickle=False)`` opens results and checkpoints; text
(the resolved config YAML, the summary JSON) is stored as 0-d unicode arrays.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_write, create_new

__all__ = [
    "atomic_write",
    "write_text",
    "write_json",
    "save_npz",
    "load_npz",
    "save_figure",
    "result_arrays",
    "save_results",
    "load_results",
    "format_summary",
    "save_checkpoint",
    "load_checkpoint",
    "FIGURES",
    "save_figures",
    "collect_summaries",
    "write_sweep_table",
    "fit_bin_times",
    "write_reliable_couplings",
    "RunDirectoryBusy",
    "run_lock",
    "remove_stale_temporaries",
    "FAILED_FILE",
]


# --------------------------------------------------------------------------------------------- atomic files


class RunDirectoryBusy(RuntimeError):
    """Another run holds the output directory's lock file."""


#: the lock file a run holds in its output directory
LOCK_FILE = ".torch-ising.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


@contextlib.contextmanager
def run_lock(directory: str | os.PathLike) -> Iterator[Path]:
    """Hold ``<directory>/.torch-ising.lock`` while a run writes there.

    The lock is created with O_EXCL and holds the owner's pid and host. A lock left by a process that
    no longer runs (killed with SIGKILL, say) on this host is taken over.

    Raises:
        RunDirectoryBusy: when a live process holds the lock.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_FILE
    me = f"{os.getpid()} {socket.gethostname()}\n"
    for _attempt in range(3):
        try:
            fd = create_new(path)
        except FileExistsError:
            try:
                owner = path.read_text(encoding="utf-8").split()
            except (FileNotFoundError, UnicodeDecodeError):
                owner = []
            if not owner:  # vanished, or its owner is between open and write: look again
                time.sleep(0.05)
                if not path.exists():
                    continue
                owner = path.read_text(encoding="utf-8", errors="replace").split() or ["?"]
            pid = int(owner[0]) if owner[0].isdigit() else -1
            host = owner[1] if len(owner) > 1 else ""
            if pid > 0 and host == socket.gethostname() and not _pid_alive(pid):
                with contextlib.suppress(FileNotFoundError):  # a stale lock: its owner was killed
                    os.unlink(path)
                continue
            raise RunDirectoryBusy(
                f"output directory {directory} is in use by another run (pid {owner[0]} on {host or '?'}, lock file "
                f"{path}); wait for it to finish, choose another hydra.run.dir, or delete the lock file if that "
                "run is gone"
            ) from None
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(me)
        break
    else:
        raise RunDirectoryBusy(f"output directory {directory}: could not take the lock file {path}")
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            if path.read_text(encoding="utf-8") == me:
                os.unlink(path)


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files (``.<name>.<random>.tmp``) a killed write left in ``directory`` and below.

    Only call it while holding :func:`run_lock`, so that no other run is writing there.
    """
    removed = []
    for tmp in Path(directory).rglob(".*.tmp"):
        if tmp.is_file() and not tmp.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 text atomically."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda fh: fh.write(data))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | os.PathLike, obj: Mapping[str, Any]) -> Path:
    """Write a JSON document atomically (non-finite floats become null)."""
    return write_text(path, json.dumps(_jsonable(obj), indent=2) + "\n")


def _as_array(name: str, value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, str):
        return np.array(value, dtype=np.str_)
    a = np.asarray(value)
    if a.dtype == object:
        raise ValueError(f"{name}: cannot store an object array without pickling; got {type(value).__name__}")
    return a


def save_npz(path: str | os.PathLike, arrays: Mapping[str, Any]) -> Path:
    """Save numeric arrays, scalars and strings to an .npz atomically (no object arrays, no pickle).

    ``None`` values are skipped; strings become 0-d unicode arrays.
    """
    converted = {k: _as_array(k, v) for k, v in arrays.items() if v is not None}
    return atomic_write(path, lambda fh: np.savez(fh, **converted))


def load_npz(path: str | os.PathLike) -> dict[str, Any]:
    """Load an .npz with numpy alone (``allow_pickle=False``); 0-d arrays become Python scalars or str."""
    out: dict[str, Any] = {}
    with np.load(path, allow_pickle=False) as z:
        for k in z.files:
            a = z[k]
            out[k] = a.item() if a.ndim == 0 else a
    return out


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    try:
        return atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=dpi, bbox_inches="tight"))
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


# --------------------------------------------------------------------------------------------- results


def result_arrays(result: Any) -> dict[str, Any]:
    """The fields of a :class:`~torch_ising.StateSpaceResult` as numpy arrays and scalars (no None, no objects)."""
    out: dict[str, Any] = {}
    for k, v in result.to_numpy().items():
        if isinstance(v, (list, tuple)):
            v = np.asarray(v, dtype=np.float64)
        out[k] = v
    return out


def save_results(
    path: str | os.PathLike,
    arrays: Mapping[str, Any],
    config_yaml: str,
    summary: Mapping[str, Any],
) -> Path:
    """Write the results file: the fit's arrays, the resolved config YAML and the summary.

    Keys: every array of ``arrays`` (theta_s, sigma_s, eta_s, mll_list, Q, F, ...),
    ``config_yaml`` (the resolved config, a 0-d string) and ``summary_json``
    (a 0-d string). Read it back with :func:`load_results` or
    ``np.load(path, allow_pickle=False)``.
    """
    content = dict(arrays)
    content["config_yaml"] = config_yaml
    content["summary_json"] = json.dumps(_jsonable(dict(summary)))
    return save_npz(path, content)


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    """Read a results file with numpy alone; ``summary`` is the decoded summary dict."""
    out = load_npz(path)
    if "summary_json" in out:
        out["summary"] = json.loads(out.pop("summary_json"))
    return out


_SUMMARY_ROWS = (
    ("data", "data"),
    ("N", "N"),
    ("T", "T"),
    ("R", "R"),
    ("order", "order"),
    ("D", "D"),
    ("mll", "mll"),
    ("AIC", "aic"),
    ("BIC", "bic"),
    ("k", "k"),
    ("iterations", "iterations"),
    ("converged", "converged"),
    ("wall time (s)", "wall_time"),
    ("device", "device"),
)


def format_summary(summary: Mapping[str, Any], title: str = "torch-ising summary") -> str:
    """A plain-text block of the summary: N, T, R, order, mll, AIC, BIC, iterations, wall time."""
    lines = [title]
    for label, key in _SUMMARY_ROWS:
        if key not in summary or summary[key] is None:
            continue
        v = summary[key]
        if isinstance(v, float):
            v = f"{v:.3f}" if key == "wall_time" else f"{v:.6f}"
        lines.append(f"  {label:<14} {v}")
    if summary.get("resumed_from"):
        lines.append(f"  {'resumed from':<14} iteration {summary['resumed_from']}")
    if summary.get("reliable_couplings") is not None:
        n_pairs = int(summary.get("N", 0)) * (int(summary.get("N", 0)) - 1) // 2
        lines.append(
            f"  {'couplings':<14} {summary['reliable_couplings']} of {n_pairs} with a 90% band excluding 0 "
            f"in >= {summary.get('reliable_min_bins', 1)} bins"
        )
    if summary.get("surrogates"):
        lines.append(
            f"  {'surrogates':<14} {summary['surrogates']} trial shuffles of {summary.get('surrogate_statistic')}: "
            f"p < {summary.get('surrogate_alpha')} in {summary.get('surrogate_significant_bins')} of "
            f"{summary.get('T')} bins"
        )
    if summary.get("cv_folds"):
        scores = ", ".join(f"order {o}: {v:.3f}" for o, v in (summary.get("cv_heldout_ll") or {}).items())
        lines.append(
            f"  {'cv':<14} {summary['cv_folds']}-fold held-out log-likelihood {scores}; "
            f"best order {summary.get('cv_best_order')}"
        )
    for message in summary.get("data_notes") or ():
        lines.append(f"  {'data note':<14} {message}")
    for message in summary.get("warnings") or ():
        lines.append(f"  {'warning':<14} {message}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- checkpoints


#: the fields of an EMState stored besides the hyperparameters (absent ones are None)
STATE_FIELDS = ("theta_s", "mll", "converged", "post", "x", "g", "f_prev", "g_prev", "dF", "dG")
PARAM_FIELDS = ("mu", "Sigma", "Q", "F", "U")


def save_checkpoint(
    path: str | os.PathLike,
    state: Any,
    mll_list: Sequence[float],
    meta: Mapping[str, Any],
) -> Path:
    """Write the EM state after an iteration atomically.

    Args:
        path: the checkpoint file (.npz).
        state: a :class:`~torch_ising.statespace.EMState` (from ``fit(..., on_state=...)``):
            the hyperparameters, the mode-search starting points and the
            accelerated scheme's history, so a resumed fit takes the same steps.
        mll_list: l after each iteration so far.
        meta: what the checkpoint was written for (N, D, order, ...), checked on resume.
    """
    arrays: dict[str, Any] = {f"param_{name}": getattr(state.params, name) for name in PARAM_FIELDS}
    arrays.update({f"state_{name}": getattr(state, name) for name in STATE_FIELDS})
    if getattr(state, "fingerprint", None) is not None:
        arrays["state_fingerprint"] = state.fingerprint
    arrays["iteration"] = np.int64(state.iteration)
    arrays["mll_list"] = np.asarray(list(mll_list), dtype=np.float64)
    arrays["meta_json"] = json.dumps(_jsonable(dict(meta)))
    return save_npz(path, arrays)


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, np.ndarray | None], int, list[float], dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Returns:
        (arrays by name: the hyperparameters mu, Sigma, Q, F, U and the state
        fields of :data:`STATE_FIELDS`, None where absent), iteration, mll_list, meta.
    """
    z = load_npz(path)
    arrays = {name: z.get(f"param_{name}") for name in PARAM_FIELDS}
    arrays.update({name: z.get(f"state_{name}") for name in STATE_FIELDS})
    arrays["fingerprint"] = z.get("state_fingerprint")
    return arrays, int(z["iteration"]), np.atleast_1d(z["mll_list"]).tolist(), json.loads(z["meta_json"])


# --------------------------------------------------------------------------------------------- figures

#: Largest N for figures that need exact moments over 2^N patterns.
EXACT_FIGURE_MAX_N = 16
#: Largest N for the sampled credible bands of the thermodynamics figure (their cost grows as 2^N).
THERMO_BANDS_MAX_N = 12
#: Most parameters drawn per order in the theta / eta figures (the top ones by max |value|).
MAX_TRACES = 8


def fit_bin_times(raw_bin_times: Any, window: int, T: int) -> np.ndarray:
    """Times of the fitted bins: the mean of the raw bin times (bin centres) each re-binned bin covers.

    Args:
        raw_bin_times: (T_raw,) the data's bin times.
        window: the re-binning width w (``model.window``).
        T: the number of fitted bins, floor(T_raw / w).

    Returns:
        (T,) bin times of the fit.
    """
    raw = np.asarray(raw_bin_times, dtype=np.float64).reshape(-1)
    return raw[: T * window].reshape(T, window).mean(axis=1)


def _time(ctx: Mapping[str, Any], raw: bool = False) -> tuple[Any, str | None]:
    """(time, time_label) of the fitted (or raw) bins: seconds from the event, or None for bin indices."""
    times = ctx.get("raw_bin_times" if raw else "bin_times")
    if times is None or ctx.get("time_unit", "bin") != "s":
        return None, None
    return times, "Time from event (s)"


def _labels(r: Any, ctx: Mapping[str, Any], symbol: str) -> list[str]:
    from ..plotting import parameter_labels

    return parameter_labels(r.N, r.order, symbol, unit_ids=ctx.get("unit_ids"))


def _trajectory_figure(values: Any, ctx: Mapping[str, Any], symbol: str, title: str, truth: Any = None) -> Any:
    """Two panels (first-order, higher-order parameters), the top MAX_TRACES of each by max |value|."""
    import matplotlib.pyplot as plt

    from ..plotting import plot_trajectories, top_indices

    r = ctx["result"]
    point = values.map if hasattr(values, "map") else values
    groups = [("first-order", list(range(r.N)))]
    if r.D > r.N:
        groups.append(("interaction", list(range(r.N, r.D))))
    labels = _labels(r, ctx, symbol)
    time, time_label = _time(ctx)
    fig, axes = plt.subplots(len(groups), 1, figsize=(8.0, 3.2 * len(groups)), sharex=r.T > 1, squeeze=False)
    for ax, (kind, group) in zip(axes[:, 0], groups, strict=True):
        indices = top_indices(point, MAX_TRACES, group)
        plot_trajectories(
            values,
            truth=truth,
            indices=indices,
            labels=[labels[i] for i in indices],
            symbol=symbol,
            time=time,
            time_label=time_label,
            ax=ax,
        )
        rule = (
            f"all {len(group)}"
            if len(indices) == len(group)
            else f"top {len(indices)} of {len(group)} by max |{symbol}|"
        )
        ax.set_title(f"{kind} parameters: {rule}", fontsize="medium")
        if ax.get_legend() is not None:
            ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    if r.T > 1:
        for ax in axes[:-1, 0]:
            ax.set_xlabel("")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _theta_truth(ctx: Mapping[str, Any]) -> Any:
    r = ctx["result"]
    truth = ctx.get("theta_true")
    if truth is not None and tuple(np.shape(truth)) != tuple(r.theta_s.shape):
        truth = None
    return truth


def _fig_theta(ctx: Mapping[str, Any]) -> Any:
    from ..intervals import gaussian_intervals

    r = ctx["result"]
    band = gaussian_intervals(r.theta_s, r.sigma_s, level=0.9)
    truth = _theta_truth(ctx)
    marks = "crosses" if r.T == 1 else "dashed"
    title = "smoothed theta, 90% credible bands" + (f" ({marks}: truth)" if truth is not None else "")
    return _trajectory_figure(band, ctx, "theta", title, truth)


def _fig_eta(ctx: Mapping[str, Any]) -> Any:
    return _trajectory_figure(ctx["result"].eta_s, ctx, "eta", "smoothed eta: firing and joint firing probabilities")


def _fig_couplings(ctx: Mapping[str, Any]) -> Any:
    from ..intervals import gaussian_intervals
    from ..plotting import plot_couplings

    r = ctx["result"]
    if r.order < 2:
        return None
    band = gaussian_intervals(r.theta_s, r.sigma_s, level=0.9)
    time, _ = _time(ctx)
    fig, _ = plot_couplings(band, r.N, r.order, time=time, unit_ids=ctx.get("unit_ids"))
    fig.suptitle("couplings $\\theta_{ij}$; dots: 90% credible band excludes 0", fontsize="medium")
    return fig


def _fig_mll(ctx: Mapping[str, Any]) -> Any:
    from ..plotting import plot_mll

    fig, _ = plot_mll(ctx["mll_list"])
    return fig


_THERMO_QUANTITIES = ["S1", "S2", "S_ratio", "heat_capacity", "p_silence"]


def _fig_thermodynamics(ctx: Mapping[str, Any]) -> Any:
    from ..plotting import plot_thermodynamics
    from ..thermodynamics import thermodynamics

    r = ctx["result"]
    if r.N > EXACT_FIGURE_MAX_N:
        return None
    if r.N <= THERMO_BANDS_MAX_N:
        record = r.credible_intervals(level=0.9, n_samples=200, seed=0, quantities=_THERMO_QUANTITIES)
    else:
        record = thermodynamics(r.theta_s, r.N, r.order)
    truth = _theta_truth(ctx)
    truth_record = None if truth is None else thermodynamics(np.asarray(truth), r.N, r.order)
    time, time_label = _time(ctx)
    fig, _ = plot_thermodynamics(record, truth=truth_record, time=time, time_label=time_label)
    bands = "90% credible bands (200 samples)" if r.N <= THERMO_BANDS_MAX_N else f"no bands (N > {THERMO_BANDS_MAX_N})"
    marks = "crosses" if r.T == 1 else "dashed"
    fig.suptitle(f"thermodynamics of the fit: {bands}" + (f"; {marks}: truth" if truth is not None else ""))
    return fig


def _fig_raster(ctx: Mapping[str, Any]) -> Any:
    from ..plotting import plot_raster_psth

    spikes = ctx.get("spikes")
    if spikes is None:
        return None
    r = ctx["result"]
    time, time_label = _time(ctx, raw=True)
    rates = r.eta_s if getattr(r, "window", 1) == 1 and r.T == np.shape(spikes)[0] else None
    unit_ids = ctx.get("unit_ids")
    fig, _ = plot_raster_psth(
        spikes,
        rates=rates,
        time=time,
        time_label=time_label,
        bin_width=ctx.get("bin_width"),
        unit_ids=None if unit_ids is None else list(unit_ids),
    )
    return fig


def _fig_surrogates(ctx: Mapping[str, Any]) -> Any:
    """S_ratio of the data inside its trial-shuffle band (``analysis.surrogates``); None without surrogates."""
    st = ctx.get("surrogate_test")
    if st is None:
        return None
    from ..plotting import plot_surrogates

    time, label = _time(ctx)
    fig, _ = plot_surrogates(st, alpha=ctx.get("surrogate_alpha", 0.01), time=time, time_label=label, label="S_ratio")
    return fig


def _fig_cv(ctx: Mapping[str, Any]) -> Any:
    """Held-out log-likelihood by order (``analysis.cv_folds``); None without cross-validation."""
    cv = ctx.get("cv")
    if cv is None:
        return None
    from ..plotting import plot_cv

    fig, _ = plot_cv(cv)
    return fig


#: Figures a run can draw, by name: each takes the run's context and returns a figure (or None to skip).
FIGURES: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "theta": _fig_theta,
    "eta": _fig_eta,
    "couplings": _fig_couplings,
    "mll": _fig_mll,
    "thermodynamics": _fig_thermodynamics,
    "raster": _fig_raster,
    "surrogates": _fig_surrogates,
    "cv": _fig_cv,
}


def check_figure_names(names: Iterable[str]) -> list[str]:
    """Expand ``["all"]`` and check every name is in :data:`FIGURES`."""
    names = list(names)
    if "all" in names:
        return list(FIGURES)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        raise ValueError(f"output.figures: unknown figure(s) {unknown}; choose from all, {', '.join(FIGURES)}")
    return names


def save_figures(
    names: Iterable[str], ctx: Mapping[str, Any], directory: str | os.PathLike, dpi: int = 100
) -> list[Path]:
    """Draw the named figures (see :data:`FIGURES`) and save each as ``<directory>/<name>.png``.

    Args:
        names: figure names, or ["all"].
        ctx: the run's context: ``result`` (StateSpaceResult), ``mll_list``,
            optionally ``spikes`` (T_raw, R, N), ``theta_true`` (T, D), ``bin_times`` (T,)
            and ``raw_bin_times`` (T_raw,) with ``time_unit`` ("s": seconds from the event,
            used on the time axes; "bin": bin indices), ``bin_width`` (seconds) and
            ``unit_ids`` (N,) (the neurons' labels).
        directory: where to write the PNG files.
        dpi: resolution.

    Returns:
        the paths written (figures that do not apply, e.g. exact ones for large N, are skipped).
    """
    written = []
    for name in check_figure_names(names):
        fig = FIGURES[name](ctx)
        if fig is not None:
            written.append(save_figure(fig, Path(directory) / f"{name}.png", dpi=dpi))
    return written


_RELIABLE_COLUMNS = ("i", "j", "unit_i", "unit_j", "column", "n_bins", "first_bin", "sign", "peak")


def write_reliable_couplings(
    directory: str | os.PathLike, result: Any, min_bins: int = 1, unit_ids: Any = None, level: float = 0.9
) -> tuple[list[Path], list[dict[str, Any]]]:
    """Write ``reliable_couplings.csv`` and ``.txt``: the pairs whose credible band excludes 0 in >= min_bins bins.

    Args:
        directory: the run directory.
        result: the fit (a :class:`~torch_ising.StateSpaceResult` of order >= 2).
        min_bins: least number of bins whose band (closed-form Gaussian, ``level``) excludes 0.
        unit_ids: the unit id of each neuron (default 0..N-1).
        level: credible level of the bands.

    Returns:
        (the files written, the rows of :func:`torch_ising.intervals.reliable_couplings`).
    """
    from ..intervals import gaussian_intervals, reliable_couplings

    band = gaussian_intervals(result.theta_s, result.sigma_s, level=level)
    rows = reliable_couplings(band, result.N, result.order, min_bins=min_bins, unit_ids=unit_ids)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(_RELIABLE_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    directory = Path(directory)
    n_pairs = result.N * (result.N - 1) // 2
    lines = [
        f"{len(rows)} of {n_pairs} couplings theta_ij whose {level:.0%} credible band excludes 0 "
        f"in >= {min_bins} of {result.T} bins (most bins first)",
        f"{'unit_i':>8} {'unit_j':>8} {'bins':>6} {'first':>6} {'sign':>4} {'peak':>10}",
    ]
    lines += [
        f"{r['unit_i']!s:>8} {r['unit_j']!s:>8} {r['n_bins']:>6} {r['first_bin']:>6} {r['sign']:>4} {r['peak']:>10.4f}"
        for r in rows
    ]
    written = [
        write_text(directory / "reliable_couplings.csv", buf.getvalue()),
        write_text(directory / "reliable_couplings.txt", "\n".join(lines) + "\n"),
    ]
    return written, rows


# --------------------------------------------------------------------------------------------- sweeps

_TABLE_COLUMNS = (
    "job",
    "order",
    "N",
    "T",
    "R",
    "k",
    "mll",
    "aic",
    "bic",
    "iterations",
    "converged",
    "wall_time",
    "overrides",
    "output_dir",
)


def collect_summaries(sweep_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Read ``summary.json`` of every run under a sweep directory (one level down), in job order."""
    rows = []
    for path in sorted(Path(sweep_dir).glob("*/summary.json")):
        if (path.parent / FAILED_FILE).exists():  # this job's latest run failed: its summary is an older run's
            continue
        with open(path, encoding="utf-8") as fh:
            row = json.load(fh)
        row.setdefault("job", path.parent.name)
        rows.append(row)

    def key(row: Mapping[str, Any]) -> tuple[int, str]:
        job = str(row.get("job", ""))
        return (int(job), job) if job.isdigit() else (1 << 30, job)

    return sorted(rows, key=key)


#: the record a failed sweep job leaves in its directory (job, overrides, error)
FAILED_FILE = "failed.json"


def collect_failures(sweep_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Read ``failed.json`` of every failed run under a sweep directory, in job order."""
    rows = []
    for path in sorted(Path(sweep_dir).glob(f"*/{FAILED_FILE}")):
        try:
            with open(path, encoding="utf-8") as fh:
                row = json.load(fh)
        except (OSError, json.JSONDecodeError):
            row = {"error": f"unreadable {path}"}
        row.setdefault("job", path.parent.name)
        rows.append(row)
    return sorted(rows, key=lambda r: (int(r["job"]), "") if str(r["job"]).isdigit() else (1 << 30, str(r["job"])))


def write_sweep_table(sweep_dir: str | os.PathLike, dpi: int = 100) -> list[Path]:
    """Tabulate mll, AIC and BIC of every run of a sweep: ``comparison.csv`` and ``comparison.txt``.

    When the runs differ only in their order (one data set), ``comparison_aic.png``
    shows Delta AIC and Delta BIC by order (the difference to the lowest, so bars start
    at 0 and the axis has no offset), the best order highlighted.

    Returns:
        the files written (none when the sweep has no finished run).
    """
    sweep_dir = Path(sweep_dir)
    rows = collect_summaries(sweep_dir)
    failures = collect_failures(sweep_dir)
    if not rows and not failures:
        return []
    table = []
    for row in rows:
        entry = {c: row.get(c) for c in _TABLE_COLUMNS}
        entry["overrides"] = " ".join(row.get("overrides") or [])
        table.append(entry)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(_TABLE_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    written = [write_text(sweep_dir / "comparison.csv", buf.getvalue())]

    finite = [r for r in table if isinstance(r["aic"], (int, float)) and isinstance(r["bic"], (int, float))]
    best_aic = min(finite, key=lambda r: r["aic"])["job"] if finite else None
    best_bic = min(finite, key=lambda r: r["bic"])["job"] if finite else None
    header = f"{'job':>4} {'order':>5} {'N':>4} {'T':>5} {'R':>5} {'k':>5} {'mll':>14} {'AIC':>14} {'BIC':>14}"
    header += f"  {'lowest':<8} overrides"
    lines = [header]
    for r in table:
        lowest = ", ".join(name for name, job in (("AIC", best_aic), ("BIC", best_bic)) if r["job"] == job)

        def num(v: Any) -> str:
            return f"{v:14.4f}" if isinstance(v, (int, float)) else f"{'-':>14}"

        lines.append(
            f"{r['job']!s:>4} {r['order']!s:>5} {r['N']!s:>4} {r['T']!s:>5} {r['R']!s:>5} {r['k']!s:>5} "
            f"{num(r['mll'])} {num(r['aic'])} {num(r['bic'])}  {lowest:<8} {r['overrides']}"
        )
    if failures:
        lines.append(f"failed: {len(failures)} job(s)")
        for f in failures:
            lines.append(f"{f['job']!s:>4} {' '.join(f.get('overrides') or [])}: {f.get('error', '')}")
    written.append(write_text(sweep_dir / "comparison.txt", "\n".join(lines) + "\n"))

    orders = [r["order"] for r in finite]
    same_data = len({(r["N"], r["T"], r["R"]) for r in finite}) == 1
    if len(finite) >= 2 and same_data and len(set(orders)) == len(orders):
        import matplotlib.pyplot as plt

        from ..plotting import plot_aic

        by_order = sorted(finite, key=lambda r: r["order"])
        fig, axes = plt.subplots(1, 2, figsize=(7.5, 3.0), layout="constrained")
        for ax, name in zip(axes, ("aic", "bic"), strict=True):
            plot_aic([r["order"] for r in by_order], [r[name] for r in by_order], criterion=name, delta=True, ax=ax)
        written.append(save_figure(fig, sweep_dir / "comparison_aic.png", dpi=dpi))
    return written
