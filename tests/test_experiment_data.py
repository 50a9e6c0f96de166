"""Data loading: every source returns (T, R, N) uint8, checked against direct constructions."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

import torch_ising as ti
from torch_ising import generate_spikes, generate_thetas
from torch_ising.experiment.cli import one_line_error
from torch_ising.experiment.data import (
    ArrayData,
    DataWarning,
    NWBData,
    SpikeTimesData,
    SyntheticData,
    arrange_axes,
    bin_spike_times,
    load_array,
    load_nwb,
    load_spike_times,
    to_binary,
)

# Expected notes of the loaders; the tests that check them catch them with pytest.warns.
pytestmark = pytest.mark.filterwarnings("ignore::torch_ising.experiment.data.DataWarning")


def brute_force_binning(times, units, events, width, start, stop, unit_ids):
    """Bin spike by spike and trial by trial with explicit bin edges (the definition)."""
    T = int(round((stop - start) / width))
    out = np.zeros((T, len(events), len(unit_ids)), dtype=np.int64)
    for s, u in zip(times, units, strict=True):
        if u not in unit_ids:
            continue
        n = list(unit_ids).index(u)
        for r, e in enumerate(events):
            for t in range(T):
                if e + start + t * width <= s < e + start + (t + 1) * width:
                    out[t, r, n] += 1
    return out


@pytest.fixture
def session():
    """Spike times of 4 units (ids 3, 7, 8, 11) around 5 trial events, away from bin edges."""
    rng = np.random.default_rng(0)
    width = 0.01
    events = np.array([1.0, 2.5, 4.0, 5.2, 7.0])
    ids = np.array([3, 7, 8, 11])
    times, units = [], []
    for u in ids:
        k = rng.integers(5, 300)
        bins = rng.integers(0, 900, size=k)
        times.append(bins * width + rng.uniform(0.1, 0.9, size=k) * width)  # never on an edge
        units.append(np.full(k, u))
    times = np.concatenate(times)
    units = np.concatenate(units)
    perm = rng.permutation(times.size)
    return {"times": times[perm], "units": units[perm], "events": events, "ids": ids, "width": width}


# --------------------------------------------------------------------------------------------- to_binary, axes


def test_to_binary_keeps_spikes_and_binarises_or_refuses_counts():
    a = np.array([[0, 1], [2, 0]])
    np.testing.assert_array_equal(to_binary(a, "binarise"), [[0, 1], [1, 0]])
    assert to_binary(a, "binarise").dtype == np.uint8
    np.testing.assert_array_equal(to_binary(np.array([0.0, 1.0])), [0, 1])
    np.testing.assert_array_equal(to_binary(np.array([True, False])), [1, 0])
    with pytest.raises(ValueError, match="spike counts .* set data.counts=binarise"):
        to_binary(a, "refuse")
    for bad, match in [([0.5, 1.0], "0/1 spikes or integer counts"), ([-1, 0], "negative"), ([np.nan], "NaN")]:
        with pytest.raises(ValueError, match=match):
            to_binary(np.array(bad), "binarise")
    with pytest.raises(ValueError, match="data.counts must be one of"):
        to_binary(a, "clip")


def test_arrange_axes_maps_named_axes_to_TRN():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 2, size=(4, 3, 5))  # (T, R, N)
    np.testing.assert_array_equal(arrange_axes(x, "TRN"), x)
    np.testing.assert_array_equal(arrange_axes(np.transpose(x, (1, 0, 2)), "RTN"), x)
    np.testing.assert_array_equal(arrange_axes(np.transpose(x, (2, 0, 1)), "NTR"), x)
    np.testing.assert_array_equal(arrange_axes(x[:, 0, :], "TN"), x[:, :1, :])
    np.testing.assert_array_equal(arrange_axes(x[0], "RN"), x[:1])
    with pytest.raises(ValueError, match=r"2-D shape \(4, 5\) .* set data.axes=TN"):
        arrange_axes(x[:, 0, :], "TRN")
    with pytest.raises(ValueError, match="data.axes must name"):
        arrange_axes(x, "TRX")


# --------------------------------------------------------------------------------------------- arrays


def test_load_array_npy_and_npz(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.integers(0, 2, size=(6, 4, 3)).astype(np.int64)
    np.save(tmp_path / "s.npy", x)
    got = load_array(tmp_path / "s.npy")
    assert got.dtype == np.uint8 and got.shape == (6, 4, 3)
    np.testing.assert_array_equal(got, x)

    np.savez(tmp_path / "one.npz", anything=x)
    np.testing.assert_array_equal(load_array(tmp_path / "one.npz"), x)
    np.savez(tmp_path / "many.npz", spikes=x, other=np.zeros(3))
    np.testing.assert_array_equal(load_array(tmp_path / "many.npz"), x)
    np.savez(tmp_path / "keyed.npz", a=x, b=1 - x)
    np.testing.assert_array_equal(load_array(tmp_path / "keyed.npz", key="b"), 1 - x)
    with pytest.raises(ValueError, match=r"data.key is required: .* holds arrays \['a', 'b'\]"):
        load_array(tmp_path / "keyed.npz")
    with pytest.raises(ValueError, match="data.key='c' is not in"):
        load_array(tmp_path / "keyed.npz", key="c")

    np.save(tmp_path / "rtn.npy", np.transpose(x, (1, 0, 2)))
    np.testing.assert_array_equal(ArrayData(str(tmp_path / "rtn.npy"), axes="RTN").load(), x)


def test_load_array_counts_option(tmp_path):
    counts = np.array([[[0, 3]], [[1, 0]]])
    np.save(tmp_path / "c.npy", counts)
    with pytest.raises(ValueError, match="set data.counts=binarise"):
        load_array(tmp_path / "c.npy")
    np.testing.assert_array_equal(load_array(tmp_path / "c.npy", counts="binarise"), counts > 0)


def test_load_array_never_unpickles(tmp_path):
    obj = np.empty((2, 1, 1), dtype=object)
    obj[...] = 1
    np.save(tmp_path / "obj.npy", obj, allow_pickle=True)
    with pytest.raises(ValueError, match="without unpickling"):
        load_array(tmp_path / "obj.npy")
    np.savez(tmp_path / "obj.npz", spikes=obj)
    with pytest.raises(ValueError, match="without unpickling"):
        load_array(tmp_path / "obj.npz")


def test_load_array_bad_paths(tmp_path):
    with pytest.raises(ValueError, match="data.path: file not found"):
        load_array(tmp_path / "missing.npy")
    with pytest.raises(ValueError, match="data.path is required"):
        load_array("???")
    (tmp_path / "x.csv").write_text("0,1\n")
    with pytest.raises(ValueError, match="must be a .npy or .npz file"):
        load_array(tmp_path / "x.csv")
    np.save(tmp_path / "flat.npy", np.zeros((10, 3)))
    with pytest.raises(ValueError, match="2-D shape"):
        load_array(tmp_path / "flat.npy")


# --------------------------------------------------------------------------------------------- spike times


@pytest.mark.parametrize("window", [(0.0, 0.5), (-0.2, 0.3)])
def test_bin_spike_times_matches_the_definition(session, window):
    s = session
    counts = brute_force_binning(s["times"], s["units"], s["events"], s["width"], *window, s["ids"].tolist())
    assert counts.max() > 1, "the fixture should contain bins with several spikes"
    got = bin_spike_times(s["times"], s["units"], s["events"], s["width"], window, counts="binarise")
    assert got.dtype == np.uint8 and got.shape == counts.shape == (50, 5, 4)
    np.testing.assert_array_equal(got, counts > 0)
    with pytest.raises(ValueError, match="set data.counts=binarise"):
        bin_spike_times(s["times"], s["units"], s["events"], s["width"], window, counts="refuse")


def test_bin_spike_times_unit_selection_and_order(session):
    s = session
    window = (0.0, 0.3)
    chosen = [11, 3]
    counts = brute_force_binning(s["times"], s["units"], s["events"], s["width"], *window, chosen)
    got = bin_spike_times(s["times"], s["units"], s["events"], s["width"], window, units=chosen, counts="binarise")
    np.testing.assert_array_equal(got, counts > 0)


def test_bin_spike_times_bad_input(session):
    s = session
    with pytest.raises(ValueError, match="whole number of bins"):
        bin_spike_times(s["times"], s["units"], s["events"], 0.03, (0.0, 0.5))
    with pytest.raises(ValueError, match="same length"):
        bin_spike_times(s["times"], s["units"][:-1], s["events"], 0.01, (0.0, 0.5))
    with pytest.raises(ValueError, match="event times are empty"):
        bin_spike_times(s["times"], s["units"], [], 0.01, (0.0, 0.5))
    with pytest.raises(ValueError, match="must not repeat"):
        bin_spike_times(s["times"], s["units"], s["events"], 0.01, (0.0, 0.5), units=[3, 3])


def test_load_spike_times_npz(tmp_path, session):
    s = session
    np.savez(tmp_path / "st.npz", spike_times=s["times"], spike_units=s["units"], event_times=s["events"])
    counts = brute_force_binning(s["times"], s["units"], s["events"], s["width"], 0.0, 0.2, s["ids"].tolist())
    got = SpikeTimesData(str(tmp_path / "st.npz"), bin_width=s["width"], window=[0.0, 0.2], counts="binarise").load()
    np.testing.assert_array_equal(got, counts > 0)
    np.savez(tmp_path / "other.npz", t=s["times"], u=s["units"], e=s["events"])
    got2 = load_spike_times(
        tmp_path / "other.npz", s["width"], (0.0, 0.2), times_key="t", units_key="u", events_key="e", counts="binarise"
    )
    np.testing.assert_array_equal(got2, got)
    with pytest.raises(ValueError, match=r"has no array\(s\) \['spike_times', 'spike_units', 'event_times'\]"):
        load_spike_times(tmp_path / "other.npz", s["width"], (0.0, 0.2))


def _outside_every_window(times, events, start, stop):
    """Spikes in no trial window [e + start, e + stop), spike by spike (the definition)."""
    return sum(not any(e + start <= t < e + stop for e in events) for t in times)


def test_spike_times_refuse_multi_spike_bins_by_default_with_the_count(tmp_path, session):
    s = session
    np.savez(tmp_path / "st.npz", spike_times=s["times"], spike_units=s["units"], event_times=s["events"])
    counts = brute_force_binning(s["times"], s["units"], s["events"], s["width"], 0.0, 0.5, s["ids"].tolist())
    multi, occupied = int((counts > 1).sum()), int((counts > 0).sum())
    dropped = int(counts.sum() - occupied)
    with pytest.raises(ValueError) as info:
        SpikeTimesData(str(tmp_path / "st.npz"), bin_width=s["width"], window=[0.0, 0.5]).load()
    message = one_line_error(info.value)
    assert "\n" not in message
    assert f"{multi} of {occupied} occupied bins hold more than one spike" in message
    assert "set data.counts=binarise" in message and f"drops {dropped} spikes" in message


def test_binarise_states_the_dropped_spikes_counted_by_hand(session):
    s = session
    window = (-0.2, 0.3)
    counts = brute_force_binning(s["times"], s["units"], s["events"], s["width"], *window, s["ids"].tolist())
    dropped = int(counts.sum() - (counts > 0).sum())  # spikes beyond the first of each bin
    multi = int((counts > 1).sum())
    outside = _outside_every_window(s["times"], s["events"], *window)
    assert dropped > 0 and outside > 0
    with pytest.warns(DataWarning) as record:
        data = ti.io.bin_spike_times(s["times"], s["units"], s["events"], s["width"], window, counts="binarise")
    assert f"binarised: {multi} of {int((counts > 0).sum())} occupied bins held more than one spike; " in data.notes[0]
    assert data.notes[0].endswith(f"; {dropped} spikes dropped")
    assert f"{outside} of {s['times'].size} spikes of the selected units fall outside every trial window" in data.notes
    assert [str(w.message) for w in record] == list(data.notes)
    np.testing.assert_array_equal(data.spikes, counts > 0)
    # bin centres in seconds from the event, and the unit ids
    np.testing.assert_allclose(data.bin_times, -0.2 + 0.01 * (np.arange(50) + 0.5))
    np.testing.assert_array_equal(data.unit_ids, [3, 7, 8, 11])
    assert data.time_unit == "s"


def test_unknown_units_are_an_error_naming_them(tmp_path, session):
    s = session
    np.savez(tmp_path / "st.npz", spike_times=s["times"], spike_units=s["units"], event_times=s["events"])
    source = SpikeTimesData(str(tmp_path / "st.npz"), window=[0.0, 0.05], units=[3, 7, 99], counts="binarise")
    with pytest.raises(ValueError) as info:
        source.load()
    message = one_line_error(info.value)
    assert "\n" not in message and "unit id(s) [99] not found" in message and "3, 7, 8, 11" in message


def test_silent_units_and_unselected_spikes_are_reported(session):
    s = session
    times = np.concatenate([s["times"], [100.0, 100.5]])  # unit 20 fires only far from every event
    units = np.concatenate([s["units"], [20, 20]])
    with pytest.warns(DataWarning, match="never fire"):
        data = ti.io.bin_spike_times(times, units, s["events"], 0.01, (0.0, 0.3), units=[20, 3], counts="binarise")
    assert data.spikes[:, :, 0].sum() == 0
    assert "1 of 2 units never fire in the data (unit ids 20)" in data.notes
    n_other = int(np.isin(s["units"], [7, 8, 11]).sum())
    assert f"{n_other} spikes of 3 units not selected ignored" in data.notes


def test_array_loader_reports_and_refuses_a_text_file_named_npy(tmp_path):
    counts = np.zeros((3, 2, 2), dtype=np.int64)
    counts[0, 0, 0], counts[1, 1, 0], counts[2, 0, 0] = 3, 1, 2
    np.save(tmp_path / "c.npy", counts)
    with pytest.warns(DataWarning):
        data = ti.io.load_array(tmp_path / "c.npy", counts="binarise")
    assert data.notes[0] == "binarised: 2 of 3 occupied bins held more than one spike; 3 spikes dropped"
    assert "1 of 2 neurons never fire in the data (neuron ids 1)" in data.notes
    np.testing.assert_array_equal(data.bin_times, [0.0, 1.0, 2.0])
    assert data.time_unit == "bin"
    (tmp_path / "x.npy").write_text("0 1 0\n1 0 1\n")
    with pytest.raises(ValueError, match="is not a numpy .npy array") as info:
        load_array(tmp_path / "x.npy")
    assert "pickle" not in str(info.value)


# --------------------------------------------------------------------------------------------- NWB


def _write_nwb(path, s):
    pynwb = pytest.importorskip("pynwb")
    nwbfile = pynwb.NWBFile(
        session_description="torch_ising test session",
        identifier="torch-ising-test",
        session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc),
    )
    for u in s["ids"]:
        nwbfile.add_unit(id=int(u), spike_times=np.sort(s["times"][s["units"] == u]))
    nwbfile.add_trial_column(name="stim_on", description="stimulus onset (s)")
    for e in s["events"]:
        nwbfile.add_trial(start_time=float(e) - 0.5, stop_time=float(e) + 1.0, stim_on=float(e))
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwbfile)


def test_nwb_loads_the_same_array_as_the_numpy_path(tmp_path, session):
    s = session
    _write_nwb(tmp_path / "session.nwb", s)
    np.savez(tmp_path / "session.npz", spike_times=s["times"], spike_units=s["units"], event_times=s["events"])
    window = [0.0, 0.5]
    binarise = {"bin_width": s["width"], "window": window, "counts": "binarise"}
    from_numpy = SpikeTimesData(str(tmp_path / "session.npz"), **binarise).load()
    from_nwb = NWBData(str(tmp_path / "session.nwb"), align_to="stim_on", **binarise).load()
    assert from_nwb.dtype == np.uint8 and from_nwb.shape == (50, 5, 4)
    np.testing.assert_array_equal(from_nwb, from_numpy)
    # aligned to the trials' start_time (event - 0.5 s): the same as the numpy path with shifted events
    shifted = bin_spike_times(s["times"], s["units"], s["events"] - 0.5, s["width"], window, counts="binarise")
    np.testing.assert_array_equal(load_nwb(tmp_path / "session.nwb", s["width"], window, counts="binarise"), shifted)
    sub = load_nwb(tmp_path / "session.nwb", s["width"], window, align_to="stim_on", units=[8, 3], counts="binarise")
    np.testing.assert_array_equal(sub, from_numpy[:, :, [2, 0]])
    with pytest.raises(ValueError, match="data.align_to='go' is not a trials column"):
        load_nwb(tmp_path / "session.nwb", s["width"], window, align_to="go")


# --------------------------------------------------------------------------------------------- synthetic


def test_synthetic_source_matches_the_synthesis_functions():
    src = SyntheticData(N=3, order=2, T=7, R=11, seed=5)
    spikes = src.load()
    theta = generate_thetas(3, 2, 7, seed=5)
    expected = generate_spikes(theta, 11, seed=6, N=3, order=2).numpy()
    assert spikes.dtype == np.uint8 and spikes.shape == (7, 11, 3)
    np.testing.assert_array_equal(spikes, expected)
    np.testing.assert_array_equal(src.theta, theta.numpy())
    assert "N=3" in src.describe()


# --------------------------------------------------------------------------------------------- masks (missing data)


def brute_force_mask(events, width, start, stop, ends=None, bad_trials=None, intervals=()):
    """Bin by bin: observed unless past the trial's end, in an invalid trial, or overlapping an invalid interval."""
    T = int(round((stop - start) / width))
    m = np.ones((T, len(events)), dtype=bool)
    for r, e in enumerate(events):
        for t in range(T):
            a, b = e + start + t * width, e + start + (t + 1) * width
            if ends is not None and b > ends[r] + 1e-12:
                m[t, r] = False
            if bad_trials is not None and bad_trials[r]:
                m[t, r] = False
            for lo, hi in intervals:
                if a < hi and b > lo:
                    m[t, r] = False
    return m


def test_spike_times_with_unequal_trials_give_a_mask(tmp_path, session):
    s = session
    window = [0.0, 0.5]
    ends = s["events"] + np.array([0.5, 0.3, 0.5, 0.123, 0.05])  # trial 1 ends after 30 bins, trial 3 inside bin 12
    np.savez(
        tmp_path / "s.npz", spike_times=s["times"], spike_units=s["units"], event_times=s["events"], trial_ends=ends
    )
    src = SpikeTimesData(str(tmp_path / "s.npz"), bin_width=s["width"], window=window, counts="binarise")
    with pytest.warns(DataWarning, match="past the end of their trial"):
        spikes = src.load()
    want = brute_force_mask(s["events"], s["width"], 0.0, 0.5, ends=ends)
    assert src.mask.dtype == np.bool_ and src.mask.shape == spikes.shape[:2]
    np.testing.assert_array_equal(src.mask, want)
    assert want[:, 0].all() and want[:30, 1].all() and not want[30:, 1].any() and want[:12, 3].sum() == 12
    # without trial_ends in the file everything is observed
    np.savez(tmp_path / "t.npz", spike_times=s["times"], spike_units=s["units"], event_times=s["events"])
    other = SpikeTimesData(str(tmp_path / "t.npz"), bin_width=s["width"], window=window, counts="binarise")
    np.testing.assert_array_equal(other.load(), spikes)
    assert other.mask is None
    # the mask goes to fit: equal to dropping the short trials' late bins by hand (trial 4 alone is cut at bin 5)
    res = ti.fit(spikes, 1, mask=src.mask, mstep=False, progress=False)
    np.testing.assert_array_equal(res.R_t.numpy(), want.sum(1))


def test_nwb_invalid_trials_and_intervals_give_a_mask(tmp_path, session):
    pynwb = pytest.importorskip("pynwb")
    s = session
    nwbfile = pynwb.NWBFile(
        session_description="torch_ising test session",
        identifier="torch-ising-test-invalid",
        session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc),
    )
    for u in s["ids"]:
        nwbfile.add_unit(id=int(u), spike_times=np.sort(s["times"][s["units"] == u]))
    nwbfile.add_trial_column(name="invalid", description="trial rejected")
    bad = [False, True, False, False, True]
    for e, b in zip(s["events"], bad, strict=True):
        nwbfile.add_trial(start_time=float(e), stop_time=float(e) + 1.0, invalid=b)
    nwbfile.add_invalid_time_interval(start_time=4.1005, stop_time=4.2)  # inside trial 2's window
    with pynwb.NWBHDF5IO(str(tmp_path / "s.nwb"), "w") as io:
        io.write(nwbfile)
    src = NWBData(str(tmp_path / "s.nwb"), bin_width=s["width"], window=[0.0, 0.5], counts="binarise")
    with pytest.warns(DataWarning, match="trials marked invalid, inside invalid_times intervals"):
        spikes = src.load()
    want = brute_force_mask(s["events"], s["width"], 0.0, 0.5, bad_trials=bad, intervals=[(4.1005, 4.2)])
    np.testing.assert_array_equal(src.mask, want)
    assert not want[:, 1].any() and want[:, 2].sum() == 50 - 10
    np.testing.assert_array_equal(spikes, bin_spike_times(s["times"], s["units"], s["events"], s["width"], [0.0, 0.5],
                                                          counts="binarise"))  # fmt: skip


def test_array_nan_only_through_the_mask_option(tmp_path):
    a = (np.random.default_rng(1).random((6, 4, 3)) < 0.3).astype(np.float64)
    a[2, 1, 0] = np.nan
    a[5, :, 2] = np.nan
    np.save(tmp_path / "x.npy", a)
    with pytest.raises(ValueError, match="contains NaN.*nan='mask'"):
        load_array(tmp_path / "x.npy")
    src = ArrayData(str(tmp_path / "x.npy"), nan="mask")
    with pytest.warns(DataWarning, match="5 of 24 \\(bin, trial\\) entries are unobserved"):
        spikes = src.load()
    want = ~np.isnan(a).any(axis=2)
    np.testing.assert_array_equal(src.mask, want)
    np.testing.assert_array_equal(spikes, np.nan_to_num(a, nan=0.0).astype(np.uint8))
    # fit itself still refuses the NaN array, and takes the loader's spikes with its mask
    with pytest.raises(ValueError, match="spikes contains NaN"):
        ti.fit(a, 1, progress=False)
    res = ti.fit(spikes, 1, mask=src.mask, mstep=False, progress=False)
    np.testing.assert_array_equal(res.R_t.numpy(), want.sum(1))
    with pytest.raises(ValueError, match="data.nan must be one of refuse, mask"):
        load_array(tmp_path / "x.npy", nan="zero")
