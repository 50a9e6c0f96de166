"""Experiments with Hydra: configs, data loading, outputs and the ``torch-ising`` command.

* :mod:`.schemas` - dataclass schemas of every config group (no Hydra import).
* :mod:`.data` - data sources; every loader returns spikes (T, R, N), uint8.
* :mod:`.outputs` - atomic results, summaries, figures, checkpoints and sweep tables.
* :mod:`.cli` - the ``torch-ising`` command (imports Hydra; not imported here).
"""

from .data import (
    ArrayData,
    DataWarning,
    NWBData,
    SpikeData,
    SpikeTimesData,
    SyntheticData,
    bin_spike_times,
    bin_spikes,
    load_array,
    load_nwb,
    load_spike_times,
    read_array,
    read_nwb,
    read_spike_times,
    to_binary,
)
from .outputs import load_checkpoint, load_results, save_checkpoint, save_results, write_sweep_table
from .schemas import (
    ArrayDataConfig,
    ExperimentConfig,
    FitConfig,
    ModelConfig,
    NWBDataConfig,
    OutputConfig,
    SpikeTimesDataConfig,
    SyntheticDataConfig,
    register_configs,
)

__all__ = [
    "ArrayData",
    "DataWarning",
    "SpikeData",
    "bin_spikes",
    "read_array",
    "read_nwb",
    "read_spike_times",
    "NWBData",
    "SpikeTimesData",
    "SyntheticData",
    "bin_spike_times",
    "load_array",
    "load_nwb",
    "load_spike_times",
    "to_binary",
    "load_results",
    "save_results",
    "load_checkpoint",
    "save_checkpoint",
    "write_sweep_table",
    "ArrayDataConfig",
    "ExperimentConfig",
    "FitConfig",
    "ModelConfig",
    "NWBDataConfig",
    "OutputConfig",
    "SpikeTimesDataConfig",
    "SyntheticDataConfig",
    "register_configs",
]
