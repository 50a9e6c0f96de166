"""Loading spikes from Python: the loaders of the ``torch-ising`` command, as functions.

Each function returns a :class:`SpikeData` record: ``spikes`` (T, R, N) uint8,
``bin_times`` (bin centres in seconds from the alignment event; bin indices
for binned arrays), ``unit_ids`` (the id of each neuron), ``time_unit`` and
``notes`` (what the loader changed or dropped, also issued as
:class:`DataWarning`). They are the code the CLI runs (``data=spike_times``,
``data=nwb``, ``data=array``); see docs/experiments.md, which also has a
guide to choosing the bin width.

    data = ti.io.bin_spike_times(times, units, events, bin_width=0.005, window=(-0.1, 0.4))
    result = ti.fit(data.spikes, order=2)

Bins holding several spikes of one unit are refused by default (the error
says how many); ``counts="binarise"`` maps them to 1 and its note states the
spikes dropped. Unit ids that do not exist are an error naming them.

Missing data come as the record's ``mask`` (T, R), True = observed, for
``ti.fit(data.spikes, mask=data.mask)``: bins past a trial's end
(``trial_ends=``, or an .npz array ``trial_ends``), NWB trials marked ``invalid``
and ``invalid_times`` intervals, and NaN entries of an array with ``nan="mask"``.
"""

from __future__ import annotations

from .experiment.data import DataWarning, SpikeData
from .experiment.data import bin_spikes as bin_spike_times
from .experiment.data import read_array as load_array
from .experiment.data import read_nwb as load_nwb
from .experiment.data import read_spike_times as load_spike_times

__all__ = ["SpikeData", "DataWarning", "bin_spike_times", "load_spike_times", "load_nwb", "load_array"]
