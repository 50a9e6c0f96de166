"""Data sources of an experiment: every loader returns binary spikes of shape (T, R, N), dtype uint8.

Sources and how their arrays map to (T, R, N):

* :class:`SyntheticData`: T bins of a Gaussian-process path theta_t
  (MODEL.md 6), R independent draws per bin (trials), N neurons.
* :class:`ArrayData` / :func:`load_array`: a .npy or .npz array whose axes are
  named by a string of the letters T, R, N (default "TRN"); omitted letters
  become axes of length 1 ("TN" = one trial, "RN" = one bin).
* :class:`SpikeTimesData` / :func:`load_spike_times`: spike times, the unit of
  each spike and one event time per trial, binned by :func:`bin_spike_times`:
  bin t of trial r is [e_r + start + t w, e_r + start + (t + 1) w), T = (stop - start) / w,
  R = number of events, N = number of units.
* :class:`NWBData` / :func:`load_nwb`: the same binning, with spike times from
  the NWB units table and event times from a column of its trials table.

A bin may hold several spikes (counts). ``counts="refuse"`` (the default of
every loader) raises a ``ValueError`` for any value above 1, saying how many
bins hold several spikes; ``counts="binarise"`` maps every non-zero count to 1
(MODEL.md 1: a bin is 1 when the neuron fired in it) and reports the spikes it
dropped. Values that are neither counts nor spikes (negative, fractional, NaN)
are always refused. Arrays are read with ``allow_pickle=False``; nothing is
ever unpickled.

Nothing is lost silently: the ``read_*`` functions and :func:`bin_spikes`
return a :class:`SpikeData` record whose ``notes`` say what the loader changed
or dropped (multi-spike bins binarised and the spikes dropped, spikes outside
every trial window, spikes of units not selected, neurons that never fire),
and each note is also issued as a :class:`DataWarning`. The record carries the
bin times (``bin_times``: bin centres in seconds from the alignment event, or
bin indices for binned arrays and synthetic data) and the unit ids. The same
functions are the Python loader API ``torch_ising.io``.

Missing data: the record's ``mask`` (T, R) bool (True = observed; None when
everything is) is what ``fit(spikes, mask=...)`` takes, and the CLI passes it on:

* spike times with trials of unequal length (``trial_ends``, or the .npz array
  ``trial_ends``): bin t of trial r is unobserved when it ends after the trial's end;
* NWB: trials whose ``invalid`` column is true are unobserved in every bin, and
  bins overlapping an interval of the file's ``invalid_times`` table are unobserved;
* arrays with NaN: only with ``nan="mask"`` (``data.nan=mask``), which marks an
  entry (t, r) with a NaN in any neuron unobserved and sets its spikes to 0;
  by default NaN is refused, as ``fit`` always refuses it.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .schemas import COUNTS_MODES, NAN_MODES

__all__ = [
    "DataWarning",
    "SpikeData",
    "to_binary",
    "bin_spikes",
    "read_array",
    "read_spike_times",
    "read_nwb",
    "arrange_axes",
    "load_array",
    "bin_spike_times",
    "load_spike_times",
    "load_nwb",
    "DataSource",
    "SyntheticData",
    "ArrayData",
    "SpikeTimesData",
    "NWBData",
]


class DataWarning(UserWarning):
    """A loader changed or dropped data: multi-spike bins binarised, spikes outside the window, silent neurons."""


class SpikeData(NamedTuple):
    """Spikes as loaded, with their time axis, unit identities and what the loader changed.

    Attributes:
        spikes: binary spikes (T, R, N), uint8.
        bin_times: (T,) the centre of each bin in seconds relative to the alignment event
            (spike times), or the bin indices 0..T-1 (binned arrays, synthetic data).
        unit_ids: (N,) the id of each neuron (neuron n is unit ``unit_ids[n]``); 0..N-1 when
            the source has no ids.
        time_unit: ``"s"`` when ``bin_times`` are seconds, ``"bin"`` when they are indices.
        notes: one sentence per change the loader made (also issued as :class:`DataWarning`).
        mask: (T, R) bool, True = observed, for ``fit(spikes, mask=...)``; None when every
            bin of every trial is observed.
    """

    spikes: np.ndarray
    bin_times: np.ndarray
    unit_ids: np.ndarray
    time_unit: str
    notes: tuple[str, ...] = ()
    mask: np.ndarray | None = None


_PACKAGE_DIR = str(Path(__file__).resolve().parents[1])


def _warn(notes: Sequence[str]) -> None:
    """Issue each note as a DataWarning attributed to the first caller outside torch_ising."""
    level, frame = 2, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    for note in notes:
        warnings.warn(note, DataWarning, stacklevel=level)


def _silent_note(spikes: np.ndarray, unit_ids: np.ndarray, what: str = "neuron") -> list[str]:
    silent = np.flatnonzero(spikes.sum(axis=(0, 1)) == 0)
    if silent.size == 0:
        return []
    ids = unit_ids[silent].tolist()
    shown = ", ".join(str(u) for u in ids[:20]) + (", ..." if len(ids) > 20 else "")
    return [f"{silent.size} of {spikes.shape[2]} {what}s never fire in the data ({what} ids {shown})"]


def _check_path(path: Any, suffixes: tuple[str, ...], name: str = "data.path") -> Path:
    if path is None or str(path) in ("", "???"):
        raise ValueError(f"{name} is required: add {name}=/path/to/file{suffixes[0]} to the command line")
    p = Path(os.path.expanduser(str(path)))
    if not p.is_file():
        where = "" if p.is_absolute() else f" (relative to {os.getcwd()})"
        raise ValueError(f"{name}: file not found: {str(p)!r}{where}; check the path or give an absolute one")
    if p.suffix.lower() not in suffixes:
        raise ValueError(f"{name} must be a {' or '.join(suffixes)} file; got {str(p)!r}")
    return p


def _mask_note(mask: np.ndarray | None, why: str) -> list[str]:
    if mask is None or mask.all():
        return []
    return [f"{int((~mask).sum())} of {mask.size} (bin, trial) entries are unobserved ({why}); they go to fit as mask"]


def _nan_mask(a: np.ndarray, nan: str, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(values with NaN set to 0, the (T, R) mask of entries without NaN) for a (T, R, N) array."""
    if nan not in NAN_MODES:
        raise ValueError(f"data.nan must be one of {', '.join(NAN_MODES)}; got {nan!r}")
    if nan == "refuse" or not np.issubdtype(a.dtype, np.floating):
        return a, None
    bad = np.isnan(a)
    if not bad.any():
        return a, None
    observed = ~bad.any(axis=2)
    if not observed.any():
        raise ValueError(f"{name} is NaN in every (bin, trial) entry; nothing is observed")
    return np.where(bad, 0.0, a), observed


def _binarise(values: np.ndarray, counts: str = "refuse", name: str = "spikes") -> tuple[np.ndarray, list[str]]:
    """:func:`to_binary`, also returning the note that says what binarising dropped."""
    if counts not in COUNTS_MODES:
        raise ValueError(f"data.counts must be one of {', '.join(COUNTS_MODES)}; got {counts!r}")
    a = np.asarray(values)
    if a.dtype == np.bool_:
        return a.astype(np.uint8), []
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"{name} must be a numeric array of spikes (0/1) or counts; got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ValueError(
                f"{name} contains NaN or infinite values; spikes must be 0/1 (or counts). If NaN marks missing "
                "entries, load with nan='mask' (data.nan=mask) to pass them to fit as a mask"
            )
        if (a != np.round(a)).any():
            bad = a[a != np.round(a)].ravel()[:3].tolist()
            raise ValueError(
                f"{name} must hold 0/1 spikes or integer counts; found values such as {bad}; "
                "threshold or round them to spikes before loading"
            )
    if a.size and a.min() < 0:
        raise ValueError(f"{name} must hold 0/1 spikes or non-negative counts; found negative values (min {a.min()})")
    if a.size and a.max() > 1:
        multi = int((a > 1).sum())
        occupied = int((a > 0).sum())
        dropped = int(a.sum(dtype=np.float64) - occupied)
        if counts == "refuse":
            raise ValueError(
                f"{name} holds spike counts ({multi} of {occupied} occupied bins hold more than one spike, "
                f"up to {a.max()}); set data.counts=binarise (counts='binarise' in Python) to map every count "
                f"> 0 to 1, which drops {dropped} spikes, or use a smaller bin width"
            )
        note = f"binarised: {multi} of {occupied} occupied bins held more than one spike; {dropped} spikes dropped"
        return (a > 0).astype(np.uint8), [note]
    return a.astype(np.uint8), []


def to_binary(values: np.ndarray, counts: str = "refuse", name: str = "spikes") -> np.ndarray:
    """Binary uint8 spikes from 0/1 values or spike counts.

    Args:
        values: array of spikes (0/1, bool) or non-negative integer counts.
        counts: "refuse" raises on any value > 1; "binarise" maps x -> 1[x > 0].
        name: the argument named in error messages.

    Returns:
        uint8 array of the same shape with values in {0, 1}.

    Raises:
        ValueError: on NaN, negative or fractional values, or counts with ``counts="refuse"``
            (the message gives the number of multi-spike bins and the spikes binarising would drop).
    """
    return _binarise(values, counts, name)[0]


def arrange_axes(a: np.ndarray, axes: str = "TRN", name: str = "spikes") -> np.ndarray:
    """Transpose an array with named axes to (T, R, N).

    Args:
        a: the array.
        axes: one letter per axis of ``a`` from {T, R, N}, N required; e.g. "RTN"
            for (trials, bins, neurons), "TN" for one trial.
        name: the argument named in error messages.

    Returns:
        a view of shape (T, R, N) (missing axes have length 1).
    """
    axes = str(axes).upper()
    if "N" not in axes or len(set(axes)) != len(axes) or not set(axes) <= set("TRN"):
        raise ValueError(
            f"data.axes must name the array's axes with distinct letters T, R, N (N required); got {axes!r}"
        )
    if a.ndim != len(axes):
        hint = (
            "set data.axes=TN for one trial of shape (T, N), or data.axes=RN for one bin of shape (R, N)"
            if a.ndim == 2
            else "reshape it to (T, R, N) or set data.axes to its axis order"
        )
        raise ValueError(
            f"{name} has {a.ndim}-D shape {a.shape} but data.axes={axes!r} expects {len(axes)} axes "
            f"(T time bins, R trials, N neurons); {hint}"
        )
    for letter in "TRN":
        if letter not in axes:
            a = a[..., None]
            axes += letter
    return np.transpose(a, [axes.index(letter) for letter in "TRN"])


_MAGIC = {".npy": b"\x93NUMPY", ".npz": b"PK"}


def _check_magic(p: Path) -> None:
    """Refuse a file that is not what its suffix says (e.g. a text file named x.npy) with a plain message."""
    magic = _MAGIC[p.suffix.lower()]
    with open(p, "rb") as fh:
        head = fh.read(len(magic))
    if head != magic:
        kind = "a numpy .npy array" if p.suffix.lower() == ".npy" else "a numpy .npz archive (a zip file)"
        raise ValueError(
            f"data.path: {str(p)!r} is not {kind}: it does not start with the {p.suffix.lower()} signature "
            "(a text or other file renamed?); save it with np.save / np.savez"
        )


def read_array(
    path: str | os.PathLike, key: str | None = None, axes: str = "TRN", counts: str = "refuse", nan: str = "refuse"
) -> SpikeData:
    """Load binned spikes from .npy or .npz (``allow_pickle=False``), with bin indices and unit indices.

    Mapping: ``axes`` names the stored array's axes (see :func:`arrange_axes`).
    Also ``torch_ising.io.load_array``.

    Args:
        path: the file.
        key: the array inside an .npz (default: ``spikes``, or the only array).
        axes: the stored axis order.
        counts: "refuse" or "binarise" counts (see :func:`to_binary`).
        nan: "refuse" (default) NaN, or "mask": an entry (t, r) with a NaN in any neuron is
            unobserved (``mask`` False) and its spikes are set to 0.

    Returns:
        a :class:`SpikeData`: spikes (T, R, N) uint8, ``bin_times`` the bin indices,
        ``unit_ids`` 0..N-1, ``mask`` (None without NaN), and notes on binarised counts,
        unobserved entries and silent neurons.
    """
    p = _check_path(path, (".npy", ".npz"))
    _check_magic(p)
    try:
        loaded = np.load(p, allow_pickle=False)
    except ValueError as exc:
        raise ValueError(
            f"data.path: cannot read {str(p)!r} without unpickling ({exc}); save plain numeric arrays"
        ) from exc
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            names = list(loaded.files)
            if key is None:
                if "spikes" in names:
                    key = "spikes"
                elif len(names) == 1:
                    key = names[0]
                else:
                    raise ValueError(f"data.key is required: {str(p)!r} holds arrays {names}; add data.key=<name>")
            if key not in names:
                raise ValueError(f"data.key={key!r} is not in {str(p)!r}; it holds {names}")
            try:
                a = loaded[key]
            except ValueError as exc:
                raise ValueError(f"data.key={key!r}: cannot read the array without unpickling ({exc})") from exc
    else:
        a = loaded
    name = f"array {key!r} of {p.name}" if key else f"array of {p.name}"
    a = arrange_axes(a, axes, name)
    if a.size == 0:
        raise ValueError(f"{name} is empty: shape (T, R, N) = {a.shape}")
    a, mask = _nan_mask(a, nan, name)
    spikes, notes = _binarise(a, counts, name)
    spikes = np.ascontiguousarray(spikes)
    T, _, N = spikes.shape
    ids = np.arange(N)
    notes += _mask_note(mask, "NaN in the array")
    notes += _silent_note(spikes, ids)
    _warn(notes)
    return SpikeData(spikes, np.arange(T, dtype=np.float64), ids, "bin", tuple(notes), mask)


def load_array(
    path: str | os.PathLike, key: str | None = None, axes: str = "TRN", counts: str = "refuse", nan: str = "refuse"
) -> np.ndarray:
    """Load binned spikes from .npy or .npz (``allow_pickle=False``): the spikes of :func:`read_array`.

    Returns:
        spikes of shape (T, R, N), uint8 (the mask of ``nan="mask"`` is on :func:`read_array`'s record).
    """
    return read_array(path, key=key, axes=axes, counts=counts, nan=nan).spikes


def bin_spikes(
    spike_times: np.ndarray,
    spike_units: np.ndarray,
    event_times: np.ndarray,
    bin_width: float,
    window: Sequence[float],
    units: Sequence[int] | None = None,
    counts: str = "refuse",
    trial_ends: np.ndarray | None = None,
) -> SpikeData:
    """Bin spike times around trial events (numpy only, no loop over spikes or trials).

    Bin t of trial r covers [e_r + start + t w, e_r + start + (t + 1) w), with
    w = ``bin_width`` and (start, stop) = ``window``; T = round((stop - start) / w).
    A spike at time s of unit n falls in bin t = floor((s - e_r - start) / w)
    of every trial r whose window contains it (windows may overlap).
    Also ``torch_ising.io.bin_spike_times``.

    Choosing the bin width: the model sees 0/1 per bin, so a bin should rarely
    hold two spikes of one unit (``counts="refuse"`` says how many do); a few ms
    (2-10 ms) is usual for synchrony, and T = (stop - start) / w sets the cost
    of the fit (linear in T).

    Args:
        spike_times: spike times (seconds), shape (S,).
        spike_units: unit id of each spike, shape (S,).
        event_times: one event time per trial (seconds), shape (R,).
        bin_width: bin width w > 0 (seconds).
        window: (start, stop), seconds relative to each event, start < stop.
        units: unit ids to keep, in this order (neuron n = ``units[n]``); default: all ids, sorted.
            An id that no spike carries is an error.
        counts: "refuse" (default) bins with several spikes, or "binarise" them (any spike -> 1).
        trial_ends: the end time of each trial (seconds, absolute), shape (R,), for trials of
            unequal length: bin t of trial r is unobserved (``mask`` False) when it ends after
            ``trial_ends[r]``, i.e. e_r + start + (t + 1) w > trial_ends[r]. None: all observed.

    Returns:
        a :class:`SpikeData`: spikes (T, R, N) uint8, ``bin_times`` the bin centres
        start + (t + 1/2) w in seconds from the event, ``unit_ids``, ``mask`` (None
        without ``trial_ends``) and notes on binarised bins, spikes outside every window,
        spikes of units not selected, unobserved bins and silent neurons.
    """
    return _bin(spike_times, spike_units, event_times, bin_width, window, units, counts, trial_ends=trial_ends)


def _bin(
    spike_times: Any,
    spike_units: Any,
    event_times: Any,
    bin_width: float,
    window: Sequence[float],
    units: Sequence[int] | None,
    counts: str,
    known: Any = None,
    trial_ends: Any = None,
    invalid: Any = None,
) -> SpikeData:
    """:func:`bin_spikes`; ``known`` lists the valid unit ids (default: the ids some spike carries).

    ``invalid`` (optional): a (R,) bool of trials to mark unobserved, and/or (K, 2) intervals
    [a, b) in absolute seconds: bins overlapping one are unobserved (a pair (trials, intervals)).
    """
    times = np.asarray(spike_times, dtype=np.float64).ravel()
    unit_of = np.asarray(spike_units).ravel()
    events = np.asarray(event_times, dtype=np.float64).ravel()
    if times.shape != unit_of.shape:
        raise ValueError(
            f"spike times and spike units must have the same length; got {times.shape[0]} and {unit_of.shape[0]}"
        )
    if not np.isfinite(times).all() or not np.isfinite(events).all():
        raise ValueError("spike times and event times must be finite numbers (seconds)")
    if events.size == 0:
        raise ValueError("event times are empty: give one event time per trial")
    if not (bin_width > 0):
        raise ValueError(f"data.bin_width must be > 0 seconds; got {bin_width!r}")
    start, stop = float(window[0]), float(window[1])
    if not start < stop:
        raise ValueError(f"data.window must be [start, stop] with start < stop; got {list(window)}")
    n_bins = (stop - start) / bin_width
    T = int(round(n_bins))
    if T < 1 or abs(n_bins - T) > 1e-6 * max(1.0, n_bins):
        raise ValueError(
            f"data.window length {stop - start} s is not a whole number of bins of data.bin_width={bin_width} s"
        )
    present = np.unique(unit_of) if known is None else np.unique(np.asarray(known))
    ids = present if units is None else np.asarray(list(units))
    if ids.size == 0:
        raise ValueError("no units: the spike-unit array is empty and no data.units were given")
    if len(np.unique(ids)) != len(ids):
        raise ValueError(f"data.units must not repeat a unit; got {ids.tolist()}")
    unknown = [u for u in ids.tolist() if u not in set(present.tolist())]
    if unknown:
        shown = ", ".join(str(u) for u in present.tolist()[:20]) + (", ..." if present.size > 20 else "")
        where = "no spike carries them" if known is None else "they are not in the units table"
        raise ValueError(f"data.units: unit id(s) {unknown} not found; {where} (ids present: {shown})")
    N, R = ids.size, events.size
    # Neuron index of every spike (-1: a unit not selected).
    order = np.argsort(ids, kind="stable")
    pos = np.searchsorted(ids[order], unit_of)
    pos = np.clip(pos, 0, N - 1)
    neuron = np.where(ids[order][pos] == unit_of, order[pos], -1)
    keep = neuron >= 0
    n_other = int((~keep).sum())
    times, neuron = times[keep], neuron[keep]
    sort = np.argsort(times, kind="stable")
    times, neuron = times[sort], neuron[sort]
    # Spikes of trial r are times[lo[r]:hi[r]]; expand to (trial, spike) pairs without a Python loop.
    lo = np.searchsorted(times, events + start, side="left")
    hi = np.searchsorted(times, events + stop, side="left")
    n_per_trial = hi - lo
    trial = np.repeat(np.arange(R), n_per_trial)
    first = np.repeat(lo - np.concatenate(([0], np.cumsum(n_per_trial)[:-1])), n_per_trial)
    spike = first + np.arange(trial.size)
    t_bin = np.floor((times[spike] - events[trial] - start) / bin_width).astype(np.int64)
    inside = (t_bin >= 0) & (t_bin < T)
    flat = (t_bin[inside] * R + trial[inside]) * N + neuron[spike][inside]
    binned = np.bincount(flat, minlength=T * R * N).reshape(T, R, N)
    spikes, notes = _binarise(binned, counts, f"data binned at bin_width={bin_width} s")
    n_outside = int(times.size - np.unique(spike[inside]).size)
    if n_outside:
        notes.append(f"{n_outside} of {times.size} spikes of the selected units fall outside every trial window")
    if n_other:
        notes.append(f"{n_other} spikes of {present.size - np.isin(present, ids).sum()} units not selected ignored")
    mask, why = _bin_mask(events, start, bin_width, T, trial_ends, invalid)
    notes += _mask_note(mask, why)
    notes += _silent_note(spikes, ids, "unit")
    _warn(notes)
    bin_times = start + (np.arange(T) + 0.5) * bin_width
    return SpikeData(spikes, bin_times, ids, "s", tuple(notes), mask)


def _bin_mask(
    events: np.ndarray, start: float, w: float, T: int, trial_ends: Any, invalid: Any
) -> tuple[np.ndarray | None, str]:
    """The (T, R) observation mask of binned trials (None when all is observed) and why entries are not."""
    R = events.size
    left = events[None, :] + start + np.arange(T)[:, None] * w  # (T, R) bin starts, absolute seconds
    mask = np.ones((T, R), dtype=bool)
    why = []
    if trial_ends is not None:
        ends = np.asarray(trial_ends, dtype=np.float64).ravel()
        if ends.shape != (R,) or not np.isfinite(ends).all():
            raise ValueError(f"trial_ends must hold one finite end time per trial ({R}); got shape {ends.shape}")
        mask &= left + w <= ends[None, :] + 1e-9 * w
        why.append("past the end of their trial")
    if invalid is not None:
        bad_trials, intervals = invalid
        if bad_trials is not None and np.any(bad_trials):
            mask &= ~np.asarray(bad_trials, dtype=bool)[None, :]
            why.append("trials marked invalid")
        if intervals is not None and len(intervals):
            iv = np.asarray(intervals, dtype=np.float64).reshape(-1, 2)
            hit = (left[..., None] < iv[:, 1]) & (left[..., None] + w > iv[:, 0])  # (T, R, K)
            if hit.any():
                mask &= ~hit.any(-1)
                why.append("inside invalid_times intervals")
    if mask.all():
        return None, ""
    if not mask.any():
        raise ValueError(f"no bin of any trial is observed ({', '.join(why)}); nothing to fit")
    return mask, ", ".join(why)


def bin_spike_times(
    spike_times: np.ndarray,
    spike_units: np.ndarray,
    event_times: np.ndarray,
    bin_width: float,
    window: Sequence[float],
    units: Sequence[int] | None = None,
    counts: str = "refuse",
    trial_ends: np.ndarray | None = None,
) -> np.ndarray:
    """The spikes (T, R, N), uint8, of :func:`bin_spikes` (same arguments; the mask is on its record)."""
    return bin_spikes(
        spike_times, spike_units, event_times, bin_width, window, units=units, counts=counts, trial_ends=trial_ends
    ).spikes


def read_spike_times(
    path: str | os.PathLike,
    bin_width: float,
    window: Sequence[float],
    times_key: str = "spike_times",
    units_key: str = "spike_units",
    events_key: str = "event_times",
    units: Sequence[int] | None = None,
    counts: str = "refuse",
    ends_key: str = "trial_ends",
) -> SpikeData:
    """Load spike times, spike units and event times from an .npz and bin them (:func:`bin_spikes`).

    Also ``torch_ising.io.load_spike_times``. When the file holds an array ``ends_key``
    (default ``trial_ends``: each trial's end time, seconds), trials may be of unequal
    length: bins past a trial's end are unobserved (the record's ``mask``).

    Returns:
        a :class:`SpikeData` with spikes of shape (T, R, N): (bins in the window, events, units).
    """
    p = _check_path(path, (".npz",))
    _check_magic(p)
    with np.load(p, allow_pickle=False) as z:
        missing = [k for k in (times_key, units_key, events_key) if k not in z.files]
        if missing:
            raise ValueError(
                f"data.path: {str(p)!r} has no array(s) {missing}; it holds {list(z.files)} "
                "(set data.times_key / data.units_key / data.events_key)"
            )
        times, unit_of, events = z[times_key], z[units_key], z[events_key]
        ends = z[ends_key] if ends_key in z.files else None
    return bin_spikes(times, unit_of, events, bin_width, window, units=units, counts=counts, trial_ends=ends)


def load_spike_times(
    path: str | os.PathLike,
    bin_width: float,
    window: Sequence[float],
    times_key: str = "spike_times",
    units_key: str = "spike_units",
    events_key: str = "event_times",
    units: Sequence[int] | None = None,
    counts: str = "refuse",
) -> np.ndarray:
    """The spikes (T, R, N), uint8, of :func:`read_spike_times` (same arguments)."""
    return read_spike_times(path, bin_width, window, times_key, units_key, events_key, units, counts).spikes


def read_nwb(
    path: str | os.PathLike,
    bin_width: float,
    window: Sequence[float],
    align_to: str = "start_time",
    units: Sequence[int] | None = None,
    counts: str = "refuse",
) -> SpikeData:
    """Load an NWB file with pynwb and bin its units' spike times around its trials.

    Spike times come from the units table's ragged ``spike_times`` column
    (unit n = row n, identified by the table's ``id``), event times from the
    trials-table column ``align_to``. Binning: :func:`bin_spikes`.
    Also ``torch_ising.io.load_nwb``. Invalid data give the record's ``mask``: a trial
    whose boolean trials column ``invalid`` is true is unobserved in every bin, and a bin
    overlapping an interval of the file's ``invalid_times`` table is unobserved.

    Returns:
        a :class:`SpikeData` with spikes of shape (T, R, N): (bins in the window, trials, units).

    Raises:
        ImportError: without pynwb (``pip install "torch_ising[nwb]"``).
    """
    try:
        from pynwb import NWBHDF5IO
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError('data=nwb needs pynwb: pip install "torch_ising[nwb]" (or pip install pynwb)') from exc
    p = _check_path(path, (".nwb",))
    with NWBHDF5IO(str(p), "r") as io:
        nwbfile = io.read()
        if nwbfile.units is None or len(nwbfile.units) == 0:
            raise ValueError(f"data.path: {str(p)!r} has no units table; data=nwb reads spike times from it")
        if nwbfile.trials is None or len(nwbfile.trials) == 0:
            raise ValueError(f"data.path: {str(p)!r} has no trials table; data=nwb takes trial times from it")
        if align_to not in nwbfile.trials.colnames and align_to not in ("start_time", "stop_time"):
            raise ValueError(
                f"data.align_to={align_to!r} is not a trials column; columns: {list(nwbfile.trials.colnames)}"
            )
        column = nwbfile.units["spike_times"]  # ragged: flat values + end index per unit
        flat = np.asarray(column.target.data[:], dtype=np.float64)
        ends = np.asarray(column.data[:], dtype=np.int64)
        unit_ids = np.asarray(nwbfile.units.id[:])
        events = np.asarray(nwbfile.trials[align_to].data[:], dtype=np.float64)
        bad = None
        if "invalid" in nwbfile.trials.colnames:
            bad = np.asarray(nwbfile.trials["invalid"].data[:]).astype(bool)
        intervals = None
        if nwbfile.invalid_times is not None and len(nwbfile.invalid_times):
            intervals = np.stack(
                [
                    np.asarray(nwbfile.invalid_times["start_time"].data[:], dtype=np.float64),
                    np.asarray(nwbfile.invalid_times["stop_time"].data[:], dtype=np.float64),
                ],
                axis=1,
            )
    per_unit = np.diff(np.concatenate(([0], ends)))
    spike_units = np.repeat(unit_ids, per_unit)
    if units is None:
        units = unit_ids.tolist()
    return _bin(flat, spike_units, events, bin_width, window, units, counts, known=unit_ids, invalid=(bad, intervals))


def load_nwb(
    path: str | os.PathLike,
    bin_width: float,
    window: Sequence[float],
    align_to: str = "start_time",
    units: Sequence[int] | None = None,
    counts: str = "refuse",
) -> np.ndarray:
    """The spikes (T, R, N), uint8, of :func:`read_nwb` (same arguments)."""
    return read_nwb(path, bin_width, window, align_to, units=units, counts=counts).spikes


class DataSource:
    """Base of the data sources built from ``configs/data/*.yaml`` (``hydra.utils.instantiate``).

    Subclasses implement :meth:`read`; :meth:`load` calls it and keeps the record's
    time axis, unit ids and notes as attributes.

    Attributes:
        layout: how the source's data map to (T, R, N).
        bin_times: after :meth:`load`, (T,) bin centres in seconds from the event, or bin indices.
        time_unit: ``"s"`` or ``"bin"`` (the unit of ``bin_times``).
        unit_ids: after :meth:`load`, (N,) the id of each neuron.
        notes: after :meth:`load`, what the loader changed or dropped (also issued as DataWarning).
        mask: after :meth:`load`, (T, R) bool (True = observed) or None, for ``fit(mask=...)``.
    """

    layout: str = "(T, R, N)"
    bin_times: np.ndarray | None = None
    time_unit: str = "bin"
    unit_ids: np.ndarray | None = None
    notes: tuple[str, ...] = ()
    mask: np.ndarray | None = None

    def read(self) -> SpikeData:
        """The spikes (T, R, N) uint8 with their bin times, unit ids and notes."""
        raise NotImplementedError

    def load(self) -> np.ndarray:
        """Spikes of shape (T, R, N), uint8 (see :meth:`read`)."""
        data = self.read()
        self.bin_times, self.time_unit, self.unit_ids = data.bin_times, data.time_unit, data.unit_ids
        self.notes = tuple(data.notes)
        self.mask = data.mask
        return data.spikes

    def describe(self) -> str:
        """One line naming the source and its (T, R, N) mapping."""
        return f"{type(self).__name__}: {self.layout}"


class SyntheticData(DataSource):
    """Synthetic spikes from Gaussian-process parameter paths (MODEL.md 6).

    After :meth:`load`, ``theta`` holds the true parameters, shape (T, D).
    """

    layout = "T = bins of the generated path, R = draws per bin, N = neurons"

    def __init__(
        self,
        N: int = 5,
        order: int = 2,
        T: int = 50,
        R: int = 100,
        mu1: float = -2.0,
        sigma1: float = 50.0,
        mu2: float = 0.0,
        sigma2: float = 50.0,
        alpha: float = 12.0,
        ratio_modulated: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.N, self.order, self.T, self.R = N, order, T, R
        self.gp = {
            "mu1": mu1,
            "sigma1": sigma1,
            "mu2": mu2,
            "sigma2": sigma2,
            "alpha": alpha,
            "ratio_modulated": ratio_modulated,
        }
        self.seed = seed
        self.theta: np.ndarray | None = None

    def read(self) -> SpikeData:
        from ..synthesis import generate_spikes, generate_thetas

        theta = generate_thetas(self.N, self.order, self.T, seed=self.seed, **self.gp)
        spikes = generate_spikes(theta, self.R, seed=self.seed + 1, N=self.N, order=self.order)
        self.theta = theta.cpu().numpy()
        spikes_np = np.ascontiguousarray(spikes.cpu().numpy().astype(np.uint8))
        return SpikeData(spikes_np, np.arange(self.T, dtype=np.float64), np.arange(self.N), "bin", ())

    def describe(self) -> str:
        return (
            f"synthetic: N={self.N}, true order {self.order}, T={self.T}, R={self.R}, seed={self.seed} ({self.layout})"
        )


class ArrayData(DataSource):
    """Binned spikes in a .npy/.npz (:func:`load_array`)."""

    layout = "the array's axes named by data.axes (default TRN = time bins, trials, neurons)"

    def __init__(
        self, path: str, key: str | None = None, axes: str = "TRN", counts: str = "refuse", nan: str = "refuse"
    ) -> None:
        self.path, self.key, self.axes, self.counts, self.nan = path, key, axes, counts, nan

    def read(self) -> SpikeData:
        return read_array(self.path, key=self.key, axes=self.axes, counts=self.counts, nan=self.nan)

    def describe(self) -> str:
        return f"array: {self.path} (axes {self.axes} -> T, R, N; counts={self.counts})"


class _EventData(DataSource):
    """Base of the sources binned in a window around event times: bins of ``bin_width`` seconds.

    Args:
        path: the file.
        bin_width: bin width in seconds.
        window: (start, stop) of the window, in seconds from each event.
        units: the unit ids to keep (None: all).
        counts: what to do with a bin holding more than one spike ("refuse", "binarise").
    """

    def __init__(
        self,
        path: str,
        bin_width: float = 0.005,
        window: Sequence[float] = (0.0, 0.5),
        units: Sequence[int] | None = None,
        counts: str = "refuse",
    ) -> None:
        self.path, self.bin_width, self.window = path, bin_width, list(window)
        self.units = None if units is None else list(units)
        self.counts = counts

    def _bins(self, around: str) -> str:
        return f"{self.path}, bins of {self.bin_width} s in {self.window} s around {around} ({self.layout})"


class SpikeTimesData(_EventData):
    """Spike times + event times in an .npz (:func:`load_spike_times`)."""

    layout = "T = bins in the window after each event, R = events, N = units"

    def __init__(
        self,
        path: str,
        bin_width: float = 0.005,
        window: Sequence[float] = (0.0, 0.5),
        times_key: str = "spike_times",
        units_key: str = "spike_units",
        events_key: str = "event_times",
        units: Sequence[int] | None = None,
        counts: str = "refuse",
    ) -> None:
        super().__init__(path, bin_width, window, units, counts)
        self.keys = {"times_key": times_key, "units_key": units_key, "events_key": events_key}

    def read(self) -> SpikeData:
        return read_spike_times(
            self.path, self.bin_width, self.window, units=self.units, counts=self.counts, **self.keys
        )

    def describe(self) -> str:
        return "spike times: " + self._bins("each event")


class NWBData(_EventData):
    """An NWB file's units and trials (:func:`load_nwb`)."""

    layout = "T = bins in the window around each trial's align_to time, R = trials, N = units"

    def __init__(
        self,
        path: str,
        bin_width: float = 0.005,
        window: Sequence[float] = (0.0, 0.5),
        align_to: str = "start_time",
        units: Sequence[int] | None = None,
        counts: str = "refuse",
    ) -> None:
        super().__init__(path, bin_width, window, units, counts)
        self.align_to = align_to

    def read(self) -> SpikeData:
        return read_nwb(self.path, self.bin_width, self.window, self.align_to, units=self.units, counts=self.counts)

    def describe(self) -> str:
        return "nwb: " + self._bins(f"trials.{self.align_to}")
